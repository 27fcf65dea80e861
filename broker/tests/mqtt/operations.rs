//! Operations: security telemetry (publish-rate anomalies and the response
//! ladder, brute-force bans, unexpected sources), the admin API, SIGTERM
//! drain, and a real Prometheus server scraping the broker.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS as QoS5;

use crate::clients::{QUIET, V5, WAIT, v5, v5_opts, v5_refused, v5_with};
use crate::harness::{Broker, tool_available};

const TOKEN: &str = "ops-admin-token-0123456789";

/// Fast telemetry windows for tests (the defaults are 10 s × 6).
const FAST: &str = "[telemetry]\nwindow = \"200ms\"\nwarmup_windows = 4\nanomaly_factor = 10.0\nanomaly_floor = 30.0\n";

fn http(
    b: &Broker,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}{path}", b.admin);
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut resp = match method {
        "GET" | "DELETE" => {
            let mut r = if method == "GET" {
                agent.get(&url)
            } else {
                agent.delete(&url)
            };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call().unwrap()
        }
        _ => {
            let mut r = agent.post(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(body.unwrap_or("")).unwrap()
        }
    };
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// Connects and waits for the CONNACK: `Ok` if accepted, `Err` with the
/// refusal otherwise.
async fn try_connect(opts: rumqttc::v5::MqttOptions) -> Result<V5, String> {
    let mut c = crate::clients::v5_spawn(opts);
    loop {
        match tokio::time::timeout(WAIT, c.events.recv()).await {
            Ok(Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(a))))) => {
                return if a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success {
                    Ok(c)
                } else {
                    Err(format!("{:?}", a.code))
                };
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => return Err("event loop ended".into()),
            Err(_) => return Err("no CONNACK".into()),
        }
    }
}

/// Retries `opts` until the broker accepts it (a ban ending).
async fn connect_eventually(opts: impl Fn() -> rumqttc::v5::MqttOptions) -> V5 {
    let deadline = Instant::now() + WAIT;
    loop {
        match try_connect(opts()).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "never accepted: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Publishes QoS 0 every `every` until `stop`.
fn steady(
    c: rumqttc::v5::AsyncClient,
    topic: String,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if c.publish(topic.clone(), QoS5::AtMostOnce, false, "21.5")
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(every).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooding_client_among_steady_ones_raises_exactly_one_anomaly() {
    let b = Broker::start_with(FAST);
    let mut clients: Vec<V5> = Vec::new();
    let mut tasks = Vec::new();
    for id in ["steady-1", "steady-2", "steady-3", "flooder"] {
        let c = v5(&b, id).await;
        tasks.push(steady(
            c.client.clone(),
            format!("t/{id}"),
            Duration::from_millis(50),
        ));
        clients.push(c);
    }
    // Baselines form (4 windows of 200 ms), then the flooder floods.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let flooder = clients[3].client.clone();
    for _ in 0..3000 {
        flooder
            .publish("t/flooder", QoS5::AtMostOnce, false, "x")
            .await
            .unwrap();
    }
    assert!(b.wait_log(
        &[
            "\"kind\":\"publish_rate_anomaly\"",
            "\"client_id\":\"flooder\""
        ],
        WAIT
    ));
    // Steady traffic goes on; nothing else is reported.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for t in tasks {
        t.abort();
    }
    assert_eq!(b.count_log(&["\"kind\":\"publish_rate_anomaly\""]), 1);
    assert_eq!(
        b.count_log(&[
            "\"kind\":\"publish_rate_anomaly\"",
            "\"client_id\":\"flooder\""
        ]),
        1
    );
    let (_, metrics) = http(&b, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("starling_publish_rate_anomalies_total{class=\"test\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_flooding_climbs_the_ladder_to_a_ban_that_expires() {
    let b = Broker::start_with(&format!(
        "{FAST}ban_duration = \"2s\"\n[telemetry.classes.test]\nresponse = \"ban\"\n"
    ));
    let mut c = v5(&b, "flooder").await;
    let steady_task = steady(c.client.clone(), "t/f".into(), Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    steady_task.abort();
    // Flood until the broker cuts the client off.
    let client = c.client.clone();
    let flood = tokio::spawn(async move {
        while client
            .publish("t/f", QoS5::AtMostOnce, false, "x")
            .await
            .is_ok()
        {}
    });
    let why = c.closed().await;
    flood.abort();
    // A client busy writing may see its socket close before it reads the
    // DISCONNECT; when it does read it, the reason is 0x96.
    assert!(
        why.contains("MessageRateTooHigh") || why.contains("Io") || why.contains("reset"),
        "{why}"
    );
    for step in ["throttle", "disconnect", "ban"] {
        assert!(
            b.wait_log(
                &["\"kind\":\"response\"", &format!("\"step\":\"{step}\"")],
                WAIT
            ),
            "{step}"
        );
    }
    // Banned: refused with 0x8A until the ban ends.
    let refused = v5_refused(v5_opts(&b, "flooder")).await;
    assert!(refused.contains("Banned"), "{refused}");
    connect_eventually(|| v5_opts(&b, "flooder")).await;
}

fn fleet_config(extra: &str) -> String {
    format!(
        "[auth]\npolicy_file = \"{}/tests/policies/fleet.toml\"\n{extra}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn a_brute_force_burst_leads_to_a_ban_that_expires() {
    let b = Broker::start_with(&fleet_config(
        "[telemetry]\nauth_failure_burst = 3\nauth_failure_ban = true\nban_duration = \"2s\"\n",
    ));
    for i in 0..3 {
        let mut o = v5_opts(&b, &format!("sensor-a-{i}"));
        o.set_credentials("sensor-a", "guess");
        assert!(v5_refused(o).await.contains("BadUserNamePassword"));
    }
    assert!(b.wait_log(
        &["\"kind\":\"auth_failure_burst\"", "\"by\":\"source\""],
        WAIT
    ));
    // The right password does not help from a banned source…
    let mut o = v5_opts(&b, "sensor-a-1");
    o.set_credentials("sensor-a", "s3cret");
    let refused = v5_refused(o).await;
    assert!(refused.contains("Banned"), "{refused}");
    assert!(b.wait_log(&["\"kind\":\"banned_connect\""], WAIT));
    // …until the ban expires.
    connect_eventually(|| {
        let mut o = v5_opts(&b, "sensor-a-1");
        o.set_credentials("sensor-a", "s3cret");
        o
    })
    .await;
}

fn zoned_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(
        &p,
        r#"version = 1
[zones]
plant = ["10.0.0.0/8"]
[anonymous]
enabled = true
class = "guest"
[[identity]]
name = "ops"
class = "operator"
password = "$argon2id$v=19$m=19456,t=2,p=1$K76OHiyN9VIAg7yXXVkSdw$8IYhpR1vqgk87w9zEtSbaWljhu6kbJMwpAT2Fh2ypMU"
[[rule]]
id = "connect"
effect = "allow"
action = "connect"
who = "*"
"#,
    )
    .unwrap();
    p
}

#[tokio::test]
async fn an_unexpected_source_is_reported_and_refused_for_strict_classes() {
    let dir = tempfile::tempdir().unwrap();
    let policy = zoned_policy(dir.path());
    let b = Broker::start_with(&format!(
        "[auth]\npolicy_file = \"{}\"\n\
         [telemetry.classes.guest]\nexpected_zones = [\"plant\"]\nstrict = true\n\
         [telemetry.classes.operator]\nexpected_zones = [\"plant\"]\n",
        policy.display()
    ));
    // Guests must come from the plant network: refused from loopback.
    assert!(
        v5_refused(v5_opts(&b, "g1"))
            .await
            .contains("NotAuthorized")
    );
    assert!(b.wait_log(
        &[
            "\"kind\":\"unexpected_source\"",
            "\"class\":\"guest\"",
            "\"refused\":true"
        ],
        WAIT
    ));
    // Operators are watched, not refused.
    let mut o = v5_opts(&b, "op");
    o.set_credentials("ops", "0ther");
    let (_op, ack) = v5_with(o).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    assert!(b.wait_log(
        &[
            "\"kind\":\"unexpected_source\"",
            "\"class\":\"operator\"",
            "\"refused\":false"
        ],
        WAIT
    ));
    let (_, m) = http(&b, "GET", "/metrics", None, None);
    assert!(
        m.contains("starling_unexpected_source_total{class=\"guest\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("starling_connect_failures_total{reason=\"unexpected_source\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn admin_api_requires_its_token() {
    let b = Broker::start_with("");
    for path in [
        "/api/v1/clients",
        "/api/v1/bans",
        "/api/v1/retained",
        "/api/v1/publishers/top",
    ] {
        assert_eq!(
            http(&b, "GET", path, Some(TOKEN), None).0,
            403,
            "{path} without a token configured"
        );
    }
    let b = Broker::start_with_token("", TOKEN);
    for path in [
        "/api/v1/clients",
        "/api/v1/bans",
        "/api/v1/retained",
        "/api/v1/publishers/top",
    ] {
        assert_eq!(http(&b, "GET", path, None, None).0, 401, "{path}");
        assert_eq!(
            http(&b, "GET", path, Some("wrong-token-0123456789"), None).0,
            401,
            "{path}"
        );
        assert_eq!(http(&b, "GET", path, Some(TOKEN), None).0, 200, "{path}");
    }
    assert_eq!(http(&b, "DELETE", "/api/v1/clients/x", None, None).0, 401);
    assert_eq!(http(&b, "POST", "/api/v1/bans", None, Some("{}")).0, 401);
}

#[tokio::test]
async fn admin_api_clients_retained_and_top_publishers() {
    let b = Broker::start_with_token(FAST, TOKEN);
    let mut a = v5(&b, "alpha").await;
    let _b2 = v5(&b, "beta").await;
    let _g = v5(&b, "gamma").await;
    a.subscribe("plant/#", QoS5::AtLeastOnce).await;
    // Paged listing, by client id.
    let (s, body) = http(&b, "GET", "/api/v1/clients?limit=2", Some(TOKEN), None);
    assert_eq!(s, 200, "{body}");
    let v = json(&body);
    let ids: Vec<_> = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert_eq!(v["next"], "beta");
    let (_, body) = http(
        &b,
        "GET",
        "/api/v1/clients?limit=2&after=beta",
        Some(TOKEN),
        None,
    );
    assert_eq!(json(&body)["clients"][0]["client_id"], "gamma");
    let (_, body) = http(
        &b,
        "GET",
        "/api/v1/clients?prefix=al&class=test",
        Some(TOKEN),
        None,
    );
    assert_eq!(json(&body)["clients"].as_array().unwrap().len(), 1);
    let (_, body) = http(&b, "GET", "/api/v1/clients?class=sensor", Some(TOKEN), None);
    assert_eq!(json(&body)["clients"].as_array().unwrap().len(), 0);
    // One client in detail.
    let (s, body) = http(&b, "GET", "/api/v1/clients/alpha", Some(TOKEN), None);
    assert_eq!(s, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["identity"], "anonymous");
    assert_eq!(v["class"], "test");
    assert_eq!(v["protocol"], "5.0");
    assert_eq!(v["subscriptions"], serde_json::json!(["plant/#"]));
    assert!(v["source"].as_str().unwrap().starts_with("127.0.0.1"));
    // Retained: list, delete, 404 after.
    for t in ["plant/a/status", "plant/b/status"] {
        a.client
            .publish(t, QoS5::AtLeastOnce, true, "up")
            .await
            .unwrap();
        a.puback().await;
    }
    let (_, body) = http(
        &b,
        "GET",
        "/api/v1/retained?prefix=plant/&limit=1",
        Some(TOKEN),
        None,
    );
    let v = json(&body);
    assert_eq!(v["retained"][0]["topic"], "plant/a/status");
    assert_eq!(v["retained"][0]["bytes"], 2);
    assert_eq!(v["next"], "plant/a/status");
    let (s, body) = http(
        &b,
        "DELETE",
        "/api/v1/retained/plant/a/status",
        Some(TOKEN),
        None,
    );
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        http(
            &b,
            "DELETE",
            "/api/v1/retained/plant/a/status",
            Some(TOKEN),
            None
        )
        .0,
        404
    );
    let mut late = v5(&b, "late").await;
    late.subscribe("plant/#", QoS5::AtLeastOnce).await;
    assert_eq!(late.publish().await.topic, "plant/b/status");
    late.no_publish().await;
    // Top publishers: the busy one first.
    let busy = steady(a.client.clone(), "x/busy".into(), Duration::from_millis(5));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = http(
            &b,
            "GET",
            "/api/v1/publishers/top?limit=1",
            Some(TOKEN),
            None,
        );
        let v = json(&body);
        if v["publishers"][0]["client_id"] == "alpha"
            && v["publishers"][0]["publish_rate"].as_f64().unwrap_or(0.0) > 10.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no top publisher: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    busy.abort();
    // Disconnect by the admin: v5 DISCONNECT 0x98.
    let (s, _) = http(&b, "DELETE", "/api/v1/clients/late", Some(TOKEN), None);
    assert_eq!(s, 200);
    let why = late.closed().await;
    assert!(why.contains("AdministrativeAction"), "{why}");
    assert_eq!(
        http(&b, "DELETE", "/api/v1/clients/nobody", Some(TOKEN), None).0,
        404
    );
    assert_eq!(
        http(&b, "GET", "/api/v1/clients/nobody", Some(TOKEN), None).0,
        404
    );
}

#[tokio::test]
async fn admin_api_bans_and_malformed_input() {
    let b = Broker::start_with_token("", TOKEN);
    let mut victim = v5(&b, "victim").await;
    let (s, body) = http(
        &b,
        "POST",
        "/api/v1/bans",
        Some(TOKEN),
        Some(r#"{"kind":"client_id","value":"victim","duration_secs":60,"reason":"stolen"}"#),
    );
    assert_eq!(s, 201, "{body}");
    // Connected: kicked with 0x8A; reconnecting: refused.
    // 0x8A "Banned" exists only in CONNACK: the connected client is told
    // 0x98 (administrative action).
    let why = victim.closed().await;
    assert!(why.contains("AdministrativeAction"), "{why}");
    assert!(v5_refused(v5_opts(&b, "victim")).await.contains("Banned"));
    let (_, body) = http(&b, "GET", "/api/v1/bans", Some(TOKEN), None);
    let v = json(&body);
    assert_eq!(v["bans"][0]["kind"], "client_id");
    assert_eq!(v["bans"][0]["reason"], "stolen");
    // A network ban by CIDR (the `/` is part of the path).
    let (s, body) = http(
        &b,
        "POST",
        "/api/v1/bans",
        Some(TOKEN),
        Some(r#"{"kind":"network","value":"192.0.2.0/24","duration_secs":60}"#),
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        http(
            &b,
            "DELETE",
            "/api/v1/bans/network/192.0.2.0/24",
            Some(TOKEN),
            None
        )
        .0,
        200
    );
    assert_eq!(
        http(
            &b,
            "DELETE",
            "/api/v1/bans/client_id/victim",
            Some(TOKEN),
            None
        )
        .0,
        200
    );
    assert_eq!(
        http(
            &b,
            "DELETE",
            "/api/v1/bans/client_id/victim",
            Some(TOKEN),
            None
        )
        .0,
        404
    );
    let _back = v5(&b, "victim").await;
    // Malformed input: clear 400s, never a crash.
    for body in [
        "not json",
        "{}",
        r#"{"kind":"planet","value":"x","duration_secs":1}"#,
        r#"{"kind":"network","value":"not-an-ip","duration_secs":1}"#,
        r#"{"kind":"client_id","value":"x","duration_secs":0}"#,
        r#"{"kind":"client_id","value":"","duration_secs":5}"#,
        r#"{"kind":"client_id","value":"x","duration_secs":5,"extra":1}"#,
        r#"{"kind":"client_id","value":"x","duration_secs":-5}"#,
    ] {
        let (s, resp) = http(&b, "POST", "/api/v1/bans", Some(TOKEN), Some(body));
        assert_eq!(s, 400, "{body} → {resp}");
        assert!(resp.contains("\"error\""), "{body} → {resp}");
    }
    for path in [
        "/api/v1/clients?limit=0",
        "/api/v1/clients?limit=5000",
        "/api/v1/clients?limit=abc",
        "/api/v1/clients?bogus=1",
        "/api/v1/retained?class=x",
        "/api/v1/publishers/top?limit=-1",
    ] {
        let (s, resp) = http(&b, "GET", path, Some(TOKEN), None);
        assert_eq!(s, 400, "{path} → {resp}");
        assert!(resp.contains("error"), "{path} → {resp}");
    }
    assert_eq!(
        http(&b, "DELETE", "/api/v1/retained/a/+", Some(TOKEN), None).0,
        400
    );
    assert_eq!(
        http(&b, "DELETE", "/api/v1/bans/planet/x", Some(TOKEN), None).0,
        400
    );
    // Still serving.
    let _c = v5(&b, "still-here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_before_the_deadline() {
    let mut b = Broker::start_with("[node]\ndrain_window = \"2s\"\nshutdown_grace = \"6s\"\n");
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(v5(&b, &format!("c{i}")).await);
    }
    assert_eq!(http(&b, "GET", "/readyz", None, None).0, 200);
    let pid = b.pid().to_string();
    let sent = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    // Not ready at once, while clients are still being let go.
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, body) = http(&b, "GET", "/readyz", None, None);
        if s == 503 {
            assert!(body.contains("draining"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New connections are not accepted while draining.
    let mut late = crate::clients::v5_spawn(v5_opts(&b, "late"));
    let refused = tokio::time::timeout(WAIT, late.events.recv()).await;
    assert!(
        !matches!(refused, Ok(Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(ref a)))))
            if a.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success),
        "accepted while draining: {refused:?}"
    );
    // Every v5 client is told 0x8B; the drain ran with the configured
    // window (how evenly it spreads them is timing: not asserted here).
    for c in &mut clients {
        let why = c.closed().await;
        assert!(why.contains("ServerShuttingDown"), "{why}");
    }
    assert!(b.wait_log(&["draining", "clients=20", "window=2s"], WAIT));
    let status = tokio::task::block_in_place(|| b.wait_exit());
    assert!(status.success(), "{status:?}");
    // Within shutdown_grace (6 s), with slack for a loaded machine.
    assert!(
        sent.elapsed() < Duration::from_secs(6) + QUIET * 4,
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_broker() {
    if !tool_available("prometheus", "a_real_prometheus_scrapes_the_broker") {
        return;
    }
    let b = Broker::start();
    let mut c = v5(&b, "scraped").await;
    c.client
        .publish("t/x", QoS5::AtLeastOnce, false, "1")
        .await
        .unwrap();
    c.puback().await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: starling\n    static_configs:\n      - targets: ['{}']\n",
            b.admin
        ),
    )
    .unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(std::mem::replace(
        &mut prom,
        std::process::Command::new("true").spawn().unwrap(),
    ));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let query = |q: &str| -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
        let mut r = agent.get(&url).call().ok()?;
        serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = query("starling_messages_received_total%7Bqos%3D%221%22%7D")
            && let Some(r) = v["data"]["result"].as_array()
            && let Some(first) = r.first()
        {
            assert_eq!(first["metric"]["job"], "starling");
            assert_eq!(first["value"][1], "1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let v = query("up%7Bjob%3D%22starling%22%7D").unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
}

#[tokio::test]
async fn security_events_on_sys_reach_only_allowed_readers() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        r#"version = 1
[anonymous]
enabled = true
class = "guest"
[[identity]]
name = "soc"
class = "security"
password = "$argon2id$v=19$m=19456,t=2,p=1$K76OHiyN9VIAg7yXXVkSdw$8IYhpR1vqgk87w9zEtSbaWljhu6kbJMwpAT2Fh2ypMU"
[[rule]]
id = "connect"
effect = "allow"
action = "connect"
who = "*"
[[rule]]
id = "soc-reads-security"
effect = "allow"
action = ["subscribe", "receive"]
who = "soc"
topic = "$SYS/starling/security/#"
[[rule]]
id = "guest-sys"
effect = "allow"
action = "subscribe"
who = "anonymous"
topic = "$SYS/#"
"#,
    )
    .unwrap();
    let b = Broker::start_with(&format!(
        "[auth]\npolicy_file = \"{}\"\n[security]\npublish_sys = true\n",
        policy.display()
    ));
    let mut o = v5_opts(&b, "soc-1");
    o.set_credentials("soc", "0ther");
    let (mut soc, _) = v5_with(o).await;
    soc.subscribe("$SYS/starling/security/#", QoS5::AtMostOnce)
        .await;
    // A guest may subscribe to $SYS/# but not receive security events.
    let mut guest = v5(&b, "guest-1").await;
    guest.subscribe("$SYS/starling/#", QoS5::AtMostOnce).await;
    // A denied publish makes an acl_denied event.
    guest
        .client
        .publish("secret/x", QoS5::AtLeastOnce, false, "x")
        .await
        .unwrap();
    let p = soc.publish().await;
    assert_eq!(p.topic, "$SYS/starling/security/acl_denied");
    let v = json(std::str::from_utf8(&p.payload).unwrap());
    assert_eq!(v["client_id"], "guest-1");
    assert_eq!(v["topic"], "secret/x");
    assert_eq!(v["rule"], "default-deny");
    guest.no_publish().await;
}
