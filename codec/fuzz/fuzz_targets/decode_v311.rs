//! Feed arbitrary bytes to the V311 decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_codec::{Limits, Protocol};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // Small limits so the size/property/filter caps are exercised too.
    let limits = Limits {
        max_packet_size: 4096,
        max_properties: 16,
        max_filters: 8,
    };
    common::decode_all(data, Protocol::V311, &limits);
});
