//! The agent's HTTP contract against a real MariaDB: payloads, codes and messages of every
//! endpoint, and every bad-input class (which must change nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use common::{AgentProc, Client, mariadb, seed_schema, student};
use reqwest::Method;
use serde_json::{Value, json};

async fn configured(client: &Client) {
    let (code, v) = client
        .post(
            "/config",
            json!({"schema": seed_schema(), "shards": [
                {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096},
                "sh2"
            ]}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v,
        json!({"message": "Server0:sh1, Server0:sh2 configured", "status": "success"})
    );
}

fn is_failure(v: &Value, needle: &str) -> bool {
    v["status"] == "failure" && v["message"].as_str().is_some_and(|m| m.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_endpoints_answer_exactly() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();

    // /heartbeat: 200, empty body, no token needed.
    let hb = reqwest::get(format!("{}/heartbeat", agent.base()))
        .await
        .expect("heartbeat");
    assert_eq!(hb.status(), 200);
    assert_eq!(hb.text().await.expect("body"), "");

    configured(&c).await;
    // Same /config again is idempotent.
    configured(&c).await;

    let (code, v) = c
        .post(
            "/write",
            json!({"shard": "sh1", "curr_idx": 0, "data": [student(1), student(2), student(3)]}),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entries added", "count": 3, "status": "success", "current_idx": 3})
        )
    );

    // /read is inclusive at both ends.
    let (code, v) = c
        .post(
            "/read",
            json!({"shard": "sh1", "Stud_id": {"low": 2, "high": 3}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"data": [student(2), student(3)], "status": "success"})
    );

    let mut changed = student(2);
    changed["Stud_marks"] = json!(99);
    let (code, v) = c
        .call(
            Method::PUT,
            "/update",
            Some(json!({"shard": "sh1", "Stud_id": 2, "data": changed})),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entry for Stud_id:2 updated", "status": "success"})
        )
    );

    let (code, v) = c
        .call(
            Method::DELETE,
            "/del",
            Some(json!({"shard": "sh1", "Stud_id": 3})),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entry with Stud_id:3 removed", "status": "success"})
        )
    );

    // /copy: body on GET (as the seed sends it) and the query string.
    let (code, v) = c
        .call(
            Method::GET,
            "/copy",
            Some(json!({"shards": ["sh1", "sh2"]})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        v,
        json!({"sh1": [student(1), changed], "sh2": [], "status": "success"})
    );
    let (code, v2) = c.call(Method::GET, "/copy?shards=sh1,sh2", None).await;
    assert_eq!((code, &v2), (200, &v));

    // /status: per shard role, epoch, last LSN, applied LSN.
    let s = c.status().await;
    assert_eq!(s["server"], "Server0");
    assert_eq!(s["shards"]["sh1"]["role"], "primary");
    assert_eq!(s["shards"]["sh1"]["epoch"], 1);
    assert_eq!(s["shards"]["sh1"]["last_lsn"], 3);
    assert_eq!(s["shards"]["sh1"]["applied_lsn"], 3);
    assert_eq!(s["shards"]["sh2"]["last_lsn"], 0);

    // /metrics: Prometheus text, no token needed.
    let m = reqwest::get(format!("{}/metrics", agent.base()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("walshard_agent_http_requests_total"), "{m}");
    assert!(
        m.contains("walshard_agent_applied_lsn{shard=\"sh1\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("walshard_agent_wal_fsyncs{shard=\"sh1\"}"),
        "{m}"
    );
}

/// The seed's server API as its clients speak it (docs/seed-compatibility.md): its own schema with
/// a String `Stud_marks` sent as numbers, keys as strings, `curr_idx`, keys already stored
/// (skipped, not a 409), an empty batch, a partial `/update`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_server_api_as_its_clients_send_it() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();
    let schema = json!({"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]});
    let (code, v) = c
        .post("/config", json!({"schema": schema, "shards": ["sh1"]}))
        .await;
    assert_eq!(code, 200, "{v}");

    let row =
        |id: Value, marks: Value| json!({"Stud_id": id, "Stud_name": "GHI", "Stud_marks": marks});
    let (code, v) = c
        .post(
            "/write",
            json!({"shard": "sh1", "curr_idx": 507, "data": [row(json!(2255), json!(27)), row(json!("2256"), json!(28.5))]}),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entries added", "count": 2, "status": "success", "current_idx": 509})
        )
    );
    // Again with one new key: the stored one is skipped and left unchanged.
    let (code, v) = c
        .post(
            "/write",
            json!({"shard": "sh1", "curr_idx": 509, "data": [row(json!(2255), json!(99)), row(json!(2257), json!(1))]}),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entries added", "count": 1, "skipped": [2255], "status": "success", "current_idx": 510})
        )
    );
    let (code, v) = c
        .post(
            "/write",
            json!({"shard": "sh1", "curr_idx": 510, "data": []}),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entries added", "count": 0, "status": "success", "current_idx": 510})
        )
    );
    // /update with the key as a string and only the column to change; /del likewise.
    let (code, v) = c
        .call(
            Method::PUT,
            "/update",
            Some(json!({"shard": "sh1", "Stud_id": "2256", "data": {"Stud_marks": 30}})),
        )
        .await;
    assert_eq!(
        (code, v),
        (
            200,
            json!({"message": "Data entry for Stud_id:2256 updated", "status": "success"})
        )
    );
    let (code, _) = c
        .call(
            Method::DELETE,
            "/del",
            Some(json!({"shard": "sh1", "Stud_id": "2257"})),
        )
        .await;
    assert_eq!(code, 200);
    // Answers carry the column's own type, never the client's.
    assert_eq!(
        c.copy("sh1").await,
        vec![row(json!(2255), json!("27")), row(json!(2256), json!("30"))]
    );
    let (code, v) = c
        .post(
            "/read",
            json!({"shard": "sh1", "Stud_id": {"low": "2256", "high": 2255}}),
        )
        .await;
    assert_eq!((code, v), (200, json!({"data": [], "status": "success"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentProc::start_with(
        &db.url(),
        &dir.path().join("agent"),
        &[("WALSHARD_MAX_BODY_BYTES", "65536")],
    );
    let c = agent.client();

    // Before /config: data requests are refused with a clear message.
    let (code, v) = c
        .post("/write", json!({"shard": "sh1", "data": [student(1)]}))
        .await;
    assert!(
        code == 400 && is_failure(&v, "not configured"),
        "{code} {v}"
    );

    // Hostile identifiers in /config.
    for (schema, shards) in [
        (
            json!({"columns": ["Stud_id", "x`); DROP TABLE walshard_shards; --"], "dtypes": ["Number", "String"]}),
            json!(["sh1"]),
        ),
        (seed_schema(), json!(["sh1; DROP DATABASE walshard"])),
        (seed_schema(), json!(["../../etc"])),
        (
            json!({"columns": ["name"], "dtypes": ["String"]}),
            json!(["sh1"]),
        ),
        (
            json!({"columns": ["a", "b"], "dtypes": ["Number"]}),
            json!(["sh1"]),
        ),
    ] {
        let (code, v) = c
            .post("/config", json!({"schema": schema, "shards": shards}))
            .await;
        assert_eq!(code, 400, "{v}");
        assert_eq!(v["status"], "failure");
    }
    assert_eq!(
        c.status().await["shards"],
        json!({}),
        "a refused /config configured something"
    );
    configured(&c).await;
    // A different schema afterwards is a conflict.
    let (code, v) = c
        .post(
            "/config",
            json!({"schema": {"columns": ["id"], "dtypes": ["Number"]}, "shards": ["sh9"]}),
        )
        .await;
    assert!(
        code == 409 && is_failure(&v, "different schema"),
        "{code} {v}"
    );
    // Overlapping range with an existing shard.
    let (code, v) = c
        .post("/config", json!({"schema": seed_schema(), "shards": [{"Stud_id_low": 100, "Shard_id": "sh3", "Shard_size": 10}]}))
        .await;
    assert!(code == 400 && is_failure(&v, "overlap"), "{code} {v}");

    let (code, _) = c
        .post("/write", json!({"shard": "sh1", "data": [student(10)]}))
        .await;
    assert_eq!(code, 200);
    let before = c.copy("sh1").await;
    let lsn_before = c.status().await["shards"]["sh1"]["last_lsn"].clone();

    // Auth.
    let r = reqwest::Client::new()
        .post(format!("{}/write", agent.base()))
        .json(&json!({"shard": "sh1", "data": [student(11)]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert!(is_failure(&v, "bearer token"), "{v}");
    let r = reqwest::Client::new()
        .get(format!("{}/status", agent.base()))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    // Malformed JSON.
    let r = c
        .http
        .post(format!("{}/write", agent.base()))
        .bearer_auth(common::TOKEN)
        .header("content-type", "application/json")
        .body("{\"shard\": \"sh1\", \"data\": [")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert!(is_failure(
        &r.json::<Value>().await.expect("json"),
        "malformed JSON"
    ));

    // Body over the limit (65,536 here): 413. Sent by hand with exactly one byte too many, so
    // the server reads all of it before answering and closes cleanly (a client still sending a
    // large body may see a reset instead of the answer).
    let body = format!(
        "{{\"shard\":\"sh2\",\"data\":\"{}\"}}",
        "x".repeat(65_537 - 25)
    );
    assert_eq!(body.len(), 65_537);
    let answer = raw_request(
        &c.base,
        &format!(
            "POST /write HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            common::TOKEN,
            body.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"status\":\"failure\""), "{answer}");

    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [{"Stud_id": "12x", "Stud_name": "a", "Stud_marks": 1}]}),
            400,
            "must be Number",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [{"Stud_id": 12, "Stud_name": [5], "Stud_marks": 1}]}),
            400,
            "must be String",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [{"Stud_name": "a", "Stud_marks": 1}]}),
            400,
            "missing column \"Stud_id\"",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [{"Stud_id": 12, "Stud_name": "a", "Stud_marks": 1, "extra": 1}]}),
            400,
            "unknown column",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [student(12), student(5000)]}),
            400,
            "outside shard sh1 [0, 4096)",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [student(12), student(12)]}),
            409,
            "Stud_id: 12",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1", "data": [student(13), student(10)], "on_duplicate": "error"}),
            409,
            "Stud_id: 10 already present",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "nope", "data": [student(12)]}),
            404,
            "not on this server",
        ),
        (
            Method::POST,
            "/write",
            json!({"shard": "sh1; DROP TABLE x", "data": [student(12)]}),
            400,
            "shard",
        ),
        (
            Method::POST,
            "/write",
            json!({"data": [student(12)]}),
            400,
            "missing field \"shard\"",
        ),
        (
            Method::POST,
            "/read",
            json!({"shard": "sh1", "Stud_id": {"low": 5.5, "high": 1}}),
            400,
            "fraction",
        ),
        (
            Method::POST,
            "/read",
            json!({"shard": "sh1"}),
            400,
            "Stud_id",
        ),
        (
            Method::PUT,
            "/update",
            json!({"shard": "sh1", "Stud_id": 10, "data": student(11)}),
            400,
            "cannot change",
        ),
        (
            Method::PUT,
            "/update",
            json!({"shard": "sh1", "Stud_id": 77, "data": student(77)}),
            404,
            "no data entry with Stud_id:77",
        ),
        (
            Method::DELETE,
            "/del",
            json!({"shard": "sh1", "Stud_id": 77}),
            404,
            "no data entry with Stud_id:77",
        ),
        (
            Method::DELETE,
            "/del",
            json!({"shard": "sh1", "Stud_id": 9000}),
            400,
            "outside shard",
        ),
        (
            Method::GET,
            "/copy",
            json!({"shards": ["sh1", "zz"]}),
            404,
            "zz",
        ),
        (Method::GET, "/nowhere", json!({}), 404, "no such endpoint"),
        (Method::GET, "/write", json!({}), 405, "method not allowed"),
    ];
    for (method, path, body, want, needle) in cases {
        let (code, v) = c.call(method.clone(), path, Some(body.clone())).await;
        assert!(
            code == want && is_failure(&v, needle),
            "{method} {path} {body}: got {code} {v}"
        );
    }
    assert_eq!(c.copy("sh1").await, before, "bad input changed data");
    // Conflicts and not-found outcomes are logged ops (so replicas agree) but change no rows.
    let lsn_after = c.status().await["shards"]["sh1"]["last_lsn"].clone();
    assert!(lsn_after.as_u64() >= lsn_before.as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_operation_id_is_applied_once() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();
    configured(&c).await;
    let op = [("x-walshard-op-id", "0123456789abcdef0123456789abcdef")];
    let body = json!({"shard": "sh1", "data": [student(42)]});
    let first = c
        .call_with(Method::POST, "/write", Some(body.clone()), &op)
        .await
        .expect("first");
    assert_eq!(first.0, 200, "{}", first.1);
    // Same op id again: same answer, not a duplicate-key conflict, applied once.
    let again = c
        .call_with(Method::POST, "/write", Some(body.clone()), &op)
        .await
        .expect("again");
    assert_eq!(again, first);
    // Still recognised after a crash and restart (the outcome is stored with the data).
    agent.restart();
    let c = agent.client();
    let third = c
        .call_with(Method::POST, "/write", Some(body), &op)
        .await
        .expect("third");
    assert_eq!(third, first);
    // An op that conflicted answers the same conflict when retried.
    let op2 = [("x-walshard-op-id", "00000000000000000000000000000abc")];
    let dup = json!({"shard": "sh1", "data": [student(42)], "on_duplicate": "error"});
    let a = c
        .call_with(Method::POST, "/write", Some(dup.clone()), &op2)
        .await
        .expect("a");
    assert_eq!(a.0, 409);
    let b = c
        .call_with(Method::POST, "/write", Some(dup), &op2)
        .await
        .expect("b");
    assert_eq!(a, b);
    assert_eq!(c.copy("sh1").await, vec![student(42)]);
    let bad = c
        .call_with(
            Method::POST,
            "/write",
            Some(json!({"shard": "sh1", "data": [student(43)]})),
            &[("x-walshard-op-id", "xyz")],
        )
        .await
        .expect("bad");
    assert_eq!(bad.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_state_persists() {
    let db = mariadb(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = AgentProc::start(&db.url(), &dir.path().join("agent"));
    let c = agent.client();
    configured(&c).await;
    let (code, _) = c
        .post("/write", json!({"shard": "sh2", "data": [student(5000)]}))
        .await;
    assert_eq!(code, 200);
    let status = agent
        .child
        .as_mut()
        .expect("running")
        .terminate(std::time::Duration::from_secs(20))
        .expect("terminate");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        agent.log_text()
    );
    assert!(agent.log_text().contains("stopped"), "{}", agent.log_text());
    agent.restart();
    let c = agent.client();
    assert_eq!(c.copy("sh2").await, vec![student(5000)]);
    assert_eq!(c.status().await["shards"]["sh1"]["epoch"], 1);
}

/// Sends `request` (raw HTTP/1.1) to `base` and returns what the server answers until it closes
/// the connection or 2 s pass.
async fn raw_request(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&out).contains("\"status\"") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
