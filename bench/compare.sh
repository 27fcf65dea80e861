#!/usr/bin/env bash
# Starling vs Mosquitto, same scenarios, same settings, alternating runs.
#
#   bench/compare.sh [--quick] [--repeat N] [--duration S] [--out DIR]
#                    [--only REGEX] [--starling-only] [--peer mosquitto|rumqttd|starling-off]
#                    [--debug]
#
# Builds Starling and starling-bench (release), installs Mosquitto if missing,
# starts each broker on a free loopback port pinned to CPU 0 (taskset), runs the
# load tool pinned to CPU 1, one fresh broker process per run, repeats every
# scenario (default 3 times, brokers in alternating order), and prints median
# rates, ratios Starling/Mosquitto, broker CPU and peak RSS, and the targets.
# Results: DIR/*.json (one per run), DIR/*.log, DIR/results.md.
#
# --quick: CI smoke: every scenario once for ~1 s; fails when a broker crashes
# or a scenario delivers nothing, never on speed.
# Stops only the processes it started (by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
REPEAT=3
DURATION=5
OUT=""
ONLY=""
STARLING_ONLY=0
PEER=mosquitto
PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --repeat) REPEAT=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --out) OUT=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --starling-only) STARLING_ONLY=1 ;;
    --peer) PEER=$2; shift ;;
    --debug) PROFILE=debug ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  REPEAT=1
  DURATION=1
fi
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sbench-out.XXXXXX")}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sbench-work.XXXXXX")

# 10k connections need file descriptors on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

MOSQUITTO=$(command -v mosquitto || true)
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
if [ -z "$MOSQUITTO" ] && [ "$STARLING_ONLY" = 0 ]; then
  echo "installing mosquitto" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) >&2
  MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi

RUMQTTD=${RUMQTTD:-$(command -v rumqttd || echo "$HOME/.cargo/bin/rumqttd")}
if [ "$PEER" = rumqttd ] && ! [ -x "$RUMQTTD" ]; then
  echo "rumqttd not found: cargo install rumqttd (or RUMQTTD=path)" >&2
  exit 64
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$PROFILE" = debug ]; then
  # CI smoke: the debug build CI already has; numbers mean nothing.
  echo "building debug binaries" >&2
  (cd "$ROOT" && cargo build -q -p starling-broker -p starling-bench)
else
  echo "building release binaries" >&2
  (cd "$ROOT" && cargo build --release -q -p starling-broker -p starling-bench)
fi
STARLING="$TARGET_DIR/$PROFILE/starling"
BENCH="$TARGET_DIR/$PROFILE/starling-bench"

# Pin broker and tool to different cores when there are two.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_BROKER=(taskset -c 0)
  PIN_TOOL=(taskset -c 1)
else
  PIN_BROKER=()
  PIN_TOOL=()
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Equivalent settings: anonymous, in-memory for clean sessions, 1000 in flight
# and 100000 queued per client, no $SYS, TCP_NODELAY, quiet logs.
cp "$ROOT/bench/starling.toml" "$WORK/starling.toml"

start_broker() { # kind port
  local kind=$1 port=$2
  case "$kind" in
    starling-off)
      # The same broker with security telemetry off: its cost (docs/perf.md).
      rm -rf "$WORK/data"
      { cat "$WORK/starling.toml"; printf '\n[telemetry]\nenabled = false\n'; } >"$WORK/starling-off.toml"
      "${PIN_BROKER[@]}" "$STARLING" serve --config "$WORK/starling-off.toml" --policy "$ROOT/docs/examples/dev-policy.toml" --listen "127.0.0.1:$port" \
        --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" --log warn >>"$OUT/starling-off-broker.log" 2>&1 &
      ;;
    starling)
      rm -rf "$WORK/data"
      "${PIN_BROKER[@]}" "$STARLING" serve --config "$WORK/starling.toml" --policy "$ROOT/docs/examples/dev-policy.toml" --listen "127.0.0.1:$port" \
        --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" --log warn >>"$OUT/starling-broker.log" 2>&1 &
      ;;
    rumqttd)
      # A second peer when asked (`--peer rumqttd`, `cargo install rumqttd`;
      # RUMQTTD=path overrides): v4 on the port, v5 on the next one.
      cat > "$WORK/rumqttd.toml" <<EOF
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 1000
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$port"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 1000
dynamic_filters = true
[v5.1]
name = "v5-1"
listen = "127.0.0.1:$((port + 1))"
next_connection_delay_ms = 0
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 20480
max_inflight_count = 1000
EOF
      "${PIN_BROKER[@]}" "$RUMQTTD" -c "$WORK/rumqttd.toml" >>"$OUT/rumqttd-broker.log" 2>&1 &
      ;;
    mosquitto)
      cat > "$WORK/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 100000
max_connections -1
sys_interval 0
set_tcp_nodelay true
log_type error
log_type warning
EOF
      "${PIN_BROKER[@]}" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$OUT/mosquitto-broker.log" 2>&1 &
      ;;
  esac
  BROKER_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    kill -0 "$BROKER_PID" 2>/dev/null || { echo "$kind exited at start" >&2; return 1; }
    sleep 0.1
  done
  echo "$kind did not listen on $port" >&2
  return 1
}

stop_broker() {
  kill "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}

# name|starling-bench arguments
if [ "$QUICK" = 1 ]; then
  CONNS=1000
  PERSIST="--rate 200 --publishers 2 --online-ms 400 --offline-ms 200"
else
  CONNS=10000
  PERSIST="--rate 1000 --publishers 10"
fi
CLOSED="--e2e-window 4000"
SCENARIOS=()
for s in fanin fanout p2p; do
  for q in 0 1; do
    for v in 3.1.1 5; do
      SCENARIOS+=("$s-q$q-v${v%%.*}|$s --qos $q --mqtt $v $CLOSED")
    done
  done
done
SCENARIOS+=(
  "fanin-q1-open|fanin --qos 1 --mqtt 3.1.1"
  "shared-q1-v5|shared --qos 1 --mqtt 5 $CLOSED"
  "latency-q0|latency --qos 0 --rate 10000"
  "latency-q1|latency --qos 1 --rate 10000"
  "conn-$CONNS|conn --connections $CONNS --hold 3"
  "persistent-q1|persistent $PERSIST"
)

BROKERS=(starling "$PEER")
[ "$STARLING_ONLY" = 1 ] && BROKERS=(starling)
FAIL=0
for entry in "${SCENARIOS[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  if [ -n "$ONLY" ] && ! [[ "$name" =~ $ONLY ]]; then
    continue
  fi
  for rep in $(seq "$REPEAT"); do
    order=("${BROKERS[@]}")
    if [ $((rep % 2)) = 0 ] && [ ${#BROKERS[@]} = 2 ]; then
      order=("$PEER" starling)
    fi
    for kind in "${order[@]}"; do
      port=$(free_port)
      start_broker "$kind" "$port" || { FAIL=1; continue; }
      json="$OUT/$name.$kind.$rep.json"
      addr_port=$port
      if [ "$kind" = rumqttd ] && [[ "$args" == *"--mqtt 5"* ]]; then
        addr_port=$((port + 1))
      fi
      log="$OUT/$name.$kind.$rep.log"
      # shellcheck disable=SC2086
      if ! "${PIN_TOOL[@]}" "$BENCH" $args --addr "127.0.0.1:$addr_port" --broker-pid "$BROKER_PID" \
        --label "$kind" --duration "$DURATION" --drain "$([ "$QUICK" = 1 ] && echo 1 || echo 2)" \
        --json "$json" >"$log" 2>&1; then
        echo "  $name $kind #$rep: tool reported errors (see $log)" >&2
      fi
      if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        echo "  $name $kind #$rep: BROKER CRASHED" >&2
        FAIL=1
        echo '{"crashed": true}' > "$json.crash"
      fi
      stop_broker
      line=$(sed -n 2p "$log" 2>/dev/null || true)
      echo "  $name $kind #$rep:$line" >&2
    done
  done
done

set +e
python3 "$ROOT/bench/summarize.py" "$OUT" "$QUICK" "$PEER" >"$OUT/results.md"
rc=$?
if [ "$QUICK" != 1 ]; then
  # Plots are an extra: a missing matplotlib or a failed plot never fails the comparison.
  python3 "$ROOT/bench/plot.py" "$OUT" || echo "plotting failed; results are unaffected" >&2
fi
set -e
cat "$OUT/results.md"
echo "results in $OUT" >&2
if [ "$FAIL" != 0 ] || [ "$rc" != 0 ]; then
  exit 1
fi
