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

#[path = "mqtt/access.rs"]
mod access;
#[path = "mqtt/admin.rs"]
mod admin;
#[path = "mqtt/clients.rs"]
mod clients;
#[path = "mqtt/harness.rs"]
mod harness;
#[path = "mqtt/keepalive.rs"]
mod keepalive;
#[path = "mqtt/limits.rs"]
mod limits;
#[path = "mqtt/malformed.rs"]
mod malformed;
#[path = "mqtt/metrics.rs"]
mod metrics;
#[path = "mqtt/operations.rs"]
mod operations;
#[path = "mqtt/plugins.rs"]
mod plugins;
#[path = "mqtt/policy_cli.rs"]
mod policy_cli;
#[path = "mqtt/pubsub.rs"]
mod pubsub;
#[path = "mqtt/qos2.rs"]
mod qos2;
#[path = "mqtt/retained.rs"]
mod retained;
#[path = "mqtt/session.rs"]
mod session;
#[path = "mqtt/shared.rs"]
mod shared;
#[path = "mqtt/shutdown.rs"]
mod shutdown;
#[path = "mqtt/subscribe.rs"]
mod subscribe;
#[path = "mqtt/sys.rs"]
mod sys;
#[path = "mqtt/takeover.rs"]
mod takeover;
#[path = "mqtt/transport.rs"]
mod transport;
#[path = "mqtt/v5.rs"]
mod v5;
#[path = "mqtt/will.rs"]
mod will;
