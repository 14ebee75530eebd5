//! MariaDB binaries, options, socket paths and a failed start.

use super::binaries::{parse_version, resolve_binary, sanitize};
use super::files::{fnv1a64, is_bind_failure, socket_path_for};
use super::*;

#[test]
fn parses_mariadbd_version() {
    let out = "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n";
    assert_eq!(
        parse_version(out).as_deref(),
        Some("10.11.19-MariaDB-0+deb12u1")
    );
    assert_eq!(parse_version("garbage"), None);
    assert_eq!(
        sanitize("10.11.19-MariaDB-0+deb12u1"),
        "10.11.19-MariaDB-0_deb12u1"
    );
}

#[test]
fn override_to_missing_binary_names_the_fix() {
    let err = resolve_binary(
        "mariadbd",
        ENV_MARIADBD,
        Some("/nonexistent/mariadbd".into()),
        &["/usr/sbin/mariadbd"],
    )
    .expect_err("missing");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/mariadbd"), "{msg}");
    assert!(
        msg.contains("install mariadb-server (apt-get install -y mariadb-server)"),
        "{msg}"
    );
}

#[test]
fn default_options() {
    let o = MariaDbOptions::default();
    assert_eq!((o.flush_log_at_trx_commit, o.buffer_pool_mb), (2, 32));
    assert!(o.extra_args.is_empty());
}

#[test]
fn socket_path_stays_in_short_roots_and_is_hashed_for_long_ones() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    let short = Path::new("/var/lib/walshard/Server0/mariadb");
    assert_eq!(socket_path_for(short), short.join("mysqld.sock"));
    let long = PathBuf::from(format!("/data/{}", "x".repeat(120)));
    let socket = socket_path_for(&long);
    assert_eq!(socket, socket_path_for(&long));
    assert!(socket.starts_with("/tmp") && socket.as_os_str().len() < MAX_SOCKET_PATH);
}

#[test]
fn detects_bind_failure() {
    assert!(is_bind_failure(
        "[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use"
    ));
    assert!(!is_bind_failure("[Note] ready for connections."));
}
