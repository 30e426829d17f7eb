#!/usr/bin/env bash
# Bridge benchmark: the gateway's bridge to a Mosquitto, against Mosquitto's own bridge
# between two Mosquittos, measured by the same load program in the same run.
#
#   bash bench/bridge.sh              # full run (about 3 minutes)
#   BENCH_QUICK=1 bash bench/bridge.sh  # a tenth of the load, for checking the script
#
# Two measurements, each for both bridges:
#   throughput  QoS 1 messages published as fast as a window of BENCH_INFLIGHT allows to the
#               near side (the gateway, or Mosquitto A), counted at the far side (Mosquitto B)
#               by a QoS 1 subscriber: messages per second from first publish to last arrival.
#   outage      a stream at BENCH_RATE msg/s for BENCH_STREAM seconds; after 5 s the far
#               Mosquitto (persistence on) is stopped with SIGTERM for BENCH_OUTAGE seconds
#               and started again on the same port. Lost = published and acknowledged by the
#               near side, never delivered at the far side.
# Mosquitto's bridge is measured twice in the outage: with its default queue limit
# (max_queued_messages 1000) and with a deep queue (1000000), the fairer comparison.
#
# Everything listens on 127.0.0.1; brokers are pinned to BROKER_CPUS (default 0) and the
# load program to CLIENT_CPUS (default 1). Everything the script starts is stopped on exit.
# Results: target/bench/bridge-<date-time>/ (or $BENCH_OUT): results.md (the table) and one
# JSON line per run.
#
# Requires: cargo, Debian's mosquitto (apt-get install mosquitto), taskset (util-linux).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="${BENCH_OUT:-$ROOT/target/bench/bridge-$(date +%Y%m%d-%H%M%S)}"
QUICK="${BENCH_QUICK:-0}"
INFLIGHT="${BENCH_INFLIGHT:-256}"
MESSAGES="${BENCH_MESSAGES:-100000}"
RATE="${BENCH_RATE:-2000}"
STREAM="${BENCH_STREAM:-25}"
OUTAGE="${BENCH_OUTAGE:-10}"
BROKER_CPUS="${BROKER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
if [[ "$QUICK" == 1 ]]; then
    MESSAGES=$((MESSAGES / 10))
    RATE=$((RATE / 10))
fi

STARTED_PIDS=()
TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/bridge-bench.XXXXXX")"

log() { printf '[bridge-bench] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]+"${STARTED_PIDS[@]}"}"; do
        stop_pid "$pid"
    done
    rm -rf "$TMP_ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PIN_BROKER=(env)
PIN_CLIENT=(env)
if command -v taskset >/dev/null 2>&1; then
    PIN_BROKER=(taskset -c "$BROKER_CPUS")
    PIN_CLIENT=(taskset -c "$CLIENT_CPUS")
fi
MOSQUITTO_BIN="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[[ -x "$MOSQUITTO_BIN" ]] || die "mosquitto is not installed (apt-get install mosquitto)"

# write_mosquitto_conf DIR PORT QUEUE [BRIDGE_TO_PORT]
write_mosquitto_conf() {
    local dir="$1" port="$2" queue="$3" to="${4:-}"
    mkdir -p "$dir/data"
    cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
user $(id -un)
persistence true
persistence_location $dir/data/
max_inflight_messages $INFLIGHT
max_queued_messages $queue
set_tcp_nodelay true
log_dest file $dir/mosquitto.log
CONF
    if [[ -n "$to" ]]; then
        cat >>"$dir/mosquitto.conf" <<CONF
connection to-far
address 127.0.0.1:$to
clientid bench-bridge-mosquitto
cleansession false
topic bench/# out 1
restart_timeout 1
try_private true
notifications false
CONF
    fi
}

# start_mosquitto DIR PORT: sets STARTED_PID.
start_mosquitto() {
    local dir="$1" port="$2"
    "${PIN_BROKER[@]}" "$MOSQUITTO_BIN" -c "$dir/mosquitto.conf" >>"$dir/stdout.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
    wait_listening "$STARTED_PID" "$port" || die "mosquitto in $dir did not start"
}

# start_gateway DIR PORT FAR_PORT: sets STARTED_PID.
start_gateway() {
    local dir="$1" port="$2" far="$3"
    mkdir -p "$dir/data"
    cat >"$dir/gateway.toml" <<CONF
[data]
dir = "$dir/data"
[mqtt]
listen = "127.0.0.1:$port"
max_inflight = $INFLIGHT
[http]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"

[[bridge]]
name = "far"
address = "127.0.0.1:$far"
protocol = "3.1.1"
client_id = "bench-bridge-gateway"
max_inflight = $INFLIGHT
reconnect_min = "500ms"
reconnect_max = "1s"

[[bridge.out]]
local = "bench/#"
qos = 1
CONF
    "${PIN_BROKER[@]}" "$ROOT/target/release/gateway" run --config "$dir/gateway.toml" \
        >"$dir/gateway.log" 2>&1 &
    STARTED_PID=$!
    STARTED_PIDS+=("$STARTED_PID")
    wait_listening "$STARTED_PID" "$port" || die "the gateway in $dir did not start"
}

# run_case NAME KIND(gateway|mosquitto) QUEUE MODE(throughput|outage): prints the JSON line.
run_case() {
    local name="$1" kind="$2" queue="$3" mode="$4"
    local dir="$TMP_ROOT/$name" far near far_pid near_pid load_pid
    mkdir -p "$dir/far" "$dir/near"
    far="$(free_port)"
    near="$(free_port)"
    while [[ "$near" == "$far" ]]; do near="$(free_port)"; done
    write_mosquitto_conf "$dir/far" "$far" 1000000
    start_mosquitto "$dir/far" "$far"
    far_pid="$STARTED_PID"
    if [[ "$kind" == gateway ]]; then
        start_gateway "$dir/near" "$near" "$far"
    else
        write_mosquitto_conf "$dir/near" "$near" "$queue" "$far"
        start_mosquitto "$dir/near" "$near"
    fi
    near_pid="$STARTED_PID"
    sleep 1 # let the bridge connect

    local args=(--pub "127.0.0.1:$near" --sub "127.0.0.1:$far" --inflight "$INFLIGHT"
        --id "$name")
    if [[ "$mode" == throughput ]]; then
        args+=(--messages "$MESSAGES" --settle 10)
    else
        args+=(--messages $((RATE * STREAM)) --rate "$RATE" --settle 20)
    fi
    "${PIN_CLIENT[@]}" "$ROOT/target/release/examples/bridge_bench" "${args[@]}" \
        >"$dir/result.json" 2>"$dir/load.log" &
    load_pid=$!
    if [[ "$mode" == outage ]]; then
        sleep 5
        log "$name: stopping the far Mosquitto for ${OUTAGE} s"
        stop_pid "$far_pid"
        sleep "$OUTAGE"
        start_mosquitto "$dir/far" "$far"
        far_pid="$STARTED_PID"
    fi
    wait "$load_pid" || log "$name: the load program failed: $(tail -n 3 "$dir/load.log")"
    stop_pid "$near_pid"
    stop_pid "$far_pid"
    mkdir -p "$OUT/$name"
    cp "$dir"/*/*.log "$OUT/$name/" 2>/dev/null || true
    cat "$dir/result.json"
}

field() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"; }

mkdir -p "$OUT"
log "building release binaries"
cargo build --release -p gateway >&2
cargo build --release -p e2e-tests --example bridge_bench >&2

log "throughput: gateway -> mosquitto ($MESSAGES QoS 1 messages, window $INFLIGHT)"
gw_tp="$(run_case tp-gateway gateway 1000000 throughput)"
log "throughput: mosquitto -> mosquitto"
mq_tp="$(run_case tp-mosquitto mosquitto 1000000 throughput)"
log "outage: gateway -> mosquitto ($RATE msg/s for $STREAM s, far side down ${OUTAGE} s)"
gw_out="$(run_case outage-gateway gateway 1000000 outage)"
log "outage: mosquitto -> mosquitto, default queue"
mq_out_default="$(run_case outage-mosquitto-default mosquitto 1000 outage)"
log "outage: mosquitto -> mosquitto, deep queue"
mq_out_deep="$(run_case outage-mosquitto-deep mosquitto 1000000 outage)"

for line in "$gw_tp" "$mq_tp" "$gw_out" "$mq_out_default" "$mq_out_deep"; do
    echo "$line"
done >"$OUT/results.jsonl"

ratio="$(awk -v a="$(field "$gw_tp" msgs_per_s)" -v b="$(field "$mq_tp" msgs_per_s)" \
    'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')"
{
    echo "| measurement | gateway bridge | mosquitto bridge | ratio |"
    echo "|---|---|---|---|"
    echo "| QoS 1 throughput, msg/s ($MESSAGES msgs, window $INFLIGHT) | $(field "$gw_tp" msgs_per_s) | $(field "$mq_tp" msgs_per_s) | $ratio |"
    echo "| lost in throughput run | $(field "$gw_tp" lost) | $(field "$mq_tp" lost) | |"
    echo "| lost across a ${OUTAGE} s outage ($((RATE * STREAM)) msgs at $RATE msg/s) | $(field "$gw_out" lost) | $(field "$mq_out_default" lost) (default queue), $(field "$mq_out_deep" lost) (deep queue) | |"
    echo "| duplicates across the outage | $(field "$gw_out" duplicates) | $(field "$mq_out_default" duplicates) (default queue), $(field "$mq_out_deep" duplicates) (deep queue) | |"
} | tee "$OUT/results.md"
log "results in $OUT"
