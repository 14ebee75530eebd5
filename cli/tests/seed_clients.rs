//! The seed's clients, unchanged, against `walshard up` (docs/seed-compatibility.md): payloads
//! shaped exactly as the seed's README and analysis scripts send them — its own schema (a String
//! `Stud_marks` written as integers), thousands of single-row requests in flight from one client,
//! the same workload run twice against the same fleet — and every row of the compatibility table.
//! Written from the seed's documented payloads; none of the seed's code is used.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::time::{Duration, Instant};

use common::Up;
use futures::future::join_all;
use serde_json::{Value, json};

/// Single-row requests per phase of a run (the seed's scripts send 10,000; `SEED_CLIENT_REQUESTS`
/// raises it). All of a phase's requests are in flight at once.
fn requests_per_phase() -> i64 {
    std::env::var("SEED_CLIENT_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// The seed's schema: `Stud_marks` is a String column, and its clients send integers.
fn seed_schema() -> Value {
    json!({"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]})
}

fn shards(count: i64) -> Value {
    (0..count)
        .map(|i| json!({"Stud_id_low": i * 4096, "Shard_id": format!("sh{}", i + 1), "Shard_size": 4096}))
        .collect()
}

/// `servers` servers, `count` shards, each shard on `replicas` servers (spread round-robin).
fn init_body(servers: usize, count: i64, replicas: usize) -> Value {
    let mut placement = serde_json::Map::new();
    for s in 0..servers {
        placement.insert(format!("Server{s}"), json!([]));
    }
    for shard in 0..count as usize {
        for r in 0..replicas {
            let server = format!("Server{}", (shard * replicas + r) % servers);
            if let Some(list) = placement.get_mut(&server).and_then(Value::as_array_mut) {
                list.push(json!(format!("sh{}", shard + 1)));
            }
        }
    }
    json!({"N": servers, "schema": seed_schema(), "shards": shards(count), "servers": placement})
}

/// The seed's analysis configurations: A-1 its README's example (3 servers, 3 shards, 2 replicas),
/// A-2 shard replicas raised to 7 (7 servers), A-3 10 servers, 6 shards, 8 replicas.
fn scenarios() -> Vec<(&'static str, Value)> {
    vec![
        (
            "A-1",
            json!({
                "N": 3,
                "schema": seed_schema(),
                "shards": shards(3),
                "servers": {"Server0": ["sh1", "sh2"], "Server1": ["sh2", "sh3"], "Server2": ["sh1", "sh3"]}
            }),
        ),
        ("A-2", init_body(7, 3, 7)),
        ("A-3", init_body(10, 6, 8)),
    ]
}

/// Connections the seed's client (aiohttp's default connector) keeps open at most; requests
/// beyond wait for one, in the client.
const CLIENT_CONNECTIONS: usize = 100;

/// One client with every request of a phase in flight at once (the seed's scripts gather all
/// 10,000), on at most [`CLIENT_CONNECTIONS`] connections: `(errors, first error)`.
async fn phase<F, Fut>(n: i64, request: F) -> (usize, Option<String>)
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let connections = tokio::sync::Semaphore::new(CLIENT_CONNECTIONS);
    let results = join_all((0..n).map(|i| {
        let sent = request(i);
        let connections = &connections;
        async move {
            let _connection = connections.acquire().await.map_err(|e| e.to_string())?;
            sent.await
        }
    }))
    .await;
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    (errors.len(), errors.into_iter().next())
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<Value, String> {
    let answer = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let code = answer.status().as_u16();
    let v: Value = answer.json().await.map_err(|e| format!("{url}: {e}"))?;
    if code != 200 || v["status"] != "success" {
        return Err(format!("{url} {body}: {code} {v}"));
    }
    Ok(v)
}

/// Key of the i-th request: spread over every shard of the key space, each once.
fn key(i: i64, n: i64, key_space: i64) -> i64 {
    i * (key_space / n).max(1) % key_space
}

/// The seed's A-1..A-3 workload, twice against the same fleet: first every key is new, then every
/// key is already stored (200, skipped, nothing changed); every read finds its row with the marks
/// as the String column's text.
#[test]
fn the_seeds_analysis_runs_unchanged_twice_on_each_configuration() {
    let n = requests_per_phase();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (name, init) in scenarios() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let up = Up::start(&tmp.path().join("fleet"), None);
        up.ok("POST", "/init", Some(init.clone()));
        let key_space = init["shards"].as_array().map_or(0, Vec::len) as i64 * 4096;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client");
        for run in 1..=2 {
            let started = Instant::now();
            let (errors, first) = rt.block_on(phase(n, |i| {
                let (http, url) = (http.clone(), format!("{}/write", up.router));
                async move {
                    let k = key(i, n, key_space);
                    let body = json!({"data": [{"Stud_id": k, "Stud_name": format!("GHI{k}"), "Stud_marks": k % 100}]});
                    let v = post(&http, url, body).await?;
                    let want = if run == 1 { "1 Data entries added" } else { "0 Data entries added" };
                    if v["message"] != want {
                        return Err(format!("write {k} run {run}: {v}"));
                    }
                    Ok(())
                }
            }));
            let writes = started.elapsed();
            assert_eq!(
                errors, 0,
                "{name} run {run}: {errors} of {n} writes failed, first: {first:?}"
            );
            let started = Instant::now();
            let (errors, first) = rt.block_on(phase(n, |i| {
                let (http, url) = (http.clone(), format!("{}/read", up.router));
                async move {
                    let k = key(i, n, key_space);
                    let v = post(&http, url, json!({"Stud_id": {"low": k, "high": k}})).await?;
                    let want = json!([{"Stud_id": k, "Stud_name": format!("GHI{k}"), "Stud_marks": (k % 100).to_string()}]);
                    if v["data"] != want {
                        return Err(format!("read {k} run {run}: {v}"));
                    }
                    Ok(())
                }
            }));
            assert_eq!(
                errors, 0,
                "{name} run {run}: {errors} of {n} reads failed, first: {first:?}"
            );
            println!(
                "{name} run {run}: {n} writes in {:.2} s, {n} reads in {:.2} s, 0 errors",
                writes.as_secs_f64(),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Every row of the compatibility table (docs/seed-compatibility.md), through the router process.
#[test]
fn every_row_of_the_compatibility_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = Up::start(&tmp.path().join("fleet"), None);

    // `GET /status` before `/init`: 200 with an empty configuration.
    let v = up.ok("GET", "/status", None);
    assert_eq!(
        v,
        json!({"N": 0, "schema": {"columns": [], "dtypes": []}, "shards": [], "servers": {}, "status": "success"})
    );
    // `/init` with a placeholder name: a name is generated, answered in `/status`.
    let mut init = scenarios().remove(0).1;
    init["servers"] =
        json!({"Server0": ["sh1", "sh2"], "Server1": ["sh2", "sh3"], "Server$": ["sh1", "sh3"]});
    up.ok("POST", "/init", Some(init));
    let status = up.ok("GET", "/status", None);
    assert_eq!(
        status["servers"]["Server2"],
        json!(["sh1", "sh3"]),
        "{status}"
    );
    up.wait_primaries(Duration::from_secs(30));
    let status = up.ok("GET", "/status", None);
    for s in status["shards"].as_array().expect("shards") {
        assert!(s["primary_server"].is_string(), "{status}");
        assert_eq!(s["primary_server"], s["primary"]);
    }

    // Values: a JSON number into the String column is its text; a numeric string key is a key.
    let v = up.ok(
        "POST",
        "/write",
        Some(json!({"data": [
            {"Stud_id": 2255, "Stud_name": "GHI", "Stud_marks": 27},
            {"Stud_id": "2256", "Stud_name": "JKL", "Stud_marks": 46.5},
            {"Stud_id": 2257.0, "Stud_name": 7, "Stud_marks": "30"}
        ]})),
    );
    assert_eq!(
        untokened(v),
        json!({"message": "3 Data entries added", "status": "success"})
    );
    let rows = |low: Value, high: Value| {
        up.ok(
            "POST",
            "/read",
            Some(json!({"Stud_id": {"low": low, "high": high}, "consistency": "strong"})),
        )["data"]
            .clone()
    };
    assert_eq!(
        rows(json!(2255), json!("2257")),
        json!([
            {"Stud_id": 2255, "Stud_name": "GHI", "Stud_marks": "27"},
            {"Stud_id": 2256, "Stud_name": "JKL", "Stud_marks": "46.5"},
            {"Stud_id": 2257, "Stud_name": "7", "Stud_marks": "30"}
        ])
    );
    // Keys already stored: 200, the new rows added, the stored keys skipped and unchanged.
    let v = up.ok(
        "POST",
        "/write",
        Some(json!({"data": [
            {"Stud_id": 2255, "Stud_name": "XXX", "Stud_marks": 1},
            {"Stud_id": 5000, "Stud_name": "MNO", "Stud_marks": 2}
        ]})),
    );
    assert_eq!(
        untokened(v),
        json!({"message": "1 Data entries added", "skipped": [2255], "status": "success"})
    );
    assert_eq!(rows(json!(2255), json!(2255))[0]["Stud_name"], "GHI");
    // ... and the strict behaviour on request: 409 naming the keys, nothing written.
    let (code, v) = up.call(
        "POST",
        "/write",
        Some(json!({"on_duplicate": "error", "data": [
            {"Stud_id": 2256, "Stud_name": "x", "Stud_marks": 1},
            {"Stud_id": 2258, "Stud_name": "y", "Stud_marks": 1}
        ]})),
    );
    assert_eq!(code, 409, "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("2256")),
        "{v}"
    );
    assert_eq!(rows(json!(2258), json!(2258)), json!([]));
    // An empty batch.
    let v = up.ok("POST", "/write", Some(json!({"data": []})));
    assert_eq!(
        v,
        json!({"message": "0 Data entries added", "status": "success"})
    );
    // `/update` with the key as a string (the seed's screenshot), a partial row, no key in data.
    let v = up.ok(
        "PUT",
        "/update",
        Some(json!({"Stud_id": "2256", "data": {"Stud_marks": 99}})),
    );
    assert_eq!(
        untokened(v),
        json!({"message": "Data entry for Stud_id:2256 updated", "status": "success"})
    );
    assert_eq!(
        rows(json!(2256), json!(2256)),
        json!([{"Stud_id": 2256, "Stud_name": "JKL", "Stud_marks": "99"}])
    );
    let v = up.ok(
        "PUT",
        "/update",
        Some(json!({"Stud_id": 2257.0, "data": {"Stud_id": "2257", "Stud_name": "PQR", "Stud_marks": 31}})),
    );
    assert_eq!(v["status"], "success");
    // `/del` with the key as a string.
    let v = up.ok("DELETE", "/del", Some(json!({"Stud_id": "5000"})));
    assert_eq!(
        untokened(v),
        json!({"message": "Data entry with Stud_id:5000 removed", "status": "success"})
    );
    // `/read` with low > high: 200, no rows.
    let v = up.ok(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 3000, "high": 1000}})),
    );
    assert_eq!(v["data"], json!([]), "{v}");
    // `/add` with the assignment's placeholders: names generated and returned.
    let v = up.ok(
        "POST",
        "/add",
        Some(json!({"n": 2, "new_shards": [{"Stud_id_low": 12288, "Shard_id": "sh4", "Shard_size": 4096}],
                    "servers": {"Server[5]": ["sh4", "sh1"], "Server$": ["sh4", "sh2"]}})),
    );
    assert_eq!(
        v,
        json!({"N": 5, "message": "Add Server:5 and Server:6", "status": "successful"})
    );
    let status = up.ok("GET", "/status", None);
    assert_eq!(
        status["servers"]["Server5"],
        json!(["sh4", "sh1"]),
        "{status}"
    );
    assert_eq!(
        status["servers"]["Server6"],
        json!(["sh4", "sh2"]),
        "{status}"
    );

    // What is NOT copied from the seed: a key outside every shard is a 4xx; /update and /del of a
    // missing key are 404s; fractions and junk keys are 400s that change nothing.
    for (method, path, body, code) in [
        (
            "POST",
            "/write",
            json!({"data": [{"Stud_id": 99999, "Stud_name": "x", "Stud_marks": 1}]}),
            400,
        ),
        (
            "PUT",
            "/update",
            json!({"Stud_id": 4000, "data": {"Stud_marks": 1}}),
            404,
        ),
        ("DELETE", "/del", json!({"Stud_id": 4000}), 404),
        ("DELETE", "/del", json!({"Stud_id": "12x"}), 400),
        (
            "POST",
            "/read",
            json!({"Stud_id": {"low": 1.5, "high": 3}}),
            400,
        ),
        (
            "POST",
            "/write",
            json!({"data": [{"Stud_id": 7, "Stud_name": [1], "Stud_marks": 1}]}),
            400,
        ),
    ] {
        let (got, v) = up.call(method, path, Some(body.clone()));
        assert_eq!(got, code, "{method} {path} {body}: {v}");
        assert_eq!(v["status"], "failure", "{v}");
    }
}

/// `text` with the log positions inside a `"session":"sh1:12"` token replaced by `#`: they
/// depend on the fleet's history (elections), the rest of an answer does not.
fn positions_masked(text: &str) -> String {
    let Some((head, rest)) = text.split_once("\"session\":\"") else {
        return text.to_owned();
    };
    let (token, tail) = rest.split_once('"').unwrap_or((rest, ""));
    let masked: String = token
        .split(',')
        .map(|p| p.split(':').next().unwrap_or(p).to_owned() + ":#")
        .collect::<Vec<_>>()
        .join(",");
    format!("{head}\"session\":\"{masked}\"{tail}")
}

/// An answer without its `"session"` token (whose positions depend on the fleet's history).
fn untokened(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        obj.remove("session");
    }
    v
}

/// The README's curl examples, run exactly as printed (the port replaced by the test fleet's), each
/// answering exactly what the README prints after it.
#[test]
fn the_readme_curl_examples_answer_as_printed() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let block = readme
        .split("<!-- curl-examples: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- curl-examples: end -->").next())
        .expect("the README's curl examples block");
    let lines: Vec<&str> = block
        .lines()
        .filter(|l| l.starts_with("curl ") || l.starts_with("# "))
        .collect();
    assert!(lines.len() >= 8, "{block}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = Up::start(&tmp.path().join("fleet"), Some(common::SEED_DEFAULT));
    up.wait_primaries(Duration::from_secs(30));
    let port = up.router.rsplit(':').next().expect("port");
    for pair in lines.chunks(2) {
        let [command, printed] = pair else {
            panic!("a curl line without its answer: {pair:?}");
        };
        let command = command.replace("localhost:5000", &format!("127.0.0.1:{port}"));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .output()
            .expect("curl");
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            positions_masked(got.trim()),
            positions_masked(printed.trim_start_matches("# ").trim()),
            "{command}"
        );
    }
}
