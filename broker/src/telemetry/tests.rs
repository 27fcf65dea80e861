use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

fn rules(factor: f64, floor: f64) -> ClassRules {
    ClassRules {
        factor,
        floor,
        response: Step::Observe,
        expected_zones: Vec::new(),
        strict: false,
        bucket: None,
    }
}

/// Feeds `per_window` publishes spread over each of `windows` windows.
fn feed(
    r: &mut PublishRate,
    t: &mut Instant,
    per_window: u32,
    windows: u32,
    rules: &ClassRules,
) -> Vec<Verdict> {
    let w = Duration::from_secs(1);
    let mut out = Vec::new();
    for _ in 0..windows {
        for _ in 0..per_window {
            *t += w / per_window;
            out.extend(r.on_publish(*t, w, 3, rules));
        }
    }
    out
}

#[test]
fn a_steady_client_is_never_anomalous_and_a_flood_is_once_per_episode() {
    let rules = rules(10.0, 5.0);
    let mut t = Instant::now();
    let mut r = PublishRate::new(t);
    assert!(
        feed(&mut r, &mut t, 2, 20, &rules)
            .iter()
            .all(|v| *v == Verdict::Normal)
    );
    // 100/s against a baseline of 2/s: anomalous in every window.
    let v = feed(&mut r, &mut t, 100, 3, &rules);
    assert_eq!(v.len(), 3);
    assert!(
        matches!(v[0], Verdict::Anomalous { strikes: 1, .. }),
        "{v:?}"
    );
    assert!(
        matches!(v[2], Verdict::Anomalous { strikes: 3, .. }),
        "{v:?}"
    );
    // Back to normal: one Calm, and the baseline did not learn the flood.
    let v = feed(&mut r, &mut t, 2, 3, &rules);
    assert_eq!(v, vec![Verdict::Calm, Verdict::Normal, Verdict::Normal]);
    assert!(r.allowed_rate(&rules) < 40.0);
}

#[test]
fn the_floor_keeps_tiny_rates_quiet() {
    let rules = rules(10.0, 50.0);
    let mut t = Instant::now();
    let mut r = PublishRate::new(t);
    feed(&mut r, &mut t, 1, 10, &rules);
    // 30/s is 30× the baseline but under the floor.
    let v = feed(&mut r, &mut t, 30, 2, &rules);
    assert!(v.iter().all(|v| *v == Verdict::Normal), "{v:?}");
}

#[test]
fn token_bucket_makes_callers_wait_for_their_share() {
    let mut b = TokenBucket::new(10.0, 2.0);
    let t = Instant::now();
    assert_eq!(b.take(t), Duration::ZERO);
    assert_eq!(b.take(t), Duration::ZERO);
    let wait = b.take(t);
    assert!(
        wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
        "{wait:?}"
    );
}

fn telemetry(edit: impl FnOnce(&mut TelemetryConfig)) -> Telemetry {
    let mut cfg = TelemetryConfig {
        window: Duration::from_secs(1),
        warmup_windows: 2,
        auth_failure_burst: 3,
        ..TelemetryConfig::default()
    };
    edit(&mut cfg);
    Telemetry::new(&cfg)
}

#[test]
fn auth_failure_bursts_fire_once_per_window_per_key() {
    let t = telemetry(|_| {});
    let ip: IpAddr = "10.0.0.9".parse().unwrap();
    let now = Instant::now();
    assert!(t.on_auth_failure(ip, "a", now).is_empty());
    assert!(t.on_auth_failure(ip, "b", now).is_empty());
    let b = t.on_auth_failure(ip, "c", now);
    assert_eq!(
        b,
        vec![AuthBurst {
            by: "source",
            key: "10.0.0.9".into(),
            count: 3
        }]
    );
    assert!(
        t.on_auth_failure(ip, "d", now).is_empty(),
        "once per window"
    );
    // Same client id from three addresses: a client-id burst.
    let mut last = Vec::new();
    for i in 1..=3u8 {
        last = t.on_auth_failure(IpAddr::from([192, 168, 0, i]), "victim", now);
    }
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].by, "client_id");
    // A new window starts over.
    let later = now + Duration::from_secs(61);
    assert!(t.on_auth_failure(ip, "e", later).is_empty());
}

#[test]
fn network_spikes_are_per_slash_24() {
    let t = telemetry(|c| c.network_spike_floor = 5.0);
    let mut now = Instant::now();
    // Baseline: 1 connection per second from 10.0.0.x.
    for i in 0..5u8 {
        now += Duration::from_secs(1);
        assert!(t.on_accept(IpAddr::from([10, 0, 0, i]), now).is_none());
    }
    // 100 connections within one second from 10.0.0.0/24, then the window closes.
    let mut spikes = Vec::new();
    for i in 0..100u8 {
        now += Duration::from_millis(10);
        spikes.extend(t.on_accept(IpAddr::from([10, 0, 0, i]), now));
    }
    now += Duration::from_secs(1);
    spikes.extend(t.on_accept(IpAddr::from([10, 0, 0, 1]), now));
    assert_eq!(spikes.len(), 1, "{spikes:?}");
    assert_eq!(spikes[0].network.to_string(), "10.0.0.0/24");
    // Another network is unaffected.
    assert!(t.on_accept(IpAddr::from([10, 0, 1, 1]), now).is_none());
}

#[test]
fn unexpected_sources_by_class() {
    let t = telemetry(|c| {
        c.classes.insert(
            "sensor".into(),
            ClassTelemetry {
                expected_zones: vec!["factory".into()],
                strict: true,
                ..ClassTelemetry::default()
            },
        );
    });
    let factory: IpAddr = "10.1.2.3".parse().unwrap();
    let elsewhere: IpAddr = "203.0.113.5".parse().unwrap();
    let in_zone = |z: &str, ip: IpAddr| (z == "factory").then(|| ip == factory);
    assert_eq!(t.unexpected_source("sensor", factory, in_zone), None);
    assert_eq!(
        t.unexpected_source("sensor", elsewhere, in_zone),
        Some(true)
    );
    assert_eq!(t.unexpected_source("operator", elsewhere, in_zone), None);
}

#[test]
fn certificate_buckets() {
    let now = 1_000_000_000;
    assert_eq!(cert_expiry_bucket(now - 1, now), "expired");
    assert_eq!(cert_expiry_bucket(now + 3 * 86_400, now), "7d");
    assert_eq!(cert_expiry_bucket(now + 20 * 86_400, now), "30d");
    assert_eq!(cert_expiry_bucket(now + 60 * 86_400, now), "90d");
    assert_eq!(cert_expiry_bucket(now + 200 * 86_400, now), "later");
}

#[test]
fn networks_are_truncated() {
    assert_eq!(
        network_of("192.0.2.77".parse().unwrap()).to_string(),
        "192.0.2.0/24"
    );
    assert_eq!(
        network_of("::ffff:192.0.2.77".parse().unwrap()).to_string(),
        "192.0.2.0/24"
    );
    assert_eq!(
        network_of("2001:db8:1:2:3::9".parse().unwrap()).to_string(),
        "2001:db8:1:2::/64"
    );
}
