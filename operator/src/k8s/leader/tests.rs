use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::time::Instant;

use super::*;

const NS: &str = "ops";
const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/walshard-operator";

fn observed(holder: Option<&str>, version: &str, since: Instant) -> Observed {
    Observed {
        holder: holder.map(str::to_owned),
        lease_duration: Duration::from_secs(15),
        version: version.to_owned(),
        since,
    }
}

#[test]
fn a_free_or_own_lease_may_be_taken_at_once() {
    let now = Instant::now();
    assert!(may_take(&observed(None, "1", now), "me", now));
    assert!(may_take(&observed(Some("me"), "1", now), "me", now));
}

#[test]
fn another_holders_lease_may_be_taken_only_after_it_stayed_unchanged_for_its_duration() {
    let t0 = Instant::now();
    let held = observed(Some("other"), "7", t0);
    assert!(!may_take(&held, "me", t0));
    assert!(!may_take(&held, "me", t0 + Duration::from_millis(14_999)));
    assert!(may_take(&held, "me", t0 + Duration::from_secs(15)));
}

#[test]
fn a_renewal_restarts_the_wait_and_an_unchanged_read_does_not() {
    let t0 = Instant::now();
    let first = Observed::next(
        None,
        Some("other".into()),
        Duration::from_secs(15),
        "7".into(),
        t0,
    );
    let later = t0 + Duration::from_secs(10);
    let same = Observed::next(
        Some(&first),
        Some("other".into()),
        Duration::from_secs(15),
        "7".into(),
        later,
    );
    assert_eq!(
        same.since, t0,
        "the same resourceVersion keeps the first sighting"
    );
    let renewed = Observed::next(
        Some(&same),
        Some("other".into()),
        Duration::from_secs(15),
        "8".into(),
        later,
    );
    assert_eq!(renewed.since, later, "a renewal restarts the clock");
    assert!(!may_take(&renewed, "me", t0 + Duration::from_secs(16)));
    let released = Observed::next(
        Some(&renewed),
        Some(String::new()),
        Duration::from_secs(1),
        "9".into(),
        later,
    );
    assert!(may_take(&released, "me", later), "an empty holder is free");
}

#[test]
fn the_leader_steps_down_at_the_renew_deadline() {
    let config = LeaderConfig::default();
    let renewed = Instant::now();
    assert!(still_leader(
        renewed,
        renewed + Duration::from_millis(9_999),
        &config
    ));
    assert!(!still_leader(
        renewed,
        renewed + Duration::from_secs(10),
        &config
    ));
}

#[test]
fn a_successor_takes_over_only_after_the_old_leader_stepped_down() {
    // The old leader sends its last renewal at `sent`; the server writes it at some `written`
    // after that; a candidate first reads that version at some `seen` after that.
    let config = LeaderConfig::default();
    let sent = Instant::now();
    for write_delay_ms in [0, 1, 500, 3_000] {
        let written = sent + Duration::from_millis(write_delay_ms);
        let seen = written;
        let record = observed(Some("old"), "42", seen);
        let takeover = (0..60_000)
            .step_by(10)
            .map(|ms| seen + Duration::from_millis(ms))
            .find(|t| may_take(&record, "new", *t))
            .expect("eventually free");
        let step_down = (0..60_000)
            .step_by(10)
            .map(|ms| sent + Duration::from_millis(ms))
            .find(|t| !still_leader(sent, *t, &config))
            .expect("eventually steps down");
        assert!(
            takeover.duration_since(step_down) >= Duration::from_secs(5),
            "write delay {write_delay_ms} ms"
        );
    }
}

#[test]
fn timings_that_could_overlap_two_leaders_are_refused() {
    assert_eq!(LeaderConfig::default().validate(), Ok(()));
    let c = LeaderConfig {
        renew_deadline: Duration::from_secs(15),
        ..LeaderConfig::default()
    };
    assert!(matches!(
        c.validate(),
        Err(LeaderConfigError::RenewDeadline(..))
    ));
    let c = LeaderConfig {
        renew_period: Duration::from_secs(10),
        ..LeaderConfig::default()
    };
    assert!(matches!(
        c.validate(),
        Err(LeaderConfigError::RenewPeriod(..))
    ));
}

// ---------------------------------------------------------------------------------------------
// Against a mocked API server (tower-test): each request asserted and answered in turn.
// ---------------------------------------------------------------------------------------------

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn elector(identity: &str) -> (LeaderElector, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let elector = LeaderElector::new(client, NS, identity, LeaderConfig::default())
        .expect("default timings are valid");
    (elector, handle)
}

/// Awaits the next request, asserts its method and path, answers `status` with `answer` and
/// returns the request's JSON body (`null` when empty).
async fn expect(handle: &mut Handle, method: &str, path: &str, status: u16, answer: Json) -> Json {
    let (request, send) = handle.next_request().await.expect("a request");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    let body = if bytes.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON request")
    };
    let response = Response::builder()
        .status(status)
        .body(Body::from(answer.to_string().into_bytes()))
        .expect("response");
    send.send_response(response);
    body
}

fn not_found() -> Json {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
}

fn conflict() -> Json {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409})
}

fn lease(holder: &str, version: &str) -> Json {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": NS, "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 3,
                 "renewTime": "2030-01-01T00:00:00.000000Z"}
    })
}

#[tokio::test]
async fn a_missing_lease_is_created_with_this_candidate_as_holder() {
    let (mut elector, mut api) = elector("operator-0");
    let server = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 404, not_found()).await;
        let body = expect(
            &mut api,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases",
            201,
            lease("operator-0", "1"),
        )
        .await;
        assert_eq!(body["metadata"]["name"], LEASE_NAME);
        assert_eq!(body["spec"]["holderIdentity"], "operator-0");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    });
    assert!(
        elector
            .try_acquire_or_renew(Instant::now())
            .await
            .expect("acquires")
    );
    server.await.expect("scenario");
}

#[tokio::test]
async fn another_holders_lease_is_taken_only_once_unchanged_for_its_duration() {
    let (mut elector, mut api) = elector("operator-1");
    let t0 = Instant::now();
    let server = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "5")).await;
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "5")).await;
        let body = expect(&mut api, "PUT", PATH, 200, lease("operator-1", "6")).await;
        assert_eq!(
            body["metadata"]["resourceVersion"], "5",
            "optimistic concurrency"
        );
        assert_eq!(body["spec"]["holderIdentity"], "operator-1");
        assert_eq!(body["spec"]["leaseTransitions"], 4);
    });
    assert!(!elector.try_acquire_or_renew(t0).await.expect("reads"));
    let expired = t0 + Duration::from_secs(15);
    assert!(
        elector
            .try_acquire_or_renew(expired)
            .await
            .expect("takes over")
    );
    server.await.expect("scenario");
}

#[tokio::test]
async fn the_leader_renews_with_the_version_it_read_and_a_conflict_is_an_error() {
    let (mut elector, mut api) = elector("operator-0");
    let server = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "8")).await;
        let body = expect(&mut api, "PUT", PATH, 200, lease("operator-0", "9")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "8");
        assert_eq!(
            body["spec"]["leaseTransitions"], 3,
            "a renewal is no transition"
        );
        assert_ne!(body["spec"]["renewTime"], "2030-01-01T00:00:00.000000Z");
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "9")).await;
        expect(&mut api, "PUT", PATH, 409, conflict()).await;
    });
    assert!(
        elector
            .try_acquire_or_renew(Instant::now())
            .await
            .expect("renews")
    );
    let conflict = elector.try_acquire_or_renew(Instant::now()).await;
    assert!(
        matches!(conflict, Err(LeaderError::Conflict)),
        "{conflict:?}"
    );
    server.await.expect("scenario");
}

#[tokio::test]
async fn release_empties_the_holder_only_when_it_is_ours() {
    let (elector, mut api) = elector("operator-0");
    let server = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "3")).await;
        let body = expect(&mut api, "PUT", PATH, 200, lease("", "4")).await;
        assert_eq!(body["spec"]["holderIdentity"], Json::Null);
        assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(body["metadata"]["resourceVersion"], "3");
        // Someone else's: not touched.
        expect(&mut api, "GET", PATH, 200, lease("operator-1", "5")).await;
    });
    elector.release().await.expect("releases");
    elector.release().await.expect("leaves another's alone");
    server.await.expect("scenario");
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_fail_steps_down_by_the_deadline() {
    let (elector, mut api) = elector("operator-0");
    let (leading_tx, mut leading) = watch::channel(false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(elector.run(leading_tx, async {
        let _ = stop_rx.await;
    }));
    let server = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 404, not_found()).await;
        expect(
            &mut api,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases",
            201,
            lease("operator-0", "1"),
        )
        .await;
        // Every renewal from now on fails.
        loop {
            let Some((request, send)) = api.next_request().await else {
                break;
            };
            assert_eq!(request.method().as_str(), "GET");
            let response = Response::builder()
                .status(500)
                .body(Body::from(b"{}".to_vec()))
                .expect("response");
            send.send_response(response);
        }
    });
    leading.wait_for(|l| *l).await.expect("becomes leader");
    let elected = Instant::now();
    leading.wait_for(|l| !*l).await.expect("steps down");
    let led = elected.elapsed();
    assert!(led <= Duration::from_secs(10), "stepped down after {led:?}");
    assert!(
        led >= Duration::from_secs(9),
        "kept leading through retries: {led:?}"
    );
    let _ = stop_tx.send(());
    run.await.expect("run ends");
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn a_leader_renews_every_period_and_releases_the_lease_when_stopped() {
    let (elector, mut api) = elector("operator-0");
    let (leading_tx, mut leading) = watch::channel(false);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(elector.run(leading_tx, async {
        let _ = stop_rx.await;
    }));
    let server = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "1")).await;
        expect(&mut api, "PUT", PATH, 200, lease("operator-0", "2")).await;
        let renewal = Instant::now();
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "2")).await;
        assert_eq!(renewal.elapsed(), Duration::from_secs(5), "renew period");
        expect(&mut api, "PUT", PATH, 200, lease("operator-0", "3")).await;
        api
    });
    leading.wait_for(|l| *l).await.expect("leads");
    let mut api = server.await.expect("renewals");
    let _ = stop_tx.send(());
    let release = tokio::spawn(async move {
        expect(&mut api, "GET", PATH, 200, lease("operator-0", "3")).await;
        let body = expect(&mut api, "PUT", PATH, 200, lease("", "4")).await;
        assert_eq!(body["spec"]["holderIdentity"], Json::Null);
    });
    run.await.expect("run ends");
    release.await.expect("released");
    assert!(!*leading.borrow(), "not leading after stop");
}
