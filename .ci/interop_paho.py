#!/usr/bin/env python3
"""Interop checks for Starling with Eclipse paho-mqtt 2.x (MQTT 3.1.1 and 5.0).

usage: python3 .ci/interop_paho.py --port PORT [--ws-port PORT] [--host 127.0.0.1] [--only SUBSTRING]

With --ws-port, the WebSocket checks also run (paho `transport="websockets"`,
path /mqtt, against a listener with `websocket = true`).

Each check prints `PASS name` or `FAIL name: reason`; the last line is
`N passed, M failed`, and the exit code is 1 when M > 0 (2 when paho-mqtt is
missing).  Every wait is bounded (at most 10 s), so the script never hangs.
"""

import argparse
import queue
import socket
import sys
import threading
import time
import traceback
import uuid

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError as err:
    print(
        "interop_paho: paho-mqtt 2.x is not installed ({}); "
        "install it with: python3 -m pip install 'paho-mqtt>=2,<3'".format(err),
        file=sys.stderr,
    )
    sys.exit(2)

HOST = "127.0.0.1"
PORT = 1883
WS_PORT = None  # a `websocket = true` listener; None skips the WebSocket checks
TIMEOUT = 10.0  # the longest any single wait may take
QUIET = 1.5  # how long to listen when expecting that nothing arrives
RUN = uuid.uuid4().hex[:8]  # keeps topics and client ids of separate runs apart

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
VERSIONS = [("v311", V311), ("v5", V5)]


class CheckFailed(Exception):
    pass


def ensure(cond, reason):
    if not cond:
        raise CheckFailed(reason)


def props(packet_type, **values):
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


def rc_value(reason_code):
    """A paho ReasonCode (v5) or a plain int (v3.1.1 CONNACK / SUBACK) as an int."""
    return getattr(reason_code, "value", reason_code)


class Client:
    """A paho client run on its own network thread, with everything it
    receives recorded for the check to wait on."""

    def __init__(self, version, client_id=None, clean_session=None, reconnect_on_failure=False, websocket=False):
        if client_id is None:
            client_id = "paho-{}-{}".format(RUN, uuid.uuid4().hex[:8])
        kwargs = {}
        if version == V311 and clean_session is not None:
            kwargs["clean_session"] = clean_session
        self.version = version
        self.websocket = websocket
        if websocket:
            kwargs["transport"] = "websockets"
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            reconnect_on_failure=reconnect_on_failure,
            **kwargs,
        )
        if websocket:
            self.c.ws_set_options(path="/mqtt")
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None  # (flags, reason_code, properties)
        self.subacks = {}  # mid -> (reason codes, properties)
        self.suback_event = threading.Condition()
        self.running = False
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        ALL_CLIENTS.append(self)

    # callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (flags, reason_code, properties)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.suback_event:
            self.subacks[mid] = (reason_codes, properties)
            self.suback_event.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self.suback_event:
            self.subacks[mid] = (reason_codes, properties)
            self.suback_event.notify_all()

    def will(self, topic, payload, qos=1, retain=False, properties=None):
        self.c.will_set(topic, payload, qos=qos, retain=retain, properties=properties)

    def connect(self, clean_start=True, properties=None, expect_success=True):
        """Connect and wait for CONNACK; return (flags, reason_code, properties)."""
        kwargs = {}
        if self.version == V5:
            kwargs["clean_start"] = clean_start
            kwargs["properties"] = properties
        self.connected.clear()
        self.disconnected.clear()
        self.c.connect(HOST, WS_PORT if self.websocket else PORT, keepalive=30, **kwargs)
        self.c.loop_start()
        self.running = True
        ensure(self.connected.wait(TIMEOUT), "no CONNACK within {:.0f} s".format(TIMEOUT))
        if expect_success:
            ensure(
                rc_value(self.connack[1]) == 0,
                "CONNACK refused: {}".format(self.connack[1]),
            )
        return self.connack

    def _wait_ack(self, mid, what):
        deadline = time.monotonic() + TIMEOUT
        with self.suback_event:
            while mid not in self.subacks:
                left = deadline - time.monotonic()
                ensure(left > 0, "no {} within {:.0f} s".format(what, TIMEOUT))
                self.suback_event.wait(left)
            return self.subacks.pop(mid)

    def subscribe(self, topic, qos=1, options=None, properties=None):
        """Subscribe and wait for SUBACK; fail unless the grant is the expected QoS."""
        if self.version == V5:
            opts = options if options is not None else SubscribeOptions(qos=qos)
            result, mid = self.c.subscribe(topic, options=opts, properties=properties)
            want = opts.QoS
        else:
            result, mid = self.c.subscribe(topic, qos)
            want = qos
        ensure(result == mqtt.MQTT_ERR_SUCCESS, "subscribe() returned {}".format(result))
        codes, _ = self._wait_ack(mid, "SUBACK")
        ensure(len(codes) == 1, "SUBACK has {} reason codes, expected 1".format(len(codes)))
        ensure(
            rc_value(codes[0]) == want,
            "SUBACK for {!r} granted {}, expected QoS {}".format(topic, codes[0], want),
        )

    def unsubscribe(self, topic):
        result, mid = self.c.unsubscribe(topic)
        ensure(result == mqtt.MQTT_ERR_SUCCESS, "unsubscribe() returned {}".format(result))
        self._wait_ack(mid, "UNSUBACK")

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publish and wait until paho considers it complete (PUBACK/PUBCOMP for QoS 1/2)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        ensure(info.rc == mqtt.MQTT_ERR_SUCCESS, "publish() returned {}".format(info.rc))
        deadline = time.monotonic() + TIMEOUT
        while not info.is_published():
            ensure(
                not self.disconnected.is_set(),
                "connection closed before the QoS {} publish to {!r} completed".format(qos, topic),
            )
            ensure(
                time.monotonic() < deadline,
                "QoS {} publish to {!r} not acknowledged within {:.0f} s".format(qos, topic, TIMEOUT),
            )
            info.wait_for_publish(timeout=0.1)

    def expect(self, n, timeout=TIMEOUT):
        """Wait for exactly n messages (fail on fewer within timeout)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise CheckFailed(
                    "received {} of {} messages within {:.0f} s: {}".format(
                        len(got), n, timeout, [m.payload for m in got]
                    )
                )
        return got

    def drain(self, wait=QUIET):
        """Everything that arrives within `wait` seconds."""
        got = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                return got

    def expect_none(self, wait=QUIET, what="no message"):
        got = self.drain(wait)
        ensure(
            not got,
            "expected {}, got {}".format(what, [(m.topic, m.payload) for m in got]),
        )

    def disconnect(self, properties=None):
        """Clean DISCONNECT, then stop the network thread."""
        if not self.running:
            return
        if self.version == V5:
            self.c.disconnect(properties=properties)
        else:
            self.c.disconnect()
        self.disconnected.wait(TIMEOUT)
        self.c.loop_stop()
        self.running = False

    def kill(self):
        """Drop the TCP connection without sending DISCONNECT (as a crashed client would)."""
        if not self.running:
            return
        self.c.loop_stop()  # stops the thread without disconnecting
        self.running = False
        sock = self.c.socket()
        ensure(sock is not None, "client has no socket to close")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def close(self):
        try:
            if self.running:
                self.c.disconnect()
                self.disconnected.wait(2)
                self.c.loop_stop()
                self.running = False
        except Exception:
            pass


ALL_CLIENTS = []
CHECKS = []


def check(name):
    def register(fn):
        CHECKS.append((name, fn))
        return fn

    return register


def topic(*parts):
    return "interop/paho/{}/{}".format(RUN, "/".join(parts))


# ---------------------------------------------------------------- both versions


def qos_round_trip(vname, version, qos):
    t = topic(vname, "qos{}".format(qos))
    sub = Client(version)
    sub.connect()
    sub.subscribe(t, qos)
    pub = Client(version)
    pub.connect()
    payloads = [b"qos%d message %d" % (qos, i) for i in range(1, 4)]
    for p in payloads:
        pub.publish(t, p, qos=qos)
    got = sub.expect(3)
    ensure(
        [m.payload for m in got] == payloads,
        "expected {} in order, got {}".format(payloads, [m.payload for m in got]),
    )
    ensure(all(m.qos == qos for m in got), "delivered QoS {} expected {}".format([m.qos for m in got], qos))
    ensure(all(m.topic == t for m in got), "wrong topics {}".format([m.topic for m in got]))
    ensure(not any(m.retain for m in got), "retain flag set on a non-retained message")
    sub.expect_none(0.5, "no duplicates")


def large_payload(vname, version):
    t = topic(vname, "large")
    sub = Client(version)
    sub.connect()
    sub.subscribe(t, 1)
    pub = Client(version)
    pub.connect()
    payload = bytes((i * 7) % 256 for i in range(256 * 1024))
    pub.publish(t, payload, qos=1)
    (m,) = sub.expect(1)
    ensure(m.payload == payload, "payload of {} bytes differs from the {} sent".format(len(m.payload), len(payload)))


def retained(vname, version):
    t = topic(vname, "retained")
    live = Client(version)
    live.connect()
    live.subscribe(t, 1)
    pub = Client(version)
    pub.connect()
    pub.publish(t, b"retained " + vname.encode(), qos=1, retain=True)
    (m,) = live.expect(1)
    ensure(not m.retain, "retain flag set on delivery to an established subscription")
    later = Client(version)
    later.connect()
    later.subscribe(t, 1)
    (m,) = later.expect(1)
    ensure(m.payload == b"retained " + vname.encode(), "retained payload {!r}".format(m.payload))
    ensure(m.retain, "retain flag not set on a retained message sent on subscribe")
    # Clear it: an empty retained publish; a new subscriber gets nothing.
    pub.publish(t, b"", qos=1, retain=True)
    cleared = Client(version)
    cleared.connect()
    cleared.subscribe(t, 1)
    cleared.expect_none(what="no retained message after it was cleared")


def will_on_abrupt_close(vname, version):
    t = topic(vname, "will")
    watcher = Client(version)
    watcher.connect()
    watcher.subscribe(t, 1)
    victim = Client(version)
    victim.will(t, b"will of " + vname.encode(), qos=1)
    victim.connect()
    victim.kill()
    (m,) = watcher.expect(1)
    ensure(m.payload == b"will of " + vname.encode(), "will payload {!r}".format(m.payload))
    ensure(m.qos == 1, "will delivered at QoS {} expected 1".format(m.qos))


def no_will_on_disconnect(vname, version):
    t = topic(vname, "will-quiet")
    watcher = Client(version)
    watcher.connect()
    watcher.subscribe(t, 1)
    polite = Client(version)
    polite.will(t, b"must not be sent", qos=1)
    polite.connect()
    polite.disconnect()
    watcher.expect_none(what="no will after a normal DISCONNECT")


def persistent_session(vname, version):
    t = topic(vname, "persist")
    cid = "paho-persist-{}-{}".format(vname, RUN)
    v5_props = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    s = Client(version, client_id=cid, clean_session=False)
    flags, _, _ = s.connect(clean_start=True, properties=v5_props)
    if version == V311:
        ensure(not flags.session_present, "session present on the first connect of a fresh client id")
    s.subscribe(t, 1)
    s.disconnect()
    pub = Client(version)
    pub.connect()
    for i in (1, 2, 3):
        pub.publish(t, b"offline %d" % i, qos=1)
    s2 = Client(version, client_id=cid, clean_session=False)
    flags, _, _ = s2.connect(clean_start=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    ensure(flags.session_present, "CONNACK session present = 0 when resuming a persistent session")
    got = s2.expect(3)
    ensure(
        [m.payload for m in got] == [b"offline 1", b"offline 2", b"offline 3"],
        "queued messages {}".format([m.payload for m in got]),
    )
    ensure(all(m.qos == 1 for m in got), "queued messages delivered at QoS {}".format([m.qos for m in got]))
    s2.expect_none(0.5, "no duplicates")
    # The subscription is part of the session too: a live publish arrives.
    pub.publish(t, b"online", qos=1)
    (m,) = s2.expect(1)
    ensure(m.payload == b"online", "after resuming got {!r}".format(m.payload))


def clean_session_discards(vname, version):
    t = topic(vname, "clean")
    cid = "paho-clean-{}-{}".format(vname, RUN)
    s = Client(version, client_id=cid, clean_session=False)
    s.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    s.subscribe(t, 1)
    s.disconnect()
    pub = Client(version)
    pub.connect()
    pub.publish(t, b"for the old session", qos=1)
    s2 = Client(version, client_id=cid, clean_session=True)
    flags, _, _ = s2.connect(clean_start=True)
    ensure(not flags.session_present, "session present = 1 on a clean session/clean start connect")
    s2.expect_none(what="no message from the discarded session")


def unsubscribe_stops_delivery(vname, version):
    t = topic(vname, "unsub")
    sub = Client(version)
    sub.connect()
    sub.subscribe(t, 1)
    pub = Client(version)
    pub.connect()
    pub.publish(t, b"before", qos=1)
    (m,) = sub.expect(1)
    ensure(m.payload == b"before", "got {!r}".format(m.payload))
    sub.unsubscribe(t)
    pub.publish(t, b"after", qos=1)
    sub.expect_none(what="no message after UNSUBSCRIBE")


def takeover(vname, version):
    cid = "paho-takeover-{}-{}".format(vname, RUN)
    first = Client(version, client_id=cid)
    first.connect()
    second = Client(version, client_id=cid)
    second.connect()
    ensure(first.disconnected.wait(TIMEOUT), "first connection not closed when the same client id connected again")
    t = topic(vname, "takeover")
    second.subscribe(t, 1)
    second.publish(t, b"still alive", qos=1)
    (m,) = second.expect(1)
    ensure(m.payload == b"still alive", "got {!r}".format(m.payload))


for _vname, _version in VERSIONS:
    for _q in (0, 1, 2):
        check("paho {} qos{} round trip".format(_vname, _q))(
            lambda v=_vname, ver=_version, q=_q: qos_round_trip(v, ver, q)
        )
    for _name, _fn in [
        ("256 KiB payload", large_payload),
        ("retained message set, flagged and cleared", retained),
        ("will on abrupt close", will_on_abrupt_close),
        ("no will on normal disconnect", no_will_on_disconnect),
        ("persistent session queues messages while offline", persistent_session),
        ("clean session discards the old session", clean_session_discards),
        ("unsubscribe stops delivery", unsubscribe_stops_delivery),
        ("same client id takes over the connection", takeover),
    ]:
        check("paho {} {}".format(_vname, _name))(lambda v=_vname, ver=_version, f=_fn: f(v, ver))


@check("paho v311 empty client id with clean session accepted")
def v311_empty_client_id():
    c = Client(V311, client_id="", clean_session=True)
    c.connect()


# ---------------------------------------------------------------- MQTT 5 only


@check("paho v5 subscription identifier")
def v5_subscription_identifier():
    sub = Client(V5)
    sub.connect()
    sub.subscribe(topic("v5", "subid", "+"), 1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42))
    sub.subscribe(topic("v5", "subid-none"), 1)
    pub = Client(V5)
    pub.connect()
    pub.publish(topic("v5", "subid", "x"), b"with id", qos=1)
    (m,) = sub.expect(1)
    ids = getattr(m.properties, "SubscriptionIdentifier", None)
    ensure(ids == [42], "SubscriptionIdentifier {!r}, expected [42]".format(ids))
    pub.publish(topic("v5", "subid-none"), b"without id", qos=1)
    (m,) = sub.expect(1)
    ids = getattr(m.properties, "SubscriptionIdentifier", None)
    ensure(ids is None, "SubscriptionIdentifier {!r} on a subscription made without one".format(ids))


@check("paho v5 user properties forwarded in order")
def v5_user_properties():
    t = topic("v5", "userprop")
    sub = Client(V5)
    sub.connect()
    sub.subscribe(t, 1)
    pub = Client(V5)
    pub.connect()
    sent = [("site", "plant-1"), ("line", "4"), ("site", "plant-2")]
    pub.publish(t, b"props", qos=1, properties=props(PacketTypes.PUBLISH, UserProperty=sent))
    (m,) = sub.expect(1)
    got = getattr(m.properties, "UserProperty", None)
    ensure(got == sent, "UserProperty {!r}, expected {!r}".format(got, sent))


@check("paho v5 request/response and content properties forwarded")
def v5_publish_properties():
    t = topic("v5", "reqresp")
    sub = Client(V5)
    sub.connect()
    sub.subscribe(t, 1)
    pub = Client(V5)
    pub.connect()
    p = props(
        PacketTypes.PUBLISH,
        ResponseTopic=topic("v5", "reply"),
        CorrelationData=b"\x00\x01corr",
        ContentType="application/json",
        PayloadFormatIndicator=1,
    )
    pub.publish(t, b'{"ok": true}', qos=1, properties=p)
    (m,) = sub.expect(1)
    got = {k: getattr(m.properties, k, None) for k in ("ResponseTopic", "CorrelationData", "ContentType", "PayloadFormatIndicator")}
    want = {
        "ResponseTopic": topic("v5", "reply"),
        "CorrelationData": b"\x00\x01corr",
        "ContentType": "application/json",
        "PayloadFormatIndicator": 1,
    }
    ensure(got == want, "properties {!r}, expected {!r}".format(got, want))


@check("paho v5 message expiry interval forwarded")
def v5_message_expiry_forwarded():
    t = topic("v5", "expiry-live")
    sub = Client(V5)
    sub.connect()
    sub.subscribe(t, 1)
    pub = Client(V5)
    pub.connect()
    pub.publish(t, b"expires", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    (m,) = sub.expect(1)
    got = getattr(m.properties, "MessageExpiryInterval", None)
    ensure(got is not None and 0 < got <= 60, "MessageExpiryInterval {!r}, expected 1..60".format(got))


@check("paho v5 expired message not delivered to a returning session")
def v5_message_expiry_offline():
    t = topic("v5", "expiry-offline")
    cid = "paho-expiry-{}".format(RUN)
    s = Client(V5, client_id=cid)
    s.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    s.subscribe(t, 1)
    s.disconnect()
    pub = Client(V5)
    pub.connect()
    pub.publish(t, b"short-lived", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(t, b"long-lived", qos=1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=300))
    time.sleep(2.5)
    s2 = Client(V5, client_id=cid)
    flags, _, _ = s2.connect(clean_start=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    ensure(flags.session_present, "session not resumed")
    got = [m.payload for m in s2.drain(2.0)]
    ensure(got == [b"long-lived"], "received {}, expected only b'long-lived'".format(got))


@check("paho v5 session expiry 0 discards the session on disconnect")
def v5_session_expiry_zero():
    t = topic("v5", "sei0")
    cid = "paho-sei0-{}".format(RUN)
    s = Client(V5, client_id=cid)
    s.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    s.subscribe(t, 1)
    s.disconnect()
    pub = Client(V5)
    pub.connect()
    pub.publish(t, b"nobody home", qos=1)
    s2 = Client(V5, client_id=cid)
    flags, _, _ = s2.connect(clean_start=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    ensure(not flags.session_present, "session present after a session with expiry 0 ended")
    s2.expect_none(what="no message for an expired session")


@check("paho v5 no-local")
def v5_no_local():
    t = topic("v5", "nolocal")
    me = Client(V5)
    me.connect()
    me.subscribe(t, options=SubscribeOptions(qos=1, noLocal=True))
    other = Client(V5)
    other.connect()
    me.publish(t, b"from me", qos=1)
    other.publish(t, b"from other", qos=1)
    got = [m.payload for m in me.expect(1)] + [m.payload for m in me.drain(1.0)]
    ensure(got == [b"from other"], "received {}, expected only b'from other'".format(got))


@check("paho v5 retain-as-published and retain handling")
def v5_retain_options():
    t = topic("v5", "rap")
    rap = Client(V5)
    rap.connect()
    rap.subscribe(t, options=SubscribeOptions(qos=1, retainAsPublished=True))
    pub = Client(V5)
    pub.connect()
    pub.publish(t, b"kept", qos=1, retain=True)
    (m,) = rap.expect(1)
    ensure(m.retain, "retain flag cleared despite Retain As Published")
    never = Client(V5)
    never.connect()
    never.subscribe(t, options=SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))
    never.expect_none(1.0, "no retained message with Retain Handling 2")
    pub.publish(t, b"", qos=1, retain=True)


@check("paho v5 shared subscription delivers each message to one member")
def v5_shared_subscription():
    t = topic("v5", "shared")
    members = [Client(V5), Client(V5)]
    for m in members:
        m.connect()
        m.subscribe("$share/g{}/{}".format(RUN, t), 1)
    pub = Client(V5)
    pub.connect()
    sent = [b"job %d" % i for i in range(20)]
    for p in sent:
        pub.publish(t, p, qos=1)
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < len(sent) and time.monotonic() < deadline:
        for m in members:
            got.extend(x.payload for x in m.drain(0.1))
    for m in members:
        got.extend(x.payload for x in m.drain(0.5))
    dups = sorted({p for p in got if got.count(p) > 1})
    missing = sorted(set(sent) - set(got))
    ensure(not dups and not missing and len(got) == len(sent),
           "{} deliveries for {} messages; duplicated {}, missing {}".format(len(got), len(sent), dups, missing))


@check("paho v5 topic alias from the client")
def v5_topic_alias():
    t = topic("v5", "alias")
    sub = Client(V5)
    sub.connect()
    sub.subscribe(t, 1)
    pub = Client(V5)
    _, _, connack_props = pub.connect()
    maximum = getattr(connack_props, "TopicAliasMaximum", 0)
    ensure(maximum >= 1, "CONNACK Topic Alias Maximum is {} so a client may not use aliases".format(maximum))
    pub.publish(t, b"sets alias", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", b"uses alias", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    got = sub.expect(2)
    ensure(
        [(m.topic, m.payload) for m in got] == [(t, b"sets alias"), (t, b"uses alias")],
        "received {}".format([(m.topic, m.payload) for m in got]),
    )
    ensure(not pub.disconnected.is_set(), "publisher was disconnected")


@check("paho v5 assigned client identifier for an empty client id")
def v5_assigned_client_id():
    c = Client(V5, client_id="")
    _, _, p = c.connect(clean_start=True)
    assigned = getattr(p, "AssignedClientIdentifier", None)
    ensure(assigned, "CONNACK has no Assigned Client Identifier (properties: {})".format(p))
    other = Client(V5, client_id="")
    _, _, p2 = other.connect(clean_start=True)
    ensure(getattr(p2, "AssignedClientIdentifier", None) != assigned, "two clients were assigned the same id {!r}".format(assigned))


@check("paho v5 unknown authentication method refused with 0x8C")
def v5_bad_auth_method():
    c = Client(V5, reconnect_on_failure=False)
    _, reason, _ = c.connect(
        properties=props(PacketTypes.CONNECT, AuthenticationMethod="SCRAM-SHA-512-interop"),
        expect_success=False,
    )
    ensure(rc_value(reason) == 0x8C, "CONNACK reason {} ({}), expected 140 (Bad authentication method)".format(rc_value(reason), reason))
    ensure(c.disconnected.wait(TIMEOUT), "connection not closed after the refusing CONNACK")


@check("paho v5 will delay interval")
def v5_will_delay():
    t = topic("v5", "will-delay")
    watcher = Client(V5)
    watcher.connect()
    watcher.subscribe(t, 1)
    victim = Client(V5)
    victim.will(t, b"delayed will", qos=1, properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=2))
    victim.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=60))
    start = time.monotonic()
    victim.kill()
    (m,) = watcher.expect(1)
    waited = time.monotonic() - start
    ensure(m.payload == b"delayed will", "will payload {!r}".format(m.payload))
    ensure(waited >= 1.5, "will sent after {:.1f} s, expected after the 2 s will delay".format(waited))


# ---------------------------------------------------------------- WebSocket


def websocket_round_trip(vname, version):
    """A WebSocket subscriber gets a TCP publisher's messages and the reverse,
    including a payload larger than one small frame."""
    t = topic(vname, "ws")
    ws_sub = Client(version, websocket=True)
    ws_sub.connect()
    ws_sub.subscribe(t + "/to-ws", 1)
    tcp_sub = Client(version)
    tcp_sub.connect()
    tcp_sub.subscribe(t + "/to-tcp", 1)
    tcp_pub = Client(version)
    tcp_pub.connect()
    ws_pub = Client(version, websocket=True)
    ws_pub.connect()
    big = bytes(range(256)) * 256  # 64 KiB
    tcp_pub.publish(t + "/to-ws", b"hello over ws", qos=1)
    tcp_pub.publish(t + "/to-ws", big, qos=1)
    ws_pub.publish(t + "/to-tcp", b"hello from ws", qos=1)
    got = [m.payload for m in ws_sub.expect(2)]
    ensure(got == [b"hello over ws", big], "WebSocket subscriber got {} messages, wrong payloads".format(len(got)))
    got = [m.payload for m in tcp_sub.expect(1)]
    ensure(got == [b"hello from ws"], "TCP subscriber got {}".format(got))


for _vname, _version in VERSIONS:
    check("websocket {} publish round trip".format(_vname))(
        lambda vname=_vname, version=_version: websocket_round_trip(vname, version)
    )


# ---------------------------------------------------------------- runner


def main():
    global HOST, PORT, WS_PORT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default=HOST)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ws-port", type=int, default=None, help="a WebSocket listener (path /mqtt)")
    ap.add_argument("--only", default="", help="run only checks whose name contains this")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failed checks")
    args = ap.parse_args()
    HOST, PORT, WS_PORT = args.host, args.port, args.ws_port
    print("paho-mqtt {} against {}:{}".format(getattr(sys.modules.get("paho.mqtt"), "__version__", "?"), HOST, PORT), flush=True)

    passed = failed = 0
    for name, fn in CHECKS:
        if args.only and args.only not in name:
            continue
        if name.startswith("websocket") and WS_PORT is None:
            continue
        del ALL_CLIENTS[:]
        try:
            fn()
        except CheckFailed as err:
            failed += 1
            print("FAIL {}: {}".format(name, err), flush=True)
        except Exception as err:  # a paho error or a bug here counts as a failure, not a crash
            failed += 1
            print("FAIL {}: {}: {}".format(name, type(err).__name__, err), flush=True)
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print("PASS {}".format(name), flush=True)
        finally:
            for c in ALL_CLIENTS:
                c.close()
    print("{} passed, {} failed".format(passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
