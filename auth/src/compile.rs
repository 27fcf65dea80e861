//! Policy text → compiled [`Policy`]: TOML parsing (with line:col for
//! errors), name interning, reference checks, rule compilation and the rule
//! index. Every problem is collected, not just the first.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::error::{Diagnostic, PolicyError, Severity};
use crate::format::{self, Revision};
use crate::identity::{self, AnonDef, Identities, IdentityDef};
use crate::policy::{Policy, TestCase};
use crate::rule::{Action, Conditions, Effect, Rule, Template, VarSet, Who};
use crate::topic::Pattern;

/// Byte offset → 1-based (line, column in characters).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).locate(offset)
}

/// Newline positions, for O(log n) offset → line:col on big files.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let line = self.starts.partition_point(|s| *s <= end);
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self.text.get(start..end).map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// Collects diagnostics with locations.
pub(crate) struct Diags<'t> {
    lines: LineIndex<'t>,
    pub list: Vec<Diagnostic>,
}

impl<'t> Diags<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Diags {
            lines: LineIndex::new(text),
            list: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        offset: usize,
        subject: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        let (line, col) = self.lines.locate(offset);
        self.list.push(Diagnostic {
            severity,
            line,
            col,
            subject: subject.map(str::to_owned),
            code,
            message: message.into(),
        });
    }

    pub(crate) fn push_at(
        &mut self,
        severity: Severity,
        line: usize,
        col: usize,
        subject: Option<&str>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.list.push(Diagnostic {
            severity,
            line,
            col,
            subject: subject.map(str::to_owned),
            code,
            message: message.into(),
        });
    }

    fn err(
        &mut self,
        offset: usize,
        subject: Option<&str>,
        code: &'static str,
        m: impl Into<String>,
    ) {
        self.push(Severity::Error, offset, subject, code, m);
    }
}

/// Interns class and role names.
#[derive(Default)]
struct Names {
    map: HashMap<String, u32>,
    list: Vec<Arc<str>>,
}

impl Names {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.map.get(s) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.map.insert(s.to_owned(), i);
        self.list.push(s.into());
        i
    }
}

/// Parses and validates; the entry point behind [`Policy::parse`].
pub(crate) fn compile(text: &str) -> Result<(Policy, Vec<Diagnostic>), PolicyError> {
    let file: format::File = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        PolicyError::Syntax {
            line,
            col,
            message: e.message().trim().to_owned(),
        }
    })?;
    let mut d = Diags::new(text);
    if *file.version.get_ref() != 1 {
        d.err(
            file.version.span().start,
            None,
            "version",
            "unsupported policy format version (this build reads `version = 1`)",
        );
    }
    let revision = match file.revision {
        Some(Revision::Text(s)) => s,
        Some(Revision::Number(n)) => n.to_string(),
        None => String::new(),
    };

    // Zones.
    let mut zones: Vec<(Arc<str>, Vec<IpNet>)> = Vec::new();
    let mut zone_ids: HashMap<String, u32> = HashMap::new();
    for (name, nets) in &file.zones {
        let at = nets.span().start;
        let mut parsed = Vec::new();
        for n in nets.get_ref() {
            let net = IpNet::from_str(n).or_else(|_| IpAddr::from_str(n).map(IpNet::from));
            match net {
                Ok(net) => parsed.push(net.trunc()),
                Err(_) => d.err(
                    at,
                    Some(name),
                    "bad-cidr",
                    format!("`{n}` is not an address or CIDR"),
                ),
            }
        }
        if parsed.is_empty() {
            d.push(
                Severity::Warning,
                at,
                Some(name),
                "empty-zone",
                "zone contains no networks and matches nothing",
            );
        }
        zone_ids.insert(name.clone(), zones.len() as u32);
        zones.push((name.as_str().into(), parsed));
    }

    // Identities.
    let mut classes = Names::default();
    let mut roles = Names::default();
    let mut ids = Identities::default();
    let mut claimed: HashMap<String, String> = HashMap::new();
    for ident in file.identity {
        let name = ident.name.get_ref().clone();
        let at = ident.name.span().start;
        let subj = Some(name.as_str());
        if name.is_empty() || name == "*" || name == "anonymous" || name.contains(':') {
            d.err(
                at,
                subj,
                "bad-name",
                "identity names must be non-empty, not `*`/`anonymous`, and contain no `:`",
            );
        }
        let idx = ids.defs.len() as u32;
        if ids.by_name.insert(name.as_str().into(), idx).is_some() {
            d.err(
                at,
                subj,
                "duplicate-identity",
                "identity name defined twice",
            );
        }
        let mut claim = |d: &mut Diags<'_>, what: String| {
            if let Some(prev) = claimed.insert(what.clone(), name.clone()) {
                d.err(
                    at,
                    Some(&name),
                    "duplicate-credential",
                    format!("{what} already belongs to identity `{prev}`"),
                );
            }
        };
        let password = match &ident.password {
            Some(p) => {
                if let Err(e) = identity::check_phc(p.get_ref()) {
                    d.err(p.span().start, subj, "bad-password-hash", e);
                }
                Some(p.get_ref().as_str().into())
            }
            None => None,
        };
        let username: Option<Arc<str>> = match (&ident.username, &password) {
            (Some(u), _) => Some(u.as_str().into()),
            (None, Some(_)) => Some(name.as_str().into()),
            (None, None) => None,
        };
        if let Some(u) = &username {
            if password.is_none() {
                d.err(
                    at,
                    subj,
                    "username-without-password",
                    "`username` needs a `password` (certificate identities ignore usernames)",
                );
            }
            claim(&mut d, format!("username `{u}`"));
            ids.by_username.insert((**u).into(), idx);
        }
        let mut has_cert = false;
        if let Some(cn) = &ident.cert_cn {
            claim(&mut d, format!("cert_cn `{cn}`"));
            ids.by_cn.insert(cn.as_str().into(), idx);
            has_cert = true;
        }
        if let Some(p) = &ident.cert_cn_prefix {
            if p.is_empty() {
                d.err(
                    at,
                    subj,
                    "empty-prefix",
                    "`cert_cn_prefix` must not be empty",
                );
            }
            claim(&mut d, format!("cert_cn_prefix `{p}`"));
            ids.cn_prefixes.push((p.as_str().into(), idx));
            has_cert = true;
        }
        for s in &ident.cert_san_dns {
            claim(&mut d, format!("cert_san_dns `{s}`"));
            ids.by_san_dns.insert(s.to_ascii_lowercase().into(), idx);
            has_cert = true;
        }
        for s in &ident.cert_san_uri {
            claim(&mut d, format!("cert_san_uri `{s}`"));
            ids.by_san_uri.insert(s.as_str().into(), idx);
            has_cert = true;
        }
        for s in &ident.cert_sha256 {
            let n = identity::normalize_sha256(s);
            if n.len() != 64 || !n.chars().all(|c| c.is_ascii_hexdigit()) {
                d.err(
                    at,
                    subj,
                    "bad-fingerprint",
                    format!("`{s}` is not a SHA-256 hex fingerprint"),
                );
            }
            claim(&mut d, format!("cert_sha256 `{n}`"));
            ids.by_sha256.insert(n.into(), idx);
            has_cert = true;
        }
        if password.is_none() && !has_cert {
            d.err(
                at,
                subj,
                "no-credential",
                "identity has neither `password` nor a certificate matcher",
            );
        }
        if ident.class.is_empty() {
            d.err(at, subj, "bad-class", "`class` must not be empty");
        }
        let role_ids = ident.roles.iter().map(|r| roles.intern(r)).collect();
        ids.defs.push(IdentityDef {
            name: name.as_str().into(),
            class: classes.intern(&ident.class),
            roles: role_ids,
            username,
            password,
            has_cert,
        });
    }
    ids.cn_prefixes
        .sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let mut anon_at = 0;
    if let Some(a) = file.anonymous {
        anon_at = a.span().start;
        let a = a.into_inner();
        if a.enabled {
            ids.anonymous = Some(AnonDef {
                class: classes.intern(&a.class),
                roles: a.roles.iter().map(|r| roles.intern(r)).collect(),
            });
        }
    }

    // Rules.
    let mut rules: Vec<Rule> = Vec::new();
    let mut rule_ids: HashSet<String> = HashSet::new();
    for r in file.rule {
        let id = r.id.get_ref().clone();
        let at = r.id.span().start;
        let subj = Some(id.as_str());
        if id.is_empty() || id.chars().any(char::is_whitespace) {
            d.err(
                at,
                subj,
                "bad-id",
                "rule ids must be non-empty and contain no whitespace",
            );
        }
        if id == "default-deny" || !rule_ids.insert(id.clone()) {
            d.err(
                at,
                subj,
                "duplicate-id",
                "rule id already used (or reserved)",
            );
        }
        let effect = match r.effect.get_ref().as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                d.err(
                    r.effect.span().start,
                    subj,
                    "bad-effect",
                    format!("effect `{other}` is not `allow` or `deny`"),
                );
                Effect::Deny
            }
        };
        let mut actions = 0u8;
        for a in r.action.into_vec() {
            match Action::parse(&a) {
                Some(a) => actions |= 1 << a.index(),
                None => d.err(
                    at,
                    subj,
                    "bad-action",
                    format!(
                        "unknown action `{a}` (connect, publish, subscribe, receive, retain, will)"
                    ),
                ),
            }
        }
        let connect = actions & (1 << Action::Connect.index()) != 0;
        if actions == 0 {
            d.err(at, subj, "bad-action", "rule has no action");
        } else if connect && actions != 1 << Action::Connect.index() {
            d.err(
                at,
                subj,
                "mixed-connect",
                "`connect` cannot share a rule with topic actions",
            );
        }
        let mut who = Vec::new();
        for w in r.who.into_vec() {
            let sel = if w == "*" {
                Some(Who::Everyone)
            } else if w == "anonymous" {
                Some(Who::Anonymous)
            } else if let Some(x) = w.strip_prefix("role:") {
                roles.map.get(x).map(|i| Who::Role(*i))
            } else if let Some(x) = w.strip_prefix("class:") {
                classes.map.get(x).map(|i| Who::Class(*i))
            } else {
                let n = w.strip_prefix("identity:").unwrap_or(&w);
                ids.by_name.get(n).map(|i| Who::Identity(*i))
            };
            match sel {
                Some(s) => who.push(s),
                None => {
                    let code = if w.starts_with("role:") {
                        "unknown-role"
                    } else if w.starts_with("class:") {
                        "unknown-class"
                    } else {
                        "unknown-identity"
                    };
                    d.err(
                        at,
                        subj,
                        code,
                        format!("`{w}` names no identity, role or class defined in this policy"),
                    );
                }
            }
        }
        if who.is_empty() {
            d.err(
                at,
                subj,
                "no-who",
                "rule applies to nobody (`who` is empty)",
            );
        }
        let mut topics = Vec::new();
        let mut vars = VarSet::default();
        for t in r.topic.map(format::OneOrMany::into_vec).unwrap_or_default() {
            match Pattern::parse(&t) {
                Ok(p) => {
                    vars = vars.union(p.vars());
                    topics.push(p);
                }
                Err(e) => d.err(at, subj, "bad-pattern", format!("topic `{t}`: {e}")),
            }
        }
        if connect && !topics.is_empty() {
            d.err(at, subj, "connect-topic", "`connect` rules take no `topic`");
        } else if !connect && topics.is_empty() && actions != 0 {
            d.err(
                at,
                subj,
                "no-topic",
                "rule needs at least one `topic` pattern",
            );
        }
        let mut cond = Conditions::none();
        cond.listeners = r.listeners.map(|l| l.into_iter().map(Into::into).collect());
        cond.tls = r.tls;
        if let Some(zs) = r.zones {
            let mut zids = Vec::new();
            for z in zs {
                match zone_ids.get(&z) {
                    Some(i) => zids.push(*i),
                    None => d.err(
                        at,
                        subj,
                        "unknown-zone",
                        format!("zone `{z}` is not defined in [zones]"),
                    ),
                }
            }
            cond.zones = Some(zids.into());
        }
        if let Some(m) = r.max_qos {
            if m > 2 {
                d.err(at, subj, "bad-qos", "`max_qos` must be 0, 1 or 2");
            }
            cond.qos_mask &= (1u8 << (m.min(2) + 1)) - 1;
        }
        if let Some(qs) = &r.qos {
            let mut mask = 0u8;
            for q in qs {
                if *q > 2 {
                    d.err(at, subj, "bad-qos", "`qos` values must be 0, 1 or 2");
                } else {
                    mask |= 1 << q;
                }
            }
            cond.qos_mask &= mask;
        }
        cond.retain = r.retain;
        for (field, slot) in [
            (&r.client_id, &mut cond.client_id),
            (&r.client_id_prefix, &mut cond.client_id_prefix),
        ] {
            if let Some(t) = field {
                match Template::parse(t) {
                    Ok(t) => {
                        vars = vars.union(t.vars());
                        *slot = Some(t);
                    }
                    Err(e) => d.err(at, subj, "bad-template", e),
                }
            }
        }
        if let Some(gs) = r.share_groups {
            if actions != 1 << Action::Subscribe.index() {
                d.err(
                    at,
                    subj,
                    "share-groups-action",
                    "`share_groups` applies only to rules whose only action is `subscribe`",
                );
            }
            cond.share_groups = Some(gs.into_iter().map(Into::into).collect());
        }
        if connect && (r.max_qos.is_some() || r.qos.is_some() || r.retain.is_some()) {
            d.err(
                at,
                subj,
                "connect-condition",
                "`max_qos`, `qos` and `retain` do not apply to `connect`",
            );
        }
        let (line, col) = d.lines.locate(at);
        rules.push(Rule {
            id: id.into(),
            effect,
            actions,
            who: who.into(),
            topics: topics.into(),
            cond,
            vars,
            line,
            col,
        });
    }

    ids.class_names = classes.list;
    ids.role_names = roles.list;

    // Tests.
    let mut tests = Vec::new();
    for t in file.test {
        let at = t.name.span().start;
        let name = t.name.get_ref().clone();
        let subj = Some(name.as_str());
        let idx = if t.principal == "anonymous" {
            if ids.anonymous.is_none() {
                d.err(
                    at,
                    subj,
                    "unknown-identity",
                    "test uses `anonymous` but anonymous access is disabled",
                );
            }
            identity::ANON
        } else {
            match ids.by_name.get(t.principal.as_str()) {
                Some(i) => *i,
                None => {
                    d.err(
                        at,
                        subj,
                        "unknown-identity",
                        format!("test principal `{}` is not an identity", t.principal),
                    );
                    continue;
                }
            }
        };
        let action = Action::parse(&t.action);
        if action.is_none() {
            d.err(
                at,
                subj,
                "bad-action",
                format!("unknown action `{}`", t.action),
            );
        }
        let expect = match t.expect.as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                d.err(
                    at,
                    subj,
                    "bad-expect",
                    format!("expect `{other}` is not `allow` or `deny`"),
                );
                false
            }
        };
        if let Some(r) = t
            .rule
            .as_ref()
            .filter(|r| !rule_ids.contains(*r) && *r != "default-deny")
        {
            d.err(
                at,
                subj,
                "unknown-rule",
                format!("expected rule `{r}` does not exist"),
            );
        }
        let source = match t.source.as_deref().map(IpAddr::from_str).transpose() {
            Ok(s) => s.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            Err(_) => {
                d.err(at, subj, "bad-source", "`source` is not an IP address");
                IpAddr::from([127, 0, 0, 1])
            }
        };
        let (line, _) = d.lines.locate(at);
        tests.push(TestCase {
            name,
            line,
            identity: idx,
            action: action.unwrap_or(Action::Connect),
            topic: t.topic,
            client_id: t.client_id.unwrap_or_else(|| t.principal.clone()),
            username: t.username,
            cert_cn: t.cert_cn,
            qos: t.qos,
            retain: t.retain,
            listener: t.listener.unwrap_or_else(|| "default".into()),
            tls: t.tls,
            source,
            expect,
            rule: t.rule,
        });
    }

    let hash = hex(&Sha256::digest(text.as_bytes()));
    let policy = Policy::assemble(1, revision, hash, ids, zones, rules, tests);
    crate::check::lint(&policy, anon_at, &mut d);

    let (errors, warnings): (Vec<_>, Vec<_>) = d
        .list
        .into_iter()
        .partition(|x| x.severity == Severity::Error);
    if errors.is_empty() {
        Ok((policy, warnings))
    } else {
        Err(PolicyError::Invalid { errors })
    }
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_to_line_col() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 5), (2, 3));
        assert_eq!(line_col(t, 100), (3, 2));
    }

    #[test]
    fn hex_encoding() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
