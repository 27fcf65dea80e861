//! `starling policy check`: lint warnings (shadowed, unreachable, overly
//! broad rules) and the file's own `[[test]]` cases.

use std::fmt;

use crate::compile::Diags;
use crate::decide::Request;
use crate::error::{Diagnostic, Severity};
use crate::policy::Policy;
use crate::rule::{Action, Effect, Rule, Who};

/// A `[[test]]` case whose outcome differed from `expect`/`rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// The test's `name`.
    pub name: String,
    /// Line of the test in the policy file.
    pub line: usize,
    /// Expected verdict (`true` = allow).
    pub expected: bool,
    /// Expected deciding rule, if the test names one.
    pub expected_rule: Option<String>,
    /// Actual verdict.
    pub got: bool,
    /// Actual deciding rule.
    pub got_rule: String,
}

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |b: bool| if b { "allow" } else { "deny" };
        write!(
            f,
            "{}: test {:?}: expected {}",
            self.line,
            self.name,
            v(self.expected)
        )?;
        if let Some(r) = &self.expected_rule {
            write!(f, " by {r}")?;
        }
        write!(f, ", got {} by {}", v(self.got), self.got_rule)
    }
}

/// Everything `starling policy check FILE` reports.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Errors: the policy would be refused.
    pub errors: Vec<Diagnostic>,
    /// Warnings: the policy loads.
    pub warnings: Vec<Diagnostic>,
    /// Number of `[[test]]` cases run.
    pub tests_run: usize,
    /// Failed `[[test]]` cases.
    pub test_failures: Vec<TestFailure>,
}

impl CheckReport {
    /// No errors and no failed tests (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty() && self.test_failures.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.errors.iter().chain(&self.warnings) {
            writeln!(f, "{d}")?;
        }
        for t in &self.test_failures {
            writeln!(f, "{t}")?;
        }
        write!(
            f,
            "{} error(s), {} warning(s), {}/{} test(s) passed",
            self.errors.len(),
            self.warnings.len(),
            self.tests_run - self.test_failures.len(),
            self.tests_run
        )
    }
}

impl Policy {
    /// Parses, validates and runs the file's tests in one go.
    pub fn check(text: &str) -> CheckReport {
        match Policy::parse(text) {
            Ok((p, warnings)) => {
                let test_failures = p.run_tests();
                CheckReport {
                    errors: Vec::new(),
                    warnings,
                    tests_run: p.tests.len(),
                    test_failures,
                }
            }
            Err(e) => CheckReport {
                errors: e.diagnostics(),
                ..CheckReport::default()
            },
        }
    }

    /// Runs the `[[test]]` cases of the file; returns the failures.
    pub fn run_tests(&self) -> Vec<TestFailure> {
        let mut out = Vec::new();
        for t in &self.tests {
            let Some(principal) =
                self.ids
                    .principal(0, t.identity, t.cert_cn.as_deref(), t.username.as_deref())
            else {
                continue;
            };
            let req = Request {
                principal: &principal,
                client_id: &t.client_id,
                action: t.action,
                topic: &t.topic,
                qos: t.qos,
                retain: t.retain,
                source: t.source,
                listener: &t.listener,
                tls: t.tls,
            };
            let d = self.decide(&req);
            let got_rule = d.rule.to_string();
            let rule_ok = t.rule.as_ref().is_none_or(|r| *r == got_rule);
            if d.allowed != t.expect || !rule_ok {
                out.push(TestFailure {
                    name: t.name.clone(),
                    line: t.line,
                    expected: t.expect,
                    expected_rule: t.rule.clone(),
                    got: d.allowed,
                    got_rule,
                });
            }
        }
        out
    }
}

/// `a`'s principals are all among `b`'s.
fn who_within(a: &Rule, b: &Rule) -> bool {
    b.who.contains(&Who::Everyone) || a.who.iter().all(|w| b.who.contains(w))
}

/// Whenever `inner` applies, `outer` applies too (conservative).
fn covered_by(inner: &Rule, outer: &Rule) -> bool {
    inner.actions & outer.actions == inner.actions
        && who_within(inner, outer)
        && outer.cond.weaker_or_equal(&inner.cond)
        && (inner.topics.is_empty() && outer.topics.is_empty()
            || !inner.topics.is_empty()
                && inner
                    .topics
                    .iter()
                    .all(|t| outer.topics.iter().any(|o| o.covers_pattern(t))))
}

/// Adds warnings about the compiled policy to `d`.
pub(crate) fn lint(p: &Policy, anon_at: usize, d: &mut Diags<'_>) {
    let warn = |d: &mut Diags<'_>, r: &Rule, code: &'static str, m: String| {
        d.push_at(Severity::Warning, r.line, r.col, Some(&r.id), code, m);
    };
    let anon = p.ids.anonymous.is_some();
    for (i, r) in p.rules.iter().enumerate() {
        // Shadowed / unreachable by another rule; the index narrows the
        // search to rules that could cover this one (10k rules stay fast).
        let (mut shadow, mut earlier) = (None::<u32>, None::<u32>);
        p.index.covering_candidates(r, |j| {
            let Some(o) = p.rules.get(j as usize).filter(|_| j as usize != i) else {
                return;
            };
            if o.effect == Effect::Deny && r.effect == Effect::Allow && covered_by(r, o) {
                shadow = Some(shadow.map_or(j, |s| s.min(j)));
            } else if o.effect == r.effect && (j as usize) < i && covered_by(r, o) {
                earlier = Some(earlier.map_or(j, |s| s.min(j)));
            }
        });
        if let Some(dn) = shadow.and_then(|j| p.rules.get(j as usize)) {
            warn(
                d,
                r,
                "shadowed",
                format!(
                    "allow is fully covered by deny `{}` and can never grant anything",
                    dn.id
                ),
            );
            continue;
        }
        if let Some(e) = earlier.and_then(|j| p.rules.get(j as usize)) {
            warn(
                d,
                r,
                "unreachable",
                format!(
                    "earlier {} rule `{}` covers this one, so it never decides",
                    e.effect, e.id
                ),
            );
        }
        // Unreachable by its own conditions.
        let c = &r.cond;
        let empty_zones = c.zones.as_ref().is_some_and(|z| {
            z.iter()
                .all(|i| p.zones.get(*i as usize).is_none_or(|(_, n)| n.is_empty()))
        });
        if c.qos_mask == 0
            || c.listeners.as_ref().is_some_and(|l| l.is_empty())
            || c.share_groups.as_ref().is_some_and(|l| l.is_empty())
            || empty_zones
        {
            warn(
                d,
                r,
                "unreachable",
                "conditions can never all hold (empty list or no QoS left)".into(),
            );
        }
        if !anon && r.who.iter().all(|w| *w == Who::Anonymous) {
            warn(
                d,
                r,
                "unreachable",
                "applies only to `anonymous`, which is disabled".into(),
            );
        }
        // Broad grants.
        if r.effect == Effect::Allow && r.topics.iter().any(|t| t.is_everything()) {
            let broad = r.who.iter().find_map(|w| match w {
                Who::Everyone => Some("everyone".to_owned()),
                Who::Anonymous => Some("anonymous clients".to_owned()),
                Who::Class(c) => p
                    .ids
                    .class_names
                    .get(*c as usize)
                    .map(|n| format!("the whole class `{n}`")),
                _ => None,
            });
            if let Some(b) = broad {
                warn(d, r, "broad-grant", format!("grants `#` to {b}"));
            }
        }
        if anon && r.effect == Effect::Allow && r.who.contains(&Who::Everyone) {
            warn(
                d,
                r,
                "everyone-includes-anonymous",
                "`*` includes anonymous clients, which this policy enables".into(),
            );
        }
    }
    let has_connect = p
        .rules
        .iter()
        .any(|r| r.effect == Effect::Allow && r.has_action(Action::Connect));
    if !has_connect && (!p.ids.defs.is_empty() || anon) {
        d.push(
            Severity::Warning,
            if anon { anon_at } else { 0 },
            None,
            "no-connect",
            "no rule allows `connect`: every client will be refused",
        );
    }
}
