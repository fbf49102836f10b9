# shellcheck shell=bash
# S3 via s3s-fs, which verifies SigV4 signatures, so clients are exercised with
# real credentials. Each top-level directory of its root is a bucket. The keys
# are generated once per state dir and kept across restarts.

S3_BUCKET_NAME=chatmesh-media
S3_DEFAULT_REGION=us-east-1

s3_log() { printf '%s\n' "$LOG_DIR/s3s-fs.log"; }

random_hex() {
  od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

s3_cmdline() { printf 's3s-fs --host 127.0.0.1 --port %s ' "$S3_PORT"; }

s3_alive() {
  [[ -n $S3_PORT ]] && pid_is "$S3_PID" "$(s3_cmdline)"
}

s3_answers() { http_answers "$S3_PORT"; }

s3_stop() {
  s3_alive && stop_pid "$S3_PID" "$(s3_cmdline)" s3s-fs
  S3_PID=
}

s3_up() {
  S3_REGION=${S3_REGION:-$S3_DEFAULT_REGION}
  S3_BUCKET=$S3_BUCKET_NAME
  S3_DATA=$INFRA_DIR/s3
  [[ -n $S3_ACCESS_KEY ]] || S3_ACCESS_KEY=$(random_hex 10)
  [[ -n $S3_SECRET_KEY ]] || S3_SECRET_KEY=$(random_hex 20)
  mkdir -p "$S3_DATA/$S3_BUCKET"
  if s3_alive && s3_answers; then
    say "==> s3s-fs on $S3_PORT ... already running"
    state_save
    return
  fi
  s3_stop
  if [[ -z $S3_PORT ]] || ! port_free "$S3_PORT"; then
    # shellcheck disable=SC2046
    S3_PORT=$(pick_ports 1 0 $(recorded_ports)) || die "could not pick an s3 port"
  fi
  local log
  log=$(s3_log)
  step "starting s3s-fs on $S3_PORT (data: $S3_DATA, log: $log)"
  # Secrets on the command line are visible in ps; acceptable for a loopback
  # dev server whose keys also sit in state.env.
  start_bg "$log" "$S3_DATA" "$CACHE/bin/s3s-fs" \
    --host 127.0.0.1 \
    --port "$S3_PORT" \
    --access-key "$S3_ACCESS_KEY" \
    --secret-key "$S3_SECRET_KEY" \
    "$S3_DATA"
  S3_PID=$STARTED_PID
  state_save
  wait_while_alive 30 "$S3_PID" s3_answers || fail_with_log "$log" "s3s-fs did not answer HTTP on port $S3_PORT"
  ok
}

s3_status() {
  local state pid=${S3_PID:--}
  if [[ -z $S3_PORT ]]; then
    state="not configured"
    ((WITH_S3)) || state="not started (--no-s3)"
  elif ! s3_alive; then
    state=down
    pid=-
  elif s3_answers; then
    state="up (bucket $S3_BUCKET)"
  else
    state="not answering"
  fi
  [[ $state == down && $WITH_S3 == 0 ]] && state="down (not needed with --no-s3)"
  status_line s3s-fs "${S3_PORT:--}" "$pid" "$state"
  [[ $state == up* ]]
}
