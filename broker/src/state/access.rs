//! The replicated side of access control: the active policy and the
//! identities of persistent sessions.
//!
//! A policy change is a [`Command::SetPolicy`](super::Command::SetPolicy) in
//! the log: every replica parses the same text at the same index, so every
//! node reports the same policy sequence number and hash (G5), and stored
//! subscriptions of persistent sessions that the new policy no longer
//! allows are removed deterministically, whether their client is online or
//! not.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use starling_auth::{Action, Policy, Principal, Request};

use crate::message::ClientId;
use crate::topic::Subscription;

/// Who holds a persistent session, as the policy saw it at CONNECT: what a
/// later policy needs to re-check the session's stored subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIdentity {
    /// Identity name in the policy (`anonymous` for anonymous clients).
    pub name: Arc<str>,
    /// Whether the client connected anonymously.
    pub anonymous: bool,
    /// Client certificate CN, when the identity came from a certificate.
    pub cert_cn: Option<Arc<str>>,
    /// Username, when the identity logged in with one.
    pub username: Option<Arc<str>>,
    /// Source address (after PROXY protocol).
    pub source: IpAddr,
    /// Listener name.
    pub listener: Arc<str>,
    /// Whether the connection used TLS.
    pub tls: bool,
}

impl SessionIdentity {
    /// The principal this identity maps to under `policy`, if it still
    /// exists there.
    pub fn principal(&self, policy: &Policy) -> Option<Principal> {
        let name = if self.anonymous {
            "anonymous"
        } else {
            &self.name
        };
        policy.principal(name, self.cert_cn.as_deref(), self.username.as_deref())
    }
}

/// The policy in force, as the log defines it.
#[derive(Debug, Clone)]
pub struct ActivePolicy {
    /// How many policy changes the log has applied (the policy "version"
    /// every node reports).
    pub seq: u64,
    /// The policy file text.
    pub text: Arc<str>,
    /// The compiled policy.
    pub policy: Arc<Policy>,
}

impl PartialEq for ActivePolicy {
    fn eq(&self, other: &ActivePolicy) -> bool {
        self.seq == other.seq && Arc::ptr_eq(&self.policy, &other.policy)
    }
}

impl Eq for ActivePolicy {}

/// Whether `policy` lets `who` keep subscription `sub` of `client`.
pub(crate) fn may_subscribe(
    policy: &Policy,
    principal: &Principal,
    who: &SessionIdentity,
    client: &ClientId,
    sub: &Subscription,
    qos: u8,
) -> bool {
    let filter = sub.to_filter_string();
    policy
        .decide(&Request {
            principal,
            client_id: client.as_str(),
            action: Action::Subscribe,
            topic: &filter,
            qos,
            retain: false,
            source: who.source,
            listener: &who.listener,
            tls: who.tls,
        })
        .allowed
}
