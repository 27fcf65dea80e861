//! Rule semantics, conditions, validation, explain, cache and reload.

#[path = "common/helpers.rs"]
mod helpers;

use std::net::IpAddr;

use helpers::{ask, policy, req, with_rules};
use starling_auth::{Action, CertInfo, Credentials, Policy, RuleRef, Severity, Var};

#[allow(clippy::unwrap_used)]
fn codes(text: &str) -> Vec<(&'static str, usize)> {
    match Policy::parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(|d| (d.code, d.line)).collect(),
    }
}

#[allow(clippy::unwrap_used)]
fn warnings(text: &str) -> Vec<(&'static str, String)> {
    let (_, w) = Policy::parse(text).unwrap();
    w.into_iter()
        .map(|d| (d.code, d.subject.unwrap_or_default()))
        .collect()
}

#[test]
fn default_deny_and_deciding_rule() {
    let pol = with_rules(
        r#"
[[rule]]
id = "a"
effect = "allow"
action = "publish"
who = "role:users"
topic = "x/#"
"#,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    let d = pol.decide(&req(&p, "c", Action::Publish, "x/1"));
    assert!(d.allowed);
    assert_eq!(d.rule, RuleRef::Rule("a"));
    assert_eq!(d.to_string(), "allow (a)");
    assert_eq!(
        pol.decide(&req(&p, "c", Action::Publish, "y/1")).rule,
        RuleRef::DefaultDeny
    );
    assert_eq!(
        pol.decide(&req(&p, "c", Action::Subscribe, "x/1")).rule,
        RuleRef::DefaultDeny
    );
    assert_eq!(
        pol.decide(&req(&p, "c", Action::Publish, "x/+")).rule,
        RuleRef::InvalidRequest
    );
    let dev = pol.principal("dev", Some("d1"), None).unwrap();
    assert!(
        !ask(&pol, &req(&dev, "d1", Action::Publish, "x/1")).0,
        "role not held"
    );
}

#[test]
fn variables_reported_with_decision() {
    let pol = with_rules(
        r#"
[[rule]]
id = "own"
effect = "allow"
action = "publish"
who = "*"
topic = "d/${class}/${client_id}"
"#,
    );
    let p = pol.principal("dev", Some("d1"), None).unwrap();
    let d = pol.decide(&req(&p, "d1", Action::Publish, "d/device/d1"));
    assert!(d.allowed);
    assert_eq!(
        d.variables.iter().collect::<Vec<_>>(),
        vec![Var::ClientId, Var::Class]
    );
}

#[test]
fn conditions_listener_tls_zone_qos_retain() {
    let pol = policy(
        r#"
version = 1
[zones]
factory = ["10.1.0.0/16", "fd00::/8"]
[[identity]]
name = "dev"
class = "device"
cert_cn_prefix = "d"
[[rule]]
id = "p"
effect = "allow"
action = "publish"
who = "*"
topic = "t/#"
listeners = ["mqtts"]
tls = true
zones = ["factory"]
max_qos = 1
retain = false
[[rule]]
id = "no-qos2-on-x"
effect = "deny"
action = "publish"
who = "*"
topic = "t/x"
qos = [2]
"#,
    );
    let p = pol.principal("dev", Some("d1"), None).unwrap();
    let base = || {
        let mut r = req(&p, "d1", Action::Publish, "t/a");
        r.listener = "mqtts";
        r.tls = true;
        r.source = IpAddr::from([10, 1, 2, 3]);
        r
    };
    assert!(ask(&pol, &base()).0);
    let mut r = base();
    r.listener = "mqtt";
    assert!(!ask(&pol, &r).0);
    let mut r = base();
    r.tls = false;
    assert!(!ask(&pol, &r).0);
    let mut r = base();
    r.source = IpAddr::from([10, 2, 0, 1]);
    assert!(!ask(&pol, &r).0);
    let mut r = base();
    r.source = "::ffff:10.1.9.9".parse().unwrap();
    assert!(ask(&pol, &r).0, "IPv4-mapped IPv6 is the IPv4 address");
    let mut r = base();
    r.source = "fd00::1".parse().unwrap();
    assert!(ask(&pol, &r).0);
    let mut r = base();
    r.qos = 2;
    assert!(!ask(&pol, &r).0, "max_qos");
    let mut r = base();
    r.retain = true;
    assert!(!ask(&pol, &r).0, "retain = false");
    let mut r = base();
    r.topic = "t/x";
    r.qos = 1;
    assert!(ask(&pol, &r).0);
    r.qos = 2;
    assert_eq!(ask(&pol, &r), (false, "no-qos2-on-x".into()));
    assert_eq!(pol.zone_of("10.1.0.1".parse().unwrap()), Some("factory"));
    assert_eq!(pol.zone_of("192.168.0.1".parse().unwrap()), None);
    assert_eq!(
        pol.in_zone("factory", "10.1.0.1".parse().unwrap()),
        Some(true)
    );
    assert_eq!(
        pol.in_zone("factory", "::ffff:10.1.0.1".parse().unwrap()),
        Some(true)
    );
    assert_eq!(
        pol.in_zone("factory", "192.168.0.1".parse().unwrap()),
        Some(false)
    );
    assert_eq!(pol.in_zone("nowhere", "10.1.0.1".parse().unwrap()), None);
}

#[test]
fn connect_client_id_prefix_and_share_groups() {
    let pol = with_rules(
        r#"
[[rule]]
id = "connect-u"
effect = "allow"
action = "connect"
who = "u"
client_id_prefix = "${username}-"
[[rule]]
id = "shared"
effect = "allow"
action = "subscribe"
who = "u"
topic = "jobs/#"
share_groups = ["workers"]
"#,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    assert!(ask(&pol, &req(&p, "u-1", Action::Connect, "")).0);
    assert!(
        ask(&pol, &req(&p, "anything", Action::Connect, "")).0,
        "connect-all still applies"
    );
    assert!(
        ask(
            &pol,
            &req(&p, "c", Action::Subscribe, "$share/workers/jobs/#")
        )
        .0
    );
    assert!(
        !ask(
            &pol,
            &req(&p, "c", Action::Subscribe, "$share/other/jobs/#")
        )
        .0
    );
    assert!(!ask(&pol, &req(&p, "c", Action::Subscribe, "jobs/#")).0);
}

#[test]
fn validation_errors_are_located_and_collected() {
    let text = r#"version = 1
[zones]
z = ["10.0.0.0/8", "not-a-net"]
[[identity]]
name = "a"
class = "c"
cert_cn = "a"
[[rule]]
id = "r1"
effect = "allow"
action = "publish"
who = ["role:ghost", "class:nope", "nobody"]
topic = "a/#/b"
zones = ["mars"]
[[rule]]
id = "r1"
effect = "maybe"
action = ["connect", "publish"]
who = "*"
[[rule]]
id = "r3"
effect = "allow"
action = "connect"
who = "*"
topic = "x"
max_qos = 1
"#;
    let c = codes(text);
    for (code, line) in [
        ("bad-cidr", 3),
        ("unknown-role", 9),
        ("unknown-class", 9),
        ("unknown-identity", 9),
        ("bad-pattern", 9),
        ("unknown-zone", 9),
        ("duplicate-id", 16),
        ("bad-effect", 17),
        ("mixed-connect", 16),
        ("connect-topic", 21),
        ("connect-condition", 21),
    ] {
        assert!(c.contains(&(code, line)), "missing {code} at {line}: {c:?}");
    }
    // Unknown keys and wrong types are syntax errors with a position.
    let e = Policy::parse("version = 1\n[[rule]]\nid = \"x\"\neffect = \"allow\"\naction = \"publish\"\nwho = \"*\"\ntopic = \"a\"\nqoss = 1\n").unwrap_err();
    assert_eq!(e.line_col(), (8, 1), "points at the unknown key");
    assert!(e.to_string().contains("qoss"), "{e}");
    assert!(
        codes("version = 1\n[[identity]]\nname = \"a\"\nclass = \"c\"\n")
            .contains(&("no-credential", 3))
    );
    assert!(codes("version = 1\n[[identity]]\nname = \"a\"\nclass = \"c\"\ncert_cn = \"x\"\n[[identity]]\nname = \"b\"\nclass = \"c\"\ncert_cn = \"x\"\n")
        .contains(&("duplicate-credential", 7)));
}

#[test]
fn lint_warnings() {
    let w = warnings(
        r##"version = 1
[anonymous]
enabled = true
class = "guest"
[[identity]]
name = "a"
class = "sensor"
cert_cn = "a"
[[rule]]
id = "connect"
effect = "allow"
action = "connect"
who = "class:sensor"
[[rule]]
id = "read-x"
effect = "allow"
action = "subscribe"
who = "class:sensor"
topic = "x/secret/+"
[[rule]]
id = "deny-x"
effect = "deny"
action = ["subscribe", "receive"]
who = "*"
topic = "x/#"
[[rule]]
id = "read-y"
effect = "allow"
action = "subscribe"
who = "a"
topic = "y/#"
[[rule]]
id = "read-y-again"
effect = "allow"
action = "subscribe"
who = "a"
topic = "y/z"
[[rule]]
id = "sensors-everything"
effect = "allow"
action = "publish"
who = "class:sensor"
topic = "#"
[[rule]]
id = "guests-everything"
effect = "allow"
action = "receive"
who = "anonymous"
topic = "+/#"
[[rule]]
id = "never"
effect = "allow"
action = "publish"
who = "a"
topic = "q"
qos = [2]
max_qos = 1
"##,
    );
    let has = |code: &str, subj: &str| w.iter().any(|(c, s)| *c == code && s == subj);
    assert!(has("shadowed", "read-x"), "{w:?}");
    assert!(has("unreachable", "read-y-again"), "{w:?}");
    assert!(has("broad-grant", "sensors-everything"), "{w:?}");
    assert!(has("broad-grant", "guests-everything"), "{w:?}");
    assert!(has("unreachable", "never"), "{w:?}");
    assert!(!has("shadowed", "read-y"), "{w:?}");
    let (_, ws) =
        Policy::parse("version = 1\n[[identity]]\nname = \"a\"\nclass = \"c\"\ncert_cn = \"a\"\n")
            .unwrap();
    assert!(ws.iter().all(|w| w.severity == Severity::Warning));
    assert!(ws.iter().any(|w| w.code == "no-connect"));
}

#[test]
fn explain_lists_candidates_and_variables() {
    let pol = with_rules(
        r#"
[[rule]]
id = "own"
effect = "allow"
action = "publish"
who = "*"
topic = "dev/${client_id}/#"
[[rule]]
id = "tls-only"
effect = "allow"
action = "publish"
who = "role:users"
topic = "dev/#"
tls = true
"#,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    let e = pol.explain(&req(&p, "a/b", Action::Publish, "dev/a/b/x"));
    assert!(!e.allowed);
    assert_eq!(e.decided_by, "default-deny");
    assert_eq!(e.rules.len(), 2);
    let text = e.to_string();
    assert!(
        text.starts_with("DENY publish \"dev/a/b/x\" for u"),
        "{text}"
    );
    assert!(text.contains("unusable as a topic level"), "{text}");
    assert!(text.contains("tls-only (line"), "{text}");
    let e = pol.explain(&req(&p, "c1", Action::Publish, "dev/c1/x"));
    assert!(e.allowed);
    assert!(e.to_string().contains("=> allow own"), "{e}");
}

#[test]
fn cache_key_covers_every_input() {
    let pol = with_rules(
        r#"
[[rule]]
id = "q"
effect = "allow"
action = "publish"
who = "*"
topic = "dev/${client_id}/#"
max_qos = 1
"#,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    for _ in 0..3 {
        assert!(ask(&pol, &req(&p, "c1", Action::Publish, "dev/c1/x")).0);
        assert!(!ask(&pol, &req(&p, "c2", Action::Publish, "dev/c1/x")).0);
        let mut r = req(&p, "c1", Action::Publish, "dev/c1/x");
        r.qos = 2;
        assert!(!ask(&pol, &r).0);
    }
    assert!(pol.cached_decisions() >= 3);
    let uncached = with_rules("").with_cache_capacity(0);
    let p = uncached.principal("u", None, Some("u")).unwrap();
    assert!(!ask(&uncached, &req(&p, "c1", Action::Publish, "dev/c1/x")).0);
    assert_eq!(uncached.cached_decisions(), 0);
}

#[test]
fn reload_resolves_principals_against_the_new_policy() {
    let old = with_rules(
        r#"
[[rule]]
id = "users-write"
effect = "allow"
action = "publish"
who = "role:users"
topic = "w/#"
"#,
    );
    let p = old.principal("u", None, Some("u")).unwrap();
    assert!(ask(&old, &req(&p, "c", Action::Publish, "w/1")).0);
    // New policy: `u` lost the role (revocation applies to connected clients).
    let new = policy(
        r#"
version = 1
[[identity]]
name = "u"
class = "user"
cert_cn = "u"
[[rule]]
id = "users-write"
effect = "allow"
action = "publish"
who = "class:user"
topic = "w/secret/#"
"#,
    );
    assert!(new.knows(&p));
    assert!(!ask(&new, &req(&p, "c", Action::Publish, "w/1")).0);
    // Identity removed entirely: every decision is denied.
    let gone = policy("version = 1\n");
    assert!(!gone.knows(&p));
    assert_eq!(
        gone.decide(&req(&p, "c", Action::Publish, "w/1")).rule,
        RuleRef::UnknownPrincipal
    );
}

#[test]
fn version_revision_hash() {
    let text = "version = 1\nrevision = 42\n";
    let (p, _) = Policy::parse(text).unwrap();
    assert_eq!(p.version(), 1);
    assert_eq!(p.revision(), "42");
    assert_eq!(p.hash().len(), 64);
    let (q, _) = Policy::parse("version = 1\nrevision = \"42\"\n").unwrap();
    assert_ne!(p.hash(), q.hash());
    assert_eq!(q.revision(), "42");
}

#[test]
fn failing_file_tests_are_reported() {
    let text = r#"version = 1
[[identity]]
name = "a"
class = "c"
cert_cn = "a"
[[test]]
name = "expects too much"
principal = "a"
action = "publish"
topic = "x"
expect = "allow"
"#;
    let r = Policy::check(text);
    assert_eq!(r.tests_run, 1);
    assert_eq!(r.test_failures.len(), 1);
    assert!(!r.is_ok());
    assert!(
        r.to_string()
            .contains("expected allow, got deny by default-deny"),
        "{r}"
    );
}

#[test]
fn certificate_matching_precedence_and_two_factor() {
    let pw = starling_auth::hash_password(b"pw").unwrap();
    let fpr = "AB".repeat(32);
    let pol = policy(&format!(
        r#"version = 1
[[identity]]
name = "by-cn"
class = "c"
cert_cn_prefix = "dev-"
[[identity]]
name = "by-uri"
class = "c"
cert_san_uri = ["spiffe://x/gw"]
[[identity]]
name = "by-fpr"
class = "c"
cert_sha256 = ["{fpr}"]
[[identity]]
name = "both"
class = "c"
cert_cn = "dev-admin"
password = {pw:?}
"#
    ));
    let auth = |cert: &CertInfo, user: Option<&str>, pw: Option<&[u8]>| {
        pol.authenticate(&Credentials {
            username: user,
            password: pw,
            cert: Some(cert),
        })
        .map(|p| p.name.to_string())
    };
    let mut c = CertInfo {
        cn: Some("dev-7".into()),
        ..CertInfo::default()
    };
    assert_eq!(auth(&c, Some("ignored"), None).unwrap(), "by-cn");
    c.san_uri = vec!["spiffe://x/gw".into()];
    assert_eq!(auth(&c, None, None).unwrap(), "by-uri");
    c.sha256 = "ab:".repeat(31) + "ab";
    assert_eq!(auth(&c, None, None).unwrap(), "by-fpr");
    let admin = CertInfo {
        cn: Some("dev-admin".into()),
        ..CertInfo::default()
    };
    assert!(
        auth(&admin, None, None).is_err(),
        "exact CN wins over prefix and needs its password"
    );
    assert_eq!(auth(&admin, Some("both"), Some(b"pw")).unwrap(), "both");
    assert!(auth(&admin, Some("both"), Some(b"nope")).is_err());
    // Password alone does not authenticate a certificate-bound identity.
    let r = pol.authenticate(&Credentials {
        username: Some("both"),
        password: Some(b"pw"),
        cert: None,
    });
    assert_eq!(r, Err(starling_auth::AuthFailure::CertificateRequired));
}

/// Every complete policy example in docs/policy.md parses and passes its tests.
#[test]
fn docs_examples_are_valid() {
    let doc = include_str!("../../docs/policy.md");
    let mut n = 0;
    for block in doc.split("```toml").skip(1) {
        let Some((body, _)) = block.split_once("```") else {
            continue;
        };
        if !body.lines().any(|l| l == "version = 1") {
            continue;
        }
        let r = Policy::check(body);
        assert!(r.is_ok(), "docs example #{n} fails:\n{r}\n{body}");
        n += 1;
    }
    assert!(n >= 2, "expected complete examples in docs/policy.md");
}
