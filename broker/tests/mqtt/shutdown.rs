//! Graceful shutdown on SIGTERM.

use crate::clients::{v4, v5};
use crate::harness::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_disconnects_clients_and_exits_cleanly() {
    let mut b = Broker::start();
    let mut c5 = v5(&b, "c5").await;
    let mut c4 = v4(&b, "c4").await;
    let status = tokio::task::block_in_place(|| b.terminate());
    assert!(status.success(), "exit status {status:?}");
    let why = c5.closed().await;
    assert!(why.contains("ServerShuttingDown"), "v5 client saw {why}");
    c4.closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_publish_wills() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::LastWill;
    let mut b = Broker::start();
    let mut sub = v5(&b, "sub").await;
    sub.subscribe("will/#", QoS5::AtLeastOnce).await;
    let mut o = crate::clients::v5_opts(&b, "w");
    o.set_last_will(LastWill::new("will/w", "x", QoS5::AtLeastOnce, false, None));
    let (_w, _) = crate::clients::v5_with(o).await;
    let status = tokio::task::block_in_place(|| b.terminate());
    assert!(status.success());
    // The subscriber sees its own DISCONNECT, never the will.
    loop {
        match sub.events.recv().await {
            Some(Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::Publish(p)))) => {
                panic!("will published at shutdown: {p:?}")
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        }
    }
}
