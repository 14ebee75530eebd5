//! Black-box tests of a live local fleet (`walshard up`: real MariaDB and agent processes, the
//! control plane and a router process), through the seed API only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{SEED_DEFAULT, Up, row};
use serde_json::{Value, json};

fn init_body() -> Value {
    json!({
        "N": 3,
        "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]},
        "shards": [
            {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096},
            {"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096}
        ],
        "servers": {"Server0": ["sh1", "sh2"], "Server1": ["sh1", "sh2"], "Server2": ["sh1", "sh2"]}
    })
}

fn keys(rows: &[Value]) -> Vec<i64> {
    rows.iter().filter_map(|r| r["Stud_id"].as_i64()).collect()
}

/// Every seed endpoint and its errors, `/add` with a new shard and a new replica of an existing
/// one, `/rm` of a primary's server, then a graceful restart and a crash restart of the whole
/// fleet, each keeping every row.
#[test]
fn seed_api_add_rm_and_restarts_through_the_router() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fleet");
    let mut up = Up::start(&dir, None);

    // Before /init: an empty configuration, as the seed answers.
    let (code, v) = up.call("GET", "/status", None);
    assert_eq!((code, v["N"].as_u64()), (200, Some(0)), "{v}");
    let (code, v) = up.call("POST", "/write", Some(json!({"data": [row(1)]})));
    assert_eq!((code, v["status"].as_str()), (400, Some("failure")), "{v}");

    // /init, also repeated; another layout is refused.
    let v = up.ok("POST", "/init", Some(init_body()));
    assert_eq!(
        v,
        json!({"message": "Configured Database", "status": "success"})
    );
    up.ok("POST", "/init", Some(init_body()));
    let mut other = init_body();
    other["shards"][1]["Shard_size"] = 10.into();
    let (code, v) = up.call("POST", "/init", Some(other));
    assert_eq!(code, 409, "{v}");
    let (code, _) = up.call("POST", "/init", Some(json!({"N": 2})));
    assert_eq!(code, 400);

    // /status: the configuration with a primary per shard.
    let status = up.ok("GET", "/status", None);
    assert_eq!(status["N"], 3);
    assert_eq!(status["schema"]["columns"][0], "Stud_id");
    assert_eq!(status["servers"]["Server1"], json!(["sh1", "sh2"]));
    for s in status["shards"].as_array().expect("shards") {
        assert!(s["primary"].is_string(), "{status}");
    }

    // /write across both shards.
    let data: Vec<Value> = [10, 20, 4100, 4200, 8191].into_iter().map(row).collect();
    let mut v = up.ok("POST", "/write", Some(json!({"data": data})));
    v.as_object_mut().map(|o| o.remove("session"));
    assert_eq!(
        v,
        json!({"message": "5 Data entries added", "status": "success"})
    );
    // Errors: duplicate key, key outside every shard, wrong type, malformed JSON; none writes.
    for (body, code) in [
        (
            json!({"data": [row(11), row(10)], "on_duplicate": "error"}),
            409,
        ),
        (json!({"data": [row(12), row(9000)]}), 400),
        (
            json!({"data": [{"Stud_id": 13, "Stud_name": true, "Stud_marks": 1}]}),
            400,
        ),
        (json!({"rows": []}), 400),
    ] {
        let (c, v) = up.call("POST", "/write", Some(body.clone()));
        assert_eq!(c, code, "{body}: {v}");
        assert_eq!(v["status"], "failure", "{v}");
    }
    let raw = up
        .http
        .post(format!("{}/write", up.router))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .expect("send");
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(
        keys(&up.rows(0, 8191, Some("strong"))),
        [10, 20, 4100, 4200, 8191]
    );
    // Eventual reads may lag a moment behind; they converge.
    eventually("eventual reads converge", || {
        keys(&up.rows(0, 8191, None)) == [10, 20, 4100, 4200, 8191]
    });

    // `walshard status` shows the live topology: the primaries have applied the writes.
    eventually("walshard status shows applied writes", || {
        let v = up.status_json();
        let sh1 = &v["topology"]["shards"]["sh1"];
        let primary = sh1["primary"].as_str().unwrap_or_default().to_owned();
        sh1["replicas"].as_array().is_some_and(|rs| {
            rs.iter()
                .any(|r| r["server"] == primary.as_str() && r["applied_lsn"].as_u64() >= Some(2))
        })
    });

    // /read: fan-out and the shards queried; strong reads; bad ranges.
    let v = up.ok(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 15, "high": 4150}, "consistency": "strong"})),
    );
    assert_eq!(v["shards_queried"], json!(["sh1", "sh2"]));
    assert_eq!(keys(v["data"].as_array().expect("data")).len(), 2);
    assert_eq!(keys(&up.rows(0, 100, Some("strong"))), [10, 20]);
    // low > high reads nothing (as the seed); a fractional bound is refused.
    let v = up.ok(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 9, "high": 1}})),
    );
    assert_eq!(v["data"], json!([]));
    let (code, _) = up.call(
        "POST",
        "/read",
        Some(json!({"Stud_id": {"low": 1.5, "high": 9}})),
    );
    assert_eq!(code, 400);

    // /read/<server>.
    eventually("Server2 holds every row", || {
        let v = up.ok("GET", "/read/Server2", None);
        v["status"] == "success"
            && keys(v["sh1"].as_array().expect("sh1")) == [10, 20]
            && v["sh2"].as_array().expect("sh2").len() == 3
    });
    let (code, _) = up.call("GET", "/read/Server9", None);
    assert_eq!(code, 404);

    // /update and /del, with their errors.
    let v = up.ok(
        "PUT",
        "/update",
        Some(json!({"Stud_id": 10, "data": {"Stud_id": 10, "Stud_name": "GHI", "Stud_marks": 30}})),
    );
    assert_eq!(v["message"], "Data entry for Stud_id:10 updated");
    assert_eq!(up.rows(10, 10, Some("strong"))[0]["Stud_marks"], 30);
    let (code, _) = up.call(
        "PUT",
        "/update",
        Some(json!({"Stud_id": 11, "data": {"Stud_id": 11, "Stud_name": "x", "Stud_marks": 1}})),
    );
    assert_eq!(code, 404);
    let v = up.ok("DELETE", "/del", Some(json!({"Stud_id": 20})));
    assert_eq!(v["message"], "Data entry with Stud_id:20 removed");
    let (code, _) = up.call("DELETE", "/del", Some(json!({"Stud_id": 20})));
    assert_eq!(code, 404);
    let (code, _) = up.call("GET", "/nope", None);
    assert_eq!(code, 404);

    // /add: a new shard on two new servers, one of which also takes a replica of sh1.
    let (code, v) = up.call(
        "POST",
        "/add",
        Some(json!({"n": 3, "servers": {"Server3": ["sh3"]}})),
    );
    assert_eq!(code, 400, "{v}");
    let v = up.ok(
        "POST",
        "/add",
        Some(json!({
            "n": 2,
            "new_shards": [{"Stud_id_low": 8192, "Shard_id": "sh3", "Shard_size": 4096}],
            "servers": {"Server3": ["sh3", "sh1"], "Server4": ["sh3"]}
        })),
    );
    assert_eq!(
        v,
        json!({"N": 5, "message": "Add Server:3 and Server:4", "status": "successful"})
    );
    up.ok(
        "POST",
        "/write",
        Some(json!({"data": [row(9000), row(12000), row(30)]})),
    );
    assert_eq!(keys(&up.rows(8192, 12287, Some("strong"))), [9000, 12000]);
    // The new replica of sh1 got the rows written before it joined.
    eventually("Server3 catches up on sh1", || {
        // A replica still catching up answers 503 (it serves no partial state).
        let (code, v) = up.call("GET", "/read/Server3", None);
        if code != 200 {
            return false;
        }
        let mut k = keys(v["sh1"].as_array().expect("sh1"));
        k.sort();
        k == [10, 30]
    });

    // /rm: errors first, then the primary of sh1.
    let (code, _) = up.call(
        "DELETE",
        "/rm",
        Some(json!({"n": 1, "servers": ["Server0", "Server1"]})),
    );
    assert_eq!(code, 400);
    let (code, _) = up.call(
        "DELETE",
        "/rm",
        Some(json!({"n": 1, "servers": ["Server9"]})),
    );
    assert_eq!(code, 404);
    let primary = up.primary("sh1").expect("sh1 primary");
    let v = up.ok("DELETE", "/rm", Some(json!({"n": 1, "servers": [primary]})));
    assert_eq!(v["status"], "successful");
    assert_eq!(v["message"]["N"], 4);
    assert_eq!(v["message"]["servers"], json!([primary]));
    let new_primary = up.primary("sh1").expect("sh1 has a primary again");
    assert_ne!(new_primary, primary);
    let status = up.ok("GET", "/status", None);
    assert!(status["servers"].get(&primary).is_none(), "{status}");
    up.ok("POST", "/write", Some(json!({"data": [row(40)]})));
    let expected = vec![10, 30, 40, 4100, 4200, 8191, 9000, 12000];
    assert_eq!(keys(&up.rows(0, 12287, Some("strong"))), expected);

    // Graceful restart (Ctrl-C, up again): same configuration and rows.
    up.stop();
    let mut up = Up::start(&dir, None);
    up.wait_primaries(Duration::from_secs(30));
    assert_eq!(up.ok("GET", "/status", None)["N"], 4);
    assert_eq!(keys(&up.rows(0, 12287, Some("strong"))), expected);

    // Crash restart (kill -9 of walshard up and so of every process): nothing lost.
    up.ok("POST", "/write", Some(json!({"data": [row(50)]})));
    up.crash();
    let up = Up::start(&dir, None);
    up.wait_primaries(Duration::from_secs(30));
    let mut expected = expected;
    expected.insert(3, 50);
    assert_eq!(keys(&up.rows(0, 12287, Some("strong"))), expected);
    eventually("eventual reads converge", || {
        keys(&up.rows(0, 12287, None)) == expected
    });
}

/// Polls `done` for up to 30 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "not within 30s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The seed's A-4: under a write load, `kill -9` one server's agent and its MariaDB, and take its
/// data away too (a lost volume). The fleet respawns it, copies its shards back, and no
/// acknowledged write is lost; reads and writes go on.
#[test]
fn a4_killed_server_is_respawned_and_copied_back_under_load() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("fleet");
    let up = Up::start(&dir, Some(SEED_DEFAULT));
    up.wait_primaries(Duration::from_secs(30));
    let router = up.router.clone();

    // Writers: bounded in count and time, each key written once, acknowledged keys recorded.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (router, stop) = (router.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let mut acked = Vec::new();
                let mut failed = 0;
                let started = Instant::now();
                for i in 0..4000i64 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(60) {
                        break;
                    }
                    let k = (i * 4 + w) % 16384;
                    let resp = http
                        .post(format!("{router}/write"))
                        .json(&json!({"data": [row(k)]}))
                        .send();
                    match resp {
                        Ok(r) if r.status().is_success() => acked.push(k),
                        _ => failed += 1,
                    }
                }
                (acked, failed)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(800));
    // The victim: the primary of sh1, so an election is needed too.
    let victim = up.primary("sh1").expect("sh1 primary");
    let procs = up.servers();
    let p = &procs[&victim];
    let (mysql_pid, agent_pid) = (
        p["mysql_pid"].as_i64().expect("mysql pid"),
        p["agent_pid"].as_i64().expect("agent pid"),
    );
    let server_dir = std::path::PathBuf::from(p["dir"].as_str().expect("dir"));
    // The volume goes away first (the processes keep their open files), then the processes.
    std::fs::rename(&server_dir, server_dir.with_extension("lost")).expect("move the volume away");
    for pid in [agent_pid, mysql_pid] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9");
    }
    let killed_at = Instant::now();

    // Respawned with new processes, and the shards are back on it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let procs = up.servers();
        let p = &procs[&victim];
        let fresh = p["agent_pid"].as_i64().is_some_and(|x| x != agent_pid)
            && p["mysql_pid"].as_i64().is_some_and(|x| x != mysql_pid);
        // Eventual: any committed state it serves; it refuses reads while catching up.
        let read = up.call("GET", &format!("/read/{victim}?consistency=eventual"), None);
        if fresh && read.0 == 200 {
            break;
        }
        if Instant::now() >= deadline {
            let log =
                std::fs::read_to_string(up.dir.join("servers").join(&victim).join("agent.log"))
                    .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "{victim} not respawned: {procs}; /read/{victim}: {read:?}\nits agent log, last lines first:\n{}\nwalshard up:\n{}",
                tail.join("\n"),
                up.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "{victim} respawned {:?} after the kill",
        killed_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    let mut failed = 0;
    for w in writers {
        let (a, f) = w.join().expect("writer");
        acked.extend(a);
        failed += f;
    }
    acked.sort();
    eprintln!("{} writes acknowledged, {failed} failed", acked.len());
    assert!(acked.len() > 100, "the load did not run");

    // Right after the respawned server is back: every update is seen by the (default, session)
    // read that follows it, wherever the ring sends the read — also to the respawned replica.
    let mut misses = 0;
    for (n, k) in acked.iter().take(100).enumerate() {
        let name = format!("ryw{n}");
        up.ok(
            "PUT",
            "/update",
            Some(json!({"Stud_id": k, "data": {"Stud_name": name}})),
        );
        let v = up.ok(
            "POST",
            "/read",
            Some(json!({"Stud_id": {"low": k, "high": k}})),
        );
        misses += usize::from(v["data"][0]["Stud_name"] != name.as_str());
    }
    eprintln!("after the respawn: {misses} of 100 reads missed the update before them");
    assert_eq!(misses, 0);

    // Nothing acknowledged is lost, and writes and reads go on.
    up.wait_primaries(Duration::from_secs(30));
    let rows = keys(&up.rows(0, 16383, Some("strong")));
    let missing: Vec<i64> = acked
        .iter()
        .filter(|k| rows.binary_search(k).is_err())
        .copied()
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    up.ok("POST", "/write", Some(json!({"data": [row(16383)]})));

    // The victim holds its shards again: same rows as the primary, per shard.
    let status = up.ok("GET", "/status", None);
    let held: Vec<String> = status["servers"][&victim]
        .as_array()
        .expect("victim's shards")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let copy = up.ok("GET", &format!("/read/{victim}"), None);
        let behind: Vec<String> = held
            .iter()
            .filter(|shard| {
                let spec = status["shards"]
                    .as_array()
                    .and_then(|a| a.iter().find(|s| s["Shard_id"] == shard.as_str()))
                    .expect("shard spec");
                let low = spec["Stud_id_low"].as_i64().expect("low");
                let high = low + spec["Shard_size"].as_i64().expect("size") - 1;
                let primary_rows = keys(&up.rows(low, high, Some("strong")));
                let mut mine = keys(copy[shard.as_str()].as_array().expect("rows"));
                mine.sort();
                mine != primary_rows
            })
            .cloned()
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{victim} did not get back {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
