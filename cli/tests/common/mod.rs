//! A live local fleet for black-box tests: `walshard up` as a child process, reached only through
//! its router (the seed API) and its data dir (`running.json`, `fleet.json`, the control API's
//! `/v1/servers` for process ids).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use walshard_testkit::{ChildGuard, free_port};

pub const SEED_DEFAULT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/seed-default.yaml");

/// How long `walshard up` may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `walshard up`.
pub struct Up {
    pub child: Option<ChildGuard>,
    pub dir: PathBuf,
    pub router: String,
    pub http: reqwest::blocking::Client,
}

impl Up {
    /// Starts `walshard up` on `dir` (with `--file` if given) and waits until it is ready.
    pub fn start(dir: &Path, file: Option<&str>) -> Up {
        Up::start_with(dir, file, &[], &[])
    }

    /// [`Up::start`] with more arguments and environment variables.
    pub fn start_with(dir: &Path, file: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Up {
        let port = free_port().expect("free port");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("up.log"))
            .expect("up log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard"));
        cmd.arg("up")
            .arg("--data-dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(f) = file {
            cmd.arg("--file").arg(f);
        }
        cmd.args(args).envs(env.iter().copied());
        let child = ChildGuard::spawn(cmd).expect("spawn walshard up");
        let mut up = Up {
            child: Some(child),
            dir: dir.to_owned(),
            router: format!("http://127.0.0.1:{port}"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        };
        up.wait_ready();
        up
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("walshard up exited with {status}:\n{}", self.log());
            }
            // A crashed run leaves its running.json behind: wait for ours.
            let ours = self.child.as_ref().map(|c| i64::from(c.pid()));
            let running = std::fs::read_to_string(self.dir.join("running.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if running.is_some_and(|r| r["pid"].as_i64() == ours) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "walshard up not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("up.log")).unwrap_or_default()
    }

    /// Stops with SIGTERM (like Ctrl-C) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = child.terminate(Duration::from_secs(90)).expect("terminate");
            assert!(status.is_some(), "walshard up did not stop on SIGTERM");
        }
    }

    /// `kill -9` of `walshard up` (its children die with it).
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill9().expect("kill -9");
        }
        // The children get SIGKILL from the kernel; give them a moment to go.
        std::thread::sleep(Duration::from_millis(500));
    }

    /// `(status, body)` of a seed API call through the router.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.router));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("router answers");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// A call that must succeed.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }

    /// Process ids and data dir of every server, from the control API.
    pub fn servers(&self) -> Value {
        let running: Value = read_json(&self.dir.join("running.json"));
        let fleet: Value = read_json(&self.dir.join("fleet.json"));
        let url = running["control_url"].as_str().expect("control url");
        let token = fleet["token"].as_str().expect("token");
        self.http
            .get(format!("{url}/v1/servers"))
            .bearer_auth(token)
            .send()
            .expect("control API")
            .json()
            .expect("json")
    }

    /// `walshard status --json`: the fleet view with the live topology.
    pub fn status_json(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_walshard"))
            .arg("status")
            .arg("--json")
            .arg("--data-dir")
            .arg(&self.dir)
            .output()
            .expect("walshard status");
        assert!(
            out.status.success(),
            "walshard status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// The current primary of `shard` per `/status`.
    pub fn primary(&self, shard: &str) -> Option<String> {
        let status = self.ok("GET", "/status", None);
        status["shards"]
            .as_array()?
            .iter()
            .find(|s| s["Shard_id"] == shard)?["primary"]
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until every shard of `/status` has a primary.
    pub fn wait_primaries(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.ok("GET", "/status", None);
            let all = status["shards"]
                .as_array()
                .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["primary"].is_string()));
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "shards without a primary: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every row of the key range `[low, high]` through an eventual read, sorted by key.
    pub fn rows(&self, low: i64, high: i64, consistency: Option<&str>) -> Vec<Value> {
        let mut body = json!({"Stud_id": {"low": low, "high": high}});
        if let Some(c) = consistency {
            body["consistency"] = c.into();
        }
        let v = self.ok("POST", "/read", Some(body));
        let mut rows = v["data"].as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r["Stud_id"].as_i64());
        rows
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- walshard up log ---\n{}", self.log());
        }
    }
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// `{"Stud_id": k, "Stud_name": "n<k>", "Stud_marks": k % 100}`.
pub fn row(k: i64) -> Value {
    json!({"Stud_id": k, "Stud_name": format!("n{k}"), "Stud_marks": k % 100})
}
