# shellcheck shell=bash
# Shared plumbing for scripts/infra: paths, output, state file, ports, processes.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
CACHE=$(realpath -m "${CHATMESH_CACHE:-$HOME/.cache/chatmesh}")
# realpath -m also resolves a directory that does not exist yet, so the same
# checkout always maps to the same INFRA_DIR (and thus the same postgres root).
INFRA_DIR=$(realpath -m "${CHATMESH_INFRA_DIR:-$REPO_ROOT/.local/infra}")
STATE_FILE=$INFRA_DIR/state.env
LOG_DIR=$INFRA_DIR/logs

# Ports come from below the kernel's ephemeral range (32768+ on Linux) so that
# outgoing connections never grab a port we recorded for a restart. Redis needs
# port+10000 for its cluster bus, which must stay below 32768 as well.
PORT_MIN=20000
PORT_MAX=32000
REDIS_PORT_MAX=22700

# Every key written to state.env, in order. The Rust side parses this file.
STATE_KEYS=(
  INFRA_DIR
  REDIS_NODES REDIS_PORTS REDIS_PIDS
  PG_A_PORT PG_B_PORT PG_A_DATA PG_B_DATA PG_A_PID PG_B_PID PG_ROOT PG_SOCKET_DIR PG_USER
  DIRECTORY_URL SHARD_URLS
  KAFKA_BROKERS KAFKA_PORT KAFKA_TOPIC KAFKA_PARTITIONS KAFKA_DATA TANSU_PID
  S3_ENDPOINT S3_PORT S3_REGION S3_BUCKET S3_ACCESS_KEY S3_SECRET_KEY S3_DATA S3_PID
  LOG_DIR
)

say() { printf '%s\n' "$*"; }
step() { printf '==> %s ... ' "$*"; }
ok() { printf '%s\n' "${1:-ok}"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Prints the end of a log so a failure explains itself without digging.
show_log_tail() {
  local log=$1 lines=${2:-30}
  [[ -f $log ]] || return 0
  printf -- '--- last %s lines of %s ---\n' "$lines" "$log" >&2
  tail -n "$lines" "$log" >&2
  printf -- '---\n' >&2
}

fail_with_log() {
  local log=$1
  shift
  ok FAILED
  show_log_tail "$log"
  die "$*"
}

now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  printf '%s\n' "$((t / 1000))"
}

# elapsed SINCE_MS: how long ago that was, as "12s" or "3m05s".
elapsed() {
  local s=$((($(now_ms) - $1) / 1000))
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# wait_until SECONDS CMD...: polls CMD until it succeeds or the deadline passes.
wait_until() {
  local timeout=$1
  shift
  local deadline=$(($(now_ms) + timeout * 1000))
  until "$@"; do
    (($(now_ms) < deadline)) || return 1
    sleep 0.1
  done
}

# wait_while_alive SECONDS PID CMD...: like wait_until, but gives up as soon
# as PID exits, so a server that dies on start-up fails fast.
wait_while_alive() {
  local timeout=$1 pid=$2
  shift 2
  local deadline=$(($(now_ms) + timeout * 1000))
  until "$@"; do
    pid_is "$pid" "" || return 1
    (($(now_ms) < deadline)) || return 1
    sleep 0.1
  done
}

# ---------------------------------------------------------------- locking

# Serialises up/down within one checkout.
lock_checkout() {
  mkdir -p "$INFRA_DIR"
  exec {CHECKOUT_LOCK_FD}>"$INFRA_DIR/.lock"
  flock -n "$CHECKOUT_LOCK_FD" ||
    say "==> waiting for another scripts/infra command in this checkout ($INFRA_DIR/.lock)"
  flock -w 600 "$CHECKOUT_LOCK_FD" || die "another scripts/infra command holds $INFRA_DIR/.lock"
}

# Picking a free port and binding it are two steps; holding a machine-wide lock
# across both keeps concurrent checkouts from choosing the same port.
lock_ports() {
  local f=/tmp/chatmesh-infra-ports.lock
  [[ -e $f ]] || (umask 0 && : >>"$f")
  exec {PORTS_LOCK_FD}<"$f"
  flock -n "$PORTS_LOCK_FD" || say "==> waiting for another checkout picking ports ($f)"
  flock -w 600 "$PORTS_LOCK_FD" || die "timed out waiting for $f"
}

# ---------------------------------------------------------------- state file

state_reset() {
  local k
  for k in "${STATE_KEYS[@]}"; do
    [[ $k == INFRA_DIR || $k == LOG_DIR ]] && continue
    printf -v "$k" '%s' ''
  done
}

# Parsed rather than sourced: the file is data shared with other programs.
state_load() {
  state_reset
  [[ -f $STATE_FILE ]] || return 1
  local k v
  while IFS='=' read -r k v; do
    [[ $k =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
    [[ $k == INFRA_DIR || $k == LOG_DIR ]] && continue
    printf -v "$k" '%s' "$v"
  done <"$STATE_FILE"
}

state_derive() {
  local p nodes=()
  for p in ${REDIS_PORTS//,/ }; do nodes+=("redis://127.0.0.1:$p"); done
  REDIS_NODES=$(
    IFS=,
    printf '%s' "${nodes[*]}"
  )
  if [[ -n $PG_A_PORT && -n $PG_B_PORT ]]; then
    local a=postgres://$PG_USER@127.0.0.1:$PG_A_PORT b=postgres://$PG_USER@127.0.0.1:$PG_B_PORT
    DIRECTORY_URL=$a/chatmesh_directory
    SHARD_URLS=$a/chatmesh_shard_0,$a/chatmesh_shard_1,$b/chatmesh_shard_2,$b/chatmesh_shard_3
  fi
  KAFKA_BROKERS=${KAFKA_PORT:+127.0.0.1:$KAFKA_PORT}
  S3_ENDPOINT=${S3_PORT:+http://127.0.0.1:$S3_PORT}
}

# Written after every component change, so a failed `up` still leaves enough
# behind for `down` to clean up what did start.
state_save() {
  state_derive
  mkdir -p "$INFRA_DIR"
  local tmp k
  tmp=$(mktemp "$INFRA_DIR/.state.env.XXXXXX")
  for k in "${STATE_KEYS[@]}"; do printf '%s=%s\n' "$k" "${!k}"; done >"$tmp"
  mv -f "$tmp" "$STATE_FILE"
}

# ---------------------------------------------------------------- ports

# pick_ports COUNT WITH_BUS [EXCLUDED...]: COUNT distinct free loopback ports.
pick_ports() {
  python3 - "$PORT_MIN" "$PORT_MAX" "$REDIS_PORT_MAX" "$@" <<'PY'
import random, socket, sys

lo, hi, redis_hi, count, with_bus = (int(a) for a in sys.argv[1:6])
excluded = {int(a) for a in sys.argv[6:] if a}
if with_bus:
    hi = redis_hi

def free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

chosen = []
candidates = list(range(lo, hi))
random.shuffle(candidates)
for p in candidates:
    if len(chosen) == count:
        break
    group = (p, p + 10000) if with_bus else (p,)
    if any(q in excluded for q in group) or not all(free(q) for q in group):
        continue
    chosen.append(p)
    excluded.update(group)
if len(chosen) < count:
    sys.exit("no free ports left in %d-%d" % (lo, hi))
print(" ".join(map(str, chosen)))
PY
}

port_free() {
  python3 - "$@" <<'PY'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
PY
}

# Ports recorded in the state file; a fresh pick avoids them so a stopped
# component can come back on its old port.
recorded_ports() {
  local p out=()
  for p in ${REDIS_PORTS//,/ }; do out+=("$p" "$((p + 10000))"); done
  out+=("$PG_A_PORT" "$PG_B_PORT" "$KAFKA_PORT" "$S3_PORT")
  printf '%s ' "${out[@]}"
}

tcp_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Any HTTP status line counts: an unsigned request to S3 is answered with 403.
http_answers() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
    IFS= read -r -t 2 line <&3 && [[ $line == HTTP/* ]]
  ) 2>/dev/null
}

# ---------------------------------------------------------------- processes

# pid_is PID PATTERN: the PID is alive and its command line contains PATTERN.
# Guards every kill against a PID the kernel has since handed to someone else.
pid_is() {
  local pid=$1 pattern=$2 cmd
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # The process may exit between any two steps here: the redirection's own
  # error ("No such file") is silenced too, hence 2>/dev/null before it.
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ -n $cmd && $cmd == *"$pattern"* ]]
}

pid_gone() { ! pid_is "$1" "$2"; }

# stop_pid PID PATTERN NAME: TERM, wait, then KILL if it will not go.
stop_pid() {
  local pid=$1 pattern=$2 name=$3
  pid_is "$pid" "$pattern" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until 10 pid_gone "$pid" "$pattern"; then
    warn "$name (pid $pid) ignored SIGTERM, killing"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 5 pid_gone "$pid" "$pattern" || warn "$name (pid $pid) is still alive"
  fi
}

# Long-lived servers must not inherit the lock descriptors: they would hold
# the locks for as long as they run.
close_lock_fds() {
  if [[ -n ${CHECKOUT_LOCK_FD:-} ]]; then exec {CHECKOUT_LOCK_FD}>&-; fi
  if [[ -n ${PORTS_LOCK_FD:-} ]]; then exec {PORTS_LOCK_FD}<&-; fi
}

# start_bg LOG DIR CMD...: runs CMD detached from this terminal's session (so
# Ctrl-C in the calling shell does not reach it), with cwd DIR and output
# appended to LOG. Sets STARTED_PID.
#
# setsid(1) forks when its caller leads a process group, as every background
# job does in a shell with job control, so the background job's PID is not
# always the command's. The command therefore always starts in a fork
# (--fork) and reports its own PID through a file before it execs.
start_bg() {
  local log=$1 dir=$2 pid_file launcher
  shift 2
  mkdir -p "$(dirname "$log")"
  pid_file=$(mktemp "${TMPDIR:-/tmp}/chatmesh-start.XXXXXX")
  # shellcheck disable=SC2016 # expanded by the launched shell
  launcher='echo $$ >"$0.pid" && exec "$@"'
  (close_lock_fds && cd "$dir" &&
    exec setsid --fork bash -c "$launcher" "$pid_file" "$@" </dev/null >>"$log" 2>&1)
  wait_until 10 file_nonempty "$pid_file.pid" || true
  STARTED_PID=$(cat "$pid_file.pid" 2>/dev/null || true)
  rm -f "$pid_file" "$pid_file.pid"
  # Callers know the process by its command line (pid_is), which is the
  # launcher's until the exec; a check before then would find it wrong.
  wait_until 10 exec_done "$STARTED_PID" "bash -c $launcher $pid_file" || true
}

file_nonempty() { [[ -s $1 ]]; }

# exec_done PID PREFIX: PID's command line no longer starts with PREFIX (or
# it has exited).
exec_done() {
  local cmd
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 0
  [[ $cmd != "$2"* ]]
}

short_hash() {
  printf '%s' "$1" | sha256sum | cut -c1-12
}
