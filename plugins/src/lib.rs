//! Starling's plugin hook API.
//!
//! A plugin implements [`Plugin`]: a few named hooks, each with a no-op
//! default, called by the broker at fixed points of a client's life (after
//! the policy allowed the action, never instead of it). A hook sees plain
//! borrowed values ([`Client`], [`Publish`]) — no broker types, no MQTT
//! packets — and answers [`Verdict::Continue`] or [`Verdict::Reject`]; the
//! broker turns a rejection into the protocol's answer (a reason code where
//! MQTT 5 has one, a drop where it has none) and counts it per plugin.
//! Plugins cannot route, rewrite or deliver messages: core routing stays the
//! broker's.
//!
//! The built-in plugins are configured in the broker's TOML file as
//! `[[plugins]]` tables ([`PluginConfig`]) and built into a [`PluginChain`]
//! by [`PluginChain::build`], which checks every setting first.

mod builtin;
mod chain;
mod config;
mod filter;

pub use chain::{PluginChain, Rejected};
pub use config::{ConfigError, PluginConfig};

/// The client a hook is about.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// MQTT client identifier.
    pub client_id: &'a str,
    /// User name from CONNECT, if any.
    pub username: Option<&'a str>,
    /// Source address (after PROXY protocol, where trusted).
    pub remote: std::net::IpAddr,
    /// Name of the listener it connected through.
    pub listener: &'a str,
}

/// A message a client published, before it is routed.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    /// Topic name (after topic-alias resolution).
    pub topic: &'a str,
    /// Application payload.
    pub payload: &'a [u8],
    /// QoS (0, 1 or 2).
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
}

/// What a hook decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on (the next plugin, then the broker).
    Continue,
    /// Refuse the action.
    Reject(Rejection),
}

/// Why a hook refused, in terms the broker maps to MQTT reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The payload is not what this topic accepts (v5: 0x99).
    PayloadInvalid,
    /// The payload is larger than this topic accepts (v5: 0x95 on CONNACK,
    /// 0x97 on acknowledgements, which have no "too large").
    TooLarge,
    /// A quota of the plugin is exhausted (v5: 0x97).
    Quota,
    /// Not allowed by the plugin (v5: 0x87).
    NotAuthorized,
}

/// A plugin: named hooks with no-op defaults. Implementations must be cheap
/// and must not block: hooks run on the connection's task, on the
/// per-message path.
pub trait Plugin: Send + Sync + 'static {
    /// Name in logs and metrics (low cardinality: one per plugin instance).
    fn name(&self) -> &str;

    /// A client was authenticated and the policy allowed it to connect.
    fn on_connect(&self, _client: &Client<'_>) -> Verdict {
        Verdict::Continue
    }

    /// A client published, and the policy allowed it.
    fn on_publish(&self, _client: &Client<'_>, _msg: &Publish<'_>) -> Verdict {
        Verdict::Continue
    }

    /// A client subscribes to `filter`, and the policy allowed it.
    fn on_subscribe(&self, _client: &Client<'_>, _filter: &str) -> Verdict {
        Verdict::Continue
    }

    /// A client's connection ended (for whatever reason).
    fn on_disconnect(&self, _client: &Client<'_>) {}
}

/// A loopback client for the crate's unit tests.
#[cfg(test)]
pub(crate) fn test_client() -> Client<'static> {
    Client {
        client_id: "c",
        username: None,
        remote: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        listener: "mqtt",
    }
}
