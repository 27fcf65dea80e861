#!/usr/bin/env bash
# Cross-node vs single-node throughput, same machine, same run.
#
#   bench/cluster.sh [--repeat N] [--duration S] [--out DIR] [--no-build] [--unpinned]
#
# Single node: one `starling` (release) on 127.0.0.41. Cross-node: a 3-node
# cluster on 127.0.0.41-43; publishers connect to node 1, subscribers to
# node 2, so every message crosses a peer link. Every broker process is
# pinned to CPU 0 and the load tool to CPU 1 (taskset), so both set-ups get
# the same one broker core: the ratio is what forwarding costs, not what a
# second core adds. p2p, 10 pairs, 64-byte payloads, QoS 0 and QoS 1,
# alternating single / cluster, medians. --unpinned: nothing pinned, every
# process may use both cores (session 1's method: there the cluster gains a
# core the single node also had but could not fill). Stops only the
# processes it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPEAT=3
DURATION=5
OUT=""
BUILD=1
PIN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) REPEAT=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    --unpinned) PIN=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
  shift
done
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/sbench-cluster.XXXXXX")}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sbench-cluster-work.XXXXXX")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && cargo build --release -q -p starling-broker -p starling-bench)
fi
STARLING=$TARGET_DIR/release/starling
BENCH=$TARGET_DIR/release/starling-bench

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap 'cleanup; rm -rf "$WORK"' EXIT

if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_BROKER=(taskset -c 0)
  PIN_TOOL=(taskset -c 1)
else
  PIN_BROKER=()
  PIN_TOOL=()
fi

free_port() { # ip
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}

wait_ready() { # admin-addr pid
  for _ in $(seq 200); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen("http://" + sys.argv[1] + "/readyz", timeout=1)' "$1" 2>/dev/null; then
      return 0
    fi
    kill -0 "$2" 2>/dev/null || { echo "broker exited at start" >&2; return 1; }
    sleep 0.1
  done
  echo "broker at $1 not ready" >&2
  return 1
}

printf 'cluster-bench-secret-0123456789abcdef' >"$WORK/secret"

MQTT_ADDR=()
start_nodes() { # count
  local n=$1 i j peers
  local -a peer_port admin_port mqtt_port
  for i in $(seq "$n"); do
    peer_port[i]=$(free_port "127.0.0.4$i")
    admin_port[i]=$(free_port "127.0.0.4$i")
    mqtt_port[i]=$(free_port "127.0.0.4$i")
  done
  MQTT_ADDR=()
  for i in $(seq "$n"); do
    peers=""
    for j in $(seq "$n"); do
      [ "$j" = "$i" ] && continue
      peers="$peers${peers:+, }\"$j@127.0.0.4$j:${peer_port[j]}\""
    done
    rm -rf "$WORK/n$i"
    {
      cat "$ROOT/bench/starling.toml"
      printf '\n[node]\nid = %s\ndata_dir = "%s"\n' "$i" "$WORK/n$i"
      printf '\n[admin]\nlisten = "127.0.0.4%s:%s"\n' "$i" "${admin_port[i]}"
      if [ "$n" -gt 1 ]; then
        printf '\n[cluster]\nlisten = "127.0.0.4%s:%s"\npeers = [%s]\nsecret_file = "%s"\n' \
          "$i" "${peer_port[i]}" "$peers" "$WORK/secret"
      fi
    } >"$WORK/n$i.toml"
    "${PIN_BROKER[@]}" "$STARLING" serve --config "$WORK/n$i.toml" \
      --policy "$ROOT/docs/examples/dev-policy.toml" \
      --listen "127.0.0.4$i:${mqtt_port[i]}" --log warn >>"$OUT/node$i.log" 2>&1 &
    PIDS+=($!)
    MQTT_ADDR+=("127.0.0.4$i:${mqtt_port[i]}")
  done
  for i in $(seq "$n"); do
    wait_ready "127.0.0.4$i:${admin_port[i]}" "${PIDS[i - 1]}"
  done
}

FAIL=0
for qos in 0 1; do
  for rep in $(seq "$REPEAT"); do
    order=(single cluster)
    [ $((rep % 2)) = 0 ] && order=(cluster single)
    for kind in "${order[@]}"; do
      if [ "$kind" = single ]; then
        start_nodes 1 || { FAIL=1; cleanup; continue; }
        addrs=(--addr "${MQTT_ADDR[0]}")
      else
        start_nodes 3 || { FAIL=1; cleanup; continue; }
        addrs=(--addr "${MQTT_ADDR[0]}" --sub-addr "${MQTT_ADDR[1]}")
      fi
      json="$OUT/p2p-q$qos.$kind.$rep.json"
      "${PIN_TOOL[@]}" "$BENCH" p2p --qos "$qos" --e2e-window 4000 "${addrs[@]}" \
        --broker-pid "${PIDS[0]}" --label "$kind" --duration "$DURATION" \
        --json "$json" >"$OUT/p2p-q$qos.$kind.$rep.log" 2>&1 || true
      for p in "${PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "  p2p-q$qos $kind #$rep: BROKER CRASHED" >&2; FAIL=1; }
      done
      cleanup
      echo "  p2p-q$qos $kind #$rep:$(sed -n 2p "$OUT/p2p-q$qos.$kind.$rep.log")" >&2
    done
  done
done

python3 - "$OUT" <<'PYEOF' | tee "$OUT/results.md"
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
print("| scenario | single node msg/s | cross-node msg/s | ratio | lost/dup (cross-node) | target |")
print("|---|---|---|---|---|---|")
for q in (0, 1):
    rates, lost = {}, []
    for kind in ("single", "cluster"):
        rs = []
        for f in sorted(out.glob(f"p2p-q{q}.{kind}.*.json")):
            r = json.loads(f.read_text())
            rs.append(r.get("delivered_rate", 0.0))
            if kind == "cluster":
                lost.append(f"{r.get('lost', '?')}/{r.get('duplicates', '?')}")
        rates[kind] = statistics.median(rs) if rs else 0.0
    ratio = rates["cluster"] / rates["single"] if rates["single"] else 0.0
    target = "≥ 0.70: " + ("met" if ratio >= 0.7 else "NOT met") if q == 0 else "-"
    print(f"| p2p QoS {q} | {rates['single']:,.0f} | {rates['cluster']:,.0f} | {ratio:.2f} | {', '.join(lost)} | {target} |")
PYEOF
echo "results in $OUT" >&2
exit "$FAIL"
