//! Shared fuzz driver: decode every frame, re-encode each success and check
//! it decodes back to the same packet.

use bytes::BytesMut;
use starling_codec::{Limits, Packet, Protocol, decode, encode};

pub fn decode_all(data: &[u8], protocol: Protocol, limits: &Limits) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode(&mut buf, protocol, limits) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "Ok(Some) must consume bytes");
                check_round_trip(&packet, protocol, limits);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) must not consume bytes");
                return;
            }
            Err(_) => return,
        }
    }
}

fn check_round_trip(packet: &Packet, protocol: Protocol, limits: &Limits) {
    let protocol = match packet {
        Packet::Connect(c) => c.protocol,
        _ => protocol,
    };
    let mut out = BytesMut::new();
    encode(packet, protocol, None, &mut out).expect("decoded packet must re-encode");
    let again = decode(&mut out, protocol, limits)
        .expect("re-encoded packet must decode")
        .expect("re-encoded packet must be complete");
    assert_eq!(&again, packet, "round trip changed the packet");
    assert!(out.is_empty(), "re-encoded frame not fully consumed");
}
