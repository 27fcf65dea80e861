//! Access control at the broker: this node's copy of the policy in force,
//! authentication at CONNECT, and the per-connection context every decision
//! is made with.
//!
//! The policy in force comes only from the replicated log
//! ([`crate::state::Command::SetPolicy`]): [`Access::install`] is called by
//! the apply path, so every node switches at the same log index (G5). Until
//! the log sets one, the empty policy denies everything.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use starling_auth::{
    Action, AuthFailure, CertInfo, Credentials, Decision, Policy, Principal, Request,
};
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::message::ClientId;
use crate::security::{SecurityEvents, Who};
use crate::state::{ActivePolicy, SessionIdentity};

/// Decision counters for telemetry (low cardinality: action × rule id).
#[derive(Default)]
pub(crate) struct AccessStats {
    /// Authentication failures by reason label.
    pub auth_failures: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Denials by action and deciding rule.
    pub denials: Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
    /// Publishes dropped because the policy denied them (QoS 0 and 3.1.1).
    pub dropped_denied: AtomicU64,
    /// Deliveries withheld because the receiver may not receive the topic.
    pub receive_denied: AtomicU64,
    /// Policy files refused by validation.
    pub reload_rejected: AtomicU64,
    /// Policy changes applied from the log.
    pub reload_applied: AtomicU64,
}

/// The node's access control.
pub(crate) struct Access {
    policy: ArcSwap<Policy>,
    /// Notifies connections of a new policy so they re-check what they hold.
    seq: watch::Sender<u64>,
    /// Sequence number of the policy in force (0 = none yet).
    seq_now: AtomicU64,
    password_checks: Arc<Semaphore>,
    pub events: SecurityEvents,
    pub stats: AccessStats,
}

impl Access {
    pub fn new(config: &Config) -> Access {
        Access {
            policy: ArcSwap::from_pointee(Policy::empty()),
            seq: watch::Sender::new(0),
            seq_now: AtomicU64::new(0),
            password_checks: Arc::new(Semaphore::new(config.auth.max_concurrent_password_checks)),
            events: SecurityEvents::new(&config.security),
            stats: AccessStats::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Sequence number of the policy in force (0 before the first). One
    /// atomic load: the message path checks it for its decision memos.
    pub fn seq(&self) -> u64 {
        self.seq_now.load(Ordering::Acquire)
    }

    /// Notified whenever a new policy is installed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.seq.subscribe()
    }

    /// Makes `p` the policy in force on this node (from the apply path).
    pub fn install(&self, p: &ActivePolicy) {
        if p.seq <= self.seq() {
            return;
        }
        self.policy.store(p.policy.clone());
        self.seq_now.store(p.seq, Ordering::Release);
        self.seq.send_replace(p.seq);
        self.stats.reload_applied.fetch_add(1, Ordering::Relaxed);
        self.events
            .policy_applied(p.seq, p.policy.revision(), p.policy.hash());
    }

    /// Authenticates a CONNECT. Password checks run on a blocking thread,
    /// at most `auth.max_concurrent_password_checks` at once.
    pub async fn authenticate(
        &self,
        username: Option<String>,
        password: Option<bytes::Bytes>,
        cert: Option<CertInfo>,
    ) -> Result<Principal, AuthFailure> {
        let policy = self.policy();
        let needs_hash = password.is_some() || username.is_some();
        let _permit = if needs_hash {
            Some(
                self.password_checks
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| AuthFailure::Backend("shutting down".into()))?,
            )
        } else {
            None
        };
        let check = move || {
            policy.authenticate(&Credentials {
                username: username.as_deref(),
                password: password.as_deref(),
                cert: cert.as_ref(),
            })
        };
        if needs_hash {
            tokio::task::spawn_blocking(check)
                .await
                .unwrap_or_else(|e| Err(AuthFailure::Backend(e.to_string())))
        } else {
            check()
        }
    }

    /// Counts an authentication failure and writes its event.
    pub fn auth_failed(
        &self,
        f: &AuthFailure,
        source: IpAddr,
        listener: &str,
        client_id: &str,
        username: Option<&str>,
    ) {
        *self
            .stats
            .auth_failures
            .lock()
            .entry(f.label())
            .or_default() += 1;
        self.events
            .auth_failure(source, listener, client_id, username, f.label());
    }
}

/// Who a connection is, as the policy sees it.
#[derive(Debug)]
pub(crate) struct ClientAuth {
    pub principal: Principal,
    pub client_id: ClientId,
    pub source: IpAddr,
    pub listener: Arc<str>,
    pub tls: bool,
}

impl ClientAuth {
    /// This client as plugin hooks see it.
    pub fn plugin_client(&self) -> starling_plugins::Client<'_> {
        starling_plugins::Client {
            client_id: self.client_id.as_str(),
            username: self.principal.username.as_deref(),
            remote: self.source,
            listener: &self.listener,
        }
    }

    /// Asks `policy` about `action` on `topic`.
    pub fn decide<'p>(
        &self,
        policy: &'p Policy,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> Decision<'p> {
        policy.decide(&Request {
            principal: &self.principal,
            client_id: self.client_id.as_str(),
            action,
            topic,
            qos,
            retain,
            source: self.source,
            listener: &self.listener,
            tls: self.tls,
        })
    }

    /// Like [`ClientAuth::decide`]; a denial is counted and written as a
    /// security event.
    pub fn check(
        &self,
        access: &Access,
        policy: &Policy,
        action: Action,
        topic: &str,
        qos: u8,
        retain: bool,
    ) -> bool {
        let d = self.decide(policy, action, topic, qos, retain);
        if !d.allowed {
            self.denied(access, action, topic, &d.rule.to_string());
        }
        d.allowed
    }

    /// Counts and reports a denial.
    pub fn denied(&self, access: &Access, action: Action, topic: &str, rule: &str) {
        *access
            .stats
            .denials
            .lock()
            .entry((action.as_str(), rule.to_owned()))
            .or_default() += 1;
        access
            .events
            .acl_denied(&self.who(), action.as_str(), topic, rule);
    }

    /// The parties of a security event about this client.
    pub fn who(&self) -> Who<'_> {
        Who {
            identity: &self.principal.name,
            class: &self.principal.class,
            client_id: self.client_id.as_str(),
            source: self.source,
            listener: &self.listener,
        }
    }

    /// What the replicated session keeps of this identity.
    pub fn session_identity(&self) -> SessionIdentity {
        SessionIdentity {
            name: self.principal.name.clone(),
            anonymous: self.principal.anonymous,
            cert_cn: self.principal.cert_cn.clone(),
            username: self.principal.username.clone(),
            source: self.source,
            listener: self.listener.clone(),
            tls: self.tls,
        }
    }
}
