//! Tests for `FaultProxy` against a loopback echo server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use walshard_testkit::{FaultProxy, HarnessError, ProxyMode, ProxyStats, free_port};

/// Generous bound for things that should happen promptly (CI machines can be slow).
const PROMPT: Duration = Duration::from_secs(10);
/// How long a read must stay silent to count as hanging.
const SILENT: Duration = Duration::from_millis(300);

/// A loopback echo server; each connection echoes until EOF, then closes.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr()).expect("connect to proxy");
    s.set_read_timeout(Some(PROMPT)).expect("read timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Writes `msg` and reads the same number of bytes back.
fn echo(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write");
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).expect("read echo");
    buf
}

/// Whether a read sees the connection closed (EOF or reset) within [`PROMPT`].
fn sees_close(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(PROMPT)).expect("read timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
    }
}

/// Whether a read gets nothing for [`SILENT`] (the read times out).
fn hangs(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(SILENT)).expect("read timeout");
    let mut buf = [0u8; 64];
    let hung = matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    s.set_read_timeout(Some(PROMPT)).expect("read timeout");
    hung
}

fn wait_stats(proxy: &FaultProxy, want: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
    let deadline = Instant::now() + PROMPT;
    loop {
        let stats = proxy.stats();
        if want(&stats) || Instant::now() >= deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn proxy_is_shareable_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<FaultProxy>();
}

#[test]
fn forwards_both_ways_and_counts() {
    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    assert_eq!(proxy.target(), echo_server.addr);
    assert!(proxy.addr().ip().is_loopback());
    assert_eq!(proxy.mode(), ProxyMode::Forward);

    let mut c = connect(&proxy);
    assert_eq!(echo(&mut c, b"hello"), b"hello");

    // Bulk data in both directions at once, larger than the proxy's chunk and buffers.
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = c.try_clone().expect("clone");
    let to_send = payload.clone();
    let sender = std::thread::spawn(move || writer.write_all(&to_send).expect("bulk write"));
    let mut got = vec![0u8; payload.len()];
    c.read_exact(&mut got).expect("bulk read");
    sender.join().expect("sender");
    assert!(got == payload, "bulk data corrupted");

    // Half-close travels through: the echo server sees EOF and closes, we see EOF.
    c.shutdown(Shutdown::Write).expect("shutdown");
    assert!(sees_close(&mut c));

    let total = 5 + payload.len() as u64;
    let stats = wait_stats(&proxy, |s| s.open == 0 && s.bytes_to_client == total);
    assert_eq!(
        stats,
        ProxyStats {
            accepted: 1,
            open: 0,
            bytes_to_target: total,
            bytes_to_client: total,
        }
    );
}

#[test]
fn refuses_non_loopback_targets() {
    for target in ["10.1.2.3:3306", "0.0.0.0:80", "192.168.0.1:1", "[::]:80"] {
        let target: SocketAddr = target.parse().expect("addr");
        let err = FaultProxy::start(target).expect_err("must refuse");
        assert!(
            matches!(err, HarnessError::NotLoopback(a) if a == target),
            "{err}"
        );
        assert!(err.to_string().contains("only loopback"), "{err}");
    }
    // Other loopback addresses are fine.
    FaultProxy::start("127.0.0.2:9".parse().expect("addr")).expect("127/8 is loopback");
    FaultProxy::start("[::1]:9".parse().expect("addr")).expect("::1 is loopback");
}

#[test]
fn cut_resets_live_connections_refuses_new_ones_and_heal_restores() {
    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(echo(&mut a, b"a"), b"a");
    assert_eq!(echo(&mut b, b"b"), b"b");

    proxy.cut();
    assert_eq!(proxy.mode(), ProxyMode::Cut);
    // cut() returns once the proxy closed its sockets.
    assert_eq!(proxy.stats().open, 0);
    assert!(sees_close(&mut a), "live connection a survived the cut");
    assert!(sees_close(&mut b), "live connection b survived the cut");

    // New connections are accepted and closed at once.
    let mut c = connect(&proxy);
    let _ = c.write_all(b"x");
    assert!(
        sees_close(&mut c),
        "new connection during a cut stayed open"
    );
    let stats = wait_stats(&proxy, |s| s.accepted == 3 && s.open == 0);
    assert_eq!((stats.accepted, stats.open), (3, 0));

    proxy.heal();
    assert_eq!(proxy.mode(), ProxyMode::Forward);
    let mut d = connect(&proxy);
    assert_eq!(echo(&mut d, b"healed"), b"healed");
}

#[test]
fn blackhole_hangs_callers_and_heal_delivers_held_data() {
    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    let mut a = connect(&proxy);
    assert_eq!(echo(&mut a, b"before"), b"before");

    proxy.blackhole();
    assert_eq!(proxy.mode(), ProxyMode::Blackhole);
    a.write_all(b"ping").expect("writes still succeed");
    assert!(hangs(&mut a), "a got an answer through the blackhole");

    // New connections are accepted (the connect succeeds) but get nothing.
    let mut b = TcpStream::connect_timeout(&proxy.addr(), PROMPT).expect("connect b");
    b.write_all(b"pong").expect("write b");
    assert!(hangs(&mut b), "b got an answer through the blackhole");
    let stats = proxy.stats();
    assert_eq!((stats.accepted, stats.open), (2, 2));
    assert_eq!(
        stats.bytes_to_target, 6,
        "nothing forwarded while blackholed"
    );

    proxy.heal();
    let mut got = [0u8; 4];
    a.read_exact(&mut got).expect("held data for a");
    assert_eq!(&got, b"ping");
    b.set_read_timeout(Some(PROMPT)).expect("timeout");
    b.read_exact(&mut got).expect("held data for b");
    assert_eq!(&got, b"pong");
    assert_eq!(echo(&mut a, b"after"), b"after");
}

#[test]
fn blackhole_then_cut_closes_held_connections() {
    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    let mut a = connect(&proxy);
    assert_eq!(echo(&mut a, b"x"), b"x");
    proxy.blackhole();
    let mut b = connect(&proxy);
    assert!(hangs(&mut b));
    proxy.cut();
    assert!(sees_close(&mut a));
    assert!(sees_close(&mut b));
}

#[test]
fn delay_adds_latency_each_way() {
    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    let mut c = connect(&proxy);
    assert_eq!(echo(&mut c, b"warm"), b"warm");

    let delay = Duration::from_millis(150);
    proxy.set_delay(delay);
    assert_eq!(proxy.delay(), delay);
    let start = Instant::now();
    assert_eq!(echo(&mut c, b"slow"), b"slow");
    let rtt = start.elapsed();
    // One delay to the target, one back: a logical lower bound only.
    assert!(rtt >= 2 * delay, "round trip {rtt:?} < 2 × {delay:?}");

    // New connections are delayed too.
    let mut d = connect(&proxy);
    let start = Instant::now();
    assert_eq!(echo(&mut d, b"new"), b"new");
    assert!(start.elapsed() >= 2 * delay);

    proxy.set_delay(Duration::ZERO);
    assert_eq!(echo(&mut c, b"fast"), b"fast");
}

#[test]
fn drop_closes_connections_and_listener() {
    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    let addr = proxy.addr();
    let mut a = connect(&proxy);
    assert_eq!(echo(&mut a, b"x"), b"x");
    proxy.blackhole();
    let mut b = connect(&proxy);
    drop(proxy);
    assert!(sees_close(&mut a), "open connection survived drop");
    assert!(sees_close(&mut b), "blackholed connection survived drop");
    let err = TcpStream::connect_timeout(&addr, PROMPT).expect_err("listener closed");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn unreachable_target_resets_clients() {
    let port = free_port().expect("free port");
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], port))).expect("start");
    let mut c = connect(&proxy);
    assert!(sees_close(&mut c));
    assert_eq!(wait_stats(&proxy, |s| s.open == 0).open, 0);
}

#[tokio::test]
async fn works_inside_an_async_runtime() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let echo_server = Echo::start();
    let proxy = FaultProxy::start(echo_server.addr).expect("start proxy");
    let mut c = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    c.write_all(b"async").await.expect("write");
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"async");

    proxy.blackhole();
    c.write_all(b"held").await.expect("write");
    let silent = tokio::time::timeout(SILENT, c.read(&mut buf)).await;
    assert!(silent.is_err(), "read returned through the blackhole");

    proxy.cut();
    let closed = tokio::time::timeout(PROMPT, c.read(&mut buf))
        .await
        .expect("the cut must be seen promptly");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    drop(proxy);
}
