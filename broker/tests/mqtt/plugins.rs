//! Built-in plugins (`[[plugins]]`) in a running broker: a JSON payload
//! check and a per-topic payload limit refuse publishes with the v5 reason
//! code, drop them where MQTT has no answer, count them in `/metrics`, and a
//! bad plugin configuration stops start-up.

use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::PubAckReason;

use crate::clients::{v4, v5};
use crate::harness::Broker;

const PLUGINS: &str = "[[plugins]]\nkind = \"json_payload\"\ntopics = [\"sensors/#\"]\n\
required_keys = [\"value\"]\n\n\
[[plugins]]\nkind = \"payload_limit\"\nname = \"short-commands\"\ntopics = [\"cmd/+\"]\nmax_bytes = 8\n";

#[tokio::test]
async fn json_payload_refuses_malformed_readings() {
    let b = Broker::start_with(PLUGINS);
    let mut sub = v5(&b, "plugin-watch").await;
    sub.subscribe("#", QoS5::AtLeastOnce).await;
    let mut p = v5(&b, "plugin-sensor").await;

    // v5 QoS 1: refused with 0x99, never delivered.
    p.client
        .publish("sensors/t1", QoS5::AtLeastOnce, false, "{\"value\": ")
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::PayloadFormatInvalid);
    p.client
        .publish("sensors/t1", QoS5::AtLeastOnce, false, "{\"unit\": \"C\"}")
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::PayloadFormatInvalid);
    // A valid reading, and a topic outside the plugin's filters, pass.
    p.client
        .publish("sensors/t1", QoS5::AtLeastOnce, false, "{\"value\": 21.5}")
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::Success);
    let got = sub.publish().await;
    assert_eq!(&got.payload[..], b"{\"value\": 21.5}");
    p.client
        .publish("logs/t1", QoS5::AtLeastOnce, false, "plain text")
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::Success);
    assert_eq!(&sub.publish().await.payload[..], b"plain text");

    // QoS 0 has no answer: dropped; the next valid one arrives in its place.
    let mut p4 = v4(&b, "plugin-sensor-v4").await;
    p4.client
        .publish("sensors/t2", QoS::AtMostOnce, false, "nope")
        .await
        .unwrap();
    p4.client
        .publish("sensors/t2", QoS::AtMostOnce, false, "{\"value\": 1}")
        .await
        .unwrap();
    assert_eq!(&sub.publish().await.payload[..], b"{\"value\": 1}");
    // 3.1.1 QoS 1: acknowledged (no negative PUBACK) and dropped.
    p4.client
        .publish("sensors/t2", QoS::AtLeastOnce, false, "[]")
        .await
        .unwrap();
    p4.puback().await;
    sub.no_publish().await;
}

#[tokio::test]
async fn payload_limit_applies_to_its_topics_only_and_is_counted() {
    let b = Broker::start_with(PLUGINS);
    let mut sub = v5(&b, "limit-watch").await;
    sub.subscribe("cmd/#", QoS5::AtLeastOnce).await;
    let mut p = v5(&b, "limit-op").await;
    p.client
        .publish("cmd/valve", QoS5::AtLeastOnce, false, "open-all-valves-now")
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::QuotaExceeded);
    p.client
        .publish("cmd/valve", QoS5::AtLeastOnce, false, "open")
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::Success);
    assert_eq!(&sub.publish().await.payload[..], b"open");
    // Deeper topics are outside `cmd/+`.
    p.client
        .publish(
            "cmd/valve/7",
            QoS5::AtLeastOnce,
            false,
            "open-all-valves-now",
        )
        .await
        .unwrap();
    assert_eq!(p.puback().await.reason, PubAckReason::Success);
    sub.publish().await;

    let url = format!("http://{}/metrics", b.admin);
    let text = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        text.contains(
            "starling_plugin_rejections_total{plugin=\"short-commands\",hook=\"publish\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "starling_plugin_rejections_total{plugin=\"json_payload\",hook=\"publish\"} 0"
        ),
        "{text}"
    );
}

#[test]
fn bad_plugin_config_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for (config, expect) in [
        (
            "[[plugins]]\nkind = \"bridge\"\ntopics = [\"a\"]\n",
            "bridge",
        ),
        (
            "[[plugins]]\nkind = \"json_payload\"\ntopics = [\"a/#/b\"]\n",
            "plugins[0] (json_payload)",
        ),
    ] {
        let path = dir.path().join("starling.toml");
        std::fs::write(&path, config).unwrap();
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
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{config}: {err}");
    }
}
