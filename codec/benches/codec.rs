//! Decode/encode throughput for a 64-byte-payload PUBLISH.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use starling_codec::{Limits, Packet, Properties, Protocol, Publish, QoS, decode, encode};

fn publish(qos: QoS, protocol: Protocol) -> Packet {
    let properties = if protocol == Protocol::V5 {
        Properties {
            message_expiry_interval: Some(3600),
            user_properties: vec![("trace-id".into(), "4bf92f3577b34da6".into())],
            ..Default::default()
        }
    } else {
        Properties::default()
    };
    Packet::Publish(Publish {
        qos,
        pkid: if qos == QoS::AtMostOnce { 0 } else { 42 },
        topic: "sensors/building-1/floor-3/temperature".into(),
        payload: Bytes::from(vec![0xA5u8; 64]),
        properties: properties.into(),
        ..Default::default()
    })
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, protocol) in [("v4", Protocol::V311), ("v5", Protocol::V5)] {
        for (qname, qos) in [("qos0", QoS::AtMostOnce), ("qos1", QoS::AtLeastOnce)] {
            let packet = publish(qos, protocol);
            let mut wire = BytesMut::new();
            encode(&packet, protocol, None, &mut wire).unwrap();
            let wire = wire.freeze();

            c.bench_function(&format!("decode_publish_{name}_{qname}"), |b| {
                b.iter_batched_ref(
                    || BytesMut::from(&wire[..]),
                    |buf| black_box(decode(buf, protocol, &limits).unwrap()),
                    criterion::BatchSize::SmallInput,
                )
            });
            let mut out = BytesMut::with_capacity(256);
            c.bench_function(&format!("encode_publish_{name}_{qname}"), |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(&packet), protocol, None, &mut out).unwrap();
                    black_box(out.len())
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
