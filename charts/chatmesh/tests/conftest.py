"""Shared fixtures: the chart's ci/ value files rendered once per session."""

import functools
import os
from pathlib import Path

import pytest

import chart

FIXTURES = sorted(p.stem for p in (chart.CHART / "ci").glob("*.yaml"))
KUBE_VERSIONS = ("1.29.0", "1.33.0")
# Optional APIs the production-like fixture exercises.
API_VERSIONS = ("monitoring.coreos.com/v1",)


@functools.lru_cache(maxsize=None)
def rendered(fixture: str, kube_version: str = "1.33.0") -> tuple[dict, ...]:
    return tuple(chart.render((chart.CHART / "ci" / f"{fixture}.yaml",),
                              kube_version=kube_version, api_versions=API_VERSIONS))


def fixture_secrets(fixture: str, docs) -> dict[str, str]:
    """The Secret a pod reads: the chart's, or for existingSecret a stand-in
    holding every key the chart's objects name."""
    data = chart.secret_data(list(docs))
    if data:
        return data
    keys = set()
    for w in chart.workloads(list(docs)):
        for var in chart.container(w).get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                keys.add(ref["key"])
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            for item in v.get("secret", {}).get("items", []):
                keys.add(item["key"])
    return {k: f"stand-in-{k}-0123456789" for k in keys}


@pytest.fixture(scope="session")
def binary_dir() -> Path:
    d = Path(os.environ.get("CHATMESH_BIN_DIR", ""))
    missing = [b for b in ("chatmesh-gateway", "chatmesh-chat", "chatmesh-presence",
                           "chatmesh-storage", "chatmesh-media") if not (d / b).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not in CHATMESH_BIN_DIR={d}: "
                    "run `cargo build --workspace --bins` (make chart-test does)")
    return d
