//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::panic)]

use std::net::IpAddr;

use starling_auth::{Action, Decision, Policy, Principal, Request};

/// Parses a policy that must be valid.
pub fn policy(text: &str) -> Policy {
    match Policy::parse(text) {
        Ok((p, _)) => p,
        Err(e) => panic!("policy should parse: {e:?}"),
    }
}

/// A request with defaults (loopback, listener "default", no TLS, QoS 0).
pub fn req<'a>(
    p: &'a Principal,
    client_id: &'a str,
    action: Action,
    topic: &'a str,
) -> Request<'a> {
    Request {
        principal: p,
        client_id,
        action,
        topic,
        qos: 0,
        retain: false,
        source: IpAddr::from([127, 0, 0, 1]),
        listener: "default",
        tls: false,
    }
}

/// Shortcut: decide and return (allowed, deciding rule as text).
pub fn ask(pol: &Policy, r: &Request<'_>) -> (bool, String) {
    let d: Decision<'_> = pol.decide(r);
    (d.allowed, d.rule.to_string())
}

/// Identity `dev` (cert CN prefix `d`, class `device`) and user `u`
/// (class `user`) plus the given rules.
pub fn with_rules(rules: &str) -> Policy {
    policy(&format!(
        r#"
version = 1
[[identity]]
name = "dev"
class = "device"
roles = ["devices"]
cert_cn_prefix = "d"

[[identity]]
name = "u"
class = "user"
roles = ["users"]
password = "$argon2id$v=19$m=19456,t=2,p=1$Wa6IMAGt2RQJII4h4F0HpA$2rKZAFItE+J5Yczi96ChMDz2vJq2NHZpOGbAtrcDVyU"

[[rule]]
id = "connect-all"
effect = "allow"
action = "connect"
who = "*"

{rules}
"#
    ))
}
