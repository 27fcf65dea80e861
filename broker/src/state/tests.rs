//! State machine unit tests: apply is the contract the cluster replicates.

use super::*;
use crate::message::MessageProps;
use crate::topic::{TopicFilter, TopicLimits};

fn limits() -> StateLimits {
    StateLimits {
        max_queued_messages: 3,
        max_retained_messages: 2,
        max_sessions: 4,
    }
}

fn cid(s: &str) -> ClientId {
    ClientId::new(s)
}

fn sub(f: &str) -> Subscription {
    Subscription::parse(f, &TopicLimits::default()).unwrap()
}

fn opts(qos: QoS) -> SubOptions {
    SubOptions {
        qos,
        no_local: false,
        retain_as_published: false,
        subscription_id: None,
    }
}

fn msg(topic: &str, qos: QoS, retain: bool, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::parse(topic.into(), &TopicLimits::default()).unwrap(),
        payload: bytes::Bytes::from_static(payload),
        qos,
        retain,
        props: Arc::new(MessageProps::default()),
        expires_at_ms: None,
        publisher: Some(cid("pub")),
        received_at: None,
    })
}

fn connect(s: &mut State, c: &str, clean: bool, expiry: u32, now: u64) -> (u64, bool) {
    let mut fx = Effects::default();
    match s.apply(
        Command::Connect {
            client_id: cid(c),
            node: 1,
            clean_start: clean,
            expiry_secs: expiry,
            identity: None,
            now_ms: now,
        },
        &mut fx,
    ) {
        Response::Connected {
            epoch,
            session_present,
            ..
        } => (epoch, session_present),
        other => panic!("unexpected {other:?}"),
    }
}

fn apply(s: &mut State, cmd: Command) -> (Response, Effects) {
    let mut fx = Effects::default();
    let r = s.apply(cmd, &mut fx);
    (r, fx)
}

#[test]
fn offline_persistent_session_queues_qos1_and_resumes() {
    let mut s = State::new(limits());
    let (e1, present) = connect(&mut s, "a", true, 60, 0);
    assert!(!present);
    apply(
        &mut s,
        Command::Subscribe {
            client_id: cid("a"),
            epoch: e1,
            subscriptions: vec![(sub("t/#"), opts(QoS::AtLeastOnce))],
        },
    );
    apply(
        &mut s,
        Command::Disconnect {
            client_id: cid("a"),
            epoch: e1,
            expiry_secs: None,
            now_ms: 10,
        },
    );
    let (r, _) = apply(
        &mut s,
        Command::Publish {
            msg: msg("t/1", QoS::ExactlyOnce, false, b"x"),
            now_ms: 20,
        },
    );
    assert_eq!(
        r,
        Response::Published {
            queued: 1,
            retained: None
        }
    );
    let (e2, present) = connect(&mut s, "a", false, 60, 30);
    assert!(present);
    assert!(e2 > e1);
    let rec = s.session(&cid("a")).unwrap();
    assert_eq!(rec.queue.len(), 1);
    // Granted QoS 1 caps the published QoS 2.
    assert_eq!(rec.queue[0].qos, QoS::AtLeastOnce);
}

#[test]
fn stale_epoch_is_fenced() {
    let mut s = State::new(limits());
    let (e1, _) = connect(&mut s, "a", true, 60, 0);
    let (_e2, _) = connect(&mut s, "a", false, 60, 1);
    let (r, _) = apply(
        &mut s,
        Command::Ack {
            client_id: cid("a"),
            epoch: e1,
            seqs: vec![1],
        },
    );
    assert_eq!(r, Response::Fenced);
}

#[test]
fn takeover_fences_the_connected_owner() {
    let mut s = State::new(limits());
    let (e1, _) = connect(&mut s, "a", true, 60, 0);
    let (_, fx) = apply(
        &mut s,
        Command::Connect {
            client_id: cid("a"),
            node: 2,
            clean_start: false,
            expiry_secs: 60,
            identity: None,
            now_ms: 1,
        },
    );
    assert_eq!(fx.fenced, vec![(cid("a"), Owner { node: 1, epoch: e1 })]);
}

#[test]
fn queue_is_bounded_and_acks_remove() {
    let mut s = State::new(limits());
    let (e, _) = connect(&mut s, "a", true, 60, 0);
    apply(
        &mut s,
        Command::Subscribe {
            client_id: cid("a"),
            epoch: e,
            subscriptions: vec![(sub("t"), opts(QoS::AtLeastOnce))],
        },
    );
    for _ in 0..5 {
        apply(
            &mut s,
            Command::Publish {
                msg: msg("t", QoS::AtLeastOnce, false, b"x"),
                now_ms: 1,
            },
        );
    }
    let rec = s.session(&cid("a")).unwrap();
    assert_eq!(rec.queue.len(), 3);
    assert_eq!(rec.dropped, 2);
    apply(
        &mut s,
        Command::Ack {
            client_id: cid("a"),
            epoch: e,
            seqs: vec![1, 2],
        },
    );
    assert_eq!(s.session(&cid("a")).unwrap().queue.len(), 1);
}

#[test]
fn sessions_expire_only_when_offline_past_expiry() {
    let mut s = State::new(limits());
    let (e, _) = connect(&mut s, "a", true, 10, 0);
    connect(&mut s, "b", true, 10, 0);
    apply(
        &mut s,
        Command::Disconnect {
            client_id: cid("a"),
            epoch: e,
            expiry_secs: None,
            now_ms: 1_000,
        },
    );
    let (_, fx) = apply(&mut s, Command::ExpireSessions { now_ms: 10_999 });
    assert!(fx.ended.is_empty());
    let (_, fx) = apply(&mut s, Command::ExpireSessions { now_ms: 11_000 });
    assert_eq!(fx.ended, vec![cid("a")]);
    assert!(s.session(&cid("a")).is_none());
    assert!(
        s.session(&cid("b")).is_some(),
        "connected sessions never expire"
    );
}

#[test]
fn clean_start_discards_the_session_and_its_subscriptions() {
    let mut s = State::new(limits());
    let (e, _) = connect(&mut s, "a", true, 60, 0);
    apply(
        &mut s,
        Command::Subscribe {
            client_id: cid("a"),
            epoch: e,
            subscriptions: vec![(sub("t"), opts(QoS::AtLeastOnce))],
        },
    );
    let (_, present) = connect(&mut s, "a", true, 60, 1);
    assert!(!present);
    assert!(!s.needs_log(&msg("t", QoS::AtLeastOnce, false, b"x")));
}

#[test]
fn retained_set_clear_and_quota() {
    let mut s = State::new(limits());
    for t in ["a", "b"] {
        let (r, _) = apply(
            &mut s,
            Command::Publish {
                msg: msg(t, QoS::AtMostOnce, true, b"x"),
                now_ms: 0,
            },
        );
        assert_eq!(
            r,
            Response::Published {
                queued: 0,
                retained: Some(RetainOutcome::Stored)
            }
        );
    }
    let (r, _) = apply(
        &mut s,
        Command::Publish {
            msg: msg("c", QoS::AtMostOnce, true, b"x"),
            now_ms: 0,
        },
    );
    assert_eq!(
        r,
        Response::Published {
            queued: 0,
            retained: Some(RetainOutcome::QuotaExceeded)
        }
    );
    apply(
        &mut s,
        Command::Publish {
            msg: msg("a", QoS::AtMostOnce, true, b""),
            now_ms: 0,
        },
    );
    assert_eq!(s.retained().len(), 1);
    let f = TopicFilter::parse("#", &TopicLimits::default()).unwrap();
    let mut seen = Vec::new();
    s.retained()
        .for_each_match(&f, |m| seen.push(m.topic.as_str().to_owned()));
    assert_eq!(seen, vec!["b"]);
}

#[test]
fn shared_subscriptions_never_queue_offline() {
    let mut s = State::new(limits());
    let (e, _) = connect(&mut s, "a", true, 60, 0);
    apply(
        &mut s,
        Command::Subscribe {
            client_id: cid("a"),
            epoch: e,
            subscriptions: vec![(sub("$share/g/t"), opts(QoS::AtLeastOnce))],
        },
    );
    assert!(!s.needs_log(&msg("t", QoS::AtLeastOnce, false, b"x")));
    assert_eq!(s.session(&cid("a")).unwrap().subscriptions.len(), 1);
}

#[test]
fn no_local_skips_the_publisher() {
    let mut s = State::new(limits());
    let (e, _) = connect(&mut s, "pub", true, 60, 0);
    let mut o = opts(QoS::AtLeastOnce);
    o.no_local = true;
    apply(
        &mut s,
        Command::Subscribe {
            client_id: cid("pub"),
            epoch: e,
            subscriptions: vec![(sub("t"), o)],
        },
    );
    assert!(!s.needs_log(&msg("t", QoS::AtLeastOnce, false, b"x")));
}

#[test]
fn node_down_releases_the_sessions_it_held() {
    let mut s = State::new(limits());
    connect(&mut s, "persistent", true, 60, 0);
    connect(&mut s, "clean", true, 0, 0);
    let (_, fx) = apply(&mut s, Command::NodeDown { node: 1, now_ms: 5 });
    assert_eq!(fx.ended, vec![cid("clean")]);
    let rec = s.session(&cid("persistent")).unwrap();
    assert!(!rec.connected);
    assert_eq!(rec.disconnected_at_ms, Some(5));
    assert_eq!(s.session_counts(), (0, 1));
}

#[test]
fn snapshot_restores_an_equal_state() {
    let mut s = State::new(limits());
    let (e, _) = connect(&mut s, "a", true, 60, 0);
    apply(
        &mut s,
        Command::Subscribe {
            client_id: cid("a"),
            epoch: e,
            subscriptions: vec![
                (sub("t/#"), opts(QoS::AtLeastOnce)),
                (sub("$share/g/x"), opts(QoS::AtMostOnce)),
            ],
        },
    );
    apply(
        &mut s,
        Command::Publish {
            msg: msg("t/1", QoS::AtLeastOnce, true, b"r"),
            now_ms: 1,
        },
    );
    let bytes = s.snapshot().unwrap();
    let mut r = State::new(limits());
    r.restore(&bytes).unwrap();
    assert_eq!(r.snapshot().unwrap(), bytes);
    assert!(
        r.needs_log(&msg("t/2", QoS::AtLeastOnce, false, b"x")),
        "index rebuilt"
    );
    let (e2, present) = connect(&mut r, "a", false, 60, 2);
    assert!(present);
    assert!(e2 > e, "epochs keep growing after a restore");
    assert!(r.restore(b"garbage").is_err());
}

#[test]
fn sessions_are_bounded_cluster_wide() {
    let mut s = State::new(limits());
    for c in ["a", "b", "c", "d"] {
        connect(&mut s, c, true, 60, 0);
    }
    let (r, _) = apply(
        &mut s,
        Command::Connect {
            client_id: cid("e"),
            node: 1,
            clean_start: true,
            expiry_secs: 0,
            identity: None,
            now_ms: 0,
        },
    );
    assert_eq!(r, Response::SessionQuotaExceeded);
    // An existing session can still be resumed or replaced.
    let (_, present) = connect(&mut s, "a", false, 60, 1);
    assert!(present);
}
