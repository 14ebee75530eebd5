//! Shared helpers for the agent's integration tests: a real MariaDB, a real agent process, and a
//! small HTTP client that speaks the seed API.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use walshard_testkit::{ChildGuard, MariaDb, free_port};

pub const TOKEN: &str = "test-token";

/// One agent process of ours, restartable on the same data dir and port.
pub struct AgentProc {
    pub name: String,
    pub child: Option<ChildGuard>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub mysql_url: String,
    pub extra_env: Vec<(String, String)>,
    log: PathBuf,
}

impl AgentProc {
    pub fn start(mysql_url: &str, data_dir: &Path) -> AgentProc {
        Self::start_with(mysql_url, data_dir, &[])
    }

    pub fn start_with(mysql_url: &str, data_dir: &Path, env: &[(&str, &str)]) -> AgentProc {
        Self::start_named(mysql_url, data_dir, "Server0", env)
    }

    /// An agent with its own server name (replicated tests run several).
    pub fn start_named(
        mysql_url: &str,
        data_dir: &Path,
        name: &str,
        env: &[(&str, &str)],
    ) -> AgentProc {
        let mut a = AgentProc {
            name: name.to_owned(),
            child: None,
            port: free_port().expect("free port"),
            data_dir: data_dir.to_path_buf(),
            mysql_url: mysql_url.to_owned(),
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log: data_dir.with_extension("agent.log"),
        };
        a.spawn();
        a.wait_ready();
        a
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("agent log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_walshard-agent"));
        cmd.env("WALSHARD_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("WALSHARD_MYSQL_URL", &self.mysql_url)
            .env("WALSHARD_DATA_DIR", &self.data_dir)
            .env("WALSHARD_SERVER_NAME", &self.name)
            .env("WALSHARD_TOKEN", TOKEN)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(ChildGuard::spawn(cmd).expect("spawn agent"));
    }

    /// Waits until `/heartbeat` answers (the agent replays its WAL before it listens).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("agent exited early ({status}); log:\n{}", self.log_text());
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent not ready in 60 s; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9().expect("kill -9 agent");
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    /// Starts the agent and returns its exit status if it stops by itself within `wait`.
    pub fn start_expect_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        self.kill9();
        self.spawn();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base())
    }
}

/// A seed-API client with the cluster token.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            base: base.to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, body, &[])
            .await
            .expect("request")
    }

    pub async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn status(&self) -> Value {
        let (code, v) = self.call(reqwest::Method::GET, "/status", None).await;
        assert_eq!(code, 200, "{v}");
        v
    }

    /// Every row of a shard, via `/copy`.
    pub async fn copy(&self, shard: &str) -> Vec<Value> {
        let (code, v) = self
            .call(
                reqwest::Method::GET,
                "/copy",
                Some(json!({"shards": [shard]})),
            )
            .await;
        assert_eq!(code, 200, "{v}");
        v[shard].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the shard's applied LSN reaches its last WAL LSN.
    pub async fn wait_applied(&self, shard: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status().await;
            let sh = &s["shards"][shard];
            if sh["applied_lsn"] == sh["last_lsn"] {
                return;
            }
            assert!(Instant::now() < deadline, "shard never caught up: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `n` agents under a control plane (`Server0`..), each with its own MariaDB, configured with
/// shard `sh1` (any key).
pub async fn start_replicas(
    n: usize,
    dir: &Path,
    env: &[(&str, &str)],
) -> (Vec<MariaDb>, Vec<AgentProc>) {
    let dbs =
        MariaDb::start_many(n, &walshard_testkit::MariaDbOptions::default()).expect("MariaDB");
    let mut env = env.to_vec();
    env.push(("WALSHARD_CONTROLLED", "true"));
    let agents: Vec<AgentProc> = dbs
        .iter()
        .enumerate()
        .map(|(i, db)| {
            AgentProc::start_named(
                &db.url(),
                &dir.join(format!("agent{i}")),
                &format!("Server{i}"),
                &env,
            )
        })
        .collect();
    for a in &agents {
        let (code, v) = a
            .client()
            .post(
                "/config",
                json!({"schema": seed_schema(), "shards": ["sh1"]}),
            )
            .await;
        assert_eq!(code, 200, "{v}");
    }
    (dbs, agents)
}

/// Runs the real control plane (heartbeat every 200 ms) over `spec` until the sender is dropped
/// or fired.
pub fn spawn_control_plane(
    spec: walshard_control_plane::ClusterSpec,
) -> (
    walshard_control_plane::ControlPlaneHandle,
    tokio::sync::oneshot::Sender<()>,
) {
    use walshard_control_plane::runtime::{
        ControlPlane, ControlPlaneConfig, HttpAgentApi, HttpTimeouts,
    };
    let api = HttpAgentApi::new(TOKEN, HttpTimeouts::default()).expect("agent API client");
    let mut registry = prometheus_client::registry::Registry::default();
    let mut cp = ControlPlane::new(spec, api, ControlPlaneConfig::default(), &mut registry)
        .expect("control plane");
    let handle = cp.handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        cp.run(Duration::from_millis(200), async {
            let _ = stop_rx.await;
        })
        .await;
    });
    (handle, stop_tx)
}

pub fn seed_schema() -> Value {
    json!({"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "Number"]})
}

pub fn student(id: i64) -> Value {
    json!({"Stud_id": id, "Stud_name": format!("name{id}"), "Stud_marks": id % 100})
}

/// A MariaDB for one test, with the given redo-log flush policy.
pub fn mariadb(flush: u8) -> MariaDb {
    MariaDb::start_with(walshard_testkit::MariaDbOptions {
        flush_log_at_trx_commit: flush,
        ..Default::default()
    })
    .expect("start MariaDB")
}

/// The router's service over `layout`, on a loopback port, sending to `agents` and following the
/// primaries `handle` publishes; a client of it.
pub async fn serve_router(
    layout: walshard_router::layout::Layout,
    agents: &[AgentProc],
    handle: &walshard_control_plane::ControlPlaneHandle,
) -> Client {
    use std::sync::Arc;
    use walshard_contract::Ident;
    use walshard_router::hashing::HashMode;
    use walshard_router::routes::Routes;
    use walshard_router::service::{RouterState, router};

    let urls = agents
        .iter()
        .map(|a| (Ident::new(&a.name).expect("server name"), a.base()))
        .collect();
    let routes = Routes::new(layout, urls, HashMode::Default).expect("routes");
    let state =
        RouterState::new(Some(routes), Arc::new(handle.watch()), TOKEN).expect("router state");
    let port = free_port().expect("port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state, 16 << 20)).await;
    });
    Client::new(&format!("http://127.0.0.1:{port}"))
}
