//! Admin HTTP listener: health endpoints, bearer-token protection, the
//! cluster API and the `starling cluster status` command.

use std::process::Command;

use crate::harness::Broker;

const TOKEN: &str = "test-admin-token-0123456789";

fn get(b: &Broker, path: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(format!("http://{}{path}", b.admin));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

#[test]
fn health_is_open_and_ready_once_serving() {
    let b = Broker::start();
    assert_eq!(get(&b, "/livez", None).0, 200);
    // Readiness follows the single-node Raft group; it becomes ready.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = get(&b, "/readyz", None);
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn api_is_disabled_without_a_token() {
    let b = Broker::start();
    let (status, body) = get(&b, "/api/v1/cluster", Some(TOKEN));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("disabled"));
}

#[test]
fn api_requires_the_right_token() {
    let b = Broker::start_with_token("", TOKEN);
    assert_eq!(get(&b, "/api/v1/cluster", None).0, 401);
    assert_eq!(
        get(&b, "/api/v1/cluster", Some("wrong-token-wrong-token")).0,
        401
    );
    let (status, body) = get(&b, "/api/v1/cluster", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node_id"], 1);
    assert_eq!(v["leader"], 1, "a single node leads its own group: {v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_requests_get_json_errors() {
    let b = Broker::start_with_token("", TOKEN);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let auth = format!("Bearer {TOKEN}");
    let mut r = agent
        .post(format!("http://{}/api/v1/cluster/nodes", b.admin))
        .header("Authorization", &auth)
        .content_type("application/json")
        .send("{not json")
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.body_mut().read_to_string().unwrap().contains("error"));
    let r = agent
        .delete(format!("http://{}/api/v1/cluster/nodes/abc", b.admin))
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn cluster_status_command_prints_the_members() {
    let b = Broker::start_with_token("", TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args([
            "cluster",
            "--admin",
            &format!("http://{}", b.admin),
            "--token-file",
        ])
        .arg(&token)
        .arg("status")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["members"][0]["id"], 1);
}
