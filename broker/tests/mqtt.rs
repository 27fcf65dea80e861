//! Integration tests: the real `starling` binary, real MQTT clients
//! (rumqttc 3.1.1 and 5.0) and raw bytes for malformed input.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "mqtt/clients.rs"]
mod clients;
#[path = "mqtt/harness.rs"]
mod harness;
#[path = "mqtt/pubsub.rs"]
mod pubsub;
