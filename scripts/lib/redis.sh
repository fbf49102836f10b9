# shellcheck shell=bash
# Redis Cluster of three masters, each with one replica, so cluster-aware
# clients, cross-slot behaviour and failover are exercised locally. Expired-key events are published
# (notify-keyspace-events Ex) for subscribers that react to expiry. Nothing is
# persisted: the local cluster is disposable. Only its layout (nodes.conf)
# survives a restart, so a stopped cluster comes back with the same slots.

REDIS_NODE_COUNT=6
REDIS_REPLICAS=1

redis_node_dir() { printf '%s\n' "$INFRA_DIR/redis/$1"; }
redis_log() { printf '%s\n' "$LOG_DIR/redis-$1.log"; }

redis_cli() {
  local port=$1
  shift
  redis-cli -h 127.0.0.1 -p "$port" "$@"
}

redis_node_answers() {
  [[ $(redis_cli "$1" ping 2>/dev/null) == PONG ]]
}

redis_node_in_cluster() {
  local info
  info=$(redis_cli "$1" cluster info 2>/dev/null | tr -d '\r') || return 1
  grep -qx 'cluster_state:ok' <<<"$info" &&
    grep -qx "cluster_known_nodes:$REDIS_NODE_COUNT" <<<"$info" &&
    redis_replication_ok "$1"
}

# A replica counts once it has synced with its master.
redis_replication_ok() {
  local info
  info=$(redis_cli "$1" info replication 2>/dev/null | tr -d '\r') || return 1
  grep -qx 'role:master' <<<"$info" || grep -qx 'master_link_status:up' <<<"$info"
}

redis_cluster_ok() {
  local p
  for p in ${REDIS_PORTS//,/ }; do redis_node_in_cluster "$p" || return 1; done
}

# Node i (1-based) of the recorded ports / pids.
redis_nth() {
  local list=$1 i=$2
  cut -d, -f"$i" <<<"$list"
}

redis_node_alive() {
  local port pid
  port=$(redis_nth "$REDIS_PORTS" "$1")
  pid=$(redis_nth "$REDIS_PIDS" "$1")
  [[ -n $port ]] && redis_pid_is "$pid" "$port" "$1"
}

# Redis retitles itself to "redis-server 127.0.0.1:PORT [cluster]" once it is
# up; before that its command line still names the config file.
redis_pid_is() {
  local pid=$1 port=$2 i=$3
  pid_is "$pid" redis-server &&
    { pid_is "$pid" ":$port " || pid_is "$pid" "$(redis_node_dir "$i")/redis.conf"; }
}

redis_healthy() {
  [[ -n $REDIS_PORTS ]] || return 1
  local i
  for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do redis_node_alive "$i" || return 1; done
  redis_cluster_ok
}

redis_write_config() {
  local i=$1 port=$2 dir
  dir=$(redis_node_dir "$i")
  mkdir -p "$dir" "$LOG_DIR"
  cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $port
daemonize no
dir $dir
pidfile $dir/redis.pid
logfile $(redis_log "$i")
cluster-enabled yes
cluster-config-file nodes.conf
# A master that stops answering for this long is failed over to its replica.
cluster-node-timeout 3000
# The slots of the other masters stay writable while one fails over.
cluster-require-full-coverage no
notify-keyspace-events Ex
# Expired keys are found by an incremental scan that runs hz times a second;
# a higher hz makes expiry events (which end silent sessions) more timely.
hz 100
appendonly no
save ""
EOF
}

# Starts node i on its recorded port and records its pid.
redis_start_node() {
  local i=$1 port pids
  port=$(redis_nth "$REDIS_PORTS" "$i")
  redis_write_config "$i" "$port"
  start_bg "$(redis_log "$i")" "$(redis_node_dir "$i")" redis-server "$(redis_node_dir "$i")/redis.conf"
  IFS=, read -r -a pids <<<"$REDIS_PIDS,,,"
  pids[i - 1]=$STARTED_PID
  REDIS_PIDS=$(
    IFS=,
    printf '%s' "${pids[*]:0:REDIS_NODE_COUNT}"
  )
}

redis_wait_nodes() {
  local i port
  for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
    port=$(redis_nth "$REDIS_PORTS" "$i")
    wait_while_alive 20 "$(redis_nth "$REDIS_PIDS" "$i")" redis_node_answers "$port" ||
      fail_with_log "$(redis_log "$i")" "redis node $i on port $port did not answer PING"
  done
}

redis_stop() {
  local i port pid
  for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
    port=$(redis_nth "$REDIS_PORTS" "$i")
    pid=$(redis_nth "$REDIS_PIDS" "$i")
    if [[ -z $port ]] || ! redis_pid_is "$pid" "$port" "$i"; then continue; fi
    redis_cli "$port" shutdown nosave >/dev/null 2>&1 || true
    wait_until 10 pid_gone "$pid" redis-server || stop_pid "$pid" redis-server "redis node $i"
  done
  REDIS_PIDS=
}

redis_fresh() {
  redis_stop
  rm -rf "$INFRA_DIR/redis"
  local ports
  # shellcheck disable=SC2046
  ports=$(pick_ports "$REDIS_NODE_COUNT" 1 $(recorded_ports)) || die "could not pick redis ports"
  REDIS_PORTS=${ports// /,}
  REDIS_PIDS=
  step "starting redis cluster on $REDIS_PORTS"
  local i
  for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do redis_start_node "$i"; done
  state_save
  redis_wait_nodes
  local log=$LOG_DIR/redis-cluster-create.log addrs=() p
  for p in ${REDIS_PORTS//,/ }; do addrs+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REDIS_REPLICAS" --cluster-yes >"$log" 2>&1 ||
    fail_with_log "$log" "redis-cli --cluster create failed"
  wait_until 30 redis_cluster_ok || fail_with_log "$log" "redis cluster never reached cluster_state:ok"
  ok
}

# Brings back the nodes that died, on their old ports. Returns non-zero when
# that is not possible, and the caller rebuilds the cluster instead.
redis_restart_dead() {
  [[ -n $REDIS_PORTS && -f $(redis_node_dir 1)/nodes.conf ]] || return 1
  local i port dead=()
  for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
    redis_node_alive "$i" && continue
    port=$(redis_nth "$REDIS_PORTS" "$i")
    if ! port_free "$port" "$((port + 10000))"; then
      say "==> redis port $port (or its bus port) is taken now; rebuilding the cluster"
      return 1
    fi
    dead+=("$i")
  done
  step "restarting redis node(s) ${dead[*]:-none} of cluster $REDIS_PORTS"
  for i in "${dead[@]}"; do redis_start_node "$i"; done
  state_save
  redis_wait_nodes
  if ! wait_until 30 redis_cluster_ok; then
    ok "cluster did not re-form, rebuilding"
    return 1
  fi
  ok
}

redis_up() {
  if redis_healthy; then
    say "==> redis cluster on $REDIS_PORTS ... already running"
    return
  fi
  redis_restart_dead || redis_fresh
  state_save
}

redis_status() {
  local i port pid state all=0
  for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
    port=$(redis_nth "$REDIS_PORTS" "$i")
    pid=$(redis_nth "$REDIS_PIDS" "$i")
    if [[ -z $port ]]; then
      state="not configured"
      all=1
    elif ! redis_node_alive "$i"; then
      state=down
      pid=-
      all=1
    elif redis_node_in_cluster "$port"; then
      state="up (cluster_state:ok)"
    elif redis_node_answers "$port"; then
      state="up, cluster not ok"
      all=1
    else
      state="not answering"
      all=1
    fi
    status_line "redis-$i" "${port:--}" "${pid:--}" "$state"
  done
  return "$all"
}
