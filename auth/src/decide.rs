//! The decision: candidate rules from the index, conditions, topic
//! relation, deny-wins. Shared by [`crate::Policy::decide`] (fast, cached)
//! and [`crate::Policy::explain`] (traced).
//!
//! ```text
//! Request ─► resolve principal ─► parse topic/filter ─► cache? ─► index:
//!   action × {*, identity|anonymous, class, roles…} × first level
//!   ─► each candidate: conditions ─► topic relation ─► min deny / min allow
//!   ─► deny (lowest deny id) | allow (lowest allow id) | default-deny
//! ```

use std::fmt;
use std::net::IpAddr;

use crate::identity::Principal;
use crate::index::{Index, for_candidates};
use crate::rule::{Action, Ctx, Effect, Miss, Rule, VarSet};
use crate::topic::{self, Values};

/// One authorization question.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who asks (from [`crate::Policy::authenticate`]).
    pub principal: &'a Principal,
    /// The MQTT client id (server-assigned id if the client sent none).
    pub client_id: &'a str,
    /// What is asked.
    pub action: Action,
    /// Topic name; for `subscribe` the filter as sent (`$share/g/f`
    /// accepted); ignored for `connect`.
    pub topic: &'a str,
    /// QoS of the publish/subscription/will.
    pub qos: u8,
    /// Retain flag of the publish/will.
    pub retain: bool,
    /// Peer address (IPv4-mapped IPv6 is treated as IPv4).
    pub source: IpAddr,
    /// Name of the listener the connection came in on.
    pub listener: &'a str,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// What decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef<'p> {
    /// A rule, by id.
    Rule(&'p str),
    /// No rule matched: default deny.
    DefaultDeny,
    /// The topic/filter is malformed (wildcard in a name, bad `$share`…).
    InvalidRequest,
    /// The principal's identity is not in this policy (removed by a reload).
    UnknownPrincipal,
}

impl fmt::Display for RuleRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Rule(id) => f.write_str(id),
            RuleRef::DefaultDeny => f.write_str("default-deny"),
            RuleRef::InvalidRequest => f.write_str("invalid-request"),
            RuleRef::UnknownPrincipal => f.write_str("unknown-principal"),
        }
    }
}

/// The answer: allowed or not, the rule that decided, and which variables
/// that rule substituted (their values are the request's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// Whether the action is permitted.
    pub allowed: bool,
    /// The deciding rule (or why there is none).
    pub rule: RuleRef<'p>,
    /// Variables used by the deciding rule.
    pub variables: VarSet,
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "allow" } else { "deny" };
        write!(f, "{verdict} ({})", self.rule)
    }
}

/// Compact, cacheable form of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub allowed: bool,
    /// Rule index, or one of the `NO_*` codes.
    pub rule: u32,
}

pub(crate) const NO_DEFAULT: u32 = u32::MAX;
pub(crate) const NO_INVALID: u32 = u32::MAX - 1;
pub(crate) const NO_PRINCIPAL: u32 = u32::MAX - 2;

/// The parsed topic side of a request.
pub(crate) enum Target<'a> {
    None,
    Name(&'a str),
    Filter(topic::ParsedFilter<'a>),
}

impl<'a> Target<'a> {
    pub(crate) fn parse(action: Action, t: &'a str) -> Option<Target<'a>> {
        match action {
            Action::Connect => Some(Target::None),
            Action::Subscribe => topic::parse_filter(t).map(Target::Filter),
            _ => topic::valid_topic_name(t).then_some(Target::Name(t)),
        }
    }

    pub(crate) fn share_group(&self) -> Option<&'a str> {
        match self {
            Target::Filter(f) => f.share_group,
            _ => None,
        }
    }
}

/// Evaluates one rule's topic relation.
pub(crate) fn topic_applies(r: &Rule, target: &Target<'_>, vals: &Values<'_>) -> bool {
    match target {
        Target::None => true,
        Target::Name(t) => r.topics.iter().any(|p| p.matches_topic(t, vals)),
        Target::Filter(f) => match r.effect {
            Effect::Allow => r.topics.iter().any(|p| p.covers_filter(&f.levels, vals)),
            Effect::Deny => r.topics.iter().any(|p| p.overlaps_filter(&f.levels, vals)),
        },
    }
}

/// A resolved principal: identity index, class and roles in this policy.
pub(crate) struct Resolved<'p> {
    pub idx: u32,
    pub class: u32,
    pub class_name: &'p str,
    pub roles: &'p [u32],
}

/// Full evaluation. `trace` receives every candidate's outcome.
pub(crate) fn evaluate(
    rules: &[Rule],
    index: &Index,
    who: &Resolved<'_>,
    target: &Target<'_>,
    cx: &Ctx<'_>,
    action: Action,
    mut trace: Option<&mut dyn FnMut(u32, Result<(), Miss>)>,
) -> Outcome {
    let mut min_deny = u32::MAX;
    let mut min_allow = u32::MAX;
    for_candidates(index, action, who, target, |i| {
        let Some(r) = rules.get(i as usize) else {
            return;
        };
        let already = if r.effect == Effect::Deny {
            min_deny
        } else {
            min_allow
        };
        // Without a trace, skip what cannot change the outcome: a later
        // rule of the same effect, or any allow once a deny matched.
        if trace.is_none() && (i >= already || (r.effect == Effect::Allow && min_deny != u32::MAX))
        {
            return;
        }
        let res = r.check_conditions(cx).and_then(|()| {
            if topic_applies(r, target, &cx.vals) {
                Ok(())
            } else {
                Err(Miss::Topic)
            }
        });
        if let Some(t) = trace.as_mut() {
            t(i, res);
        }
        if res.is_ok() {
            match r.effect {
                Effect::Deny => min_deny = min_deny.min(i),
                Effect::Allow => min_allow = min_allow.min(i),
            }
        }
    });
    if min_deny != u32::MAX {
        Outcome {
            allowed: false,
            rule: min_deny,
        }
    } else if min_allow != u32::MAX {
        Outcome {
            allowed: true,
            rule: min_allow,
        }
    } else {
        Outcome {
            allowed: false,
            rule: NO_DEFAULT,
        }
    }
}

/// Builds the evaluation context for a request.
pub(crate) fn context<'a>(
    req: &Request<'a>,
    class_name: &'a str,
    target: &Target<'a>,
    zone_hit: &'a dyn Fn(u32, IpAddr) -> bool,
) -> Ctx<'a> {
    let p = req.principal;
    Ctx {
        vals: Values::new(
            req.client_id,
            p.username.as_deref(),
            p.cert_cn.as_deref(),
            class_name,
        ),
        client_id: req.client_id,
        listener: req.listener,
        tls: req.tls,
        source: req.source.to_canonical(),
        qos: req.qos,
        retain: req.retain,
        share_group: target.share_group(),
        zone_hit,
    }
}
