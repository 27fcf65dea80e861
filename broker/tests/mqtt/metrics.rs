//! `GET /metrics` on the admin listener, read the way Prometheus reads it:
//! counters move by what clients did, gauges come back down, refusals are
//! counted by reason, and nothing identifies a client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, PubAckReason};

use crate::clients::{WAIT, v4, v4_opts, v4_refused, v5, v5_opts, v5_with};
use crate::harness::Broker;

/// One sample of the exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The sum of the samples of `name` whose labels include `labels`
    /// (0 when there is none, as Prometheus treats a series not yet born).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Whether any sample of `name` exists.
    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// GETs `/metrics` (blocking HTTP off the test's runtime thread) and
/// checks the content type.
async fn scrape(b: &Broker) -> Scrape {
    let url = format!("http://{}/metrics", b.admin);
    let (ctype, text) = tokio::task::spawn_blocking(move || {
        let mut resp = ureq::get(&url).call().unwrap();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (ctype, resp.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(ctype, "text/plain; version=0.0.4");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not `name{{labels}} value`: {l:?}")))
        .collect();
    Scrape { text, samples }
}

/// Parses `name value` or `name{k="v",...} value`, tolerating escapes in
/// label values; `None` if the line is neither.
fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let first = name.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_' || first == ':')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' if key.is_empty() => break i,
                ',' if key.is_empty() => continue,
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => value.push(chars.next()?.1),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                _ => return None,
            }
        };
        rest = &body[end + 1..];
    }
    let value = rest.strip_prefix(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Scrapes until `done` holds (the broker settles a closed connection
/// asynchronously); panics with the last scrape after `WAIT`.
async fn scrape_until(b: &Broker, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = scrape(b).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "never settled:\n{}", s.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn publishes_move_the_message_counters() {
    let b = Broker::start();
    let mut sub = v4(&b, "metrics-sub").await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut publ = v4(&b, "metrics-pub").await;
    let before = scrape(&b).await;

    const N: usize = 7;
    for i in 0..N {
        publ.client
            .publish("m/zero", QoS::AtMostOnce, false, vec![i as u8; 10])
            .await
            .unwrap();
    }
    for _ in 0..3 {
        publ.client
            .publish("m/one", QoS::AtLeastOnce, false, vec![1u8; 4])
            .await
            .unwrap();
        publ.puback().await;
    }
    for _ in 0..N + 3 {
        sub.publish().await;
    }
    // Nobody subscribes there: counted as dropped once the broker acks it.
    publ.client
        .publish("nobody/here", QoS::AtLeastOnce, false, b"x".to_vec())
        .await
        .unwrap();
    publ.puback().await;

    let after = scrape(&b).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    assert_eq!(
        delta("starling_messages_received_total", &[("qos", "0")]),
        N as f64
    );
    assert_eq!(
        delta("starling_messages_received_total", &[("qos", "1")]),
        4.0
    );
    assert_eq!(
        delta("starling_messages_sent_total", &[("qos", "0")]),
        N as f64
    );
    assert_eq!(delta("starling_messages_sent_total", &[("qos", "1")]), 3.0);
    assert_eq!(
        delta("starling_received_bytes_total", &[]),
        (N * 10 + 3 * 4 + 1) as f64
    );
    assert_eq!(
        delta("starling_sent_bytes_total", &[]),
        (N * 10 + 3 * 4) as f64
    );
    assert_eq!(
        delta(
            "starling_messages_dropped_total",
            &[("reason", "no_subscribers")]
        ),
        1.0
    );
    // Every live delivery is one latency sample, and a fast one.
    assert_eq!(
        delta("starling_delivery_latency_seconds_count", &[]),
        (N + 3) as f64
    );
    assert_eq!(
        delta("starling_delivery_latency_seconds_bucket", &[("le", "10")]),
        (N + 3) as f64
    );
    assert_eq!(after.get("starling_subscriptions", &[]), 1.0);
    // Two clients connected, nothing waiting for either of them.
    assert_eq!(after.get("starling_queued_messages_count", &[]), 2.0);
    assert_eq!(
        after.get("starling_queued_messages_bucket", &[("le", "0")]),
        2.0
    );
}

#[tokio::test]
async fn connections_go_up_and_back_down() {
    let b = Broker::start();
    let listener = |p: &'static str| [("listener", "mqtt"), ("protocol", p)];
    let before = scrape(&b).await;
    let mut c5 = v5(&b, "gauge-five").await;
    let mut c4 = v4(&b, "gauge-four").await;
    let up = scrape(&b).await;
    for p in ["5.0", "3.1.1"] {
        assert_eq!(up.get("starling_connections_current", &listener(p)), 1.0);
        assert_eq!(
            up.get("starling_connections_total", &listener(p))
                - before.get("starling_connections_total", &listener(p)),
            1.0
        );
    }
    assert_eq!(
        up.get("starling_connect_attempts_total", &[])
            - before.get("starling_connect_attempts_total", &[]),
        2.0
    );
    c5.disconnect().await;
    c4.disconnect().await;
    let down = scrape_until(&b, |s| s.get("starling_connections_current", &[]) == 0.0).await;
    assert_eq!(
        down.get("starling_connections_total", &[]),
        up.get("starling_connections_total", &[]),
        "a disconnect is not a new connection"
    );
}

#[tokio::test]
async fn refusals_and_denials_are_counted_by_reason() {
    let policy = format!("{}/tests/policies/fleet.toml", env!("CARGO_MANIFEST_DIR"));
    let b = Broker::start_with(&format!("[auth]\npolicy_file = \"{policy}\"\n"));
    let before = scrape(&b).await;
    assert!(before.get("starling_policy_version", &[]) >= 1.0);
    assert_eq!(
        before.get("starling_policy_info", &[("revision", "fleet-1")]),
        1.0,
        "{}",
        before.text
    );

    let mut wrong = v4_opts(&b, "sensor-a-1");
    wrong.set_credentials("sensor-a", "not-the-password");
    v4_refused(wrong).await;
    let after = scrape(&b).await;
    assert_eq!(
        after.get(
            "starling_auth_failures_total",
            &[("reason", "bad_password")]
        ),
        1.0,
        "{}",
        after.text
    );
    assert_eq!(
        after.get(
            "starling_connect_failures_total",
            &[("reason", "bad_credentials")]
        ),
        1.0
    );
    assert!(
        after.get(
            "starling_security_events_total",
            &[("kind", "auth_failure")]
        ) >= 1.0
    );
    assert_eq!(after.get("starling_connections_current", &[]), 0.0);

    // The right password gets in; a publish outside its own branch is
    // refused (v5 0x87) and counted as a denial and a drop.
    let mut o = v5_opts(&b, "sensor-a-2");
    o.set_credentials("sensor-a", "s3cret");
    let (mut sensor, ack) = v5_with(o).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    sensor
        .client
        .publish("plant/valve", QoS5::AtLeastOnce, false, b"open".to_vec())
        .await
        .unwrap();
    assert_eq!(sensor.puback().await.reason, PubAckReason::NotAuthorized);
    let denied = scrape(&b).await;
    assert_eq!(
        denied.get("starling_acl_denials_total", &[("action", "publish")]),
        1.0,
        "{}",
        denied.text
    );
    assert_eq!(
        denied.get("starling_messages_dropped_total", &[("reason", "denied")]),
        1.0
    );
    assert_eq!(
        denied.get(
            "starling_connections_current",
            &[("listener", "mqtt"), ("protocol", "5.0")]
        ),
        1.0
    );
}

#[tokio::test]
async fn exposition_is_well_formed_and_names_no_client() {
    let b = Broker::start();
    let mut sub = v5(&b, "secret-client-id").await;
    sub.subscribe("secret/topic/#", QoS5::AtLeastOnce).await;
    let publ = v5(&b, "another-secret-id").await;
    publ.client
        .publish("secret/topic/1", QoS5::AtMostOnce, false, b"x".to_vec())
        .await
        .unwrap();
    sub.publish().await;
    // Every line was parsed by `scrape`; now what they may not contain.
    let s = scrape(&b).await;
    for sample in &s.samples {
        assert!(
            sample.name.starts_with("starling_") || sample.name.starts_with("process_"),
            "{sample:?}"
        );
        for (k, v) in &sample.labels {
            assert!(!k.contains("client"), "{sample:?}");
            assert!(
                !v.contains("secret"),
                "a client id or topic leaked: {sample:?}"
            );
        }
    }
    for line in s.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split(' ').skip(2);
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "counters and only counters end in _total: {line}"
        );
    }
    for family in [
        "starling_connections_current",
        "starling_connect_failures_total",
        "starling_messages_dropped_total",
        "starling_delivery_latency_seconds_bucket",
        "starling_inflight_messages_bucket",
        "starling_queued_messages_bucket",
        "starling_sessions",
        "starling_subscriptions",
        "starling_retained_messages",
        "starling_retained_bytes",
        "starling_policy_version",
        "starling_policy_info",
        "starling_policy_reloads_total",
        "starling_security_events_total",
        "starling_cluster_leader",
        "starling_cluster_ready",
        "starling_cluster_members",
        "starling_cluster_raft_term",
        "starling_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(s.has(family), "{family} missing:\n{}", s.text);
    }
    // A single node leads its own group; it becomes ready once serving.
    assert_eq!(s.get("starling_cluster_leader", &[]), 1.0);
    assert_eq!(s.get("starling_cluster_members", &[]), 1.0);
    scrape_until(&b, |s| s.get("starling_cluster_ready", &[]) == 1.0).await;
    assert_eq!(
        s.get(
            "starling_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

#[tokio::test]
async fn retained_store_is_measured() {
    let b = Broker::start();
    let mut publ = v4(&b, "retainer").await;
    for (topic, payload) in [("r/a", &b"12345"[..]), ("r/b", b"123"), ("r/a", b"1")] {
        publ.client
            .publish(topic, QoS::AtLeastOnce, true, payload.to_vec())
            .await
            .unwrap();
        publ.puback().await;
    }
    let s = scrape(&b).await;
    assert_eq!(s.get("starling_retained_messages", &[]), 2.0);
    assert_eq!(s.get("starling_retained_bytes", &[]), 4.0);
    // An empty retained message clears the topic.
    publ.client
        .publish("r/b", QoS::AtLeastOnce, true, Vec::new())
        .await
        .unwrap();
    publ.puback().await;
    let s = scrape(&b).await;
    assert_eq!(s.get("starling_retained_messages", &[]), 1.0);
    assert_eq!(s.get("starling_retained_bytes", &[]), 1.0);
}

#[tokio::test]
async fn tls_listeners_report_their_certificate_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    p.not_after = rcgen::date_time_ymd(2030, 1, 2);
    let cert = p.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let listeners = format!(
        "[[listeners]]\nname = \"mqtt\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"mqtts\"\nbind = \"127.0.0.1:0\"\n\
         [listeners.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    );
    let b = Broker::start_raw_config_in(dir, &listeners, "");
    let s = scrape(&b).await;
    let name = "starling_tls_server_cert_expiry_timestamp_seconds";
    // 2030-01-02T00:00:00Z
    assert_eq!(s.get(name, &[("listener", "mqtts")]), 1_893_542_400.0);
    assert_eq!(
        s.samples.iter().filter(|x| x.name == name).count(),
        1,
        "plain listeners have no certificate"
    );
}

#[test]
fn the_line_parser_is_tolerant_but_not_blind() {
    let s = parse_line(r#"a_b{x="1",y="q\"uo\\te"} 2.5"#).unwrap();
    assert_eq!(s.labels["y"], "q\"uo\\te");
    assert_eq!(s.value, 2.5);
    assert_eq!(parse_line("up 1").unwrap().value, 1.0);
    assert_eq!(parse_line(r#"h_bucket{le="+Inf"} 3"#).unwrap().value, 3.0);
    assert!(parse_line("no value").is_none());
    assert!(parse_line("1bad 2").is_none());
    assert!(parse_line(r#"x{y=1} 2"#).is_none());
}
