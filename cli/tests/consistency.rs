//! What a client sees (docs/consistency.md), black box through router processes of a live local
//! fleet: with the default `session` consistency every write, update and delete is visible to the
//! read that follows it, through the same router without any token, and through a second router
//! when the client passes the causality token on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::process::Command;
use std::time::Duration;

use common::{SEED_DEFAULT, Up};
use serde_json::{Value, json};
use walshard_testkit::{ChildGuard, free_port};

/// Write → read, update → read and delete → read pairs per client (`CONSISTENCY_PAIRS` raises it).
fn pairs() -> i64 {
    std::env::var("CONSISTENCY_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120)
}

/// Concurrent clients, each running its own sequence of pairs.
const CLIENTS: i64 = 4;

struct Client {
    http: reqwest::Client,
    write_to: String,
    read_from: String,
    /// Pass the causality token of each answer on to the next request.
    carry_token: bool,
    token: Option<String>,
}

impl Client {
    async fn call(&mut self, method: reqwest::Method, url: String, body: Value) -> Value {
        let mut req = self.http.request(method, &url).json(&body);
        if let (true, Some(t)) = (self.carry_token, &self.token) {
            req = req.header("x-walshard-session", t);
        }
        let answer = req.send().await.expect("send");
        let code = answer.status().as_u16();
        let token = answer
            .headers()
            .get("x-walshard-session")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let v: Value = answer.json().await.expect("json");
        assert_eq!(code, 200, "{url} {body}: {v}");
        assert_eq!(v["session"].as_str(), token.as_deref(), "header = field");
        if token.is_some() {
            self.token = token;
        }
        v
    }

    async fn read(&mut self, key: i64) -> Value {
        let url = format!("{}/read", self.read_from);
        let v = self
            .call(
                reqwest::Method::POST,
                url,
                json!({"Stud_id": {"low": key, "high": key}}),
            )
            .await;
        v["data"].clone()
    }

    /// `pairs()` keys from `base`: write then read, update then read, delete then read. Returns
    /// the reads that missed the change just acknowledged.
    async fn run(&mut self, base: i64) -> usize {
        let mut misses = 0;
        for i in 0..pairs() {
            let k = base + i;
            let row = json!({"Stud_id": k, "Stud_name": format!("n{k}"), "Stud_marks": "1"});
            let url = format!("{}/write", self.write_to);
            self.call(reqwest::Method::POST, url, json!({"data": [row]}))
                .await;
            misses += usize::from(self.read(k).await != json!([row]));
            let changed = json!({"Stud_id": k, "Stud_name": format!("n{k}"), "Stud_marks": "2"});
            let url = format!("{}/update", self.write_to);
            self.call(
                reqwest::Method::PUT,
                url,
                json!({"Stud_id": k, "data": {"Stud_marks": "2"}}),
            )
            .await;
            misses += usize::from(self.read(k).await != json!([changed]));
            let url = format!("{}/del", self.write_to);
            self.call(reqwest::Method::DELETE, url, json!({"Stud_id": k}))
                .await;
            misses += usize::from(self.read(k).await != json!([]));
        }
        misses
    }
}

/// Runs `CLIENTS` clients at once; the total of missed changes.
fn clients(
    rt: &tokio::runtime::Runtime,
    write_to: &str,
    read_from: &str,
    carry_token: bool,
    first_key: i64,
) -> usize {
    let http = reqwest::Client::new();
    rt.block_on(async {
        let runs = (0..CLIENTS).map(|c| {
            let mut client = Client {
                http: http.clone(),
                write_to: write_to.to_owned(),
                read_from: read_from.to_owned(),
                carry_token,
                token: None,
            };
            // Spread the clients' keys over all four shards of the seed default.
            async move { client.run(first_key + c * 4096).await }
        });
        futures::future::join_all(runs).await.into_iter().sum()
    })
}

#[test]
fn session_reads_see_every_acknowledged_change_through_one_and_two_routers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = Up::start(&tmp.path().join("fleet"), Some(SEED_DEFAULT));
    up.wait_primaries(Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let per_run = (CLIENTS * pairs() * 3) as usize;

    // One router, the seed's clients: no token sent.
    let misses = clients(&rt, &up.router, &up.router, false, 0);
    println!("one router, no token: {misses} of {per_run} reads missed the change before them");
    assert_eq!(misses, 0);

    // A second router process in front of the same fleet: the client carries the token.
    let running: Value = serde_json::from_str(
        &std::fs::read_to_string(up.dir.join("running.json")).expect("running"),
    )
    .expect("running.json");
    let fleet: Value =
        serde_json::from_str(&std::fs::read_to_string(up.dir.join("fleet.json")).expect("fleet"))
            .expect("fleet.json");
    let port = free_port().expect("port");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard"));
    cmd.arg("router")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--control-url")
        .arg(running["control_url"].as_str().expect("control url"))
        .env("WALSHARD_TOKEN", fleet["token"].as_str().expect("token"));
    let _second = ChildGuard::spawn(cmd).expect("second router");
    let second = format!("http://127.0.0.1:{port}");
    let ready = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        up.http
            .get(format!("{second}/status"))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["N"] == 6)
    });
    assert!(ready, "the second router never followed the fleet");
    let misses = clients(&rt, &up.router, &second, true, 1000);
    println!(
        "two routers, token passed on: {misses} of {per_run} reads missed the change before them"
    );
    assert_eq!(misses, 0);
}

/// Figures, printed and never asserted: replica staleness (a write acknowledged → visible on each
/// replica, polled with eventual reads of that server) and the cost of a read at each level.
#[test]
fn staleness_and_the_cost_of_each_read_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = Up::start(&tmp.path().join("fleet"), Some(SEED_DEFAULT));
    up.wait_primaries(Duration::from_secs(30));
    let status = up.ok("GET", "/status", None);
    let holders: Vec<String> = status["servers"]
        .as_object()
        .expect("servers")
        .iter()
        .filter(|(_, held)| held.as_array().is_some_and(|h| h.contains(&json!("sh1"))))
        .map(|(s, _)| s.clone())
        .collect();
    let mut staleness: Vec<f64> = Vec::new();
    for k in 0..40 {
        let row = json!({"Stud_id": k, "Stud_name": "s", "Stud_marks": "1"});
        up.ok("POST", "/write", Some(json!({"data": [row]})));
        let acked = std::time::Instant::now();
        for server in &holders {
            let deadline = acked + Duration::from_secs(10);
            loop {
                let v = up.ok("GET", &format!("/read/{server}?consistency=eventual"), None);
                if v["sh1"]
                    .as_array()
                    .is_some_and(|rows| rows.iter().any(|r| r["Stud_id"] == k))
                {
                    staleness.push(acked.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{server} never showed {k}"
                );
            }
        }
    }
    staleness.sort_by(f64::total_cmp);
    let pct = |p: usize| staleness[(staleness.len() - 1) * p / 100];
    println!(
        "replica staleness (ack → visible, {} samples, includes one /read/<server> round trip): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        staleness.len(),
        pct(50),
        pct(90),
        pct(100)
    );
    for level in ["eventual", "session", "strong"] {
        let started = std::time::Instant::now();
        let n = 200;
        for i in 0..n {
            let k = i % 40;
            up.ok(
                "POST",
                "/read",
                Some(json!({"Stud_id": {"low": k, "high": k}, "consistency": level})),
            );
        }
        println!(
            "{level} read: {:.2} ms mean over {n} sequential single-key reads",
            started.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
        );
    }
}
