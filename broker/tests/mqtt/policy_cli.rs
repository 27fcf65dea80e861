//! `starling policy check|explain` and `starling passwd` on real files.

use std::io::Write;
use std::process::{Command, Stdio};

const FLEET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../auth/tests/data/fleet.toml");

fn starling(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_the_fleet_example_and_runs_its_tests() {
    let (code, out, _) = starling(&["policy", "check", FLEET]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 error(s)"), "{out}");
    assert!(out.contains("test(s) passed"), "{out}");
}

#[test]
fn check_refuses_broken_files_with_a_position() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "typo.toml",
            "version = 1\n[[rule]]\nid = \"x\"\neffect = \"allow\"\naction = \"publsh\"\nwho = \"*\"\ntopic = \"a\"\n",
        ),
        ("garbage.toml", "\u{0}\u{1}not toml at all ]]]"),
        ("unknown-key.toml", "version = 1\nallow_everything = true\n"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let (code, out, err) = starling(&["policy", "check", p.to_str().unwrap()]);
        assert_ne!(code, 0, "{name} accepted: {out}{err}");
        assert!(out.contains("error"), "{name}: {out}{err}");
    }
}

#[test]
fn explain_names_the_deciding_rule_and_the_variables() {
    let common = [
        "policy",
        "explain",
        FLEET,
        "--identity",
        "sensors",
        "--cert-cn",
        "sensor-42",
        "--client-id",
        "sensor-42",
        "--tls",
        "--qos",
        "1",
        "publish",
    ];
    let mut own: Vec<&str> = common.to_vec();
    own.push("telemetry/sensor-42/temp");
    let (code, out, _) = starling(&own);
    assert_eq!(code, 0);
    assert!(out.starts_with("ALLOW"), "{out}");
    assert!(out.contains("sensor-telemetry"), "{out}");
    assert!(out.contains("${cert_cn} = \"sensor-42\""), "{out}");
    let mut other: Vec<&str> = common.to_vec();
    other.push("telemetry/sensor-43/temp");
    let (_, out, _) = starling(&other);
    assert!(out.starts_with("DENY"), "another sensor's topic: {out}");
}

#[test]
fn passwd_prints_an_argon2id_hash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
}
