"""Every fixture renders, lints and passes Kubernetes' own schemas for the
oldest and newest versions the chart supports."""

import subprocess

import pytest

import chart
from conftest import API_VERSIONS, FIXTURES, KUBE_VERSIONS


@pytest.mark.parametrize("fixture", FIXTURES)
def test_lint_strict(fixture):
    done = subprocess.run([chart.helm(), "lint", "--strict", str(chart.CHART),
                           "-f", str(chart.CHART / "ci" / f"{fixture}.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("fixture", FIXTURES)
def test_manifests_match_the_kubernetes_schemas(fixture, kube_version, tmp_path):
    out = tmp_path / "rendered.yaml"
    out.write_text(chart.render_text((chart.CHART / "ci" / f"{fixture}.yaml",),
                                     kube_version=kube_version, api_versions=API_VERSIONS))
    done = subprocess.run(["kubernetes-validate", "--strict", "-k", kube_version, str(out)],
                          capture_output=True, text=True)
    errors = [l for l in (done.stdout + done.stderr).splitlines() if l.startswith("ERROR")]
    assert done.returncode == 0 and not errors, "\n".join(errors) or done.stderr


def test_service_monitors_need_the_prometheus_operator_api():
    values = (chart.CHART / "ci" / "production.yaml",)
    assert chart.kind(chart.render(values, api_versions=API_VERSIONS), "ServiceMonitor")
    assert not chart.kind(chart.render(values), "ServiceMonitor")


def test_pre_stop_sleeps_natively_from_1_30():
    values = (chart.CHART / "ci" / "minimal.yaml",)
    for version, native in (("1.29.0", False), ("1.30.0", True), ("1.33.0", True)):
        for w in chart.workloads(chart.render(values, kube_version=version)):
            pre_stop = chart.container(w)["lifecycle"]["preStop"]
            assert ("sleep" in pre_stop) == native, (version, pre_stop)
            if not native:
                assert pre_stop["exec"]["command"][0] == "/usr/local/bin/chatmesh-healthcheck"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_notes_render(fixture):
    done = subprocess.run([chart.helm(), "install", chart.RELEASE, str(chart.CHART), "-n", chart.NAMESPACE,
                           "--dry-run=client", "-f", str(chart.CHART / "ci" / f"{fixture}.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert f"helm test {chart.RELEASE}" in notes
