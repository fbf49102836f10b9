"""Secrets reach the binaries only through the Secret: never a ConfigMap,
never a literal in a pod spec."""

import pytest

import chart
from conftest import FIXTURES, rendered


@pytest.mark.parametrize("fixture", FIXTURES)
def test_no_secret_value_in_a_config_map_or_pod_spec(fixture):
    docs = list(rendered(fixture))
    secrets = [v for v in chart.secret_data(docs).values() if len(v) >= 6]
    if fixture == "existing-secret":
        assert not chart.kind(docs, "Secret")
        return
    assert secrets
    for name, data in chart.config_maps(docs).items():
        for key, text in data.items():
            for value in secrets:
                for line in value.strip().splitlines():
                    assert line not in text, f"ConfigMap {name} key {key} holds a secret"
    for w in chart.workloads(docs) + chart.kind(docs, "Pod"):
        spec = str(w["spec"])
        for value in secrets:
            assert value not in spec, f"{w['metadata']['name']} spells out a secret"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_secret_reference_names_the_release_secret(fixture):
    docs = list(rendered(fixture))
    expected = "chatmesh-credentials" if fixture == "existing-secret" else "cm-chatmesh-secrets"
    refs = []
    for w in chart.workloads(docs):
        for var in chart.container(w).get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.append(ref["name"])
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in v:
                refs.append(v["secret"]["secretName"])
    assert refs and set(refs) == {expected}


def test_database_passwords_are_spliced_in_by_the_kubelet():
    docs = list(rendered("production"))
    sts = chart.one(docs, "StatefulSet", "cm-chatmesh-storage")
    env = {v["name"]: v for v in chart.container(sts)["env"]}
    # The spec holds a reference, the process sees the password.
    assert env["CHATMESH_SHARDS__DATABASES__2__URL"]["value"] == \
        "postgres://chatmesh_b:$(DB_PASSWORD_SHARD_2)@pg-b.data.svc.cluster.local:5433/chatmesh_shard_2"
    resolved = chart.pod_env(sts, chart.secret_data(docs))
    assert resolved["CHATMESH_SHARDS__DATABASES__2__URL"].startswith("postgres://chatmesh_b:prod-pg-b-password@")
    gw = chart.pod_env(chart.one(docs, "StatefulSet", "cm-chatmesh-gateway"), chart.secret_data(docs))
    assert gw["CHATMESH_REDIS__NODES"].split(",")[0] == \
        "redis://:prod-redis-password@redis-0.redis.data.svc.cluster.local:6379"


def test_a_key_the_chart_secret_lacks_is_named():
    with pytest.raises(chart.RenderError, match=r'gateway.auth.hs256SecretKey names the Secret key "nope"'):
        chart.render((chart.CHART / "ci" / "minimal.yaml",), ("gateway.auth.hs256SecretKey=nope",))
    with pytest.raises(chart.RenderError, match=r'shards.databases\[0\].passwordKey names the Secret key "shard-pw"'):
        chart.render((chart.CHART / "ci" / "minimal.yaml",), ("shards.databases[0].passwordKey=shard-pw",))


def test_existing_secret_and_chart_secret_are_exclusive():
    with pytest.raises(chart.RenderError, match="existingSecret or secrets.data, not both"):
        chart.render((chart.CHART / "ci" / "minimal.yaml",), ("existingSecret=mine",))


def test_a_password_less_database_has_no_secret_reference():
    docs = chart.render((chart.CHART / "ci" / "minimal.yaml",), ("postgres.passwordKey=",))
    for w in chart.workloads(docs):
        names = {v["name"] for v in chart.container(w)["env"]}
        assert not any(n.startswith("DB_PASSWORD") for n in names)
