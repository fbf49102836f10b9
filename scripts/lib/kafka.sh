# shellcheck shell=bash
# Kafka API via tansu, one broker with SQLite storage in the state dir.
# Readiness is judged with a real Kafka metadata request (confluent-kafka):
# the port accepting connections says little about the broker serving
# requests, and Debian's kcat cannot talk to tansu.

KAFKA_TOPIC_NAME=chatmesh.messages
KAFKA_TOPIC_PARTITIONS=8

kafka_log() { printf '%s\n' "$LOG_DIR/tansu.log"; }

# kafka_admin ping|ensure-topic BROKERS [TOPIC PARTITIONS]
kafka_admin() {
  python3 - "$@" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka import KafkaError

mode, brokers = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": brokers})

def partitions(topic):
    md = admin.list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return 0
    return len(t.partitions)

if mode == "ping":
    md = admin.list_topics(timeout=5)
    sys.exit(0 if md.brokers else 1)

topic, wanted = sys.argv[3], int(sys.argv[4])
have = partitions(topic)
if have == 0:
    fut = admin.create_topics([NewTopic(topic, num_partitions=wanted, replication_factor=1)])[topic]
    try:
        fut.result(timeout=30)
    except Exception as e:
        err = e.args[0] if e.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            sys.exit("create topic %s: %s" % (topic, e))
    deadline = time.monotonic() + 30
    while (have := partitions(topic)) < wanted and time.monotonic() < deadline:
        time.sleep(0.2)
if have < wanted:
    sys.exit("topic %s has %d partitions, expected %d" % (topic, have, wanted))
PY
}

kafka_answers() {
  tcp_open "$KAFKA_PORT" && kafka_admin ping "127.0.0.1:$KAFKA_PORT" 2>/dev/null
}

kafka_cmdline() { printf 'tansu broker --cluster-id chatmesh --listener-url tcp://127.0.0.1:%s ' "$KAFKA_PORT"; }

kafka_alive() {
  [[ -n $KAFKA_PORT ]] && pid_is "$TANSU_PID" "$(kafka_cmdline)"
}

kafka_stop() {
  kafka_alive && stop_pid "$TANSU_PID" "$(kafka_cmdline)" tansu
  TANSU_PID=
}

kafka_up() {
  KAFKA_TOPIC=$KAFKA_TOPIC_NAME
  KAFKA_PARTITIONS=$KAFKA_TOPIC_PARTITIONS
  KAFKA_DATA=$INFRA_DIR/kafka
  if kafka_alive && kafka_answers; then
    say "==> tansu on $KAFKA_PORT ... already running"
  else
    kafka_stop
    if [[ -z $KAFKA_PORT ]] || ! port_free "$KAFKA_PORT"; then
      # shellcheck disable=SC2046
      KAFKA_PORT=$(pick_ports 1 0 $(recorded_ports)) || die "could not pick a kafka port"
    fi
    local log url
    log=$(kafka_log)
    url=tcp://127.0.0.1:$KAFKA_PORT
    step "starting tansu on $KAFKA_PORT (data: $KAFKA_DATA/tansu.db, log: $log)"
    mkdir -p "$KAFKA_DATA"
    # The sqlite:// location is resolved against the working directory.
    # tansu also reads SCHEMA_REGISTRY and OTEL_EXPORTER_OTLP_ENDPOINT from the
    # environment; values meant for chatmesh itself must not reconfigure it.
    start_bg "$log" "$KAFKA_DATA" env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
      "$CACHE/bin/tansu" broker \
      --cluster-id chatmesh \
      --listener-url "$url" \
      --advertised-listener-url "$url" \
      --storage-engine sqlite://tansu.db
    TANSU_PID=$STARTED_PID
    state_save
    wait_while_alive 60 "$TANSU_PID" tcp_open "$KAFKA_PORT" ||
      fail_with_log "$log" "tansu did not open port $KAFKA_PORT"
    wait_while_alive 60 "$TANSU_PID" kafka_answers ||
      fail_with_log "$log" "tansu does not answer Kafka metadata requests"
    ok
  fi
  state_save
  kafka_admin ensure-topic "$KAFKA_BROKERS" "$KAFKA_TOPIC" "$KAFKA_PARTITIONS" ||
    die "could not create topic $KAFKA_TOPIC (log: $(kafka_log))"
}

kafka_status() {
  local state pid=${TANSU_PID:--}
  if [[ -z $KAFKA_PORT ]]; then
    state="not configured"
  elif ! kafka_alive; then
    state=down
    pid=-
  elif kafka_answers; then
    state="up (topic $KAFKA_TOPIC)"
  else
    state="not answering"
  fi
  status_line tansu "${KAFKA_PORT:--}" "$pid" "$state"
  [[ $state == up* ]]
}
