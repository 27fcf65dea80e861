//! Starling broker core: MQTT 3.1.1 and 5.0 on one node, built so the
//! replicated cluster plugs in under it without touching protocol code.
//!
//! ```text
//!  TCP ──► server (accept, limits) ──► protocol::connection (one task per client)
//!                                         │  codec packets ⇄ domain types (only here)
//!                                         ▼
//!                                     broker::Broker ── router (live index, fan-out)
//!                                         │                 └─► other connections' bounded queues
//!                                         ▼
//!                                  replication::Replicator ──► state::State::apply (deterministic)
//!                                  (through the Raft log: clustering.rs + cluster crate)
//! ```
//!
//! Durable shared state — persistent sessions, their subscriptions and queued
//! QoS≥1 messages, retained messages, session ownership — changes only through
//! [`state::Command`]s applied by one deterministic function. Clean sessions
//! and live delivery stay outside the log.
//!
//! Depends on `starling-codec`, `starling-cluster` and `starling-auth` (later
//! `plugins`); never the other way round. Only `protocol*` sees codec types;
//! only `clustering.rs` names the cluster crate's types.

pub mod authn;
pub mod cli;
pub mod config;
pub mod message;
pub mod retained;
pub mod security;
pub mod server;
pub mod state;
pub mod subscriptions;
pub mod topic;
mod watch;

mod access;
mod admin;
mod broker;
mod clustering;
mod error;
mod metrics;
mod peers;
mod policy_source;
mod protocol;
mod registry;
mod replication;
pub mod transport;

mod router;
mod sys;
pub mod telemetry;

pub use error::{ConfigError, StartError};
