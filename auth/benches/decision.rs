//! Decision cost with a 10,000-rule policy.
//!
//! `cargo bench -p starling-auth --bench decision`
//!
//! Policy shape (10,000 rules): 2,000 per-device publish grants, 4,000
//! role-based subscribe/receive grants, 3,000 grants to `*` on distinct
//! first levels, 500 class-wide denies, 500 `${cert_cn}` grants; 2,000
//! certificate identities in 50 roles.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use starling_auth::{Action, Policy, Request};

fn policy_text() -> String {
    let mut s = String::from("version = 1\nrevision = \"bench\"\n");
    for i in 0..2000 {
        let _ = write!(
            s,
            "[[identity]]\nname = \"dev-{i}\"\nclass = \"sensor\"\nroles = [\"line-{}\"]\ncert_cn = \"dev-{i}\"\n",
            i % 50
        );
    }
    let rule = |s: &mut String,
                id: String,
                effect: &str,
                action: &str,
                who: String,
                topic: String,
                extra: &str| {
        let _ = write!(
            s,
            "[[rule]]\nid = \"{id}\"\neffect = \"{effect}\"\naction = {action}\nwho = \"{who}\"\ntopic = \"{topic}\"\n{extra}"
        );
    };
    for i in 0..2000 {
        rule(
            &mut s,
            format!("dev-pub-{i}"),
            "allow",
            "\"publish\"",
            format!("dev-{i}"),
            format!("plant/line{}/dev-{i}/#", i % 50),
            "max_qos = 1\n",
        );
    }
    for i in 0..4000 {
        rule(
            &mut s,
            format!("line-read-{i}"),
            "allow",
            "[\"subscribe\", \"receive\"]",
            format!("role:line-{}", i % 50),
            format!("area{i}/+/status"),
            "",
        );
    }
    for i in 0..3000 {
        rule(
            &mut s,
            format!("zone-{i}"),
            "allow",
            "\"publish\"",
            "*".into(),
            format!("zone{i}/#"),
            "listeners = [\"mqtts\"]\n",
        );
    }
    for i in 0..500 {
        rule(
            &mut s,
            format!("deny-{i}"),
            "deny",
            "\"publish\"",
            "class:sensor".into(),
            format!("plant/line{}/+/forbidden{i}", i % 50),
            "",
        );
    }
    for i in 0..500 {
        rule(
            &mut s,
            format!("tele-{i}"),
            "allow",
            "\"publish\"",
            format!("role:line-{}", i % 50),
            format!("tele/${{cert_cn}}/m{i}"),
            "",
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = policy_text();
    let (cached, _) = Policy::parse(&text).expect("bench policy");
    assert_eq!(cached.rule_count(), 10_000);
    let (plain, _) = Policy::parse(&text).expect("bench policy");
    let plain = plain.with_cache_capacity(0);
    let principal = cached
        .principal("dev-42", Some("dev-42"), None)
        .expect("principal");
    let principal_plain = plain
        .principal("dev-42", Some("dev-42"), None)
        .expect("principal");
    let topics: Vec<String> = (0..1000)
        .map(|i| format!("plant/line42/dev-42/sensor{i}/temp"))
        .collect();
    let mk = |pr, topic| Request {
        principal: pr,
        client_id: "dev-42",
        action: Action::Publish,
        topic,
        qos: 1,
        retain: false,
        source: IpAddr::from([10, 1, 2, 3]),
        listener: "mqtts",
        tls: true,
    };
    // Sanity: the decisions are what the bench claims to measure.
    assert!(cached.decide(&mk(&principal, &topics[0])).allowed);
    assert!(plain.decide(&mk(&principal_plain, &topics[0])).allowed);
    assert!(
        !plain
            .decide(&mk(&principal_plain, "plant/line42/dev-42/forbidden42"))
            .allowed
    );

    let mut g = c.benchmark_group("publish_decision_10k_rules");
    g.bench_function("uncached", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % topics.len();
            black_box(
                plain
                    .decide(black_box(&mk(&principal_plain, &topics[i])))
                    .allowed,
            )
        })
    });
    g.bench_function("cached_hit", |b| {
        for t in &topics {
            cached.decide(&mk(&principal, t));
        }
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % topics.len();
            black_box(
                cached
                    .decide(black_box(&mk(&principal, &topics[i])))
                    .allowed,
            )
        })
    });
    g.bench_function("uncached_denied_by_default", |b| {
        b.iter(|| {
            black_box(
                plain
                    .decide(black_box(&mk(&principal_plain, "zone17/x/y")))
                    .allowed,
            )
        })
    });
    g.finish();

    let mut sub = mk(&principal_plain, "area42/+/status");
    sub.action = Action::Subscribe;
    c.bench_function("subscribe_decision_10k_rules_uncached", |b| {
        b.iter(|| black_box(plain.decide(black_box(&sub)).allowed))
    });
    let mut wild = mk(&principal_plain, "+/+/status");
    wild.action = Action::Subscribe;
    c.bench_function("subscribe_wildcard_first_10k_rules_uncached", |b| {
        b.iter(|| black_box(plain.decide(black_box(&wild)).allowed))
    });
    c.bench_function("parse_10k_rules", |b| {
        b.iter(|| Policy::parse(black_box(&text)).map(|(p, _)| p.rule_count()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
