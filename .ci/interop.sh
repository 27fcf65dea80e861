#!/usr/bin/env bash
# Interop test: drives a Starling binary with MQTT clients we did not write
# (mosquitto_pub/mosquitto_sub and Python paho-mqtt), over MQTT 3.1.1 and 5.0.
#
# usage: bash .ci/interop.sh PATH_TO_STARLING
#
# Starts its own broker on free loopback ports (MQTT over TCP, WebSocket on
# /mqtt, and TLS with a certificate made here with openssl) with a temporary data dir,
# stops only that broker (by PID) on exit, prints `PASS name` / `FAIL name: why`
# for each check and a closing `N passed, M failed` line; exits non-zero if
# any check failed or the broker could not be started.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash .ci/interop.sh PATH_TO_STARLING" >&2
  exit 64
fi
STARLING=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ! -x $STARLING ]]; then
  echo "interop: $STARLING is not an executable" >&2
  exit 64
fi
for tool in mosquitto_pub mosquitto_sub python3 stdbuf openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "interop: $tool not found (apt-get install mosquitto-clients python3 openssl)" >&2
    exit 2
  fi
done

START=$(date +%s)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/starling-interop.XXXXXX")
BROKER_LOG=$TMP/broker.log
BROKER_PID=""
HELPERS=()          # background client PIDs this script started
declare -A SUB_PID  # subscriber name -> PID

# ours PID: the process is alive and a child of this script (so a PID that was
# reused after our process ended is never signalled).
ours() { [[ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" == "$$" ]]; }

cleanup() {
  local rc=$?
  set +e
  local p
  for p in "${HELPERS[@]}"; do
    ours "$p" && kill -KILL "$p" 2>/dev/null
  done
  if [[ -n $BROKER_PID ]] && ours "$BROKER_PID"; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    local i
    for i in $(seq 1 50); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$BROKER_PID" 2>/dev/null; then
      echo "interop: broker $BROKER_PID did not stop within 5 s of SIGTERM; killing it" >&2
      kill -KILL "$BROKER_PID" 2>/dev/null
    fi
    wait "$BROKER_PID" 2>/dev/null
  fi
  if [[ $rc -ne 0 && -s $BROKER_LOG ]]; then
    echo "---- last 40 broker log lines ($BROKER_LOG) ----" >&2
    tail -n 40 "$BROKER_LOG" >&2
    echo "----" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(free_port)
WS_PORT=$(free_port)
TLS_PORT=$(free_port)

# A throw-away CA and a server certificate for 127.0.0.1/localhost.
TLS=$TMP/tls
mkdir -p "$TLS"
if ! {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$TLS/ca.key" -out "$TLS/ca.crt" -subj "/CN=Starling interop CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$TLS/tls.key" -out "$TLS/tls.csr" -subj "/CN=localhost" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$TLS/ext.cnf" &&
    openssl x509 -req -in "$TLS/tls.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
      -days 2 -extfile "$TLS/ext.cnf" -out "$TLS/tls.crt"
} >"$TMP/openssl.log" 2>&1; then
  echo "interop: openssl could not make test certificates:" >&2
  cat "$TMP/openssl.log" >&2
  exit 2
fi

cat >"$TMP/starling.toml" <<TOML
[[listeners]]
name = "mqtt"
bind = "127.0.0.1:$PORT"

[[listeners]]
name = "ws"
bind = "127.0.0.1:$WS_PORT"
websocket = true
websocket_path = "/mqtt"

[[listeners]]
name = "mqtts"
bind = "127.0.0.1:$TLS_PORT"
[listeners.tls]
cert = "$TLS/tls.crt"
key = "$TLS/tls.key"
TOML

echo "== starting $STARLING on 127.0.0.1:$PORT (WebSocket :$WS_PORT, TLS :$TLS_PORT, data dir $TMP/data)"
mkdir -p "$TMP/data"
STARLING_LOG=${STARLING_LOG:-info} "$STARLING" serve --config "$TMP/starling.toml" --policy "$HERE/../docs/examples/dev-policy.toml" --admin-listen 127.0.0.1:0 --data-dir "$TMP/data" \
  2>"$BROKER_LOG" >/dev/null </dev/null &
BROKER_PID=$!

startup_fail() {
  echo "FAIL broker start: $1"
  echo "0 passed, 1 failed"
  exit 1
}
# Bounded wait (10 s) until the port accepts TCP connections.
ready=0
deadline=$((SECONDS + 10))
while ((SECONDS < deadline)); do
  kill -0 "$BROKER_PID" 2>/dev/null || startup_fail "broker exited before accepting connections on 127.0.0.1:$PORT"
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ $ready -eq 1 ]] || startup_fail "broker did not accept connections on 127.0.0.1:$PORT within 10 s"
if ! grep -q "listening for MQTT" "$BROKER_LOG"; then
  echo "interop: note: broker accepts connections but did not log 'listening for MQTT'" >&2
fi

PASSED=0
FAILED=0
FAILURES=()
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); FAILURES+=("$1"); echo "FAIL $1: $2"; }

PUB=(mosquitto_pub -h 127.0.0.1 -p "$PORT")

# sub_start NAME FORMAT ARGS... : start mosquitto_sub in the background with
# debug output (so that we can see its SUBACK) and message lines `MSG|FORMAT`;
# return once it has subscribed (non-zero if it did not within 5 s).
sub_start() {
  local name=$1 fmt=$2
  shift 2
  # stdbuf: line-buffer stdout so that the SUBACK line shows up while it runs.
  stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$PORT" -F "MSG|$fmt" "$@" >"$TMP/$name.out" 2>&1 </dev/null &
  SUB_PID[$name]=$!
  HELPERS+=("$!")
  local _i
  for _i in $(seq 1 50); do
    grep -q '^Subscribed (mid' "$TMP/$name.out" && return 0
    kill -0 "${SUB_PID[$name]}" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# sub_wait NAME : wait for the subscriber to exit; its exit code goes to SUB_RC.
sub_wait() {
  SUB_RC=0
  wait "${SUB_PID[$1]}" || SUB_RC=$?
}
# sub_msgs NAME : the message lines the subscriber printed, without the MSG| prefix.
sub_msgs() { grep '^MSG|' "$TMP/$1.out" | sed 's/^MSG|//' || true; }
# sub_run NAME FORMAT ARGS... : run mosquitto_sub in the foreground (SUB_RC set).
sub_run() {
  local name=$1 fmt=$2
  shift 2
  SUB_RC=0
  mosquitto_sub -d -h 127.0.0.1 -p "$PORT" -F "MSG|$fmt" "$@" >"$TMP/$name.out" 2>&1 </dev/null || SUB_RC=$?
}
oneline() { tr '\n' ' ' <<<"$1" | sed 's/ $//'; }
# expect_msgs CHECK NAME EXPECTED : compare received lines to EXPECTED (newline-separated).
expect_msgs() {
  local check=$1 name=$2 expected=$3 got
  got=$(sub_msgs "$name")
  if [[ $got == "$expected" && $SUB_RC -eq 0 ]]; then
    pass "$check"
  else
    fail "$check" "expected [$(oneline "$expected")], got [$(oneline "$got")] (mosquitto_sub exit $SUB_RC)"
  fi
}
# expect_nothing CHECK NAME : the subscriber timed out (exit 27) with no message.
expect_nothing() {
  local check=$1 name=$2 got
  got=$(sub_msgs "$name")
  if [[ -z $got && $SUB_RC -eq 27 ]]; then
    pass "$check"
  else
    fail "$check" "expected no message and a timeout (exit 27), got [$(oneline "$got")] (mosquitto_sub exit $SUB_RC)"
  fi
}
# pub CHECK ARGS... : run mosquitto_pub; a failure to publish fails CHECK.
pub() {
  local check=$1 rc=0
  shift
  "${PUB[@]}" "$@" >"$TMP/pub.out" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "$check" "mosquitto_pub $* exited $rc: $(oneline "$(cat "$TMP/pub.out")")"
    return 1
  fi
}

echo "== mosquitto clients ($(mosquitto_sub --help 2>/dev/null | sed -n 's/^mosquitto_sub version \([^ ]*\).*/\1/p'))"
for V in mqttv311 mqttv5; do
  T=interop/mosq/$V

  # QoS 0/1/2: three messages at each QoS arrive in order at that QoS.
  for Q in 0 1 2; do
    check="mosq $V qos$Q in-order delivery"
    if ! sub_start "qos$Q-$V" '%q|%p' -V "$V" -t "$T/qos$Q" -q "$Q" -C 3 -W 10; then
      fail "$check" "subscriber did not get SUBACK"; continue
    fi
    ok=1
    for n in 1 2 3; do
      pub "$check" -V "$V" -t "$T/qos$Q" -q "$Q" -m "qos$Q message $n" || { ok=0; break; }
    done
    sub_wait "qos$Q-$V"
    [[ $ok -eq 1 ]] && expect_msgs "$check" "qos$Q-$V" "$Q|qos$Q message 1
$Q|qos$Q message 2
$Q|qos$Q message 3"
  done

  # QoS downgrade: a QoS 2 publish to a QoS 1 subscription arrives at QoS 1.
  check="mosq $V qos2 publish to qos1 subscription is delivered at qos1"
  if sub_start "down-$V" '%q|%p' -V "$V" -t "$T/down" -q 1 -C 1 -W 10; then
    pub "$check" -V "$V" -t "$T/down" -q 2 -m downgraded && { sub_wait "down-$V"; expect_msgs "$check" "down-$V" "1|downgraded"; }
  else
    fail "$check" "subscriber did not get SUBACK"
  fi

  # Wildcards: + and # match, a non-matching topic does not.
  check="mosq $V wildcard subscriptions"
  if sub_start "wild-$V" '%t|%p' -V "$V" -t "$T/wild/+/temp" -t "$T/wild/deep/#" -q 1 -C 3 -W 10; then
    pub "$check" -V "$V" -q 1 -t "$T/wild/a/other" -m no &&
      pub "$check" -V "$V" -q 1 -t "$T/wild/a/temp" -m one &&
      pub "$check" -V "$V" -q 1 -t "$T/wild/deep/x/y" -m two &&
      pub "$check" -V "$V" -q 1 -t "$T/wild/deep" -m three &&
      { sub_wait "wild-$V"; expect_msgs "$check" "wild-$V" "$T/wild/a/temp|one
$T/wild/deep/x/y|two
$T/wild/deep|three"; }
  else
    fail "$check" "subscriber did not get SUBACK"
  fi

  # Retained: set, a later subscriber gets it (with the retain flag); cleared,
  # a later subscriber gets nothing.
  check="mosq $V retained message delivered to a later subscriber"
  if pub "$check" -V "$V" -t "$T/retained" -q 1 -r -m "retained $V"; then
    sub_run "ret-$V" '%r|%p' -V "$V" -t "$T/retained" -q 1 -C 1 -W 5
    expect_msgs "$check" "ret-$V" "1|retained $V"
  fi
  check="mosq $V retained message cleared by an empty retained publish"
  if pub "$check" -V "$V" -t "$T/retained" -q 1 -r -n; then
    sub_run "ret-clear-$V" '%r|%p' -V "$V" -t "$T/retained" -q 1 -C 1 -W 2
    expect_nothing "$check" "ret-clear-$V"
  fi

  # Will: a client killed with SIGKILL has its will published; a client that
  # disconnects cleanly does not.
  check="mosq $V will published when the client is killed"
  if sub_start "will-watch-$V" '%p' -V "$V" -t "$T/will" -q 1 -C 1 -W 10; then
    if sub_start "will-victim-$V" '%p' -V "$V" -i "victim-$V" -t "$T/unused" -q 1 -W 30 -k 60 \
        --will-topic "$T/will" --will-payload "gone $V" --will-qos 1; then
      kill -KILL "${SUB_PID[will-victim-$V]}"
      wait "${SUB_PID[will-victim-$V]}" 2>/dev/null || true
      sub_wait "will-watch-$V"
      expect_msgs "$check" "will-watch-$V" "gone $V"
    else
      fail "$check" "will client did not get SUBACK"
    fi
  else
    fail "$check" "watcher did not get SUBACK"
  fi
  check="mosq $V will not published on a clean disconnect"
  if sub_start "will-quiet-$V" '%p' -V "$V" -t "$T/will-quiet" -q 1 -C 1 -W 2; then
    rc=0
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -V "$V" -t "$T/unused" -E \
      --will-topic "$T/will-quiet" --will-payload "should not be sent" >/dev/null 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
      fail "$check" "clean client exited $rc"
    else
      sub_wait "will-quiet-$V"
      expect_nothing "$check" "will-quiet-$V"
    fi
  else
    fail "$check" "watcher did not get SUBACK"
  fi

  # Persistent session: subscribe with -c, disconnect, publish QoS 1 while the
  # client is offline, reconnect with the same id and receive it.
  check="mosq $V persistent session receives messages queued while offline"
  rc=0
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -V "$V" -c -i "persist-$V" -q 1 -t "$T/persist" -E >/dev/null 2>"$TMP/persist.err" || rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "$check" "first session (subscribe, -E) exited $rc: $(oneline "$(cat "$TMP/persist.err")")"
  elif pub "$check" -V "$V" -t "$T/persist" -q 1 -m "queued 1 $V" && pub "$check" -V "$V" -t "$T/persist" -q 1 -m "queued 2 $V"; then
    sub_run "persist-$V" '%p' -V "$V" -c -i "persist-$V" -q 1 -t "$T/persist" -C 2 -W 5
    expect_msgs "$check" "persist-$V" "queued 1 $V
queued 2 $V"
  fi
done

# Cross-version: each protocol version's publisher reaches the other's subscriber.
for pair in "mqttv311 mqttv5" "mqttv5 mqttv311"; do
  read -r PV SV <<<"$pair"
  check="mosq $PV publisher to $SV subscriber"
  if sub_start "cross-$SV" '%p' -V "$SV" -t "interop/mosq/cross/$SV" -q 1 -C 1 -W 10; then
    pub "$check" -V "$PV" -t "interop/mosq/cross/$SV" -q 1 -m "from $PV" &&
      { sub_wait "cross-$SV"; expect_msgs "$check" "cross-$SV" "from $PV"; }
  else
    fail "$check" "subscriber did not get SUBACK"
  fi
done

# MQTT 5 only.
T=interop/mosq/mqttv5
check="mosq mqttv5 user property forwarded"
if sub_start "userprop" '%P|%p' -V mqttv5 -t "$T/userprop" -q 1 -C 1 -W 10; then
  pub "$check" -V mqttv5 -t "$T/userprop" -q 1 -m with-props -D publish user-property colour blue &&
    { sub_wait "userprop"; expect_msgs "$check" "userprop" "colour:blue|with-props"; }
else
  fail "$check" "subscriber did not get SUBACK"
fi
check="mosq mqttv5 retained message expires after its message-expiry-interval"
if pub "$check" -V mqttv5 -t "$T/expiring" -q 1 -r -m short-lived -D publish message-expiry-interval 1; then
  sleep 2.2
  sub_run "expiry" '%p' -V mqttv5 -t "$T/expiring" -q 1 -C 1 -W 2
  expect_nothing "$check" "expiry"
fi

# TLS: a publisher over TLS (server certificate checked against our CA)
# reaches a subscriber over plain TCP, at both protocol versions; plain MQTT
# on the TLS port is refused.
for V in mqttv311 mqttv5; do
  check="mosq $V publish over TLS"
  if sub_start "tls-$V" '%p' -V "$V" -t "interop/mosq/tls/$V" -q 1 -C 1 -W 10; then
    rc=0
    mosquitto_pub -h 127.0.0.1 -p "$TLS_PORT" --cafile "$TLS/ca.crt" -V "$V" -t "interop/mosq/tls/$V" -q 1 \
      -m "over tls $V" >"$TMP/tls-pub.out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
      fail "$check" "mosquitto_pub over TLS exited $rc: $(oneline "$(cat "$TMP/tls-pub.out")")"
    else
      sub_wait "tls-$V"
      expect_msgs "$check" "tls-$V" "over tls $V"
    fi
  else
    fail "$check" "subscriber did not get SUBACK"
  fi
done
check="mosq plain MQTT on the TLS port is refused"
if timeout 15 mosquitto_pub -h 127.0.0.1 -p "$TLS_PORT" -t interop/mosq/tls/plain -m x >/dev/null 2>&1; then
  fail "$check" "mosquitto_pub without TLS succeeded on the TLS port"
else
  pass "$check"
fi

if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  fail "broker alive after mosquitto checks" "broker process $BROKER_PID exited"
fi

echo "== paho-mqtt"
rc=0
python3 "$HERE/interop_paho.py" --port "$PORT" --ws-port "$WS_PORT" | tee "$TMP/paho.out" || rc=$?   # pipefail: python's status
p_pass=$(grep -c '^PASS ' "$TMP/paho.out" || true)
p_fail=$(grep -c '^FAIL ' "$TMP/paho.out" || true)
PASSED=$((PASSED + p_pass))
FAILED=$((FAILED + p_fail))
while IFS= read -r line; do FAILURES+=("${line#FAIL }"); done < <(grep '^FAIL ' "$TMP/paho.out" || true)
if [[ $rc -ne 0 && $p_fail -eq 0 ]]; then
  fail "paho script" "interop_paho.py exited $rc without reporting a failed check"
fi

# Graceful stop: SIGTERM ends the broker with exit code 0 within 10 s.
check="promtool check metrics accepts the live /metrics"
admin=$(sed -n 's/.*listening for admin HTTP addr=\([0-9.:]*\).*/\1/p' "$BROKER_LOG" | head -1)
if ! command -v promtool >/dev/null 2>&1; then
  fail "$check" "promtool not installed (Debian package prometheus)"
elif [[ -z "$admin" ]]; then
  fail "$check" "no admin address in the broker log"
elif ! python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://$admin/metrics', timeout=5).read().decode())" >"$TMP/metrics.txt" 2>"$TMP/metrics.err"; then
  fail "$check" "GET /metrics failed: $(cat "$TMP/metrics.err")"
elif ! promtool check metrics <"$TMP/metrics.txt" >"$TMP/promtool.out" 2>&1; then
  fail "$check" "$(head -5 "$TMP/promtool.out")"
elif ! grep -q '^starling_messages_received_total{qos="1"}' "$TMP/metrics.txt"; then
  fail "$check" "no starling_messages_received_total{qos=\"1\"} after the QoS 1 checks"
else
  pass "$check"
fi

check="broker exits cleanly on SIGTERM"
if ! kill -0 "$BROKER_PID" 2>/dev/null; then
  fail "$check" "broker process $BROKER_PID had already exited"
else
  kill -TERM "$BROKER_PID"
  stopped=0
  for _ in $(seq 1 100); do
    kill -0 "$BROKER_PID" 2>/dev/null || { stopped=1; break; }
    sleep 0.1
  done
  if [[ $stopped -eq 1 ]]; then
    rc=0
    wait "$BROKER_PID" || rc=$?
    BROKER_PID=""
    if [[ $rc -eq 0 ]]; then
      pass "$check"
    else
      fail "$check" "broker exited with code $rc"
    fi
  else
    fail "$check" "broker still running 10 s after SIGTERM"
  fi
fi

echo "== interop finished in $(( $(date +%s) - START )) s"
if [[ $FAILED -gt 0 ]]; then
  echo "failed checks:"
  printf '  %s\n' "${FAILURES[@]}"
fi
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
