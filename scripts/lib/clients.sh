# shellcheck shell=bash
# What the clients and the HTTP API check need: Debian's Chromium for the
# page's browser tests, Node.js 20+ and npm, the npm packages of clients/js
# and clients/web (npm's download cache under $CACHE/npm; node_modules stay
# in each package, where Node looks for them), and schemathesis in a private
# virtualenv under $CACHE/api-check. Every step checks before it installs, so
# a warm machine pays a few stat calls and a look at each lockfile.
# Needs common.sh and install.sh (say, step, die, as_root, apt_missing).

CLIENT_PACKAGES=(clients/js clients/web)
NODE_MIN_MAJOR=20
export npm_config_cache=$CACHE/npm
# Quiet npm's network chatter: no audit, funding or update notices.
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
API_VENV=$CACHE/api-check/venv
# Pinned: the CLI's flags and checks changed between 3.x and 4.x.
API_PIP_PACKAGES=(schemathesis==4.32.5)

clients_lock() {
  mkdir -p "$CACHE"
  exec {CLIENTS_LOCK_FD}>"$CACHE/.clients-install.lock"
  flock -w 900 "$CLIENTS_LOCK_FD" || die "timed out waiting for $CACHE/.clients-install.lock"
}

clients_unlock() { exec {CLIENTS_LOCK_FD}>&-; }

# apt_install_missing WHAT DURATION PACKAGE...
apt_install_missing() {
  local what=$1 duration=$2
  shift 2
  local missing log=$CACHE/logs/apt-$what.log started
  mapfile -t missing < <(apt_missing "$@")
  ((${#missing[@]})) || return 0
  mkdir -p "$CACHE/logs"
  started=$(now_ms)
  step "installing ${missing[*]} from apt ($duration, once; log: $log)"
  {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1 || fail_with_log "$log" "apt-get install failed"
  ok "ok ($(elapsed "$started"))"
}

install_chromium() {
  if [[ -x $CHROMIUM ]]; then
    say "==> chromium: $CHROMIUM present"
    return
  fi
  apt_install_missing chromium "about 2 minutes" chromium
  [[ -x $CHROMIUM ]] || die "chromium installed, but $CHROMIUM is missing (set CHROMIUM to the binary)"
}

node_major() {
  local v
  v=$(node --version 2>/dev/null) || return 1
  v=${v#v}
  printf '%s\n' "${v%%.*}"
}

# The major version of the nodejs package apt would install (0 for none).
apt_node_major() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update >"$CACHE/logs/apt-update.log" 2>&1 || true
  local v
  v=$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  v=${v#*:}
  [[ $v =~ ^[0-9]+ ]] && printf '%s\n' "${BASH_REMATCH[0]}" || printf '0\n'
}

check_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    mkdir -p "$CACHE/logs"
    local offered
    offered=$(apt_node_major)
    ((offered >= NODE_MIN_MAJOR)) ||
      die "Node.js $NODE_MIN_MAJOR or later and npm are needed, and apt offers nodejs ${offered/#0/none}: install them (e.g. from nodejs.org's or NodeSource's packages)"
    apt_install_missing nodejs "about a minute" nodejs
    # NodeSource's nodejs carries npm; Debian's comes in a package of its own.
    command -v npm >/dev/null || apt_install_missing npm "about a minute" npm
  fi
  local major
  major=$(node_major) || die "node does not run"
  ((major >= NODE_MIN_MAJOR)) ||
    die "node $(node --version) is too old: the clients need Node.js $NODE_MIN_MAJOR or later"
  say "==> node $(node --version), npm $(npm --version)"
}

# npm_ready DIR: DIR/node_modules holds exactly the versions its lockfile
# names, judged from the hidden lockfile npm writes after every install
# (optional packages for other platforms are never installed).
npm_ready() {
  [[ -f $REPO_ROOT/$1/node_modules/.package-lock.json ]] || return 1
  (cd "$REPO_ROOT/$1" && node --input-type=module -e '
    import { existsSync, readFileSync } from "node:fs";
    const lock = JSON.parse(readFileSync("package-lock.json", "utf8")).packages ?? {};
    const have = JSON.parse(readFileSync("node_modules/.package-lock.json", "utf8")).packages ?? {};
    for (const [path, want] of Object.entries(lock)) {
      if (path === "" || want.link) continue;
      const got = have[path];
      if (!got) { if (want.optional) continue; process.exit(1); }
      if (got.version !== want.version || got.integrity !== want.integrity) process.exit(1);
      if (!existsSync(path + "/package.json")) process.exit(1);
    }
  ') 2>/dev/null
}

# npm_install DIR: `npm ci` in DIR unless its node_modules matches its lockfile.
npm_install() {
  local dir=$1 log started
  if npm_ready "$dir"; then
    say "==> npm: $dir/node_modules up to date"
    return
  fi
  log=$CACHE/logs/npm-ci-$(basename "$dir").log
  mkdir -p "$CACHE/logs" "$npm_config_cache"
  started=$(now_ms)
  step "npm ci in $dir (under a minute with a warm cache; log: $log)"
  (cd "$REPO_ROOT/$dir" && npm ci --no-audit --no-fund) >"$log" 2>&1 ||
    fail_with_log "$log" "npm ci in $dir failed"
  ok "ok ($(elapsed "$started"))"
}

install_npm_packages() {
  local dir
  for dir in "${CLIENT_PACKAGES[@]}"; do npm_install "$dir"; done
}

api_venv_ready() {
  [[ -x $API_VENV/bin/schemathesis && -f $API_VENV/.packages ]] &&
    [[ $(cat "$API_VENV/.packages") == "${API_PIP_PACKAGES[*]}" ]]
}

install_api_venv() {
  if api_venv_ready; then
    say "==> python: ${API_PIP_PACKAGES[*]} in $API_VENV"
    return
  fi
  command -v python3 >/dev/null || die "python3 not found"
  local log=$CACHE/logs/api-check-venv.log started
  mkdir -p "$CACHE/logs"
  started=$(now_ms)
  step "installing ${API_PIP_PACKAGES[*]} into $API_VENV (about a minute, once; log: $log)"
  rm -rf "$API_VENV"
  {
    python3 -m venv "$API_VENV" &&
      "$API_VENV/bin/pip" install --quiet --disable-pip-version-check "${API_PIP_PACKAGES[@]}"
  } >"$log" 2>&1 || fail_with_log "$log" "pip install into $API_VENV failed"
  printf '%s\n' "${API_PIP_PACKAGES[*]}" >"$API_VENV/.packages"
  ok "ok ($(elapsed "$started"))"
}

# web_built: dist/ is newer than everything it is built from.
web_built() {
  local web=$REPO_ROOT/clients/web
  [[ -f $web/dist/app.js && -f $web/dist/index.html ]] || return 1
  [[ -z $(find "$web/src" "$web/public" "$web/build.mjs" "$web/package-lock.json" \
    "$REPO_ROOT/clients/js/src" -newer "$web/dist/app.js" -print -quit) ]]
}

# build_web: the demo page's npm packages and dist/, each only when stale.
build_web() {
  clients_lock
  check_node
  npm_install clients/web
  if web_built; then
    say "==> web: clients/web/dist up to date"
    clients_unlock
    return
  fi
  local log=$CACHE/logs/web-build.log started
  started=$(now_ms)
  step "building the demo page into clients/web/dist (a few seconds; log: $log)"
  (cd "$REPO_ROOT/clients/web" && npm run build) >"$log" 2>&1 || fail_with_log "$log" "npm run build in clients/web failed"
  ok "ok ($(elapsed "$started"))"
  clients_unlock
}

# Everything the client tests and the API check need.
install_clients() {
  mkdir -p "$CACHE/logs"
  clients_lock
  install_chromium
  check_node
  install_npm_packages
  install_api_venv
  clients_unlock
}
