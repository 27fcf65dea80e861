//! G5 across nodes: a policy change submitted on one node is in force on
//! every node at the same log index (same sequence number and hash), and
//! the subscriptions it no longer allows are revoked on every node, live or
//! stored.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;

use crate::basic::v5_persistent;
use crate::clients;
use crate::harness::{Cluster, TOKEN, http_request};

#[tokio::test]
async fn policy_change_applies_on_every_node() {
    let mut c = Cluster::start("policy", 3).await;
    c.await_ready(&[1, 2, 3]).await;
    let before = c.policy(1).await.expect("policy on node 1");
    for id in [2, 3] {
        assert_eq!(c.policy(id).await.as_ref(), Some(&before), "node {id}");
    }
    // A live subscriber on node 3 and an offline persistent session that
    // subscribed on node 2.
    let mut live = clients::v5(c.mqtt(3), "live").await;
    live.subscribe("a/#", QoS::AtLeastOnce).await;
    let (mut stored, _) = v5_persistent(c.mqtt(2), "stored").await;
    stored.subscribe("a/#", QoS::AtLeastOnce).await;
    stored.disconnect().await;

    // Only node 1's file changes; its admin API reloads it.
    let path = c.policy_path(1);
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[[rule]]\nid = \"no-a\"\neffect = \"deny\"\naction = \"subscribe\"\nwho = \"*\"\ntopic = \"a/#\"\n";
    std::fs::write(&path, text).unwrap();
    let (status, body) = http_request(
        c.node(1).admin,
        "POST",
        "/api/v1/policy/reload",
        Some(TOKEN),
        None,
        Duration::from_secs(10),
    )
    .await
    .expect("node 1 answers");
    assert_eq!(status, 200, "{body}");

    // Every node reports the same new version and hash.
    let deadline = Instant::now() + clients::WAIT;
    let after = loop {
        let all: Vec<_> = futures_all(&c).await;
        if all
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| p.0 > before.0))
            && all.windows(2).all(|w| w[0] == w[1])
        {
            break all[0].clone().unwrap();
        }
        if Instant::now() > deadline {
            c.fail(&format!("nodes never agreed on the new policy: {all:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(after.1, before.1);

    // Publishing on a/… is still allowed; nobody may hold a/# any more.
    let publisher = clients::v5(c.mqtt(1), "publisher").await;
    publisher
        .client
        .publish("a/x", QoS::AtLeastOnce, false, "after")
        .await
        .unwrap();
    live.no_publish().await;
    let (mut stored, present) = v5_persistent(c.mqtt(3), "stored").await;
    assert!(present);
    stored.no_publish().await;
    let a = live.subscribe("a/#", QoS::AtLeastOnce).await;
    assert_eq!(
        a.return_codes,
        [rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::NotAuthorized]
    );
}

async fn futures_all(c: &Cluster) -> Vec<Option<(u64, String)>> {
    let mut out = Vec::new();
    for id in [1, 2, 3] {
        out.push(c.policy(id).await);
    }
    out
}
