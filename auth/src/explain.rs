//! `starling policy explain`: why a request was allowed or denied.

use std::collections::BTreeMap;
use std::fmt;

use crate::decide::{NO_PRINCIPAL, Outcome, Request};
use crate::policy::Policy;
use crate::rule::{Effect, Miss};
use crate::topic::{Var, valid_level_value};

/// One candidate rule and whether it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    /// Rule id.
    pub id: String,
    /// Allow or deny.
    pub effect: Effect,
    /// Line of the rule in the policy file.
    pub line: usize,
    /// `None` = the rule matched; otherwise why it did not.
    pub miss: Option<Miss>,
}

/// A variable as it would be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarValue {
    /// Variable name (`client_id`, `username`, `cert_cn`, `class`).
    pub name: &'static str,
    /// The value, if the principal/request has one.
    pub value: Option<String>,
    /// Whether it is usable as one literal topic level (if not, rules
    /// using it do not apply).
    pub usable: bool,
}

/// The full account of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The verdict.
    pub allowed: bool,
    /// Deciding rule id, or `default-deny` / `invalid-request` /
    /// `unknown-principal`.
    pub decided_by: String,
    /// Principal name.
    pub principal: String,
    /// Action name.
    pub action: &'static str,
    /// Topic or filter as requested.
    pub topic: String,
    /// Substitution values.
    pub variables: Vec<VarValue>,
    /// Every candidate rule for this principal and action, in file order.
    pub rules: Vec<RuleTrace>,
    /// Policy revision and hash prefix.
    pub policy: String,
}

impl Policy {
    /// Explains a decision: the verdict, the deciding rule, every candidate
    /// rule with whether it matched (and why not), and the variable values.
    /// Bypasses the cache.
    pub fn explain(&self, req: &Request<'_>) -> Explanation {
        let p = req.principal;
        let mut traces: BTreeMap<u32, Option<Miss>> = BTreeMap::new();
        let (outcome, class) = match self.resolve(p) {
            Some(who) => {
                let mut f = |i: u32, r: Result<(), Miss>| {
                    traces.insert(i, r.err());
                };
                (
                    self.outcome(req, &who, Some(&mut f)),
                    Some(who.class_name.to_owned()),
                )
            }
            None => (
                Outcome {
                    allowed: false,
                    rule: NO_PRINCIPAL,
                },
                None,
            ),
        };
        let var = |v: Var, value: Option<&str>| VarValue {
            name: v.name(),
            value: value.map(str::to_owned),
            usable: value.is_some_and(valid_level_value),
        };
        Explanation {
            allowed: outcome.allowed,
            decided_by: self.rule_ref(outcome.rule).to_string(),
            principal: p.name.to_string(),
            action: req.action.as_str(),
            topic: req.topic.to_owned(),
            variables: vec![
                var(Var::ClientId, Some(req.client_id)),
                var(Var::Username, p.username.as_deref()),
                var(Var::CertCn, p.cert_cn.as_deref()),
                var(Var::Class, class.as_deref()),
            ],
            rules: traces
                .into_iter()
                .filter_map(|(i, miss)| {
                    let r = self.rules.get(i as usize)?;
                    Some(RuleTrace {
                        id: r.id.to_string(),
                        effect: r.effect,
                        line: r.line,
                        miss,
                    })
                })
                .collect(),
            policy: format!(
                "revision {:?}, sha256 {}",
                self.revision(),
                self.hash().get(..12).unwrap_or("-")
            ),
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed { "ALLOW" } else { "DENY" };
        writeln!(
            f,
            "{verdict} {} {:?} for {} — decided by {}",
            self.action, self.topic, self.principal, self.decided_by
        )?;
        writeln!(f, "policy: {}", self.policy)?;
        writeln!(f, "variables:")?;
        for v in &self.variables {
            match (&v.value, v.usable) {
                (None, _) => writeln!(f, "  ${{{}}} = (none)", v.name)?,
                (Some(x), true) => writeln!(f, "  ${{{}}} = {:?}", v.name, x)?,
                (Some(x), false) => writeln!(
                    f,
                    "  ${{{}}} = {:?} (unusable as a topic level: rules using it do not apply)",
                    v.name, x
                )?,
            }
        }
        if self.rules.is_empty() {
            writeln!(
                f,
                "no rule applies to this principal and action (default deny)"
            )?;
        } else {
            writeln!(f, "candidate rules:")?;
        }
        for r in &self.rules {
            let mark = if r.id == self.decided_by { "=>" } else { "  " };
            match r.miss {
                None => writeln!(
                    f,
                    "{mark} {:<5} {} (line {}): matched",
                    r.effect, r.id, r.line
                )?,
                Some(m) => writeln!(
                    f,
                    "{mark} {:<5} {} (line {}): no — {m}",
                    r.effect, r.id, r.line
                )?,
            }
        }
        Ok(())
    }
}
