//! HTTPS on loopback with a generated authority: trusted, untrusted and plain clients.

use std::path::Path;

use super::authority::{Authority, PemPair};
use super::*;
use crate::http_client::ClientSettings;

fn write_pair(dir: &Path, name: &str, pair: &PemPair) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pair.cert).expect("write cert");
    std::fs::write(&key, &pair.key).expect("write key");
    (cert, key)
}

async fn serve_hello(tls: ServedCertificate) -> (u16, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, Some(tls), async move {
        let _ = stopped.await;
    }));
    (port, stop)
}

#[tokio::test]
async fn only_a_client_trusting_the_fleets_authority_gets_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::generate("walshard test CA").expect("authority");
    let leaf = ca
        .issue("agent", &["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("issue");
    let (cert, key) = write_pair(dir.path(), "agent", &leaf);
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca.pem().cert).expect("write ca");
    let args = TlsArgs {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_ca: Some(ca_file),
    };
    assert_eq!(args.scheme(), "https");
    let served = args.server().await.expect("loads").expect("configured");
    let (port, _stop) = serve_hello(served).await;

    let trusted = ClientSettings {
        trust: args.trust().expect("ca loads"),
        ..ClientSettings::default()
    }
    .build()
    .expect("client");
    for host in ["127.0.0.1", "localhost"] {
        let answer = trusted
            .get(format!("https://{host}:{port}/hello"))
            .send()
            .await
            .expect("trusted client connects");
        assert_eq!(answer.text().await.expect("body"), "hello");
    }

    // The public web's roots do not know the fleet's authority.
    let public = ClientSettings::default().build().expect("client");
    assert!(
        public
            .get(format!("https://127.0.0.1:{port}/hello"))
            .send()
            .await
            .is_err()
    );
    // Another authority's trust does not do either.
    let other = Authority::generate("another CA").expect("authority");
    let stranger = ClientSettings {
        trust: Some(TrustedCa::from_pem(other.pem().cert.as_bytes()).expect("pem")),
        ..ClientSettings::default()
    }
    .build()
    .expect("client");
    assert!(
        stranger
            .get(format!("https://127.0.0.1:{port}/hello"))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP to the TLS port is not served.
    let plain = trusted
        .get(format!("http://127.0.0.1:{port}/hello"))
        .send()
        .await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
}

#[tokio::test]
async fn a_name_the_certificate_does_not_hold_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::generate("walshard test CA").expect("authority");
    let leaf = ca
        .issue("agent", &["agent.example".to_owned()])
        .expect("issue");
    let (cert, key) = write_pair(dir.path(), "agent", &leaf);
    let served = ServedCertificate::load(&cert, &key).await.expect("loads");
    let (port, _stop) = serve_hello(served).await;
    let client = ClientSettings {
        trust: Some(TrustedCa::from_pem(ca.pem().cert.as_bytes()).expect("pem")),
        ..ClientSettings::default()
    }
    .build()
    .expect("client");
    assert!(
        client
            .get(format!("https://127.0.0.1:{port}/hello"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn a_kept_authority_loads_again_and_bad_files_are_named() {
    let ca = Authority::generate("kept").expect("authority");
    let again = Authority::from_pem(ca.pem().clone()).expect("loads");
    assert_eq!(again, ca);
    assert!(
        Authority::from_pem(PemPair {
            cert: "not a cert".into(),
            key: ca.pem().key.clone(),
        })
        .is_err()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("ca.crt");
    std::fs::write(&bad, "garbage").expect("write");
    let args = TlsArgs {
        tls_ca: Some(bad.clone()),
        ..TlsArgs::default()
    };
    let err = args.trust().expect_err("garbage is no CA");
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
    let missing = TlsArgs {
        tls_ca: Some(dir.path().join("missing.crt")),
        ..TlsArgs::default()
    };
    assert!(matches!(missing.trust(), Err(TlsError::Read { .. })));
}

#[tokio::test]
async fn a_certificate_that_does_not_match_its_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::generate("ca").expect("authority");
    let one = ca.issue("one", &["localhost".to_owned()]).expect("issue");
    let two = ca.issue("two", &["localhost".to_owned()]).expect("issue");
    let mixed = PemPair {
        cert: one.cert,
        key: two.key,
    };
    let (cert, key) = write_pair(dir.path(), "mixed", &mixed);
    assert!(matches!(
        ServedCertificate::load(&cert, &key).await,
        Err(TlsError::Certificate { .. })
    ));
}
