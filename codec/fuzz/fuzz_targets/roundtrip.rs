//! Decode with the protocol chosen by the first byte, byte-at-a-time
//! delivery: every prefix of a frame must be `Ok(None)` or the same error.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use starling_codec::{Limits, Protocol, decode};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let protocol = if sel & 1 == 0 {
        Protocol::V311
    } else {
        Protocol::V5
    };
    let limits = Limits::default();
    // Whole-buffer decode is the reference.
    let mut whole = BytesMut::from(data);
    let reference = decode(&mut whole, protocol, &limits);
    // Incremental delivery must agree with it.
    let mut buf = BytesMut::new();
    let mut result = Ok(None);
    for &b in data {
        buf.extend_from_slice(&[b]);
        result = decode(&mut buf, protocol, &limits);
        if !matches!(result, Ok(None)) {
            break;
        }
    }
    assert_eq!(result, reference, "incremental and whole decode disagree");
    common::decode_all(data, protocol, &limits);
});
