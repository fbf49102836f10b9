"""The chart and the binaries cannot drift: every pod's configuration, as
the kubelet would hand it over (the ConfigMap's TOML, the environment with
Secret values, the mounted files), is loaded by the binary's own loader
with --check-config; a value the binary refuses fails naming the field."""

import re

import pytest

import chart
from conftest import FIXTURES, fixture_secrets, rendered


def pods(fixture):
    for w in chart.workloads(list(rendered(fixture))):
        yield pytest.param(fixture, w, id=f"{fixture}-{chart.component(w)}")


@pytest.mark.parametrize("fixture,workload", [p for f in FIXTURES for p in pods(f)])
def test_the_binary_accepts_its_rendered_config(fixture, workload, binary_dir, tmp_path):
    docs = list(rendered(fixture))
    pod = chart.materialize(workload, docs, tmp_path, secrets=fixture_secrets(fixture, docs))
    done = chart.check_config(binary_dir, pod)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{pod.binary}: config OK"


# (component, values the schema allows but the binary refuses, field named)
REFUSED = [
    ("chat", ("chat.config.worker_lease_ttl=500ms",), "worker_lease_ttl"),
    ("chat", ("chat.moderation.reloadInterval=500ms",), "moderation.reload_interval"),
    ("presence", ("presence.config.presence.instance_ttl=1s",
                  "presence.config.presence.instance_refresh=1s"), "presence.instance_ttl"),
    ("storage", ("storage.config.lag_interval=0s",), "lag_interval"),
    ("media", ("media.config.limits.url_ttl=30d",), "limits.url_ttl"),
    ("gateway", ("gateway.config.presence.session_ttl=1s",
                 "gateway.config.presence.flush_interval=1s"), "presence.session_ttl"),
    ("gateway", ("gateway.config.routing.node_ttl=1s",), "routing.node_ttl"),
]


@pytest.mark.parametrize("name,sets,field", REFUSED, ids=[f"{r[0]}-{r[2]}" for r in REFUSED])
def test_a_value_the_binary_refuses_names_the_field(name, sets, field, binary_dir, tmp_path):
    docs = chart.render((chart.CHART / "ci" / "minimal.yaml",), sets)
    workload = [w for w in chart.workloads(docs) if chart.component(w) == name][0]
    pod = chart.materialize(workload, docs, tmp_path)
    done = chart.check_config(binary_dir, pod)
    assert done.returncode == 2, done.stdout
    assert f"invalid config field `{field}`" in done.stderr, done.stderr


def test_a_wrong_toml_value_is_refused_naming_the_field(binary_dir, tmp_path):
    docs = list(rendered("minimal"))
    workload = chart.one(docs, "StatefulSet", "cm-chatmesh-storage")
    pod = chart.materialize(workload, docs, tmp_path)
    text = pod.config.read_text()
    pod.config.write_text(re.sub(r"(?m)^last_bucket = 255$", "last_bucket = 254", text))
    done = chart.check_config(binary_dir, pod)
    assert done.returncode == 2
    assert "invalid config field `shards.databases`" in done.stderr, done.stderr
