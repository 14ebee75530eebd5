//! `walshard up --tls` on a live local fleet (real MariaDB, agents, router): the control plane,
//! the agents and the router talk HTTPS under the fleet's own authority, the seed API still
//! answers plain HTTP, an agent refuses plain HTTP and a client that does not trust the
//! authority, and TLS stays on when the fleet is resumed without the flag.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use common::{SEED_DEFAULT, Up, read_json, row};
use serde_json::json;

fn agent_status(
    client: &reqwest::blocking::Client,
    url: &str,
    token: &str,
) -> reqwest::Result<u16> {
    client
        .get(format!("{url}/status"))
        .bearer_auth(token)
        .send()
        .map(|r| r.status().as_u16())
}

#[test]
fn a_tls_fleet_serves_the_seed_api_and_its_agents_speak_only_https() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fleet");
    let mut up = Up::start_with(&dir, Some(SEED_DEFAULT), &["--tls"], &[]);
    // `walshard status` reaches the control API over HTTPS.
    up.wait_primaries(Duration::from_secs(60));

    // The seed API, through agents that serve only HTTPS.
    for k in [1i64, 5000, 9000, 14000] {
        up.ok("POST", "/write", Some(json!({"data": [row(k)]})));
    }
    assert_eq!(up.rows(0, 16383, None).len(), 4);

    let fleet = read_json(&dir.join("fleet.json"));
    let token = fleet["token"].as_str().expect("token").to_owned();
    let ca = std::fs::read(dir.join("tls/ca.crt")).expect("the fleet's CA");
    assert_eq!(
        fleet["tls_ca"]
            .as_str()
            .expect("CA in fleet.json")
            .as_bytes(),
        ca
    );
    let port = fleet["servers"]["Server0"]["agent"]
        .as_u64()
        .expect("agent port");
    let trusting = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("pem")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let https = format!("https://127.0.0.1:{port}");
    assert_eq!(agent_status(&trusting, &https, &token).expect("https"), 200);
    let plain = format!("http://127.0.0.1:{port}");
    assert!(
        !agent_status(&trusting, &plain, &token).is_ok_and(|s| s == 200),
        "the agent answered plain HTTP"
    );
    let untrusting = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    assert!(
        agent_status(&untrusting, &https, &token).is_err(),
        "a client that does not trust the fleet's CA got through"
    );
    let status = Command::new(env!("CARGO_BIN_EXE_walshard"))
        .args(["status", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("walshard status");
    assert!(status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("https://127.0.0.1"),
        "walshard status shows the agents' https URLs: {}",
        String::from_utf8_lossy(&status.stdout)
    );

    // Resumed without --tls: still TLS, still the same data.
    up.stop();
    let up = Up::start_with(&dir, None, &[], &[]);
    up.wait_primaries(Duration::from_secs(60));
    assert_eq!(up.rows(0, 16383, Some("strong")).len(), 4);
    assert!(agent_status(&untrusting, &https, &token).is_err());
    assert_eq!(agent_status(&trusting, &https, &token).expect("https"), 200);
}
