//! MySQL 8.4's default authentication, `caching_sha2_password`, against a protocol-level server
//! emulator (tests/common/mysql_emulator.rs) that demands *full* authentication, as mysqld does
//! for a user's first login after every start: the agent's connect options (built from parts by
//! its command line, the password taken verbatim) must get through the RSA exchange.
//!
//! What this does not prove (no mysqld 8 here): the emulator follows MySQL's documented protocol
//! and sqlx's client, not mysqld's code; the RSA key pair comes from a fixture rather than
//! `caching_sha2_password_auto_generate_rsa_keys`; no SQL is executed. The kind e2e suite runs
//! the default `mysql:8.4` image for that.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

#[path = "common/mysql_emulator.rs"]
mod emulator;

use std::sync::atomic::Ordering;

use clap::Parser;
use emulator::Emulator;
use sqlx::{Connection, mysql::MySqlConnection};
use walshard_agent::cli::Args;
use walshard_agent::mysql::MySqlEndpoint;
use walshard_agent::store::{Store, StoreError};

/// Every character a URL would mangle.
const PASSWORD: &str = "p@ss/w:rd#?%20&x=y é";

fn args(port: u16, password: &str) -> Args {
    Args::try_parse_from([
        "walshard-agent",
        "--mysql-host",
        "127.0.0.1",
        "--mysql-port",
        &port.to_string(),
        "--mysql-user",
        "root",
        "--mysql-password",
        password,
        "--data-dir",
        "/nonexistent",
        "--server-name",
        "Server0",
        "--token",
        "t",
    ])
    .unwrap()
}

#[tokio::test]
async fn full_authentication_then_fast_path_with_the_cli_options() {
    let mysqld = Emulator::start("root", PASSWORD).await;
    let endpoint = args(mysqld.addr.port(), PASSWORD).mysql_endpoint().unwrap();
    assert_eq!(endpoint.password.as_deref(), Some(PASSWORD));

    let mut conn = MySqlConnection::connect_with(&endpoint.connect_options())
        .await
        .unwrap();
    conn.ping().await.unwrap();
    conn.close().await.unwrap();
    let c = &mysqld.counters;
    assert_eq!(c.full_auths.load(Ordering::SeqCst), 1);
    assert_eq!(c.fast_auths.load(Ordering::SeqCst), 0);

    // The agent's own connect (admin connection, then the pool on the `walshard` database):
    // the user is cached now, so these take the fast path, as on a mysqld after one login.
    let store = Store::connect(endpoint.connect_options(), 2).await.unwrap();
    store.pool().close().await;
    assert_eq!(c.full_auths.load(Ordering::SeqCst), 1);
    assert!(c.fast_auths.load(Ordering::SeqCst) >= 2);
    assert_eq!(c.denied.load(Ordering::SeqCst), 0);
    // SET (per connection), CREATE DATABASE, two CREATE TABLEs.
    assert!(c.queries.load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn the_store_connects_through_full_authentication() {
    let mysqld = Emulator::start("root", PASSWORD).await;
    let endpoint = args(mysqld.addr.port(), PASSWORD).mysql_endpoint().unwrap();
    let store = Store::connect(endpoint.connect_options(), 2).await.unwrap();
    store.pool().close().await;
    assert_eq!(mysqld.counters.full_auths.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_wrong_password_is_refused_by_the_full_authentication() {
    let mysqld = Emulator::start("root", PASSWORD).await;
    let endpoint = args(mysqld.addr.port(), "not-it").mysql_endpoint().unwrap();
    let err = Store::connect(endpoint.connect_options(), 1)
        .await
        .err()
        .unwrap();
    match err {
        StoreError::Sql(sqlx::Error::Database(db)) => {
            assert_eq!(db.code().as_deref(), Some("28000"), "{db}");
        }
        other => panic!("expected access denied, got {other}"),
    }
    assert_eq!(mysqld.counters.denied.load(Ordering::SeqCst), 1);
    assert_eq!(mysqld.counters.full_auths.load(Ordering::SeqCst), 0);
}

#[test]
fn url_and_parts_exclude_each_other_and_the_password_overrides_the_url() {
    let parse = |extra: &[&str]| {
        let mut v = vec![
            "walshard-agent",
            "--data-dir",
            "/d",
            "--server-name",
            "S",
            "--token",
            "t",
        ];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap().mysql_endpoint()
    };
    assert_eq!(parse(&[]).unwrap(), MySqlEndpoint::default());
    assert!(parse(&["--mysql-url", "mysql://root@h:1", "--mysql-port", "2"]).is_err());
    let e = parse(&[
        "--mysql-url",
        "mysql://u:old@h:1",
        "--mysql-password",
        "n@w",
    ])
    .unwrap();
    assert_eq!((e.host.as_str(), e.port, e.user.as_str()), ("h", 1, "u"));
    assert_eq!(e.password.as_deref(), Some("n@w"));
}
