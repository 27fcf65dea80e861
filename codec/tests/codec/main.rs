//! Integration tests for starling-codec: one test binary, modules under `codec/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    dead_code
)]

mod common;
mod decode_connect;
mod decode_malformed;
mod decode_packets;
mod differential;
mod encode;
mod framing;
mod roundtrip;
mod seeds;
