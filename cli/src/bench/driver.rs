//! The closed-loop load driver, and the router's seed API as the driver calls it.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::{Map, Value as Json, json};
use tokio::task::JoinSet;
use walshard_contract::{Dtype, Schema};

use super::BenchError;
use super::stats::{ERROR_SAMPLES, PhaseOutcome};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an error body goes into a failure message.
const BODY_EXCERPT: usize = 200;

#[derive(Default)]
struct Worker {
    requests: u64,
    errors: u64,
    samples: Vec<(usize, String)>,
    latencies: Vec<Duration>,
}

/// Runs `op(0)`, …, `op(n - 1)` with `concurrency` in flight, one step of `bar` per request.
/// `Err` is a failed request (its message is kept among the first few). Dropping the future
/// aborts the requests in flight.
pub async fn drive<F, Fut>(n: usize, concurrency: usize, bar: &ProgressBar, op: F) -> PhaseOutcome
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let op = op.clone();
        let next = next.clone();
        let bar = bar.clone();
        workers.spawn(async move {
            let mut w = Worker::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let result = op(i).await;
                let latency = t.elapsed();
                w.requests += 1;
                match result {
                    Ok(()) => w.latencies.push(latency),
                    Err(message) => {
                        w.errors += 1;
                        if w.samples.len() < ERROR_SAMPLES {
                            w.samples.push((i, message));
                        }
                    }
                }
                bar.inc(1);
            }
            w
        });
    }
    let mut out = PhaseOutcome {
        latencies: Vec::with_capacity(n),
        ..PhaseOutcome::default()
    };
    let mut samples = Vec::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(w) => {
                out.requests += w.requests;
                out.errors += w.errors;
                out.latencies.extend(w.latencies);
                samples.extend(w.samples);
            }
            Err(e) => {
                out.errors += 1;
                samples.push((usize::MAX, format!("a load task failed: {e}")));
            }
        }
    }
    out.elapsed = started.elapsed();
    samples.sort_by_key(|(i, _)| *i);
    out.first_errors = samples
        .into_iter()
        .take(ERROR_SAMPLES)
        .map(|(_, m)| m)
        .collect();
    out
}

/// The router's seed API over one keep-alive connection pool.
#[derive(Clone)]
pub struct SeedApi {
    http: reqwest::Client,
    base: Arc<str>,
    schema: Arc<Schema>,
}

impl SeedApi {
    /// A client for the router at `base` (e.g. `http://127.0.0.1:5000`) whose table is `schema`.
    pub fn new(base: &str, schema: Schema, concurrency: usize) -> Result<SeedApi, BenchError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| BenchError::Router {
                url: base.to_owned(),
                reason: format!("building the HTTP client: {}", chain(&e)),
            })?;
        Ok(SeedApi {
            http,
            base: base.trim_end_matches('/').into(),
            schema: Arc::new(schema),
        })
    }

    /// `GET /status`: the router's configuration.
    pub async fn status(&self) -> Result<Json, BenchError> {
        let url = format!("{}/status", self.base);
        let fail = |reason: String| BenchError::Router {
            url: self.base.to_string(),
            reason,
        };
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(format!("GET /status: {}", chain(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(format!("GET /status: {}", chain(&e))))?;
        if status != reqwest::StatusCode::OK {
            return Err(fail(format!(
                "GET /status: HTTP {status}: {}",
                excerpt(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("GET /status: not JSON: {e}")))
    }

    /// `POST /write` of the one row with key `key`.
    pub async fn write(&self, key: i64) -> Result<(), String> {
        let body = json!({ "data": [row(&self.schema, key)] });
        let what = format!("POST /write {}={key}", self.schema.key());
        let sent = self
            .http
            .post(format!("{}/write", self.base))
            .json(&body)
            .send()
            .await;
        check(sent, what).await
    }

    /// `POST /read` of the keys `low..=high`.
    pub async fn read(&self, low: i64, high: i64) -> Result<(), String> {
        let key = self.schema.key().as_str();
        let body = json!({ key: { "low": low, "high": high } });
        let sent = self
            .http
            .post(format!("{}/read", self.base))
            .json(&body)
            .send()
            .await;
        check(sent, format!("POST /read {key}={low}..={high}")).await
    }
}

/// A row of `schema` for `key`: the key, then a value per dtype.
pub fn row(schema: &Schema, key: i64) -> Json {
    let mut m = Map::new();
    for (i, (column, dtype)) in schema.columns().iter().zip(schema.dtypes()).enumerate() {
        let v = if i == 0 {
            json!(key)
        } else {
            match dtype {
                Dtype::Number => json!(key.rem_euclid(100)),
                Dtype::String => json!(format!("student-{key}")),
                Dtype::Float => json!(key.rem_euclid(100) as f64 + 0.5),
                Dtype::Boolean => json!(key.rem_euclid(2) == 0),
            }
        };
        m.insert(column.to_string(), v);
    }
    Json::Object(m)
}

/// `Ok` for a 200 whose body arrived whole; otherwise what went wrong.
async fn check(
    sent: Result<reqwest::Response, reqwest::Error>,
    what: impl Display,
) -> Result<(), String> {
    let resp = sent.map_err(|e| format!("{what}: {}", chain(&e)))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{what}: HTTP {status}, body: {}", chain(&e)))?;
    if status == reqwest::StatusCode::OK {
        Ok(())
    } else {
        Err(format!("{what}: HTTP {status}: {}", excerpt(&body)))
    }
}

/// The `message` of a seed-API error body, or the start of the body.
fn excerpt(body: &[u8]) -> String {
    if let Ok(Json::Object(m)) = serde_json::from_slice::<Json>(body)
        && let Some(message) = m.get("message")
    {
        return match message {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

/// An error and its sources, `: `-separated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use axum::Json as AxumJson;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    use super::*;

    /// Stands in for the router: records every request, fails keys ending in 3 on /write and
    /// ranges starting at a multiple of 50 on /read.
    #[derive(Default)]
    struct Stub {
        writes: Mutex<Vec<Json>>,
        reads: Mutex<Vec<(i64, i64)>>,
    }

    async fn stub_write(State(stub): State<Arc<Stub>>, AxumJson(body): AxumJson<Json>) -> Response {
        let key = body["data"][0]["Stud_id"].as_i64().unwrap_or(-1);
        stub.writes.lock().expect("lock").push(body);
        if key % 10 == 3 {
            let err =
                json!({"message": format!("shard sh1: disk full at {key}"), "status": "failure"});
            return (StatusCode::INTERNAL_SERVER_ERROR, AxumJson(err)).into_response();
        }
        AxumJson(json!({"message": "1 Data entries added", "status": "success"})).into_response()
    }

    async fn stub_read(State(stub): State<Arc<Stub>>, AxumJson(body): AxumJson<Json>) -> Response {
        let low = body["Stud_id"]["low"].as_i64().unwrap_or(-1);
        let high = body["Stud_id"]["high"].as_i64().unwrap_or(-1);
        stub.reads.lock().expect("lock").push((low, high));
        if low % 50 == 0 {
            return (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response();
        }
        AxumJson(json!({"shards_queried": ["sh1"], "data": [], "status": "success"}))
            .into_response()
    }

    async fn serve_stub() -> (Arc<Stub>, String) {
        let stub = Arc::new(Stub::default());
        let app = axum::Router::new()
            .route("/write", post(stub_write))
            .route("/read", post(stub_read))
            .with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (stub, format!("http://{addr}"))
    }

    #[tokio::test]
    async fn every_write_is_one_row_and_every_failure_is_counted() {
        let (stub, url) = serve_stub().await;
        let api = SeedApi::new(&url, Schema::seed_default(), 8).expect("client");
        let keys: Arc<Vec<i64>> = Arc::new((0..200).collect());
        let out = {
            let keys = keys.clone();
            drive(keys.len(), 8, &ProgressBar::hidden(), move |i| {
                let api = api.clone();
                let key = keys[i];
                async move { api.write(key).await }
            })
            .await
        };
        assert_eq!(out.requests, 200);
        assert_eq!(out.errors, 20);
        assert_eq!(out.latencies.len(), 180);
        assert_eq!(out.first_errors.len(), ERROR_SAMPLES);
        assert!(
            out.first_errors[0].contains("POST /write Stud_id=3: HTTP 500")
                && out.first_errors[0].contains("disk full at 3"),
            "{:?}",
            out.first_errors
        );
        assert!(
            out.first_errors[4].contains("Stud_id=43"),
            "{:?}",
            out.first_errors
        );

        let writes = stub.writes.lock().expect("lock");
        assert_eq!(writes.len(), 200);
        let mut seen = BTreeSet::new();
        for body in writes.iter() {
            let data = body["data"].as_array().expect("data array");
            assert_eq!(data.len(), 1, "{body}");
            let key = data[0]["Stud_id"].as_i64().expect("key");
            assert_eq!(data[0]["Stud_marks"], key % 100);
            assert!(data[0]["Stud_name"].is_string());
            seen.insert(key);
        }
        assert_eq!(seen.len(), 200);
    }

    #[tokio::test]
    async fn failed_reads_keep_the_status_and_body() {
        let (stub, url) = serve_stub().await;
        let api = SeedApi::new(&url, Schema::seed_default(), 4).expect("client");
        let ranges: Arc<Vec<(i64, i64)>> =
            Arc::new((0..100).map(|i| (i * 10, i * 10 + 9)).collect());
        let out = {
            let ranges = ranges.clone();
            drive(ranges.len(), 16, &ProgressBar::hidden(), move |i| {
                let api = api.clone();
                let (low, high) = ranges[i];
                async move { api.read(low, high).await }
            })
            .await
        };
        assert_eq!(out.requests, 100);
        assert_eq!(out.errors, 20);
        assert_eq!(
            out.first_errors[0],
            "POST /read Stud_id=0..=9: HTTP 503 Service Unavailable: overloaded"
        );
        let reads = stub.reads.lock().expect("lock");
        let got: BTreeSet<(i64, i64)> = reads.iter().copied().collect();
        let want: BTreeSet<(i64, i64)> = ranges.iter().copied().collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn an_unreachable_router_fails_every_request() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let api = SeedApi::new(&url, Schema::seed_default(), 2).expect("client");
        let out = drive(10, 2, &ProgressBar::hidden(), move |i| {
            let api = api.clone();
            async move { api.write(i as i64).await }
        })
        .await;
        assert_eq!((out.requests, out.errors), (10, 10));
        assert!(out.latencies.is_empty());
        assert!(
            out.first_errors[0].starts_with("POST /write Stud_id=0: "),
            "{:?}",
            out.first_errors
        );
    }

    #[tokio::test]
    async fn the_driver_runs_each_index_once_whatever_the_concurrency() {
        for (n, concurrency) in [(0, 4), (1, 64), (7, 3), (100, 1)] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let out = {
                let seen = seen.clone();
                drive(n, concurrency, &ProgressBar::hidden(), move |i| {
                    seen.lock().expect("lock").push(i);
                    async { Ok(()) }
                })
                .await
            };
            let mut seen = seen.lock().expect("lock").clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            assert_eq!((out.requests, out.errors), (n as u64, 0));
        }
    }

    #[test]
    fn rows_follow_the_schema() {
        assert_eq!(
            row(&Schema::seed_default(), 2255),
            json!({"Stud_id": 2255, "Stud_name": "student-2255", "Stud_marks": 55})
        );
        let schema = Schema::new(
            &["k", "f", "b"],
            vec![Dtype::Number, Dtype::Float, Dtype::Boolean],
        )
        .expect("schema");
        assert_eq!(row(&schema, -3), json!({"k": -3, "f": 97.5, "b": false}));
    }

    #[test]
    fn error_bodies_are_shortened_to_their_message() {
        assert_eq!(excerpt(br#"{"message":"boom","status":"failure"}"#), "boom");
        assert_eq!(excerpt(br#"{"message":{"N":3}}"#), r#"{"N":3}"#);
        assert_eq!(excerpt(b""), "(empty body)");
        let long = "x".repeat(500);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), BODY_EXCERPT + 1);
    }
}
