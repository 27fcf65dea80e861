//! One test per bypass class of `/work/shared/threats.md` that the policy
//! engine owns: F (pattern substitution), G (`$share` and other prefixes),
//! H (will/`$SYS`), J (session takeover via client id), K (fail-open
//! policies and credentials).

#[path = "common/helpers.rs"]
mod helpers;

use helpers::{ask, policy, req, with_rules};
use starling_auth::{Action, AuthFailure, CertInfo, Credentials, Policy, PolicyError, RuleRef};

const OWN: &str = r#"
[[rule]]
id = "own"
effect = "allow"
action = ["publish", "subscribe", "receive"]
who = "*"
topic = "dev/${client_id}/#"

[[rule]]
id = "own-user"
effect = "allow"
action = ["publish", "subscribe"]
who = "*"
topic = "user/${username}/#"
"#;

/// F / checklist #10: client id or username `#`, `+`, `a/b`, `x\0y` (and
/// friends) against `dev/${client_id}/#` give no access beyond the literal
/// level — the rule simply does not apply.
#[test]
fn f_substituted_identity_values_are_one_literal_level() {
    let pol = with_rules(OWN);
    for bad in ["#", "+", "a/b", "x\0y", "", "$SYS", "a\nb", "a/#", "+/+"] {
        let p = pol.principal("u", None, Some(bad)).unwrap();
        for (action, topic) in [
            (Action::Publish, format!("dev/{bad}/x")),
            (Action::Publish, "dev/a/b/x".to_owned()),
            (Action::Publish, "dev/x".to_owned()),
            (Action::Subscribe, "dev/#".to_owned()),
            (Action::Subscribe, "dev/+/x".to_owned()),
            (Action::Subscribe, "#".to_owned()),
            (Action::Subscribe, format!("dev/{bad}")),
            (Action::Receive, "dev/other/x".to_owned()),
            (Action::Publish, format!("user/{bad}/x")),
            (Action::Subscribe, "user/#".to_owned()),
        ] {
            let r = req(&p, bad, action, &topic);
            assert!(
                !ask(&pol, &r).0,
                "client id/username {bad:?}: {action} {topic:?} must be denied"
            );
        }
    }
    // The legitimate value still works, and only for its own level.
    let p = pol.principal("u", None, Some("alice")).unwrap();
    assert!(ask(&pol, &req(&p, "c1", Action::Publish, "dev/c1/temp")).0);
    assert!(ask(&pol, &req(&p, "c1", Action::Subscribe, "dev/c1/#")).0);
    assert!(ask(&pol, &req(&p, "c1", Action::Publish, "user/alice/x")).0);
    assert!(!ask(&pol, &req(&p, "c1", Action::Subscribe, "dev/+/temp")).0);
    assert!(!ask(&pol, &req(&p, "c1", Action::Publish, "dev/c2/temp")).0);
}

/// F: `${cert_cn}` with a CN carrying `/` does not cross levels either.
#[test]
fn f_cert_cn_with_slash_matches_nothing() {
    let pol = with_rules(
        r#"
[[rule]]
id = "cn"
effect = "allow"
action = "publish"
who = "class:device"
topic = "t/${cert_cn}/#"
"#,
    );
    let p = pol.principal("dev", Some("d1/x"), None).unwrap();
    assert!(!ask(&pol, &req(&p, "d1", Action::Publish, "t/d1/x/y")).0);
    let p = pol.principal("dev", Some("d1"), None).unwrap();
    assert!(ask(&pol, &req(&p, "d1", Action::Publish, "t/d1/x/y")).0);
}

/// G / checklist #12: `$share/g/secret/#` without read on `secret/#` → deny.
#[test]
fn g_shared_subscription_is_authorized_against_the_underlying_filter() {
    let pol = with_rules(
        r#"
[[rule]]
id = "public"
effect = "allow"
action = "subscribe"
who = "*"
topic = ["public/#", "secret/a/#"]
"#,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    assert_eq!(
        ask(&pol, &req(&p, "c", Action::Subscribe, "$share/g/secret/#")),
        (false, "default-deny".into())
    );
    assert_eq!(
        ask(&pol, &req(&p, "c", Action::Subscribe, "$share/g/public/#")),
        (true, "public".into())
    );
    assert!(
        ask(
            &pol,
            &req(&p, "c", Action::Subscribe, "$share/g/secret/a/b")
        )
        .0
    );
    // Malformed share names [MQTT-4.8.2-1/2] are refused, never authorized verbatim.
    for bad in [
        "$share/+/public/x",
        "$share//public/x",
        "$share/g",
        "$share/g/",
        "$share/#/public/x",
    ] {
        assert_eq!(
            ask(&pol, &req(&p, "c", Action::Subscribe, bad)),
            (false, "invalid-request".into()),
            "{bad}"
        );
    }
}

/// G: other `$` prefixes (`$queue/`, `$SYS/`) need explicit grants; a grant
/// of `#` or `+/…` never reaches them.
#[test]
fn g_dollar_prefixes_need_explicit_grants() {
    let pol = with_rules(
        r##"
[[rule]]
id = "all"
effect = "allow"
action = ["publish", "subscribe", "receive"]
who = "*"
topic = ["#", "+/status"]
"##,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    for (a, t) in [
        (Action::Subscribe, "$SYS/#"),
        (Action::Subscribe, "$SYS/broker/load"),
        (Action::Subscribe, "$queue/secret/#"),
        (Action::Receive, "$SYS/broker/clients"),
        (Action::Publish, "$SYS/status"),
        (Action::Subscribe, "$share/g/$SYS/#"),
    ] {
        assert!(!ask(&pol, &req(&p, "c", a, t)).0, "{a} {t}");
    }
    assert!(ask(&pol, &req(&p, "c", Action::Subscribe, "#")).0);
}

/// Filter inclusion: subscribing `a/#` when only `a/b/#` is granted → deny.
#[test]
fn subscribe_broader_than_grant_is_denied() {
    let pol = with_rules(
        r#"
[[rule]]
id = "ab"
effect = "allow"
action = "subscribe"
who = "*"
topic = "a/b/#"
"#,
    );
    let p = pol.principal("u", None, Some("u")).unwrap();
    for t in ["a/#", "a/+/c", "+/b/#", "#", "a/+"] {
        assert!(!ask(&pol, &req(&p, "c", Action::Subscribe, t)).0, "{t}");
    }
    for t in ["a/b/#", "a/b", "a/b/c/+", "a/b/+/d"] {
        assert!(ask(&pol, &req(&p, "c", Action::Subscribe, t)).0, "{t}");
    }
}

/// A deny overlapping a requested filter wins, wherever it is written.
#[test]
fn deny_overlapping_the_filter_wins_in_any_order() {
    let allow = r#"
[[rule]]
id = "read-all"
effect = "allow"
action = ["subscribe", "receive"]
who = "*"
topic = "plant/#"
"#;
    let deny = r#"
[[rule]]
id = "no-secrets"
effect = "deny"
action = ["subscribe", "receive"]
who = "*"
topic = "plant/+/secret"
"#;
    for pol in [
        with_rules(&format!("{allow}{deny}")),
        with_rules(&format!("{deny}{allow}")),
    ] {
        let p = pol.principal("u", None, Some("u")).unwrap();
        for t in ["plant/#", "plant/+/+", "plant/a/secret", "$share/g/plant/#"] {
            assert_eq!(
                ask(&pol, &req(&p, "c", Action::Subscribe, t)),
                (false, "no-secrets".into()),
                "{t}"
            );
        }
        assert_eq!(
            ask(&pol, &req(&p, "c", Action::Subscribe, "plant/a/public")),
            (true, "read-all".into())
        );
        assert!(!ask(&pol, &req(&p, "c", Action::Receive, "plant/a/secret")).0);
        assert!(ask(&pol, &req(&p, "c", Action::Receive, "plant/a/other")).0);
    }
}

/// H / checklist #14: a Will to `$SYS/…` or to a denied topic is refused.
#[test]
fn h_will_topics_are_checked() {
    let pol = with_rules(
        r#"
[[rule]]
id = "will-status"
effect = "allow"
action = "will"
who = "class:device"
topic = "status/${cert_cn}"

[[rule]]
id = "no-sys"
effect = "deny"
action = ["publish", "will"]
who = "*"
topic = "$SYS/#"
"#,
    );
    let p = pol.principal("dev", Some("d7"), None).unwrap();
    assert!(ask(&pol, &req(&p, "d7", Action::Will, "status/d7")).0);
    assert_eq!(
        ask(&pol, &req(&p, "d7", Action::Will, "$SYS/broker/x")),
        (false, "no-sys".into())
    );
    assert!(!ask(&pol, &req(&p, "d7", Action::Will, "status/d8")).0);
    assert!(
        !ask(&pol, &req(&p, "d7", Action::Publish, "status/d7")).0,
        "will grant is not a publish grant"
    );
}

/// J / checklist #15: the client id is bound to the identity at CONNECT.
#[test]
fn j_client_id_bound_to_identity() {
    let pol = policy(
        r#"
version = 1
[[identity]]
name = "sensors"
class = "sensor"
cert_cn_prefix = "sensor-"

[[rule]]
id = "bind"
effect = "allow"
action = "connect"
who = "class:sensor"
client_id = "${cert_cn}"
"#,
    );
    let cert = CertInfo {
        cn: Some("sensor-1".into()),
        ..CertInfo::default()
    };
    let p = pol
        .authenticate(&Credentials {
            cert: Some(&cert),
            ..Credentials::default()
        })
        .unwrap();
    assert_eq!(&*p.name, "sensors");
    assert_eq!(
        ask(&pol, &req(&p, "sensor-1", Action::Connect, "")),
        (true, "bind".into())
    );
    for other in ["sensor-2", "sensor-1x", "", "sensor-"] {
        assert!(
            !ask(&pol, &req(&p, other, Action::Connect, "")).0,
            "{other:?}"
        );
    }
}

/// K / checklist #17: empty, truncated and garbage policies.
#[test]
fn k_empty_truncated_garbage_policies() {
    // The empty policy denies everything.
    let empty = Policy::empty();
    assert_eq!(
        empty.authenticate(&Credentials::default()),
        Err(AuthFailure::AnonymousDisabled)
    );
    // A policy with nothing but a version parses and denies everything.
    let (pol, _) = Policy::parse("version = 1\n").unwrap();
    assert_eq!(pol.rule_count(), 0);
    assert!(pol.principal("anonymous", None, None).is_none());
    // Empty text, truncated text and garbage are refused with a location.
    for bad in [
        "",
        "version = 1\n[[rule]]\nid = \"x\"\neffect = \"al",
        "\u{0}\u{1}garbage{{",
        "[[[",
        "version = 1\nversion = 1\n",
    ] {
        match Policy::parse(bad) {
            Err(PolicyError::Syntax { line, .. }) => {
                assert!(line >= 1 || bad.is_empty(), "{bad:?}")
            }
            other => panic!("{bad:?} must be a syntax error, got {other:?}"),
        }
    }
    let e = Policy::parse("version = 1\n[anonymus]\nenabled = true\n").unwrap_err();
    assert_eq!(e.line_col().0, 2, "unknown key located: {e}");
    assert!(matches!(
        Policy::parse("version = 2\n"),
        Err(PolicyError::Invalid { .. })
    ));
}

/// K: a blank or malformed password hash is an error, never "no password".
#[test]
fn k_blank_password_hash_is_refused() {
    for hash in [
        "",
        " ",
        "secret",
        "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        "$2y$10$abc",
    ] {
        let text = format!(
            "version = 1\n[[identity]]\nname = \"u\"\nclass = \"c\"\npassword = {hash:?}\n"
        );
        let e = Policy::parse(&text).unwrap_err();
        let d = e.diagnostics();
        assert!(
            d.iter()
                .any(|d| d.code == "bad-password-hash" && d.line == 5),
            "{hash:?}: {d:?}"
        );
    }
}

/// K: an empty password is a password; a missing password is not.
#[test]
fn k_empty_password_is_not_no_password() {
    let empty_hash = starling_auth::hash_password(b"").unwrap();
    let x_hash = starling_auth::hash_password(b"x").unwrap();
    let pol = policy(&format!(
        "version = 1\n[[identity]]\nname = \"e\"\nclass = \"c\"\npassword = {empty_hash:?}\n\
         [[identity]]\nname = \"x\"\nclass = \"c\"\npassword = {x_hash:?}\n"
    ));
    let creds = |u: &'static str, pw: Option<&'static [u8]>| Credentials {
        username: Some(u),
        password: pw,
        cert: None,
    };
    assert!(pol.authenticate(&creds("e", Some(b""))).is_ok());
    assert_eq!(
        pol.authenticate(&creds("e", None)),
        Err(AuthFailure::BadPassword)
    );
    assert_eq!(
        pol.authenticate(&creds("x", Some(b""))),
        Err(AuthFailure::BadPassword)
    );
    assert_eq!(
        pol.authenticate(&creds("x", None)),
        Err(AuthFailure::BadPassword)
    );
    assert!(pol.authenticate(&creds("x", Some(b"x"))).is_ok());
    assert_eq!(
        pol.authenticate(&creds("nobody", Some(b"x"))),
        Err(AuthFailure::UnknownUser)
    );
    assert_eq!(
        pol.authenticate(&creds("", Some(b""))),
        Err(AuthFailure::UnknownUser)
    );
}

/// K: anonymous is off unless enabled; when enabled it gets only its grants.
#[test]
fn k_anonymous_off_by_default() {
    let pol = with_rules("");
    assert_eq!(
        pol.authenticate(&Credentials::default()),
        Err(AuthFailure::AnonymousDisabled)
    );
    let (pol, _) =
        Policy::parse("version = 1\n[anonymous]\nenabled = false\nclass = \"guest\"\n").unwrap();
    assert_eq!(
        pol.authenticate(&Credentials::default()),
        Err(AuthFailure::AnonymousDisabled)
    );
    let (pol, warnings) = Policy::parse(
        "version = 1\n[anonymous]\nenabled = true\nclass = \"guest\"\n\
         [[rule]]\nid = \"guest-read\"\neffect = \"allow\"\naction = \"subscribe\"\nwho = \"anonymous\"\ntopic = \"public/#\"\n",
    )
    .unwrap();
    assert!(warnings.iter().any(|w| w.code == "no-connect"));
    let p = pol.authenticate(&Credentials::default()).unwrap();
    assert!(p.anonymous);
    assert_eq!(&*p.class, "guest");
    assert!(ask(&pol, &req(&p, "c", Action::Subscribe, "public/x")).0);
    assert!(!ask(&pol, &req(&p, "c", Action::Connect, "")).0);
    assert_eq!(
        pol.decide(&req(&p, "c", Action::Subscribe, "private/x"))
            .rule,
        RuleRef::DefaultDeny
    );
}

/// K: a certificate that matches no identity is refused, not downgraded.
#[test]
fn k_unknown_certificate_is_refused() {
    let pol = with_rules("");
    let cert = CertInfo {
        cn: Some("x-unknown".into()),
        ..CertInfo::default()
    };
    let creds = Credentials {
        cert: Some(&cert),
        ..Credentials::default()
    };
    assert_eq!(
        pol.authenticate(&creds),
        Err(AuthFailure::UnknownCertificate)
    );
    assert_eq!(AuthFailure::UnknownCertificate.reason_code_v5(), 0x87);
    assert_eq!(AuthFailure::BadPassword.return_code_v311(), 4);
}
