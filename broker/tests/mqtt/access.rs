//! Access control enforced by the broker: authentication at CONNECT,
//! publish/subscribe/will/receive decisions, the bypasses threats.md lists,
//! hot reload (file change, SIGHUP, admin API) with revocation, and the
//! security events. Policy: `tests/policies/fleet.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, SubscribeReasonCode as Sub5};

use crate::clients::{
    V4, V5, WAIT, v4_opts, v4_refused, v4_with_ack, v5_opts, v5_refused, v5_with,
};
use crate::harness::Broker;

const TOKEN: &str = "access-admin-token-0123456789";

fn fleet_policy() -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/policies/fleet.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// A broker running the fleet policy from a file in `dir` (so tests can
/// rewrite it).
fn fleet_broker(dir: &Path) -> Broker {
    let path = dir.join("policy.toml");
    std::fs::copy(fleet_policy(), &path).unwrap();
    Broker::start_with_token(
        &format!("[auth]\npolicy_file = \"{}\"\n", path.display()),
        TOKEN,
    )
}

async fn sensor5(b: &Broker, client_id: &str) -> V5 {
    let mut o = v5_opts(b, client_id);
    o.set_credentials("sensor-a", "s3cret");
    let (c, ack) = v5_with(o).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    c
}

async fn operator5(b: &Broker, client_id: &str, clean: bool) -> (V5, bool) {
    let mut o = v5_opts(b, client_id);
    o.set_credentials("operator", "0ther");
    o.set_clean_start(clean);
    if !clean {
        o.set_session_expiry_interval(Some(300));
    }
    let (c, ack) = v5_with(o).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    (c, ack.session_present)
}

fn admin(b: &Broker, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}{path}", b.admin);
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut resp = match method {
        "POST" => {
            let mut r = agent.post(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send_empty().unwrap()
        }
        _ => {
            let mut r = agent.get(&url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call().unwrap()
        }
    };
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

fn policy_seq(b: &Broker) -> u64 {
    let (status, body) = admin(b, "GET", "/api/v1/policy", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["seq"].as_u64().unwrap()
}

/// Waits until the broker reports a policy sequence above `seq`.
fn wait_seq_above(b: &Broker, seq: u64) {
    let deadline = std::time::Instant::now() + WAIT;
    while policy_seq(b) <= seq {
        assert!(std::time::Instant::now() < deadline, "policy never changed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn connect_requires_valid_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    // v5: wrong password → 0x86; a certificate-less identity is fine with
    // its password.
    let mut o = v5_opts(&b, "sensor-a-1");
    o.set_credentials("sensor-a", "wrong");
    assert!(v5_refused(o).await.contains("BadUserNamePassword"));
    let mut o = v5_opts(&b, "x");
    o.set_credentials("nobody", "s3cret");
    assert!(v5_refused(o).await.contains("BadUserNamePassword"));
    // 3.1.1: return code 4.
    let mut o = v4_opts(&b, "sensor-a-1");
    o.set_credentials("sensor-a", "wrong");
    assert!(v4_refused(o).await.contains("BadUserNamePassword"));
    let _ok = sensor5(&b, "sensor-a-1").await;
    // The failures are security events naming the reason.
    assert!(b.wait_log(&["\"kind\":\"auth_failure\"", "bad_password"], WAIT));
    assert!(b.wait_log(&["\"kind\":\"auth_failure\"", "unknown_user"], WAIT));
}

#[tokio::test]
async fn default_deny_without_a_policy() {
    // No [auth] policy at all: the broker starts, and refuses everyone.
    let b = Broker::start_with("[auth]\nwatch = true\n");
    assert!(
        v5_refused(v5_opts(&b, "anyone"))
            .await
            .contains("NotAuthorized")
    );
    assert!(
        v4_refused(v4_opts(&b, "anyone"))
            .await
            .contains("NotAuthorized")
    );
}

#[tokio::test]
async fn client_id_is_bound_to_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    // The sensor's client id must start with "sensor-a-".
    let mut o = v5_opts(&b, "operator-console");
    o.set_credentials("sensor-a", "s3cret");
    assert!(v5_refused(o).await.contains("NotAuthorized"));
    // Nobody else may use a sensor's client id, with or without clean
    // start: not an anonymous client, not the operator.
    let mut s = sensor5(&b, "sensor-a-7").await;
    let mut o = v5_opts(&b, "sensor-a-7");
    o.set_clean_start(false);
    assert!(v5_refused(o).await.contains("NotAuthorized"));
    let mut o = v5_opts(&b, "sensor-a-7");
    o.set_credentials("operator", "0ther");
    o.set_clean_start(false);
    assert!(v5_refused(o).await.contains("NotAuthorized"));
    let mut o = v4_opts(&b, "sensor-a-7");
    o.set_clean_session(false);
    assert!(v4_refused(o).await.contains("NotAuthorized"));
    // The sensor was never disturbed.
    s.client
        .publish(
            "telemetry/sensor-a-7/t",
            QoS5::AtLeastOnce,
            false,
            "still here",
        )
        .await
        .unwrap();
    assert_eq!(s.puback().await.reason, PubAckReason::Success);
}

#[tokio::test]
async fn publish_is_limited_to_the_own_topic_branch() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let (mut op, _) = operator5(&b, "op-watch", true).await;
    op.subscribe("telemetry/#", QoS5::AtLeastOnce).await;
    let mut s = sensor5(&b, "sensor-a-1").await;
    // Own branch: delivered.
    s.client
        .publish("telemetry/sensor-a-1/t", QoS5::AtLeastOnce, false, "21")
        .await
        .unwrap();
    assert_eq!(s.puback().await.reason, PubAckReason::Success);
    assert_eq!(op.publish().await.topic, "telemetry/sensor-a-1/t");
    // Another sensor's branch: v5 PUBACK 0x87, not delivered.
    s.client
        .publish("telemetry/sensor-b-1/t", QoS5::AtLeastOnce, false, "x")
        .await
        .unwrap();
    assert_eq!(s.puback().await.reason, PubAckReason::NotAuthorized);
    // QoS 0 cannot be answered: dropped.
    s.client
        .publish("telemetry/sensor-b-1/t", QoS5::AtMostOnce, false, "x")
        .await
        .unwrap();
    // QoS 2 exceeds max_qos = 1 of the grant.
    s.client
        .publish("telemetry/sensor-a-1/t", QoS5::ExactlyOnce, false, "x")
        .await
        .unwrap();
    op.no_publish().await;
    assert!(b.wait_log(
        &[
            "\"kind\":\"acl_denied\"",
            "\"action\":\"publish\"",
            "\"topic\":\"telemetry/sensor-b-1/t\"",
            "\"rule\":\"default-deny\"",
            "\"identity\":\"sensor-a\"",
            "\"class\":\"sensor\""
        ],
        WAIT
    ));
}

#[tokio::test]
async fn v4_denied_publish_is_acknowledged_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let (mut op, _) = operator5(&b, "op-watch", true).await;
    op.subscribe("telemetry/#", QoS5::AtLeastOnce).await;
    let mut o = v4_opts(&b, "sensor-a-2");
    o.set_credentials("sensor-a", "s3cret");
    let (mut s, ack): (V4, _) = v4_with_ack(o).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    s.client
        .publish("telemetry/other/t", QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    // 3.1.1 has no negative PUBACK: acknowledged (so it is not resent
    // forever), never delivered.
    s.puback().await;
    op.no_publish().await;
}

#[tokio::test]
async fn variables_never_widen_access() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let (mut op, _) = operator5(&b, "op-watch", true).await;
    op.subscribe("telemetry/#", QoS5::AtLeastOnce).await;
    // Client ids that would widen `telemetry/${client_id}/#` if substituted
    // as text: a wildcard, a separator. The connect binding
    // (`${username}-` prefix) lets them in; the publish grant must not.
    for id in ["sensor-a-+", "sensor-a-#", "sensor-a-x/y"] {
        let mut s = sensor5(&b, id).await;
        for topic in ["telemetry/sensor-a-x/y/t", "telemetry/anything/t"] {
            s.client
                .publish(topic, QoS5::AtLeastOnce, false, "x")
                .await
                .unwrap();
            assert_eq!(
                s.puback().await.reason,
                PubAckReason::NotAuthorized,
                "{id} → {topic}"
            );
        }
    }
    op.no_publish().await;
}

#[tokio::test]
async fn subscribe_is_checked_per_filter() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let (mut op, _) = operator5(&b, "op-watch", true).await;
    // Granted exactly, narrower, wider, a shared subscription to a granted
    // and to a denied filter.
    let a = op.subscribe("telemetry/#", QoS5::AtLeastOnce).await;
    assert_eq!(a.return_codes, [Sub5::Success(QoS5::AtLeastOnce)]);
    let a = op.subscribe("plant/+/status", QoS5::AtMostOnce).await;
    assert_eq!(a.return_codes, [Sub5::Success(QoS5::AtMostOnce)]);
    let a = op.subscribe("#", QoS5::AtMostOnce).await;
    assert_eq!(a.return_codes, [Sub5::NotAuthorized]);
    let a = op.subscribe("+/x", QoS5::AtMostOnce).await;
    assert_eq!(a.return_codes, [Sub5::NotAuthorized]);
    let a = op.subscribe("$share/g/telemetry/#", QoS5::AtMostOnce).await;
    assert_eq!(a.return_codes, [Sub5::Success(QoS5::AtMostOnce)]);
    let a = op.subscribe("$share/g/admin/#", QoS5::AtMostOnce).await;
    assert_eq!(a.return_codes, [Sub5::NotAuthorized]);
    let a = op.subscribe("$SYS/#", QoS5::AtMostOnce).await;
    assert_eq!(a.return_codes, [Sub5::NotAuthorized]);
    // 3.1.1 gets 0x80.
    let mut o = v4_opts(&b, "guest-1");
    o.set_clean_session(true);
    let (mut g, _) = v4_with_ack(o).await;
    let a = g.subscribe("public/#", QoS::AtMostOnce).await;
    assert_eq!(
        a.return_codes,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    let a = g.subscribe("telemetry/#", QoS::AtMostOnce).await;
    assert_eq!(a.return_codes, [rumqttc::SubscribeReasonCode::Failure]);
}

#[tokio::test]
async fn will_to_a_denied_topic_refuses_the_connect() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let will = |topic: &str| {
        rumqttc::v5::mqttbytes::v5::LastWill::new(topic, "gone", QoS5::AtLeastOnce, false, None)
    };
    let mut o = v5_opts(&b, "sensor-a-3");
    o.set_credentials("sensor-a", "s3cret");
    o.set_last_will(will("telemetry/sensor-b/status"));
    assert!(v5_refused(o).await.contains("NotAuthorized"));
    // Its own branch is fine, and the will fires on an abrupt close.
    let (mut op, _) = operator5(&b, "op-watch", true).await;
    op.subscribe("telemetry/#", QoS5::AtLeastOnce).await;
    let mut o = v5_opts(&b, "sensor-a-3");
    o.set_credentials("sensor-a", "s3cret");
    o.set_last_will(will("telemetry/sensor-a-3/status"));
    let (s, _) = v5_with(o).await;
    s.kill();
    assert_eq!(op.publish().await.topic, "telemetry/sensor-a-3/status");
}

#[tokio::test]
async fn retained_messages_are_checked_at_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let (op, _) = operator5(&b, "op-writer", true).await;
    for (topic, payload) in [
        ("plant/line1/status", "up"),
        ("plant/secret/key", "hunter2"),
    ] {
        op.client
            .publish(topic, QoS5::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }
    let mut op = op;
    op.puback().await;
    op.puback().await;
    // The reader may subscribe to plant/# but never receive plant/secret/#.
    let (mut reader, _) = operator5(&b, "op-reader", true).await;
    reader.subscribe("plant/#", QoS5::AtLeastOnce).await;
    let p = reader.publish().await;
    assert_eq!(p.topic, "plant/line1/status");
    reader.no_publish().await;
    // Live messages on the secret branch are withheld too.
    op.client
        .publish("plant/secret/key", QoS5::AtMostOnce, false, "x")
        .await
        .unwrap();
    reader.no_publish().await;
}

#[tokio::test]
async fn reload_revokes_live_and_stored_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let seq = policy_seq(&b);
    // A live subscriber and an offline persistent session, both on plant/#.
    let (mut live, _) = operator5(&b, "op-live", true).await;
    live.subscribe("plant/#", QoS5::AtLeastOnce).await;
    let (mut stored, _) = operator5(&b, "op-stored", false).await;
    stored.subscribe("plant/#", QoS5::AtLeastOnce).await;
    stored.disconnect().await;
    // The new policy no longer lets operators read plant/# (they may still
    // publish there).
    let text = std::fs::read_to_string(fleet_policy())
        .unwrap()
        .replace(
            "topic = [\"telemetry/#\", \"plant/#\"]",
            "topic = [\"telemetry/#\"]",
        )
        .replace("revision = \"fleet-1\"", "revision = \"fleet-2\"");
    std::fs::write(dir.path().join("policy.toml"), text).unwrap();
    // The file watcher picks it up.
    wait_seq_above(&b, seq);
    let (pub_, _) = operator5(&b, "op-publisher", true).await;
    pub_.client
        .publish("plant/line1/status", QoS5::AtLeastOnce, false, "after")
        .await
        .unwrap();
    live.no_publish().await;
    assert!(b.wait_log(&["\"kind\":\"revoked\"", "\"client_id\":\"op-live\""], WAIT));
    // The persistent session resumes without the subscription and without
    // the message queued while it was offline.
    let (mut stored, present) = operator5(&b, "op-stored", false).await;
    assert!(present);
    stored.no_publish().await;
    pub_.client
        .publish("plant/line1/status", QoS5::AtLeastOnce, false, "again")
        .await
        .unwrap();
    stored.no_publish().await;
}

#[tokio::test]
async fn bad_policy_files_are_refused_and_the_last_good_stays() {
    let dir = tempfile::tempdir().unwrap();
    let b = fleet_broker(dir.path());
    let path = dir.path().join("policy.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let seq = policy_seq(&b);
    let truncated = &good[..good.len() / 2];
    for bad in ["", truncated, "\u{0}\u{1}garbage{{", "version = 2\n"] {
        std::fs::write(&path, bad).unwrap();
        let (status, body) = admin(&b, "POST", "/api/v1/policy/reload", Some(TOKEN));
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("\"rejected\""), "{body}");
    }
    assert_eq!(policy_seq(&b), seq);
    // The good policy still decides.
    let (mut op, _) = operator5(&b, "op-watch", true).await;
    let a = op.subscribe("telemetry/#", QoS5::AtLeastOnce).await;
    assert_eq!(a.return_codes, [Sub5::Success(QoS5::AtLeastOnce)]);
    assert!(b.wait_log(&["\"kind\":\"policy_rejected\""], WAIT));
    // The admin API needs its token.
    assert_eq!(admin(&b, "POST", "/api/v1/policy/reload", None).0, 401);
}

#[tokio::test]
async fn sighup_reloads_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::copy(fleet_policy(), &path).unwrap();
    let b = Broker::start_with_token(
        &format!(
            "[auth]\npolicy_file = \"{}\"\nwatch = false\n",
            path.display()
        ),
        TOKEN,
    );
    let seq = policy_seq(&b);
    let (mut g, _) = v4_with_ack(v4_opts(&b, "guest-1")).await;
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("topic = \"public/#\"", "topic = [\"public/#\", \"news/#\"]");
    std::fs::write(&path, text).unwrap();
    // Not watched: nothing changes until the signal.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(policy_seq(&b), seq);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_seq_above(&b, seq);
    let a = g.subscribe("news/#", QoS::AtMostOnce).await;
    assert_eq!(
        a.return_codes,
        [rumqttc::SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
}

#[test]
fn a_bad_policy_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(
        &path,
        "version = 1\n[[rule]]\nid = \"x\"\neffect = \"allow\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--policy")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("auth.policy_file") && err.contains("policy.toml:"),
        "{err}"
    );
}
