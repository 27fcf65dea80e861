//! Multi-process cluster fault tests: real `starling` processes on their own
//! loopback block, peer links through fault-injecting proxies, and checks of
//! the design's guarantees (G1–G4, G6, G8) over recorded histories.
//!
//! Every randomised scenario prints its seed; replay one with
//! `STARLING_SEED=<seed> cargo test -p starling-broker --test cluster <name>`.
//! Failover timing: `cargo test -p starling-broker --test cluster failover_timing -- --ignored --nocapture`.
//! Soak (random faults under steady traffic, STARLING_SOAK_SECS, default 120):
//! `cargo test -p starling-broker --test cluster soak -- --ignored --nocapture`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

#[path = "cluster/basic.rs"]
mod basic;
#[path = "mqtt/clients.rs"]
mod clients;
#[path = "cluster/durability.rs"]
mod durability;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/history.rs"]
mod history;
#[path = "cluster/membership.rs"]
mod membership;
#[path = "cluster/partition.rs"]
mod partition;
#[path = "cluster/policy.rs"]
mod policy;
#[path = "cluster/proxy.rs"]
mod proxy;
#[path = "cluster/raw.rs"]
mod raw;
#[path = "cluster/soak.rs"]
mod soak;
#[path = "cluster/timing.rs"]
mod timing;
