//! The fuzz seed corpus decodes as its file names say: `bad_*` files end in
//! an error, the others decode completely and round-trip.

use std::path::Path;

use bytes::BytesMut;
use starling_codec::{Limits, Protocol, decode, encode};

fn check_dir(dir: &str, protocol: Protocol) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(dir);
    let mut seen = 0;
    for entry in std::fs::read_dir(&path).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let mut buf = BytesMut::from(&std::fs::read(entry.path()).unwrap()[..]);
        let mut result = Ok(None);
        while !buf.is_empty() {
            result = decode(&mut buf, protocol, &Limits::default());
            match &result {
                Ok(Some(p)) => {
                    let mut out = BytesMut::new();
                    encode(p, protocol, None, &mut out).unwrap();
                    let again = decode(&mut out, protocol, &Limits::default());
                    assert_eq!(again, Ok(Some(p.clone())), "{name}");
                }
                _ => break,
            }
        }
        if name.starts_with("bad_") {
            assert!(result.is_err(), "{name}: {result:?}");
        } else {
            assert!(matches!(result, Ok(Some(_))), "{name}: {result:?}");
            assert!(buf.is_empty(), "{name}: leftover bytes");
        }
        seen += 1;
    }
    assert!(seen >= 5, "{dir}: only {seen} seeds");
}

#[test]
fn v311_seeds() {
    check_dir("decode_v311", Protocol::V311);
}

#[test]
fn v5_seeds() {
    check_dir("decode_v5", Protocol::V5);
}
