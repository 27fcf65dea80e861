//! Connect timeout and keep alive.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;

use crate::clients::{v5_opts, v5_with};
use crate::harness::{Broker, Raw, assert_alive, connect_raw, disconnect_reason};

#[test]
fn connection_without_connect_is_closed() {
    let b = Broker::start_with("[session]\nconnect_timeout = \"500ms\"\n");
    let mut raw = Raw::connect(&b);
    raw.expect_silent_close();
    assert_alive(&b);
}

#[test]
fn v4_idle_past_keep_alive_is_closed() {
    let b = Broker::start();
    let mut raw = Raw::connected(&b, &connect_raw(4, 0x02, 1, &[], b"idle", &[]));
    raw.expect_silent_close();
    assert_alive(&b);
}

#[test]
fn v5_idle_past_keep_alive_is_closed_with_0x8d() {
    let b = Broker::start();
    let mut raw = Raw::connected(&b, &connect_raw(5, 0x02, 1, &[], b"idle", &[]));
    let got = raw.read_to_close();
    assert_eq!(disconnect_reason(&got), Some(0x8D), "{got:02x?}");
    assert_alive(&b);
}

#[test]
fn pings_keep_a_connection_alive() {
    let b = Broker::start();
    let mut raw = Raw::connected(&b, &connect_raw(4, 0x02, 1, &[], b"pinger", &[]));
    // Three keep-alive periods, each with a PINGREQ well inside it.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        raw.ping();
    }
}

#[tokio::test]
async fn v5_keep_alive_above_maximum_gets_server_keep_alive() {
    let b = Broker::start_with("[session]\nmax_keep_alive_secs = 5\n");
    let mut o = v5_opts(&b, "long");
    o.set_keep_alive(Duration::from_secs(60));
    let (_c, ack) = v5_with(o).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let props = ack.properties.expect("CONNACK properties");
    assert_eq!(props.server_keep_alive, Some(5));

    // Within the maximum: no Server Keep Alive.
    let mut o = v5_opts(&b, "short");
    o.set_keep_alive(Duration::from_secs(5));
    let (_c, ack) = v5_with(o).await;
    assert_eq!(ack.properties.and_then(|p| p.server_keep_alive), None);
}

#[test]
fn v5_keep_alive_zero_gets_server_keep_alive() {
    let b = Broker::start_with("[session]\nmax_keep_alive_secs = 5\n");
    let mut raw = Raw::connect(&b);
    raw.send(&connect_raw(5, 0x02, 0, &[], b"zero", &[]));
    let (b1, body) = raw.packet();
    assert_eq!((b1, body[1]), (0x20, 0));
    // Properties: Server Keep Alive (0x13) = 5.
    assert!(
        body.windows(3).any(|w| w == [0x13, 0x00, 0x05]),
        "no Server Keep Alive 5 in {body:02x?}"
    );
}

#[test]
fn v4_keep_alive_above_maximum_is_refused() {
    let b = Broker::start_with("[session]\nmax_keep_alive_secs = 5\n");
    let mut raw = Raw::connect(&b);
    raw.send(&connect_raw(4, 0x02, 60, &[], b"long", &[]));
    let (b1, body) = raw.packet();
    assert_eq!(b1, 0x20);
    assert_eq!(body.len(), 2);
    assert_ne!(
        body[1], 0,
        "3.1.1 keep alive above the maximum must be refused"
    );
    raw.expect_silent_close();
    assert_alive(&b);
}

#[test]
fn v5_server_keep_alive_is_enforced() {
    let b = Broker::start_with("[session]\nmax_keep_alive_secs = 1\n");
    let mut raw = Raw::connect(&b);
    raw.send(&connect_raw(5, 0x02, 60, &[], b"lazy", &[]));
    let (b1, body) = raw.packet();
    assert_eq!((b1, body[1]), (0x20, 0));
    assert!(
        body.windows(3).any(|w| w == [0x13, 0x00, 0x01]),
        "{body:02x?}"
    );
    // Silent past 1.5 × the server's keep alive (not the client's 60 s).
    let got = raw.read_to_close();
    assert_eq!(disconnect_reason(&got), Some(0x8D), "{got:02x?}");
}
