# shellcheck shell=bash
# Two PostgreSQL 15 servers: "a" holds the directory and shards 0-1, "b" holds
# shards 2-3, so cross-server shard routing is exercised locally.
#
# initdb and postgres refuse to run as root, so the servers run as the OS user
# postgres. That user cannot necessarily reach the checkout (CI clones into
# mode-700 temp dirs), so the data dirs live under /tmp/chatmesh-pg-<hash>,
# keyed by the state dir, and are recorded in the state file. Server logs still
# land in the state dir: the log file is opened here and inherited.

PG_SUPERUSER=postgres
PG_SERVERS=(a b)
declare -A PG_DATABASES=(
  [a]="chatmesh_directory chatmesh_shard_0 chatmesh_shard_1"
  [b]="chatmesh_shard_2 chatmesh_shard_3"
)

pg_os_user() {
  if ((EUID == 0)); then printf 'postgres\n'; else id -un; fi
}

pg_as() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_log() { printf '%s\n' "$LOG_DIR/pg-$1.log"; }

# pg_var NAME FIELD: the state variable PG_<NAME>_<FIELD>, e.g. PG_A_PORT.
pg_var() { printf 'PG_%s_%s' "${1^^}" "$2"; }
pg_get() {
  local v
  v=$(pg_var "$1" "$2")
  printf '%s' "${!v}"
}
pg_set() { printf -v "$(pg_var "$1" "$2")" '%s' "$3"; }

pg_prepare_root() {
  [[ -n $PG_ROOT ]] || PG_ROOT=/tmp/chatmesh-pg-$(short_hash "$INFRA_DIR")
  PG_SOCKET_DIR=$PG_ROOT/run
  PG_USER=$PG_SUPERUSER
  local owner
  owner=$(pg_os_user)
  if [[ ! -d $PG_ROOT ]]; then
    install -d -m 700 -o "$owner" "$PG_ROOT"
  fi
  # A shared /tmp means someone else could have created this path first.
  [[ $(stat -c %U "$PG_ROOT") == "$owner" ]] || die "$PG_ROOT exists but is not owned by $owner"
  [[ -d $PG_SOCKET_DIR ]] || install -d -m 700 -o "$owner" "$PG_SOCKET_DIR"
}

# The postmaster's pid, if one is running on this data dir.
pg_running_pid() {
  local data=$1 pid
  [[ -f $data/postmaster.pid ]] || return 1
  pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null) || return 1
  pid_is "$pid" "-D $data " || return 1
  printf '%s\n' "$pid"
}

# True while any live process works in the data dir: a postmaster and its
# backends all run with the data dir as their cwd.
pg_data_in_use() {
  local data=$1 cwd
  for cwd in /proc/[0-9]*/cwd; do
    [[ $(readlink "$cwd" 2>/dev/null) == "$data" ]] || continue
    pid_is "$(basename "$(dirname "$cwd")")" "" && return 0
  done
  return 1
}

pg_data_unused() { ! pg_data_in_use "$1"; }

# postgres refuses to start while postmaster.pid or the socket's lock file
# names a live process, even if that is a killed postmaster not yet reaped or
# an unrelated program that got the PID. Once nothing works in the data dir
# and no postmaster of ours holds the socket, both files are stale.
pg_clear_stale_locks() {
  local data=$1 port=$2 sock_lock pid
  if [[ -f $data/postmaster.pid ]] && ! pg_running_pid "$data" >/dev/null; then
    wait_until 15 pg_data_unused "$data" && rm -f "$data/postmaster.pid"
  fi
  sock_lock=$PG_SOCKET_DIR/.s.PGSQL.$port.lock
  if [[ -f $sock_lock ]]; then
    pid=$(head -n1 "$sock_lock" 2>/dev/null || true)
    pid_is "$pid" "$PG_ROOT/" || rm -f "$sock_lock" "$PG_SOCKET_DIR/.s.PGSQL.$port"
  fi
}

pg_answers() {
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U "$PG_SUPERUSER" -d postgres -t 2
}

pg_healthy() {
  local name=$1 port data
  port=$(pg_get "$name" PORT)
  data=$(pg_get "$name" DATA)
  [[ -n $port && -n $data ]] || return 1
  [[ $(pg_running_pid "$data") == "$(pg_get "$name" PID)" ]] || return 1
  pg_answers "$port"
}

pg_initdb() {
  local name=$1 data=$2 log
  log=$(pg_log "$name")
  [[ -f $data/PG_VERSION ]] && return 0
  mkdir -p "$LOG_DIR"
  rm -rf "$data"
  # --no-sync: a throwaway local cluster is not worth seconds of fsync per
  # start from scratch; the running server still fsyncs normally.
  (cd "$PG_ROOT" && pg_as "$PG_BIN/initdb" -D "$data" -U "$PG_SUPERUSER" -A trust -E UTF8 --locale=C.UTF-8 --no-sync) >>"$log" 2>&1 ||
    fail_with_log "$log" "initdb for postgres $name failed"
  # The port is given on the command line at each start, since it may change.
  cat >>"$data/postgresql.conf" <<EOF

# chatmesh local mesh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCKET_DIR'
logging_collector = off
# headroom for the connection pools of several local services and test runs
max_connections = 200
EOF
}

pg_create_databases() {
  local name=$1 port=$2 db exists
  for db in ${PG_DATABASES[$name]}; do
    exists=$("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d postgres -tA \
      -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ||
      die "could not query databases on postgres $name (port $port)"
    [[ $exists == 1 ]] && continue
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d postgres \
      -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null ||
      die "could not create database $db on postgres $name"
  done
}

pg_stop_server() {
  local name=$1 data pid
  data=$(pg_get "$name" DATA)
  pg_set "$name" PID ''
  [[ -n $data ]] || return 0
  pid=$(pg_running_pid "$data") || return 0
  (cd "$PG_ROOT" && pg_as "$PG_BIN/pg_ctl" -D "$data" stop -m fast -w -t 60) >>"$(pg_log "$name")" 2>&1 || true
  wait_until 30 pid_gone "$pid" "-D $data " || stop_pid "$pid" "-D $data " "postgres $name"
}

pg_up_server() {
  local name=$1 port data log pid
  port=$(pg_get "$name" PORT)
  data=$PG_ROOT/$name
  log=$(pg_log "$name")
  pg_set "$name" DATA "$data"
  if pg_healthy "$name"; then
    say "==> postgres $name on $port ... already running"
    pg_create_databases "$name" "$port"
    return
  fi
  # A postmaster still on this data dir (e.g. recorded port lost from state)
  # would hold the data dir lock; stop it before starting again.
  pg_stop_server "$name"
  if [[ -z $port ]] || ! port_free "$port"; then
    # shellcheck disable=SC2046
    port=$(pick_ports 1 0 $(recorded_ports)) || die "could not pick a postgres port"
  fi
  pg_set "$name" PORT "$port"
  step "starting postgres $name on $port (data: $data, log: $log)"
  pg_initdb "$name" "$data"
  pg_clear_stale_locks "$data" "$port"
  # pg_ctl -w notices a postmaster that dies during start-up; pg_isready then
  # confirms it accepts TCP connections on the port the mesh will use.
  (close_lock_fds && cd "$PG_ROOT" && pg_as "$PG_BIN/pg_ctl" -D "$data" -o "-p $port" -w -t 60 -s start) \
    </dev/null >>"$log" 2>&1 || fail_with_log "$log" "postgres $name did not start"
  wait_until 30 pg_answers "$port" || fail_with_log "$log" "postgres $name does not answer pg_isready"
  pid=$(pg_running_pid "$data") || fail_with_log "$log" "postgres $name is ready but its postmaster.pid is not"
  pg_set "$name" PID "$pid"
  state_save
  pg_create_databases "$name" "$port"
  ok
}

pg_up() {
  pg_prepare_root
  local name
  for name in "${PG_SERVERS[@]}"; do pg_up_server "$name"; done
  state_save
}

pg_stop() {
  local name
  for name in "${PG_SERVERS[@]}"; do pg_stop_server "$name"; done
}

pg_status() {
  local name port pid state all=0
  for name in "${PG_SERVERS[@]}"; do
    port=$(pg_get "$name" PORT)
    pid=$(pg_get "$name" PID)
    if [[ -z $port ]]; then
      state="not configured"
      all=1
    elif ! pid_is "$pid" "-D $(pg_get "$name" DATA) "; then
      state=down
      pid=-
      all=1
    elif pg_answers "$port"; then
      state="up ($(pg_get "$name" DATA))"
    else
      state="not answering"
      all=1
    fi
    status_line "postgres-$name" "${port:--}" "${pid:--}" "$state"
  done
  return "$all"
}
