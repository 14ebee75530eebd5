//! Loopback networking helpers.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::ProcessError;

/// Interval between connection attempts while polling.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Returns a currently free TCP port on 127.0.0.1.
///
/// Binds `127.0.0.1:0`, reads the assigned port and closes the socket. Another process may take
/// the port before the caller binds it; callers must tolerate that race.
pub fn free_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| ProcessError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ProcessError::io("reading the local address of a bound socket", e))?;
    Ok(addr.port())
}

/// Fails with [`ProcessError::PortInUse`] if `port` cannot be bound on 127.0.0.1 right now.
pub(crate) fn ensure_port_free(port: u16) -> Result<(), ProcessError> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(ProcessError::PortInUse { port })
        }
        Err(e) => Err(ProcessError::io(format!("binding 127.0.0.1:{port}"), e)),
    }
}

/// Polls until a TCP connection to `addr` succeeds, or fails with [`ProcessError::Timeout`].
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), ProcessError> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        let attempt = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(1));
        if TcpStream::connect_timeout(&addr, attempt).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProcessError::Timeout {
                what: format!("a TCP connection to {addr}"),
                after: timeout,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Result of one MySQL handshake probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The server sent an initial handshake packet (protocol version 10).
    Handshake,
    /// Nothing usable yet: refused, timed out, closed, or an error packet.
    NotReady,
}

/// Connects to `addr` and checks for a MySQL protocol-10 initial handshake packet.
///
/// The packet starts with a 3-byte little-endian payload length, a 1-byte sequence id, and the
/// protocol version byte, which is 10 for every MySQL/MariaDB version we support.
pub(crate) fn probe_mysql_handshake(addr: SocketAddr, timeout: Duration) -> Probe {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return Probe::NotReady;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return Probe::NotReady;
    }
    let mut head = [0u8; 5];
    if stream.read_exact(&mut head).is_err() {
        return Probe::NotReady;
    }
    let payload_len = u32::from(head[0]) | u32::from(head[1]) << 8 | u32::from(head[2]) << 16;
    if payload_len > 0 && head[3] == 0 && head[4] == 10 {
        Probe::Handshake
    } else {
        Probe::NotReady
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port is free");
    }

    #[test]
    fn ensure_port_free_names_a_taken_port() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let err = ensure_port_free(port).expect_err("taken");
        assert!(
            matches!(err, ProcessError::PortInUse { port: p } if p == port),
            "{err}"
        );
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        drop(listener);
        ensure_port_free(port).expect("free again");
    }

    #[test]
    fn wait_for_tcp_times_out_on_closed_port() {
        let port = free_port().expect("free port");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let err = wait_for_tcp(addr, Duration::from_millis(50)).expect_err("nothing listens");
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
    }

    #[test]
    fn probe_recognises_handshake_and_rejects_garbage() {
        for (bytes, expected) in [
            (&[0x4a, 0, 0, 0, 10, b'1'][..], Probe::Handshake),
            (&[0x10, 0, 0, 0, 0xff, 0x69][..], Probe::NotReady),
            (&b"HTTP/1.1 400"[..], Probe::NotReady),
        ] {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                s.write_all(bytes).expect("write");
            });
            assert_eq!(
                probe_mysql_handshake(addr, Duration::from_secs(2)),
                expected
            );
            server.join().expect("join");
        }
    }
}
