//! Failover end to end: real agent processes (each with its own MariaDB) behind fault-injecting
//! proxies, and the real control plane (`walshard-control-plane`) electing primaries over HTTP.
//! Clients write through whatever primary the control plane publishes. After every scenario the
//! testkit invariants are checked: every acknowledged write present, one primary per epoch,
//! replicas converged, strong single-key reads linearizable.
//!
//! The scenarios share the machine's two cores with several MariaDB servers each, so they run
//! one at a time (a global lock) to keep failure detection honest.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{AgentProc, Client, TOKEN, spawn_control_plane, start_replicas, student};
use reqwest::Method;
use serde_json::{Value, json};
use walshard_control_plane::{ClusterSpec, ControlPlaneHandle};
use walshard_testkit::invariants::{
    AckLedger, Op, OpResult, check_acked_present, check_convergence, check_linearizable_register,
    check_single_primary,
};
use walshard_testkit::{FaultProxy, MariaDb};

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fleet {
    _dbs: Vec<MariaDb>,
    agents: Vec<AgentProc>,
    /// In front of each agent: the control plane and the other agents reach it through this.
    proxies: Vec<FaultProxy>,
    handle: ControlPlaneHandle,
    stop_cp: Option<tokio::sync::oneshot::Sender<()>>,
    /// `(shard, epoch, server)` of every primary taking writes, sampled from `/status`.
    primaries: Arc<Mutex<Vec<(String, u64, String)>>>,
    sampling: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dbs, agents) =
            start_replicas(n, dir.path(), &[("WALSHARD_WAL_SEGMENT_BYTES", "1048576")]).await;
        let proxies: Vec<FaultProxy> = agents
            .iter()
            .map(|a| FaultProxy::start(([127, 0, 0, 1], a.port).into()).expect("proxy"))
            .collect();
        let spec = ClusterSpec {
            servers: agents
                .iter()
                .zip(&proxies)
                .map(|(a, p)| (a.name.clone(), format!("http://{}", p.addr())))
                .collect(),
            shards: BTreeMap::from([(
                "sh1".to_owned(),
                agents.iter().map(|a| a.name.clone()).collect(),
            )]),
            write_quorum: Default::default(),
        };
        let (handle, stop_tx) = spawn_control_plane(spec);
        let fleet = Fleet {
            _dbs: dbs,
            agents,
            proxies,
            handle,
            stop_cp: Some(stop_tx),
            primaries: Arc::default(),
            sampling: Arc::new(AtomicBool::new(true)),
            _dir: dir,
        };
        fleet.sample_primaries();
        fleet
    }

    /// Polls every agent's `/status` and records who acts as primary in which epoch.
    fn sample_primaries(&self) {
        let clients: Vec<(String, Client)> = self
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.client()))
            .collect();
        let seen = self.primaries.clone();
        let on = self.sampling.clone();
        tokio::spawn(async move {
            while on.load(Ordering::SeqCst) {
                for (name, c) in &clients {
                    if let Ok((200, s)) = c.call_with(Method::GET, "/status", None, &[]).await {
                        let sh = &s["shards"]["sh1"];
                        if sh["role"] == "primary" && sh["accepting_writes"] == true {
                            let epoch = sh["epoch"].as_u64().unwrap_or(0);
                            if let Ok(mut v) = seen.lock() {
                                v.push(("sh1".to_owned(), epoch, name.clone()));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    fn index(&self, name: &str) -> usize {
        self.agents
            .iter()
            .position(|a| a.name == name)
            .expect("known server")
    }

    /// Waits for a healthy primary other than `not`; returns its index and epoch.
    async fn wait_primary(&self, not: Option<usize>) -> (usize, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.handle.topology();
            if let Some(p) = t.primary("sh1") {
                let i = self.index(p);
                if Some(i) != not {
                    return (i, t.epoch("sh1").unwrap_or(0));
                }
            }
            assert!(
                Instant::now() < deadline,
                "no new primary: {}",
                serde_json::to_string(&t).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn status(&self, i: usize) -> Value {
        self.agents[i].client().status().await["shards"]["sh1"].clone()
    }

    /// Stops the control plane and the sampler, waits until the live replicas applied the
    /// primary's last entry, and checks every invariant.
    async fn finish(mut self, ledger: &AckLedger, live: &[usize]) {
        let (p, _) = self.wait_primary(None).await;
        let last = self.status(p).await["last_lsn"].as_u64().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        for &i in live {
            while self.status(i).await["applied_lsn"].as_u64().unwrap_or(0) < last {
                assert!(
                    Instant::now() < deadline,
                    "replica {i} never caught up to {last}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.sampling.store(false, Ordering::SeqCst);
        if let Some(stop) = self.stop_cp.take() {
            let _ = stop.send(());
        }
        let rows = self.agents[p].client().copy("sh1").await;
        let by_key: BTreeMap<i64, Value> = rows
            .iter()
            .map(|r| (r["Stud_id"].as_i64().unwrap_or_default(), r.clone()))
            .collect();
        let summary = ledger.summary();
        check_acked_present(ledger, &by_key).unwrap_or_else(|v| panic!("acknowledged writes: {v}"));
        let mut copies = Vec::new();
        for &i in live {
            copies.push((
                self.agents[i].name.clone(),
                self.agents[i].client().copy("sh1").await,
            ));
        }
        check_convergence(&copies).unwrap_or_else(|v| panic!("convergence: {v}"));
        let seen = self.primaries.lock().map(|v| v.clone()).unwrap_or_default();
        check_single_primary(&seen).unwrap_or_else(|v| panic!("one primary per epoch: {v}"));
        check_linearizable_register(&ledger.register_history())
            .unwrap_or_else(|v| panic!("strong reads: {v}"));
        println!(
            "invariants hold: {} rows on {} replicas; ledger {summary:?}; {} primary samples",
            rows.len(),
            live.len(),
            seen.len()
        );
    }
}

/// Clients writing fresh keys (and updating + strongly reading a few registers) through
/// whichever primary the control plane publishes, until stopped.
struct Workload {
    stop: Arc<AtomicBool>,
    /// When each write was acknowledged, and by which server.
    acks: Arc<Mutex<Vec<(Instant, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(fleet: &Fleet, ledger: &AckLedger, writers: usize) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicI64::new(1_000));
        let direct: BTreeMap<String, String> = fleet
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.base()))
            .collect();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (stop, acks, next, ledger, handle, direct) = (
                stop.clone(),
                acks.clone(),
                next.clone(),
                ledger.clone(),
                fleet.handle.clone(),
                direct.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
                // Writer 0 also keeps a register (key w) it updates and reads strongly.
                let register = (w == 0).then_some(w as i64);
                let mut version = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    let Some((server, url)) = handle
                        .topology()
                        .primary("sh1")
                        .and_then(|p| direct.get(p).map(|u| (p.to_owned(), u.clone())))
                    else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let (op, path, method, body) = match register {
                        Some(k) if version > 0 && version % 2 == 0 => {
                            (Op::Read { key: k }, "/read", Method::POST, json!({"shard": "sh1", "Stud_id": {"low": k, "high": k}, "consistency": "strong"}))
                        }
                        Some(k) if version > 0 => {
                            let mut row = student(k);
                            row["Stud_marks"] = json!(version);
                            (Op::Update { key: k, row: row.clone() }, "/update", Method::PUT, json!({"shard": "sh1", "Stud_id": k, "data": row}))
                        }
                        Some(k) => (Op::Write { key: k, row: student(k) }, "/write", Method::POST, json!({"shard": "sh1", "data": [student(k)]})),
                        None => {
                            let k = next.fetch_add(1, Ordering::SeqCst);
                            (Op::Write { key: k, row: student(k) }, "/write", Method::POST, json!({"shard": "sh1", "data": [student(k)]}))
                        }
                    };
                    let is_read = matches!(op, Op::Read { .. });
                    let h = ledger.begin(op);
                    let sent = http
                        .request(method, format!("{url}{path}"))
                        .bearer_auth(TOKEN)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            if is_read {
                                h.ok(OpResult::Read(v["data"].as_array().and_then(|d| d.first().cloned())));
                            } else {
                                h.ok(OpResult::Applied);
                                if let Ok(mut a) = acks.lock() {
                                    a.push((Instant::now(), server.clone()));
                                }
                            }
                            if register.is_some() {
                                version += 1;
                            }
                        }
                        // Refused before logging: not a primary (421) or no quorum at once (503
                        // "no majority"): nothing happened. Anything else is in doubt.
                        Ok(r) if r.status() == 421 || r.status() == 400 => h.fail(),
                        Ok(r) if r.status() == 503 => {
                            let v: Value = r.json().await.unwrap_or(Value::Null);
                            let msg = v["message"].as_str().unwrap_or_default();
                            if msg.contains("no majority") || msg.contains("not ready") {
                                h.fail();
                            } else {
                                h.unknown();
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        _ => {
                            h.unknown();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
        Workload { stop, acks, tasks }
    }

    /// Time from `since` to the first write acknowledged after it by a server other than
    /// `not` (a killed primary may still answer a request already in flight).
    async fn first_ack_after(
        &self,
        since: Instant,
        not: Option<&str>,
        within: Duration,
    ) -> Duration {
        let deadline = since + within;
        loop {
            let first = self.acks.lock().ok().and_then(|a| {
                a.iter()
                    .find(|(t, s)| *t > since && Some(s.as_str()) != not)
                    .map(|(t, _)| *t)
            });
            if let Some(t) = first {
                return t - since;
            }
            assert!(
                Instant::now() < deadline,
                "no write acknowledged within {within:?} of {since:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("writer task");
        }
    }
}

fn print_failovers(label: &str, times: &mut [Duration]) {
    times.sort();
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    println!(
        "{label}: writes acknowledged again after kill -9 of the primary, ms (sorted): {ms:?}; median {} ms, max {} ms",
        ms.get(ms.len() / 2).copied().unwrap_or(0),
        ms.last().copied().unwrap_or(0)
    );
}

/// Kills the primary `rounds` times under writes; each time the killed server comes back and
/// follows. Prints the time until writes were acknowledged again.
async fn kill_primary_repeatedly(replicas: usize, rounds: usize) {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start(replicas).await;
    let ledger = AckLedger::new();
    fleet.wait_primary(None).await;
    let work = Workload::start(&fleet, &ledger, 6);
    let mut times = Vec::new();
    for round in 0..rounds {
        let (p, epoch) = fleet.wait_primary(None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = Instant::now();
        fleet.agents[p].kill9();
        let name = format!("Server{p}");
        let t = work
            .first_ack_after(killed, Some(&name), Duration::from_secs(15))
            .await;
        let (np, nepoch) = fleet.wait_primary(Some(p)).await;
        assert!(nepoch > epoch, "round {round}: epoch did not increase");
        println!(
            "round {round}: killed Server{p} (epoch {epoch}); Server{np} primary in epoch {nepoch}; writes acknowledged again after {t:?}"
        );
        times.push(t);
        fleet.agents[p].restart();
    }
    work.stop().await;
    print_failovers(&format!("{replicas} replicas"), &mut times);
    let all: Vec<usize> = (0..replicas).collect();
    fleet.finish(&ledger, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_ten_times_under_writes_three_replicas() {
    kill_primary_repeatedly(3, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_ten_times_under_writes_five_replicas() {
    kill_primary_repeatedly(5, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_primary_logs_queued_writes_but_cannot_commit_and_drops_that_tail() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start(3).await;
    let ledger = AckLedger::new();
    fleet.wait_primary(None).await;
    let work = Workload::start(&fleet, &ledger, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut truncated = false;
    // A frozen primary (SIGSTOP: a long GC pause, a VM freeze) is replaced. Writes sent to it
    // meanwhile wait in its sockets; when it thaws it logs them in its old epoch, but its
    // appends meet replicas fenced at the new one, so nothing commits; following the new primary
    // it truncates that tail. The race between logging and learning the epoch is real, so try
    // a few times until a tail was actually logged.
    for attempt in 0..3 {
        let (p, e) = fleet.wait_primary(None).await;
        let frozen = fleet.agents[p].child.as_ref().expect("running");
        frozen.pause().expect("SIGSTOP");
        let (np, nepoch) = fleet.wait_primary(Some(p)).await;
        assert!(nepoch > e);
        let direct = fleet.agents[p].client();
        let mut queued = Vec::new();
        for k in 0..20i64 {
            let key = 600_000_000 + attempt * 100 + k;
            let h = ledger.begin(Op::Write {
                key,
                row: student(key),
            });
            let c = direct.clone();
            queued.push(tokio::spawn(async move {
                let r = c
                    .call_with(
                        Method::POST,
                        "/write",
                        Some(json!({"shard": "sh1", "data": [student(key)]})),
                        &[],
                    )
                    .await;
                (r, h)
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        fleet.agents[p]
            .child
            .as_ref()
            .expect("running")
            .resume()
            .expect("SIGCONT");
        for q in queued {
            let (r, h) = q.await.expect("queued write");
            match r {
                Ok((200, v)) => panic!("the replaced primary acknowledged a write: {v}"),
                Ok((421, _)) => h.fail(),
                _ => h.unknown(),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = fleet.status(p).await;
            if s["role"] == "secondary"
                && s["primary"] == format!("Server{np}")
                && s["last_epoch"].as_u64() >= Some(nepoch)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the thawed primary never followed Server{np}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if fleet.agents[p]
            .log_text()
            .contains("truncating divergent uncommitted tail")
        {
            truncated = true;
            println!(
                "attempt {attempt}: Server{p} (epoch {e}) logged queued writes it could not commit and dropped them following Server{np} (epoch {nepoch})"
            );
            break;
        }
        println!(
            "attempt {attempt}: Server{p} learned epoch {nepoch} before logging the queued writes; again"
        );
    }
    assert!(truncated, "no attempt produced an uncommitted tail to drop");
    work.stop().await;
    fleet.finish(&ledger, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_survive_killing_the_new_primary_right_after_failover_twice() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start(5).await;
    let ledger = AckLedger::new();
    let work = Workload::start(&fleet, &ledger, 4);
    let (p1, _) = fleet.wait_primary(None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.agents[p1].kill9();
    let (p2, _) = fleet.wait_primary(Some(p1)).await;
    // Right after the failover, kill the new primary; then the next one.
    fleet.agents[p2].kill9();
    let killed = Instant::now();
    let (p3, _) = fleet.wait_primary(Some(p2)).await;
    assert_ne!(p3, p1);
    let t = work
        .first_ack_after(
            killed,
            Some(&format!("Server{p2}")),
            Duration::from_secs(15),
        )
        .await;
    println!(
        "5 replicas: after two kills in a row ({p1}, {p2}), Server{p3} took writes after {t:?}"
    );
    fleet.agents[p1].restart();
    fleet.agents[p2].restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    work.stop().await;
    fleet.finish(&ledger, &[0, 1, 2, 3, 4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_secondaries_then_the_majority_then_recovering() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start(3).await;
    let ledger = AckLedger::new();
    let (p, _) = fleet.wait_primary(None).await;
    let work = Workload::start(&fleet, &ledger, 4);
    let s: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    // One secondary down: writes go on.
    fleet.agents[s[0]].kill9();
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    work.first_ack_after(since, None, Duration::from_secs(5))
        .await;
    // Both down: no majority; the primary refuses writes at once but serves eventual reads.
    fleet.agents[s[1]].kill9();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let c = fleet.agents[p].client();
    let (code, v) = c
        .post(
            "/write",
            json!({"shard": "sh1", "data": [student(99_999_999)]}),
        )
        .await;
    assert_eq!(code, 503, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("no majority")),
        "{v}"
    );
    assert_eq!(v["code"], "no-majority", "{v}");
    let (code, _) = c
        .post(
            "/read",
            json!({"shard": "sh1", "Stud_id": {"low": 0, "high": 1_000_000}}),
        )
        .await;
    assert_eq!(code, 200);
    // One back: writes resume.
    fleet.agents[s[0]].restart();
    let back = Instant::now();
    let t = work
        .first_ack_after(back, None, Duration::from_secs(15))
        .await;
    println!("majority restored; writes acknowledged again after {t:?}");
    fleet.agents[s[1]].restart();
    work.stop().await;
    fleet.finish(&ledger, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_primary_cannot_commit_and_rejoins_dropping_its_tail() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start(3).await;
    let ledger = AckLedger::new();
    let (old, epoch) = fleet.wait_primary(None).await;
    let work = Workload::start(&fleet, &ledger, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Nobody reaches the old primary any more (control plane and peers go through its proxy);
    // a client still does, directly.
    fleet.proxies[old].blackhole();
    let (new, nepoch) = fleet.wait_primary(Some(old)).await;
    assert!(nepoch > epoch);
    // The old primary can log a write locally but never commit it: its appends reach peers
    // fenced at the new epoch, which refuse them; it learns the epoch and steps down.
    let direct = fleet.agents[old].client();
    let mut refused = 0;
    for k in 0..5 {
        let key = 500_000_000 + k;
        let h = ledger.begin(Op::Write {
            key,
            row: student(key),
        });
        match direct
            .call_with(
                Method::POST,
                "/write",
                Some(json!({"shard": "sh1", "data": [student(key)]})),
                &[],
            )
            .await
        {
            Ok((200, v)) => panic!("the partitioned old primary acknowledged a write: {v}"),
            Ok((code, _)) if code == 421 || code == 503 => {
                refused += 1;
                h.unknown();
            }
            _ => h.unknown(),
        }
    }
    assert_eq!(refused, 5);
    let s = fleet.status(old).await;
    assert_ne!(
        s["role"], "primary",
        "the old primary did not step down: {s}"
    );
    // Heal: it follows the new primary and drops whatever uncommitted tail it had.
    fleet.proxies[old].heal();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    work.stop().await;
    let s = fleet.status(old).await;
    assert_eq!(s["role"], "secondary", "{s}");
    assert_eq!(s["primary"], format!("Server{new}"));
    fleet.finish(&ledger, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_switchover_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let fleet = Fleet::start(3).await;
    let ledger = AckLedger::new();
    let (p, epoch) = fleet.wait_primary(None).await;
    let work = Workload::start(&fleet, &ledger, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to = (p + 1) % 3;
    let started = Instant::now();
    fleet
        .handle
        .switchover("sh1", &format!("Server{to}"))
        .await
        .expect("switchover accepted");
    let (np, nepoch) = fleet.wait_primary(Some(p)).await;
    assert_eq!(np, to);
    assert!(nepoch > epoch);
    let t = work
        .first_ack_after(
            started,
            Some(&format!("Server{p}")),
            Duration::from_secs(10),
        )
        .await;
    println!(
        "switchover Server{p} -> Server{to}: first write acknowledged {t:?} after the request; new primary after {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    work.stop().await;
    fleet.finish(&ledger, &[0, 1, 2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_primarys_agent_hands_over_without_loss() {
    // SIGTERM (a pod deletion, a drain), not SIGKILL: the agent steps its primary down to the
    // most caught-up secondary, stops serving, and the control plane elects a replica holding
    // the whole log. Every acknowledged write is on the new primary.
    let _one = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start(3).await;
    let ledger = AckLedger::new();
    let (p, epoch) = fleet.wait_primary(None).await;
    let work = Workload::start(&fleet, &ledger, 6);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let name = format!("Server{p}");
    let mut child = fleet.agents[p]
        .child
        .take()
        .expect("the primary's agent runs");
    let sent = Instant::now();
    let exited = tokio::task::spawn_blocking(move || {
        let status = child.terminate(Duration::from_secs(40));
        (status, sent.elapsed())
    });
    let (np, nepoch) = fleet.wait_primary(Some(p)).await;
    let elected = sent.elapsed();
    assert!(nepoch > epoch, "a new epoch");
    let t = work
        .first_ack_after(sent, Some(&name), Duration::from_secs(15))
        .await;
    let (status, stopped) = exited.await.expect("terminate task");
    let status = status.expect("SIGTERM sent");
    assert!(status.is_some(), "the agent stopped within 40 s");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pause = longest_pause(&work, sent - Duration::from_secs(1));
    println!(
        "SIGTERM to {name}: Server{np} primary in epoch {nepoch} after {elected:?}; agent exited after {stopped:?} ({status:?}); first write acknowledged {t:?} after SIGTERM; longest write pause around it {pause:?}"
    );
    let log = fleet.agents[p].log_text();
    assert!(
        log.contains("handed over"),
        "the agent stepped down itself: {log}"
    );
    work.stop().await;
    let live: Vec<usize> = (0..3).filter(|i| *i != p).collect();
    fleet.finish(&ledger, &live).await;
}

/// The longest gap between consecutive acknowledged writes after `from`.
fn longest_pause(work: &Workload, from: Instant) -> Duration {
    let Ok(acks) = work.acks.lock() else {
        return Duration::ZERO;
    };
    let mut times: Vec<Instant> = acks
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t >= from)
        .collect();
    times.sort();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}
