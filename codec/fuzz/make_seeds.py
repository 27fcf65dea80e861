#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/seeds/<target>/ (small valid and
malformed frames). Run from anywhere: python3 codec/fuzz/make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def s(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">H", len(b)) + b


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def frame(b1, body):
    return bytes([b1]) + varint(len(body)) + body


def props(p):
    return varint(len(p)) + p


V311 = {
    "connect_will_login": frame(0x10, s("MQTT") + bytes([4, 0b11101110, 0, 60]) + s("client-1")
                                + s("will/t") + s(b"bye") + s("user") + s(b"pass")),
    "connect_min": frame(0x10, s("MQTT") + bytes([4, 2, 0, 0]) + s("")),
    "publish_qos0": frame(0x30, s("a/b") + b"hello"),
    "publish_qos1_dup": frame(0x3B, s("a/b") + b"\x00\x07" + b"payload"),
    "subscribe": frame(0x82, b"\x00\x01" + s("a/+") + b"\x01" + s("#") + b"\x02"),
    "unsubscribe": frame(0xA2, b"\x00\x02" + s("a/+")),
    "acks_ping_disconnect": frame(0x40, b"\x00\x01") + frame(0x62, b"\x00\x02")
    + bytes([0xC0, 0]) + bytes([0xE0, 0]),
    "bad_varint5": bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    "bad_publish_qos3": frame(0x36, s("a") + b"\x00\x01"),
    "bad_subscribe_no_options": frame(0x82, b"\x00\x01" + s("a/b")),
    "bad_surrogate_topic": frame(0x30, s(b"\xed\xa0\x80")),
}

V5 = {
    "connect_props": frame(0x10, s("MQTT") + bytes([5, 0b11000110, 0, 30])
                           + props(b"\x11\x00\x00\x00\x3c\x21\x00\x0a\x27\x00\x01\x00\x00"
                                   + b"\x26" + s("k") + s("v"))
                           + s("client-5")
                           + props(b"\x18\x00\x00\x00\x05\x01\x01") + s("will") + s(b"w")
                           + s("u") + s(b"p")),
    "publish_props": frame(0x32, s("a/b") + b"\x00\x09"
                           + props(b"\x02\x00\x00\x00\x10\x23\x00\x01\x09" + s(b"cd")
                                   + b"\x26" + s("k") + s("v"))
                           + b"payload"),
    "publish_alias_only": frame(0x30, s("") + props(b"\x23\x00\x01") + b"x"),
    "subscribe_subid": frame(0x82, b"\x00\x01" + props(b"\x0b\x80\x01") + s("a/#") + b"\x2e"),
    "unsubscribe": frame(0xA2, b"\x00\x03" + props(b"") + s("a/#")),
    "acks_short": frame(0x40, b"\x00\x01") + frame(0x50, b"\x00\x02\x10")
    + frame(0x62, b"\x00\x03\x00\x00"),
    "disconnect_short": bytes([0xE0, 0x00]) + bytes([0xE0, 0x01, 0x04]),
    "auth": frame(0xF0, b"\x18" + props(b"\x15" + s("SCRAM-SHA-1") + b"\x16" + s(b"abc"))),
    "bad_dup_property": frame(0x30, s("t") + props(b"\x01\x01\x01\x00")),
    "bad_alias_zero": frame(0x30, s("t") + props(b"\x23\x00\x00")),
    "bad_props_into_payload": frame(0x30, s("t") + b"\x02\x02\x00\x00\x00\x01"),
}


def write(target, seeds):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("decode_v311", V311)
write("decode_v5", V5)
rt = {"v311_" + k: b"\x00" + v for k, v in V311.items()}
rt.update({"v5_" + k: b"\x01" + v for k, v in V5.items()})
write("roundtrip", rt)
