//! The compiled, immutable [`Policy`] and its public operations.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

use crate::cache::{Cache, KeyRef};
use crate::decide::{
    self, Decision, NO_DEFAULT, NO_INVALID, NO_PRINCIPAL, Outcome, Request, Resolved, RuleRef,
    Target,
};
use crate::error::{AuthFailure, PolicyError, Warning};
use crate::identity::{ANON, Credentials, Identities, Principal};
use crate::index::Index;
use crate::rule::{Action, Rule, VarSet};

/// Default number of cached decisions per policy.
pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A `[[test]]` case from the policy file.
#[derive(Debug, Clone)]
pub(crate) struct TestCase {
    pub name: String,
    pub line: usize,
    pub identity: u32,
    pub action: Action,
    pub topic: String,
    pub client_id: String,
    pub username: Option<String>,
    pub cert_cn: Option<String>,
    pub qos: u8,
    pub retain: bool,
    pub listener: String,
    pub tls: bool,
    pub source: IpAddr,
    pub expect: bool,
    pub rule: Option<String>,
}

/// A compiled policy: immutable, `Send + Sync`, shared via `Arc`. A reload
/// builds a new one (and with it a new, empty decision cache).
#[derive(Debug)]
pub struct Policy {
    id: u64,
    version: u32,
    revision: String,
    hash: String,
    pub(crate) ids: Identities,
    pub(crate) zones: Vec<(std::sync::Arc<str>, Vec<IpNet>)>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) index: Index,
    pub(crate) tests: Vec<TestCase>,
    cache: Option<Cache>,
}

impl Policy {
    pub(crate) fn assemble(
        version: u32,
        revision: String,
        hash: String,
        ids: Identities,
        zones: Vec<(std::sync::Arc<str>, Vec<IpNet>)>,
        rules: Vec<Rule>,
        tests: Vec<TestCase>,
    ) -> Policy {
        let index = Index::build(&rules);
        Policy {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            version,
            revision,
            hash,
            ids,
            zones,
            rules,
            index,
            tests,
            cache: Some(Cache::new(DEFAULT_CACHE_ENTRIES)),
        }
    }

    /// Parses and validates a policy file. Errors (with line:column) refuse
    /// the whole file; warnings are returned beside the policy.
    pub fn parse(text: &str) -> Result<(Policy, Vec<Warning>), PolicyError> {
        crate::compile::compile(text)
    }

    /// The policy that denies everything (no identities, no rules).
    pub fn empty() -> Policy {
        Policy::assemble(
            1,
            String::new(),
            String::new(),
            Identities::default(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        )
    }

    /// Replaces the decision cache with one of `entries` decisions (0 =
    /// no cache).
    #[must_use]
    pub fn with_cache_capacity(mut self, entries: usize) -> Policy {
        self.cache = (entries > 0).then(|| Cache::new(entries));
        self
    }

    /// Format version of the file (`version`, currently 1).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The operators' `revision` field ("" if absent).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// SHA-256 (hex) of the policy file bytes ("" for [`Policy::empty`]).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Authenticates a client. Verifies argon2id passwords: CPU-heavy, call
    /// it on a blocking thread. Refusals map to CONNACK codes via
    /// [`AuthFailure::reason_code_v5`].
    pub fn authenticate(&self, creds: &Credentials<'_>) -> Result<Principal, AuthFailure> {
        self.ids.authenticate(self.id, creds)
    }

    /// Builds a principal for identity `name` (or `anonymous`) without
    /// checking credentials — for `starling policy explain` and tests.
    pub fn principal(
        &self,
        name: &str,
        cert_cn: Option<&str>,
        username: Option<&str>,
    ) -> Option<Principal> {
        let idx = if name == "anonymous" {
            ANON
        } else {
            *self.ids.by_name.get(name)?
        };
        self.ids.principal(self.id, idx, cert_cn, username)
    }

    /// Whether this policy still knows the principal's identity (after a
    /// reload the broker should disconnect clients for which this is false;
    /// their decisions are all denied anyway).
    pub fn knows(&self, p: &Principal) -> bool {
        self.resolve(p).is_some()
    }

    /// The first zone (in name order) containing `ip`: a low-cardinality
    /// label for connection telemetry.
    pub fn zone_of(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        self.zones
            .iter()
            .find(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
            .map(|(n, _)| &**n)
    }

    /// Whether `ip` is in the zone named `zone`; `None` if the policy has no
    /// such zone (telemetry configured against another policy).
    pub fn in_zone(&self, zone: &str, ip: IpAddr) -> Option<bool> {
        let ip = ip.to_canonical();
        self.zones
            .iter()
            .find(|(n, _)| &**n == zone)
            .map(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
    }

    pub(crate) fn zone_hit(&self, zone: u32, ip: IpAddr) -> bool {
        self.zones
            .get(zone as usize)
            .is_some_and(|(_, nets)| nets.iter().any(|n| n.contains(&ip)))
    }

    pub(crate) fn resolve(&self, p: &Principal) -> Option<Resolved<'_>> {
        let idx = if p.hint.0 == self.id {
            p.hint.1
        } else if p.anonymous {
            ANON
        } else {
            *self.ids.by_name.get(&*p.name)?
        };
        let (class, roles) = if idx == ANON {
            let a = self.ids.anonymous.as_ref()?;
            (a.class, &*a.roles)
        } else {
            let d = self.ids.defs.get(idx as usize)?;
            (d.class, &*d.roles)
        };
        let class_name = self.ids.class_names.get(class as usize)?;
        Some(Resolved {
            idx,
            class,
            class_name,
            roles,
        })
    }

    pub(crate) fn rule_ref(&self, code: u32) -> RuleRef<'_> {
        match code {
            NO_DEFAULT => RuleRef::DefaultDeny,
            NO_INVALID => RuleRef::InvalidRequest,
            NO_PRINCIPAL => RuleRef::UnknownPrincipal,
            i => self
                .rules
                .get(i as usize)
                .map_or(RuleRef::DefaultDeny, |r| RuleRef::Rule(&r.id)),
        }
    }

    fn to_decision(&self, o: Outcome) -> Decision<'_> {
        let variables = self
            .rules
            .get(o.rule as usize)
            .map_or(VarSet::default(), |r| r.vars);
        Decision {
            allowed: o.allowed,
            rule: self.rule_ref(o.rule),
            variables,
        }
    }

    /// Decides a request: deny wins over allow, nothing matching denies.
    /// Cheap (indexed, cached); never blocks on IO.
    pub fn decide(&self, req: &Request<'_>) -> Decision<'_> {
        let Some(who) = self.resolve(req.principal) else {
            return self.to_decision(Outcome {
                allowed: false,
                rule: NO_PRINCIPAL,
            });
        };
        let key = KeyRef {
            identity: who.idx,
            cert_cn: req.principal.cert_cn.as_deref(),
            username: req.principal.username.as_deref(),
            client_id: req.client_id,
            action: req.action,
            topic: if req.action == Action::Connect {
                ""
            } else {
                req.topic
            },
            qos: req.qos,
            retain: req.retain,
            listener: req.listener,
            tls: req.tls,
            source: req.source,
        };
        let cache = self
            .cache
            .as_ref()
            .filter(|_| req.action != Action::Connect);
        if let Some(o) = cache.and_then(|c| c.get(&key)) {
            return self.to_decision(o);
        }
        let o = self.outcome(req, &who, None);
        if let Some(c) = cache {
            c.put(&key, o);
        }
        self.to_decision(o)
    }

    pub(crate) fn outcome(
        &self,
        req: &Request<'_>,
        who: &Resolved<'_>,
        trace: Option<&mut dyn FnMut(u32, Result<(), crate::rule::Miss>)>,
    ) -> Outcome {
        let Some(target) = Target::parse(req.action, req.topic) else {
            return Outcome {
                allowed: false,
                rule: NO_INVALID,
            };
        };
        let zone_hit = |z: u32, ip: IpAddr| self.zone_hit(z, ip);
        let cx = decide::context(req, who.class_name, &target, &zone_hit);
        decide::evaluate(
            &self.rules,
            &self.index,
            who,
            &target,
            &cx,
            req.action,
            trace,
        )
    }

    /// Number of decisions currently cached (for metrics).
    pub fn cached_decisions(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn policy_is_shareable() {
        assert_send_sync::<Policy>();
    }

    #[test]
    fn empty_policy_denies_everything() {
        let p = Policy::empty();
        assert!(p.principal("anonymous", None, None).is_none());
        let creds = Credentials::default();
        assert_eq!(p.authenticate(&creds), Err(AuthFailure::AnonymousDisabled));
        assert_eq!(p.zone_of(IpAddr::from([10, 0, 0, 1])), None);
    }
}
