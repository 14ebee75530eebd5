//! [`FaultProxy`]: a fault-injecting TCP proxy on loopback, for partition tests.
//!
//! The proxy listens on `127.0.0.1:<free port>` and forwards every accepted connection to one
//! fixed loopback target. Tests point a client (an agent's peer URL, a MySQL DSN) at
//! [`FaultProxy::addr`] instead of the real address and then inject faults:
//!
//! - [`FaultProxy::cut`]: every open connection is reset, and new ones are accepted and reset at
//!   once (a crashed peer or a refused route: callers see errors quickly).
//! - [`FaultProxy::blackhole`]: connections are accepted but nothing is forwarded in either
//!   direction, so callers hang until their own timeouts (a silent partition). Data already
//!   sent is held, not dropped, like TCP retransmission across a healed partition.
//! - [`FaultProxy::heal`]: forward normally again; held data is delivered.
//! - [`FaultProxy::set_delay`]: added latency for every chunk, in each direction.
//!
//! The proxy runs on its own thread with its own single-threaded tokio runtime, so it works the
//! same from sync tests and from inside any async runtime. The controls are sync and callable
//! from any thread; dropping the proxy closes its listener and resets every connection.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::HarnessError;
use walshard_process::POLL_INTERVAL;

/// Largest chunk read from one side before it is forwarded.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered per direction (read but not yet written) before reading pauses.
const CHUNKS_IN_FLIGHT: usize = 16;
/// How long [`FaultProxy::cut`] and drop wait for the connection tasks to close their sockets.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the proxy currently does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways (with the configured delay).
    Forward,
    /// Reset open connections; accept and reset new ones.
    Cut,
    /// Accept, but forward nothing until healed.
    Blackhole,
}

/// Internal mode: the public ones plus the shutdown started by drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Cut,
    Blackhole,
    Shutdown,
}

impl Mode {
    fn closes(self) -> bool {
        matches!(self, Mode::Cut | Mode::Shutdown)
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted, including those reset at once because the proxy was cut.
    pub accepted: u64,
    /// Connections currently open (accepted and not yet closed).
    pub open: u64,
    /// Bytes forwarded from clients to the target.
    pub bytes_to_target: u64,
    /// Bytes forwarded from the target back to clients.
    pub bytes_to_client: u64,
}

struct Shared {
    target: SocketAddr,
    mode: watch::Sender<Mode>,
    delay_nanos: AtomicU64,
    accepted: AtomicU64,
    open: AtomicU64,
    to_target: AtomicU64,
    to_client: AtomicU64,
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }

    /// Blocks (bounded) until every connection task has closed its sockets.
    fn wait_closed(&self, what: &str) {
        let deadline = Instant::now() + CLOSE_WAIT;
        while self.open.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                tracing::warn!(
                    open = self.open.load(Ordering::SeqCst),
                    "fault proxy: connections still open {CLOSE_WAIT:?} after {what}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Counts a connection as open until dropped (after its sockets are closed).
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: &Arc<Shared>) -> OpenGuard {
        shared.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fault-injecting TCP proxy from `127.0.0.1:<free port>` to one loopback target.
///
/// See the [module docs](self). All methods take `&self`; share the proxy with an `Arc` to
/// control it from several threads.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("mode", &self.mode())
            .field("delay", &self.delay())
            .finish()
    }
}

/// Whether `ip` is a loopback address (IPv4-mapped IPv6 loopback included).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

impl FaultProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`, in [`ProxyMode::Forward`] with no
    /// delay. `target` must be a loopback address ([`HarnessError::NotLoopback`] otherwise); the
    /// proxy never connects anywhere else. The target need not be listening yet: each accepted
    /// connection connects to it (and is reset if that fails).
    pub fn start(target: SocketAddr) -> Result<FaultProxy, HarnessError> {
        if !is_loopback(target.ip()) {
            return Err(HarnessError::NotLoopback(target));
        }
        let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| HarnessError::io("binding the fault proxy on 127.0.0.1:0", e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the fault proxy's local address", e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("making the fault proxy's listener non-blocking", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HarnessError::io("building the fault proxy's tokio runtime", e))?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(std_listener)
                .map_err(|e| HarnessError::io("registering the fault proxy's listener", e))?
        };
        let (mode, _) = watch::channel(Mode::Forward);
        let shared = Arc::new(Shared {
            target,
            mode,
            delay_nanos: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            to_target: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || runtime.block_on(run(listener, thread_shared)))
            .map_err(|e| HarnessError::io("spawning the fault proxy thread", e))?;
        tracing::debug!(%addr, %target, "fault proxy started");
        Ok(FaultProxy {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// The address clients should connect to (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        match *self.shared.mode.borrow() {
            Mode::Forward => ProxyMode::Forward,
            Mode::Blackhole => ProxyMode::Blackhole,
            Mode::Cut | Mode::Shutdown => ProxyMode::Cut,
        }
    }

    /// Resets every open connection (both sides see a reset) and, until [`heal`](Self::heal),
    /// accepts and resets new ones. Returns once the open connections are closed (bounded wait).
    pub fn cut(&self) {
        self.shared.mode.send_replace(Mode::Cut);
        self.shared.wait_closed("cut");
    }

    /// Keeps accepting connections but forwards nothing, in either direction, until
    /// [`heal`](Self::heal) (or [`cut`](Self::cut)): callers hang until their own timeouts.
    /// Bytes already read are held and delivered after a heal; new connections are not
    /// connected to the target until then.
    pub fn blackhole(&self) {
        self.shared.mode.send_replace(Mode::Blackhole);
    }

    /// Forwards normally again (connections reset by a cut stay closed).
    pub fn heal(&self) {
        self.shared.mode.send_replace(Mode::Forward);
    }

    /// Adds `delay` of latency to every chunk forwarded from now on, in each direction (so a
    /// request/response round trip gets at least twice the delay). `Duration::ZERO` removes it.
    pub fn set_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The configured per-chunk delay.
    pub fn delay(&self) -> Duration {
        self.shared.delay()
    }

    /// Counters since start.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            open: self.shared.open.load(Ordering::SeqCst),
            bytes_to_target: self.shared.to_target.load(Ordering::SeqCst),
            bytes_to_client: self.shared.to_client.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.mode.send_replace(Mode::Shutdown);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(addr = %self.addr, "fault proxy thread panicked");
        }
        tracing::debug!(addr = %self.addr, "fault proxy stopped");
    }
}

/// The proxy thread's main future: accept until shutdown, then wait for connections to close.
async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut mode_rx = shared.mode.subscribe();
    loop {
        tokio::select! {
            _ = mode_rx.wait_for(|m| *m == Mode::Shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let guard = OpenGuard::new(&shared);
                    if shared.mode.borrow().closes() {
                        reset(&stream);
                        drop(stream);
                        drop(guard);
                    } else {
                        tokio::spawn(serve(stream, Arc::clone(&shared), guard));
                    }
                }
                Err(e) => {
                    // E.g. EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "fault proxy: accept failed");
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            },
        }
    }
    drop(listener);
    // The connection tasks see the shutdown and reset their sockets; give them a bounded time.
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    while shared.open.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Makes the socket send RST instead of FIN when it is closed.
fn reset(stream: &TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "fault proxy: setting SO_LINGER=0 failed");
    }
}

/// Resolves once the mode closes connections (cut or shutdown).
async fn closed(rx: &mut watch::Receiver<Mode>) {
    // The sender lives in `Shared`, which the caller holds, so this cannot fail; treat a
    // closed channel as a cut anyway.
    let _ = rx.wait_for(|m| m.closes()).await;
}

/// Forwards one accepted connection until both sides are done, a side fails, or a cut.
async fn serve(mut client: TcpStream, shared: Arc<Shared>, _open: OpenGuard) {
    let mut rx = shared.mode.subscribe();
    // A blackholed proxy holds new connections without connecting to the target.
    let forward = match rx.wait_for(|m| *m != Mode::Blackhole).await {
        Ok(m) => *m == Mode::Forward,
        Err(_) => false,
    };
    if !forward {
        reset(&client);
        return;
    }
    let connected = tokio::select! {
        r = TcpStream::connect(shared.target) => r,
        () = closed(&mut rx) => {
            reset(&client);
            return;
        }
    };
    let mut upstream = match connected {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(target = %shared.target, error = %e, "fault proxy: connecting to the target failed");
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clean = {
        let (client_r, client_w) = client.split();
        let (up_r, up_w) = upstream.split();
        let (rx_up, rx_down) = (rx.clone(), rx.clone());
        let both = async {
            tokio::try_join!(
                pump(client_r, up_w, &shared, &shared.to_target, rx_up),
                pump(up_r, client_w, &shared, &shared.to_client, rx_down),
            )
        };
        tokio::select! {
            r = both => match r {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "fault proxy: connection failed; resetting both sides");
                    false
                }
            },
            () = closed(&mut rx) => false,
        }
    };
    if !clean {
        reset(&client);
        reset(&upstream);
    }
}

/// Copies one direction: reads chunks, stamps each with its due time (now + delay), and writes
/// it once due and the proxy forwards. On EOF it half-closes the destination.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
    counter: &AtomicU64,
    mut rx: watch::Receiver<Mode>,
) -> io::Result<()> {
    let (tx, mut chunks) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
            let due = tokio::time::Instant::now() + shared.delay();
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async {
        while let Some((due, chunk)) = chunks.recv().await {
            tokio::time::sleep_until(due).await;
            // Blackholed: hold the chunk until healed (a cut is handled by the caller).
            if rx.wait_for(|m| *m == Mode::Forward).await.is_err() {
                return Ok(());
            }
            to.write_all(&chunk).await?;
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        to.shutdown().await
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(is_loopback(IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3))));
        assert!(is_loopback(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(is_loopback(IpAddr::V6(
            Ipv4Addr::LOCALHOST.to_ipv6_mapped()
        )));
        assert!(!is_loopback(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert!(!is_loopback(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert!(!is_loopback(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))));
        assert!(!is_loopback(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
    }
}
