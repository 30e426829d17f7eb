#!/usr/bin/env bash
# Gateway vs Mosquitto, side by side, measured by the same load generator in one run.
#
#   bash bench/compare.sh                 # full run (about 7 minutes)
#   BENCH_QUICK=1 bash bench/compare.sh   # every scenario at a tenth of the load (smoke test)
#
# Builds the release binaries, then for each scenario starts a fresh broker (gateway, then
# Debian's mosquitto with persistence on), runs `device-sim bench` against it with identical
# parameters, and stops it. At the end it prints ONE side-by-side table and writes JSON.
#
# Everything listens on 127.0.0.1 only. Everything the script starts is stopped on exit.
#
# Environment:
#   BENCH_OUT       results directory (default: target/bench/<date-time>)
#   BENCH_QUICK=1   a tenth of the load, for checking the script itself
#   BROKER_CPUS     CPUs the broker under test is pinned to (default: 0)
#   CLIENT_CPUS     CPUs device-sim is pinned to (default: 1)
#   BENCH_NICE      niceness of the broker and device-sim, e.g. -10 (needs root) on a machine
#                   shared with other work (default: unchanged)
#   BENCH_INFLIGHT  QoS 1 window: device-sim's publishers and mosquitto's
#                   max_inflight_messages (default: 1024, the gateway's default
#                   mqtt.max_inflight and mqtt.receive_maximum)
#
# Requires: cargo, Debian's mosquitto (apt-get install mosquitto), taskset (util-linux).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="${BENCH_OUT:-$ROOT/target/bench/$(date +%Y%m%d-%H%M%S)}"
QUICK="${BENCH_QUICK:-0}"
BROKER_CPUS="${BROKER_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"
INFLIGHT="${BENCH_INFLIGHT:-1024}"
NICE="${BENCH_NICE:-}"
TARGETS=(gateway mosquitto)

# ---------------------------------------------------------------------------------------------
# Processes this script started; stopped by PID on exit.
STARTED_PIDS=()
TMP_ROOT=""

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ -n "$TMP_ROOT" && -d "$TMP_ROOT" ]]; then
        rm -rf "$TMP_ROOT"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[compare] %s\n' "$*" >&2; }

die() {
    log "error: $*"
    exit 1
}

# stop_pid PID: SIGTERM, up to 10 s for a clean exit, then SIGKILL.
stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local pid="$1" kept=() p
    for p in "${STARTED_PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || kept+=("$p")
    done
    STARTED_PIDS=("${kept[@]+"${kept[@]}"}")
}

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------------------------
# Brokers. start_<target> DIR sets BROKER_PID and BROKER_PORT, or returns non-zero.

MOSQUITTO_BIN=""
GATEWAY_BUILT=1
# Extra environment for the gateway in one case (e.g. a setting that case varies).
GATEWAY_EXTRA_ENV=()
BROKER_PIN=(env)
CLIENT_PIN=(env)

start_mosquitto() {
    local dir="$1"
    BROKER_PORT="$(free_port)"
    mkdir -p "$dir/data"
    cat >"$dir/mosquitto.conf" <<EOF
# Written by bench/compare.sh for one scenario.
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
# Stay the invoking user, so the data directory below stays writable.
user $(id -un)
persistence true
persistence_location $dir/data/
# Unbounded connections, deep queues: measure speed, not configured limits.
max_connections -1
max_queued_messages 1000000
max_inflight_messages $INFLIGHT
# The gateway sets TCP_NODELAY; so does Mosquitto here, or Nagle would add latency.
set_tcp_nodelay true
log_dest file $dir/mosquitto.log
EOF
    "${BROKER_PIN[@]}" "$MOSQUITTO_BIN" -c "$dir/mosquitto.conf" >"$dir/stdout.log" 2>&1 &
    BROKER_PID=$!
    STARTED_PIDS+=("$BROKER_PID")
    wait_listening "$BROKER_PID" "$BROKER_PORT"
}

start_gateway() {
    local dir="$1" http admin
    [[ "$GATEWAY_BUILT" == 1 ]] || return 1
    BROKER_PORT="$(free_port)"
    http="$(free_port)"
    admin="$(free_port)"
    while [[ "$http" == "$BROKER_PORT" ]]; do http="$(free_port)"; done
    while [[ "$admin" == "$BROKER_PORT" || "$admin" == "$http" ]]; do admin="$(free_port)"; done
    mkdir -p "$dir/data"
    # Queues as deep as Mosquitto's max_queued_messages above: a reliable subscriber that
    # falls behind catches up from history, so history depth is its queue; a QoS 0
    # subscriber's queue is its outbound queue.
    env GATEWAY__HISTORY__MAX_MESSAGES=1000000 GATEWAY__MQTT__OUTBOUND_QUEUE=1000000 \
        "${GATEWAY_EXTRA_ENV[@]}" \
    "${BROKER_PIN[@]}" "$ROOT/target/release/gateway" run \
        --data-dir "$dir/data" \
        --mqtt "127.0.0.1:$BROKER_PORT" \
        --http "127.0.0.1:$http" \
        --admin "127.0.0.1:$admin" \
        >"$dir/gateway.log" 2>&1 &
    BROKER_PID=$!
    STARTED_PIDS+=("$BROKER_PID")
    wait_listening "$BROKER_PID" "$BROKER_PORT"
}

# ---------------------------------------------------------------------------------------------
# One scenario against every target: run_case FILE TITLE ARGS...

run_case() {
    local name="$1" title="$2"
    shift 2
    local target dir
    for target in "${TARGETS[@]}"; do
        dir="$TMP_ROOT/$name-$target"
        mkdir -p "$dir" "$OUT/$target"
        if ! "start_$target" "$dir"; then
            log "$title: $target did not start listening; its log:"
            tail -n 20 "$dir"/*.log >&2 || true
            keep_logs "$dir" "$OUT/$target" "$name"
            stop_pid "$BROKER_PID"
            forget_pid "$BROKER_PID"
            continue
        fi
        log "$title: $target (pid $BROKER_PID, port $BROKER_PORT)"
        if ! "${CLIENT_PIN[@]}" "$DEVICE_SIM" bench "$@" \
            --broker "mqtt://127.0.0.1:$BROKER_PORT" \
            --pid "$BROKER_PID" \
            --target "$target" \
            --title "$title" \
            --timeout 180s \
            --json "$OUT/$target/$name.json" \
            >"$OUT/$target/$name.txt" 2>&1; then
            log "$title: device-sim failed against $target:"
            tail -n 5 "$OUT/$target/$name.txt" >&2 || true
            rm -f "$OUT/$target/$name.json"
        fi
        stop_pid "$BROKER_PID"
        forget_pid "$BROKER_PID"
        keep_logs "$dir" "$OUT/$target" "$name"
    done
}

# keep_logs DIR DEST NAME: copy DIR/*.log to DEST/<log>-NAME.log.
keep_logs() {
    local f
    for f in "$1"/*.log; do
        [[ -e "$f" ]] && cp "$f" "$2/$(basename "${f%.log}")-$3.log"
    done
    return 0
}

# ---------------------------------------------------------------------------------------------

main() {
    command -v cargo >/dev/null || die "cargo is not installed"
    MOSQUITTO_BIN="$(command -v mosquitto || true)"
    for candidate in /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
        [[ -z "$MOSQUITTO_BIN" && -x "$candidate" ]] && MOSQUITTO_BIN="$candidate"
    done
    [[ -n "$MOSQUITTO_BIN" ]] || die "mosquitto is not installed: apt-get install mosquitto"

    # Commands run straight in the background (not through a function), so $! is the
    # broker's own PID: taskset execs it.
    if command -v taskset >/dev/null && (($(nproc) >= 2)); then
        BROKER_PIN=(taskset -c "$BROKER_CPUS")
        CLIENT_PIN=(taskset -c "$CLIENT_CPUS")
    else
        log "not pinning (needs taskset and 2 CPUs): broker and load generator share the CPUs"
    fi
    if [[ -n "$NICE" ]]; then
        BROKER_PIN=(nice -n "$NICE" "${BROKER_PIN[@]}")
        CLIENT_PIN=(nice -n "$NICE" "${CLIENT_PIN[@]}")
    fi

    # 10k idle connections need 10k descriptors in device-sim and in the broker.
    local hard
    hard="$(ulimit -Hn)"
    if [[ "$hard" != unlimited ]] && ((hard < 10300)); then
        die "the open-file hard limit is $hard; the idle scenario needs 10300 (raise it as root)"
    fi
    ulimit -n "$hard" 2>/dev/null || ulimit -n 10300

    log "building release binaries"
    if ! cargo build --release -p gateway -p device-sim; then
        log "the gateway does not build: only device-sim is built, the gateway column reads failed"
        cargo build --release -p device-sim
        GATEWAY_BUILT=0
    fi
    DEVICE_SIM="$ROOT/target/release/device-sim"

    mkdir -p "$OUT"
    TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/gateway-bench.XXXXXX")"
    log "results in $OUT"

    local div=1
    [[ "$QUICK" == 1 ]] && div=10

    run_case 01-qos0-1to1 "1→1 QoS 0 100 B" throughput \
        --publishers 1 --subscribers 1 --qos 0 --payload 100 --messages $((2000000 / div))
    # The same with QoS 0 kept out of history (`store_qos0 = false`), as Mosquitto keeps it:
    # what the durable history costs per message.
    GATEWAY_EXTRA_ENV=(GATEWAY__HISTORY__STORE_QOS0=false)
    run_case 01b-qos0-1to1-live "1→1 QoS 0 100 B, gateway store_qos0 = false" throughput \
        --publishers 1 --subscribers 1 --qos 0 --payload 100 --messages $((2000000 / div))
    # With the default history depth (10,000 messages per channel) instead of 1,000,000:
    # what a gateway on its defaults does.
    GATEWAY_EXTRA_ENV=(GATEWAY__HISTORY__MAX_MESSAGES=10000)
    run_case 01c-qos0-1to1-default-history "1→1 QoS 0 100 B, gateway history 10,000 per channel" throughput \
        --publishers 1 --subscribers 1 --qos 0 --payload 100 --messages $((2000000 / div))
    GATEWAY_EXTRA_ENV=()
    run_case 02-qos1-1to1 "1→1 QoS 1 100 B" throughput \
        --publishers 1 --subscribers 1 --qos 1 --payload 100 --messages $((300000 / div)) \
        --inflight "$INFLIGHT"
    run_case 03-fan-in "100→1 QoS 0 fan-in" throughput \
        --publishers 100 --subscribers 1 --qos 0 --payload 100 --messages $((10000 / div)) \
        --topic-per-publisher
    run_case 04-fan-out "1→100 QoS 0 fan-out" throughput \
        --publishers 1 --subscribers 100 --qos 0 --payload 100 --messages $((20000 / div))
    run_case 05-latency-qos0 "latency QoS 0 @ 1k msg/s" latency \
        --rate 1000 --duration $((10 / div + 1))s --warmup 1s --qos 0 --payload 100
    run_case 06-latency-qos1 "latency QoS 1 @ 1k msg/s" latency \
        --rate 1000 --duration $((10 / div + 1))s --warmup 1s --qos 1 --payload 100
    run_case 07-idle "idle, 10k connections" idle \
        --connections $((10000 / div)) --concurrency 100
    run_case 08-storm "reconnect storm, 5k clients" reconnect-storm \
        --clients $((5000 / div)) --concurrency 500 --persistent

    echo
    "$DEVICE_SIM" bench compare \
        --input "gateway=$OUT/gateway" \
        --input "mosquitto=$OUT/mosquitto" \
        --json "$OUT/compare.json" | tee "$OUT/compare.txt"
    echo
    log "per-run tables and logs: $OUT/<target>/; comparison: $OUT/compare.json"
}

main "$@"
