//! The worked example from docs/policy.md, end to end.

use starling_auth::Policy;

const FLEET: &str = include_str!("data/fleet.toml");

#[test]
fn fleet_policy_parses_and_its_tests_pass() {
    let report = Policy::check(FLEET);
    println!("{report}");
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.tests_run, 12);
}

#[test]
fn docs_carry_the_same_fleet_example() {
    let doc = include_str!("../../docs/policy.md");
    assert!(
        doc.contains(FLEET),
        "docs/policy.md must embed tests/data/fleet.toml verbatim"
    );
}

#[test]
fn fleet_authentication_and_explain() {
    use starling_auth::{Action, AuthFailure, CertInfo, Credentials, Request};
    let (pol, warnings) = Policy::parse(FLEET).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let alice = pol
        .authenticate(&Credentials {
            username: Some("alice"),
            password: Some(b"alice-secret"),
            cert: None,
        })
        .unwrap();
    assert_eq!(&*alice.class, "operator");
    assert_eq!(
        pol.authenticate(&Credentials {
            username: Some("alice"),
            password: Some(b"bob-secret"),
            cert: None
        }),
        Err(AuthFailure::BadPassword)
    );
    let cert = CertInfo {
        cn: Some("sensor-0001".into()),
        ..CertInfo::default()
    };
    let sensor = pol
        .authenticate(&Credentials {
            cert: Some(&cert),
            ..Credentials::default()
        })
        .unwrap();
    let req = Request {
        principal: &sensor,
        client_id: "sensor-0001",
        action: Action::Publish,
        topic: "telemetry/sensor-0002/temp",
        qos: 0,
        retain: false,
        source: "10.1.2.3".parse().unwrap(),
        listener: "mqtts",
        tls: true,
    };
    let text = pol.explain(&req).to_string();
    let doc = include_str!("../../docs/policy.md");
    for line in text.lines().filter(|l| !l.starts_with("policy:")) {
        assert!(
            doc.contains(line),
            "docs/policy.md explain sample is stale: {line:?}\n{text}"
        );
    }
}
