"""What every workload must have, in every fixture, and how each component
is shaped for what it needs."""

import hashlib
import re

import pytest

import chart
from conftest import FIXTURES, rendered

COMPONENTS = {"gateway", "chat", "presence", "storage", "media"}


def _all_workloads():
    for fixture in FIXTURES:
        for w in chart.workloads(list(rendered(fixture))):
            yield pytest.param(fixture, w, id=f"{fixture}-{chart.component(w)}")


ALL_WORKLOADS = list(_all_workloads())


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_component_runs(fixture):
    assert {chart.component(w) for w in chart.workloads(list(rendered(fixture)))} == COMPONENTS


@pytest.mark.parametrize("fixture,workload", ALL_WORKLOADS)
def test_probes_use_livez_and_readyz(fixture, workload):
    c = chart.container(workload)
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    # Readiness follows the dependencies; liveness must not, or an outage
    # of Redis or Postgres would restart every pod.
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


@pytest.mark.parametrize("fixture,workload", ALL_WORKLOADS)
def test_resources_are_bounded(fixture, workload):
    r = chart.container(workload)["resources"]
    assert r["requests"]["cpu"] and r["requests"]["memory"]
    assert r["limits"]["memory"]


@pytest.mark.parametrize("fixture,workload", ALL_WORKLOADS)
def test_security_context(fixture, workload):
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = chart.container(workload)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # A read-only root still needs a writable /tmp.
    assert any(m["mountPath"] == "/tmp" for m in chart.container(workload)["volumeMounts"])


@pytest.mark.parametrize("fixture,workload", ALL_WORKLOADS)
def test_checksum_annotation_tracks_the_config(fixture, workload):
    docs = list(rendered(fixture))
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    cm = chart.config_maps(docs)[workload["metadata"]["name"]]
    # The checksum is of the rendered TOML, which the ConfigMap holds as is.
    assert annotations["checksum/config"] == hashlib.sha256(
        cm["config.toml"].rstrip("\n").encode()).hexdigest()
    if chart.secret_data(docs):
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])


def test_a_config_change_rolls_only_its_component():
    base = chart.CHART / "ci" / "minimal.yaml"
    before = {chart.component(w): w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
              for w in chart.workloads(chart.render((base,)))}
    after = {chart.component(w): w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
             for w in chart.workloads(chart.render((base,), ("chat.config.limits.max_body_bytes=8192",)))}
    assert [c for c in COMPONENTS if before[c] != after[c]] == ["chat"]


@pytest.mark.parametrize("fixture,workload", ALL_WORKLOADS)
def test_termination_grace_exceeds_the_drain(fixture, workload):
    docs = list(rendered(fixture))
    toml = chart.config_maps(docs)[workload["metadata"]["name"]]["config.toml"]
    grace = int(re.search(r'shutdown_grace = "(\d+)s"', toml).group(1))
    lifecycle = chart.container(workload)["lifecycle"]["preStop"]
    pre_stop = int(lifecycle["sleep"]["seconds"]) if "sleep" in lifecycle else int(lifecycle["exec"]["command"][-1])
    assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace + pre_stop


def test_a_grace_period_below_the_drain_is_refused():
    with pytest.raises(chart.RenderError, match="terminationGracePeriodSeconds .* must exceed"):
        chart.render((chart.CHART / "ci" / "minimal.yaml",),
                     ("storage.shutdownGraceSeconds=30", "storage.terminationGracePeriodSeconds=20"))


def test_gateway_is_a_stateful_set_with_a_headless_service():
    docs = list(rendered("redirect"))
    sts = chart.one(docs, "StatefulSet", "cm-chatmesh-gateway")
    headless = chart.one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    env = chart.pod_env(sts, chart.secret_data(docs), ordinal=2)
    assert env["CHATMESH_NODE_ID"] == "cm-chatmesh-gateway-2"
    assert env["CHATMESH_PUBLIC_URL"] == "wss://cm-chatmesh-gateway-2.gw.chat.example.com"


def test_gateways_discover_every_pod_of_each_service():
    # A ClusterIP Service would give each gateway one connection to one pod;
    # the headless name resolves to every ready pod, which the gateway
    # balances over.
    docs = list(rendered("minimal"))
    config = "\n".join(v for m in chart.config_maps(docs).values() for v in m.values())
    for svc in ("chat", "presence", "storage", "media"):
        headless = chart.one(docs, "Service", f"cm-chatmesh-{svc}-headless")
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["ports"][0]["name"] == "grpc"
        port = headless["spec"]["ports"][0]["port"]
        url = f"dns://cm-chatmesh-{svc}-headless.{headless['metadata']['namespace']}.svc.cluster.local:{port}"
        assert f'{svc} = "{url}"' in config, config


@pytest.mark.parametrize("fixture", FIXTURES)
def test_chat_discovers_every_storage_pod(fixture):
    # Chat's lookups for edits, deletes and reactions are balanced like the
    # gateways' calls: over the headless name, never the ClusterIP Service.
    docs = list(rendered(fixture))
    headless = chart.one(docs, "Service", "cm-chatmesh-storage-headless")
    assert headless["spec"]["clusterIP"] == "None"
    storage_pods = chart.one(docs, "StatefulSet", "cm-chatmesh-storage")["spec"]["selector"]
    assert headless["spec"]["selector"] == storage_pods["matchLabels"]
    port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "grpc")
    namespace = headless["metadata"]["namespace"]
    toml = chart.config_maps(docs)["cm-chatmesh-chat"]["config.toml"]
    storage = [line for line in toml.splitlines() if line.startswith("storage = ")]
    assert storage == [f'storage = "dns://cm-chatmesh-storage-headless.{namespace}.svc.cluster.local:{port}"'], toml


def test_server_limits_join_the_fields_the_chart_owns():
    docs = list(rendered("production"))
    toml = chart.config_maps(docs)["cm-chatmesh-chat"]["config.toml"]
    server = toml[toml.index("[server]"):]
    assert "max_concurrent_requests = 512" in server
    assert 'grpc_addr = "' in server and 'admin_addr = "' in server


def test_redirect_mode_routes_each_pod_its_own_host():
    docs = list(rendered("redirect"))
    # Up to the autoscaler's ceiling, so a new pod is reachable when it joins.
    for i in range(5):
        svc = chart.one(docs, "Service", f"cm-chatmesh-gateway-{i}")
        assert svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"cm-chatmesh-gateway-{i}"
        route = chart.one(docs, "HTTPRoute", f"cm-chatmesh-gateway-{i}")
        assert route["spec"]["hostnames"] == [f"cm-chatmesh-gateway-{i}.gw.chat.example.com"]
    hosts = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"]
             for r in chart.one(docs, "Ingress", "cm-chatmesh-gateway")["spec"]["rules"]}
    assert hosts["chat.example.com"] == "cm-chatmesh-gateway"
    assert hosts["cm-chatmesh-gateway-4.gw.chat.example.com"] == "cm-chatmesh-gateway-4"


def test_redirect_mode_needs_a_public_url_per_pod():
    minimal = chart.CHART / "ci" / "minimal.yaml"
    with pytest.raises(chart.RenderError, match=r"must contain \{pod\} in redirect mode"):
        chart.render((minimal,), ("gateway.publicUrl=wss://chat.example.com",))
    with pytest.raises(chart.RenderError, match="needs a public URL with {pod}"):
        chart.render((minimal,), ("gateway.ingress.enabled=true",))
    # Serve mode takes any URL: a node serves every channel.
    chart.render((minimal,), ("gateway.publicUrl=wss://chat.example.com",
                              "gateway.config.routing.mode=serve", "gateway.ingress.enabled=true"))


def test_chat_worker_ids_from_the_ordinal_or_a_lease():
    ordinal = chart.one(list(rendered("minimal")), "StatefulSet", "cm-chatmesh-chat")
    docs = list(rendered("minimal"))
    env = chart.pod_env(ordinal, chart.secret_data(docs), ordinal=7)
    assert env["CHATMESH_WORKER_ID"] == "7"
    lease = chart.one(list(rendered("existing-secret")), "Deployment", "cm-chatmesh-chat")
    assert not any(v["name"] == "CHATMESH_WORKER_ID" for v in chart.container(lease)["env"])


def test_storage_members_are_static_per_pod():
    docs = list(rendered("production"))
    sts = chart.one(docs, "StatefulSet", "cm-chatmesh-storage")
    env = chart.pod_env(sts, chart.secret_data(docs), ordinal=3)
    assert env["CHATMESH_INSTANCE_ID"] == "cm-chatmesh-storage-3"


def test_autoscalers_scale_down_slowly():
    docs = list(rendered("production"))
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in chart.kind(docs, "HorizontalPodAutoscaler")}
    assert set(hpas) == {"cm-chatmesh-gateway", "cm-chatmesh-chat"}
    for h in hpas.values():
        down = h["spec"]["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
        assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": down["policies"][0]["periodSeconds"]}]
        target = chart.one(docs, h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
        # The autoscaler owns the replica count; the chart must not reset it.
        assert "replicas" not in target["spec"]


def test_pod_disruption_budgets():
    docs = list(rendered("production"))
    pdbs = {p["metadata"]["name"]: p["spec"] for p in chart.kind(docs, "PodDisruptionBudget")}
    assert pdbs["cm-chatmesh-chat"].get("minAvailable") == 2
    assert pdbs["cm-chatmesh-gateway"].get("maxUnavailable") == "10%"
    assert pdbs["cm-chatmesh-media"].get("maxUnavailable") == 1
    for spec in pdbs.values():
        assert not ("minAvailable" in spec and "maxUnavailable" in spec)


def test_both_pdb_fields_fail_at_render_time_too():
    # The schema refuses it first; the template guards installs that skip it.
    with pytest.raises(chart.RenderError, match="chat.pdb: set minAvailable or maxUnavailable, not both"):
        chart.render((chart.CHART / "ci" / "minimal.yaml",),
                     ("chat.pdb.minAvailable=1", "chat.pdb.maxUnavailable=1"),
                     extra=("--skip-schema-validation",))


def test_network_policies_let_only_gateways_call_the_services():
    docs = list(rendered("production"))
    for svc in ("chat", "presence", "storage", "media"):
        np = chart.one(docs, "NetworkPolicy", f"cm-chatmesh-{svc}")
        grpc = [r for r in np["spec"]["ingress"] if r["ports"][0]["port"] == "grpc"][0]
        callers = {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in grpc["from"]}
        # chat reads storage to check edits, deletes and reactions.
        expected = {"gateway", "test", "chat"} if svc == "storage" else {"gateway", "test"}
        assert callers == expected
        assert "Egress" in np["spec"]["policyTypes"]


def test_helm_test_checks_every_service():
    docs = list(rendered("minimal"))
    pod = [d for d in chart.kind(docs, "Pod") if d["metadata"]["annotations"].get("helm.sh/hook") == "test"][0]
    cmd = pod["spec"]["containers"][0]["command"]
    assert cmd[0] == "/usr/local/bin/chatmesh-healthcheck"
    for svc in ("chat", "presence", "storage", "media"):
        assert f"grpc://cm-chatmesh-{svc}:50051" in cmd
    assert "http://cm-chatmesh-gateway:80/readyz" in cmd
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
