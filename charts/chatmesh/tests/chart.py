"""Renders the chatmesh chart with helm and reads the result the way the
kubelet would: each container's environment with field references, Secret
references and $(VAR) expansion resolved, and its ConfigMap and Secret
volumes as files. The chart's tests use it, and `pods` writes one pod's view
per component to a directory for the image test, which runs the binaries in
containers on exactly that configuration.

    python3 chart.py pods OUTDIR [-f values.yaml]... [--set k=v]...
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
RELEASE = "cm"
NAMESPACE = "chat"
# The ordinal-free part of a Deployment pod's name: any hash will do.
DEPLOYMENT_POD_SUFFIX = "5d8f7c9b6-x2x4z"


class RenderError(Exception):
    """helm refused the values; the message is helm's."""


def helm() -> str:
    path = os.environ.get("HELM")
    if not path:
        raise RuntimeError("HELM is not set: run the tests through scripts/chart")
    return path


def render(
    values: tuple[Path | str, ...] = (),
    sets: tuple[str, ...] = (),
    kube_version: str = "1.33.0",
    api_versions: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> list[dict]:
    """The chart's objects for `values` files and `--set` pairs."""
    text = render_text(values, sets, kube_version, api_versions, extra)
    return [d for d in yaml.safe_load_all(text) if d]


def render_text(values=(), sets=(), kube_version="1.33.0", api_versions=(), extra=()) -> str:
    cmd = [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
           "--kube-version", kube_version]
    for v in values:
        cmd += ["-f", str(v)]
    for s in sets:
        cmd += ["--set", s]
    for a in api_versions:
        cmd += ["--api-versions", a]
    cmd += list(extra)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return done.stdout


def kind(docs: list[dict], name: str) -> list[dict]:
    return [d for d in docs if d["kind"] == name]


def one(docs: list[dict], kind_: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind_ and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind_} {name}, found {len(found)}"
    return found[0]


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]


def component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def secret_data(docs: list[dict]) -> dict[str, str]:
    """The chart-made Secret's values, decoded; empty with existingSecret."""
    out: dict[str, str] = {}
    for s in kind(docs, "Secret"):
        for k, v in (s.get("data") or {}).items():
            out[k] = base64.b64decode(v).decode()
        out.update(s.get("stringData") or {})
    return out


def config_maps(docs: list[dict]) -> dict[str, dict[str, str]]:
    return {c["metadata"]["name"]: c.get("data") or {} for c in kind(docs, "ConfigMap")}


def pod_name(workload: dict, ordinal: int) -> str:
    name = workload["metadata"]["name"]
    if workload["kind"] == "StatefulSet":
        return f"{name}-{ordinal}"
    return f"{name}-{DEPLOYMENT_POD_SUFFIX}"


_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: earlier variables only, $$ escapes,
    unknown references stay as written."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return defined.get(m.group(1), m.group(0))

    return _REF.sub(sub, value)


def pod_env(workload: dict, secrets: dict[str, str], ordinal: int = 0) -> dict[str, str]:
    """The first container's environment as its process sees it. A Secret
    key the pod names but `secrets` lacks raises KeyError, as the kubelet
    refuses to start such a container."""
    pod = pod_name(workload, ordinal)
    meta = {
        "metadata.name": pod,
        "metadata.namespace": NAMESPACE,
        "metadata.labels['apps.kubernetes.io/pod-index']": str(ordinal),
    }
    env: dict[str, str] = {}
    for var in container(workload).get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = meta[var["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = secrets[var["valueFrom"]["secretKeyRef"]["key"]]
        else:
            raise ValueError(f"cannot resolve {var}")
    return env


def container(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


@dataclass
class Mount:
    """A ConfigMap or Secret volume as the container sees it."""

    path: str
    files: dict[str, str] = field(default_factory=dict)


def mounts(workload: dict, docs: list[dict], secrets: dict[str, str]) -> list[Mount]:
    spec = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    cms = config_maps(docs)
    out = []
    for m in container(workload).get("volumeMounts", []):
        v = volumes[m["name"]]
        if "configMap" in v:
            data = cms[v["configMap"]["name"]]
            items = v["configMap"].get("items")
        elif "secret" in v:
            data = secrets
            items = v["secret"].get("items")
        else:
            continue
        if items:
            files = {i["path"]: data[i["key"]] for i in items}
        else:
            files = dict(data)
        out.append(Mount(m["mountPath"], files))
    return out


# Files the image carries, by their path in the image and in the repository.
IMAGE_FILES = {
    "/usr/share/chatmesh/moderation-words.txt": REPO / "services/chat/moderation-words.txt",
}


@dataclass
class Pod:
    """One pod of a component, laid out on the local disk: its config file
    and environment with every in-pod path mapped below `root`."""

    component: str
    binary: str
    config: Path
    env: dict[str, str]
    mounts: list[tuple[Path, str]]


def materialize(workload: dict, docs: list[dict], root: Path, ordinal: int = 0,
                secrets: dict[str, str] | None = None, local_paths: bool = True) -> Pod:
    """Writes the pod's volumes under `root`. With `local_paths`, paths in
    its config and environment are rewritten to those files (and to the
    repository's copies of the image's files), so a binary on this machine
    can load the configuration; without, they stay as in the pod (for a
    container that mounts the directories where the pod would)."""
    if secrets is None:
        secrets = secret_data(docs)
    env = pod_env(workload, secrets, ordinal)
    placed: list[tuple[Path, str]] = []
    for i, m in enumerate(mounts(workload, docs, secrets)):
        host = root / f"volume-{i}"
        host.mkdir(parents=True, exist_ok=True)
        for name, text in m.files.items():
            (host / name).write_text(text)
        placed.append((host, m.path))

    def local(text: str) -> str:
        if not local_paths:
            return text
        for host, path in placed:
            text = text.replace(path.rstrip("/") + "/", str(host) + "/")
        for image_path, repo_path in IMAGE_FILES.items():
            text = text.replace(image_path, str(repo_path))
        return text

    config_path = env.pop("CHATMESH_CONFIG")
    config = Path(local(config_path))
    if local_paths:
        config.write_text(local(config.read_text()))
    env = {k: local(v) for k, v in env.items()}
    name = component(workload)
    return Pod(name, container(workload)["command"][0].rsplit("/", 1)[-1], config, env, placed)


def check_config(binary_dir: Path, pod: Pod) -> subprocess.CompletedProcess:
    """Runs the pod's binary with --check-config on its config and env."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **pod.env}
    return subprocess.run(
        [str(binary_dir / pod.binary), "--check-config", str(pod.config)],
        env=env, capture_output=True, text=True,
    )


def write_pods(out: Path, docs: list[dict], gateways: int) -> None:
    """For the image test: per pod a directory with `env` (JSON), `mounts`
    (JSON of [host dir, container path]) and the volumes themselves."""
    if out.exists():
        shutil.rmtree(out)
    for w in workloads(docs):
        ordinals = range(gateways) if component(w) == "gateway" else range(1)
        for ordinal in ordinals:
            pod = materialize(w, docs, out / pod_name(w, ordinal) / "volumes", ordinal,
                              local_paths=False)
            d = out / pod_name(w, ordinal)
            (d / "pod.json").write_text(json.dumps({
                "component": pod.component,
                "binary": pod.binary,
                "config": str(pod.config),
                "env": pod.env,
                "mounts": [[str(h), p] for h, p in pod.mounts],
            }, indent=2))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pods = sub.add_parser("pods", help="write each pod's config, env and volumes")
    pods.add_argument("out", type=Path)
    pods.add_argument("-f", "--values", action="append", default=[])
    pods.add_argument("--set", action="append", default=[])
    pods.add_argument("--gateways", type=int, default=2)
    args = p.parse_args(argv)
    try:
        docs = render(tuple(args.values), tuple(args.set))
    except RenderError as e:
        print(e, file=sys.stderr)
        return 1
    write_pods(args.out, docs, args.gateways)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
