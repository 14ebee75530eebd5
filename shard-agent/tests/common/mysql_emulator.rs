//! A protocol-level MySQL 8 server emulator on loopback: just enough of the client/server
//! protocol to authenticate with `caching_sha2_password` the way mysqld 8.4 does, and to answer
//! `COM_QUERY` / `COM_PING` with OK. No SQL is executed.
//!
//! Authentication (MySQL's sha2_password "cache" semantics):
//! - the handshake announces `caching_sha2_password` with a 20-byte nonce and no TLS;
//! - while the server's cache holds no entry for the user (always after a mysqld start), it
//!   answers the client's scramble with `perform_full_authentication` (0x01 0x04), sends its RSA
//!   public key (PEM) on request (0x02), decrypts the RSA-OAEP(SHA-1) payload, XORs it with the
//!   nonce and compares it with the password;
//! - after a successful full authentication the user is cached, and later connections take the
//!   fast path: the scramble `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce)` is checked and
//!   answered with `fast_auth_success` (0x01 0x03) and OK.
//!
//! A wrong password gets ERR 1045 (28000), as from mysqld.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::sha2::{Digest, Sha256};
use rsa::{Oaep, PrivateKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY_PEM: &str = include_str!("../fixtures/mysql-emulator-key.pem");
const NONCE: &[u8; 20] = b"0123456789abcdefghij";

const CLIENT_CONNECT_WITH_DB: u32 = 8;
const CLIENT_PROTOCOL_41: u32 = 512;
const CLIENT_TRANSACTIONS: u32 = 8192;
const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
const CLIENT_MULTI_STATEMENTS: u32 = 1 << 16;
const CLIENT_MULTI_RESULTS: u32 = 1 << 17;
const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 1 << 21;
const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;

/// What the emulator saw, for assertions.
#[derive(Default)]
pub struct Counters {
    pub full_auths: AtomicUsize,
    pub fast_auths: AtomicUsize,
    pub denied: AtomicUsize,
    pub queries: AtomicUsize,
    /// The user's entry in the sha2 cache (set by a full authentication).
    pub cached: AtomicBool,
}

pub struct Emulator {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    /// Listens on 127.0.0.1 (ephemeral port) for `user` with `password`, cache empty.
    pub async fn start(user: &str, password: &str) -> Emulator {
        let key = PrivateKey::from_pkcs8_pem(KEY_PEM).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let auth = Arc::new(Auth {
            user: user.to_owned(),
            password: password.to_owned(),
            key,
            counters: counters.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let auth = auth.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, &auth).await;
                });
            }
        });
        Emulator {
            addr,
            counters,
            task,
        }
    }
}

struct Auth {
    user: String,
    password: String,
    key: PrivateKey,
    counters: Arc<Counters>,
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn read_packet(s: &mut TcpStream) -> Res<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok((header[3], body))
}

async fn write_packet(s: &mut TcpStream, seq: u8, body: &[u8]) -> Res<()> {
    let len = (body.len() as u32).to_le_bytes();
    let mut out = vec![len[0], len[1], len[2], seq];
    out.extend_from_slice(body);
    s.write_all(&out).await?;
    Ok(())
}

fn ok_packet() -> Vec<u8> {
    // header, affected rows 0, last insert id 0, status SERVER_STATUS_AUTOCOMMIT, warnings 0
    vec![0x00, 0, 0, 0x02, 0x00, 0, 0]
}

fn err_packet(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(message.as_bytes());
    p
}

fn handshake() -> Vec<u8> {
    let caps = CLIENT_CONNECT_WITH_DB
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_MULTI_STATEMENTS
        | CLIENT_MULTI_RESULTS
        | CLIENT_PLUGIN_AUTH
        | CLIENT_PLUGIN_AUTH_LENENC
        | CLIENT_DEPRECATE_EOF
        | 1; // CLIENT_LONG_PASSWORD: a MySQL (not MariaDB) server
    let mut p = vec![10];
    p.extend_from_slice(b"8.4.3-emulator\0");
    p.extend_from_slice(&7u32.to_le_bytes());
    p.extend_from_slice(&NONCE[..8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(255); // utf8mb4_0900_ai_ci
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&NONCE[8..]);
    p.push(0);
    p.extend_from_slice(b"caching_sha2_password\0");
    p
}

fn nul_str(buf: &[u8], at: &mut usize) -> Res<String> {
    let end = buf[*at..].iter().position(|&b| b == 0).ok_or("no NUL")? + *at;
    let s = String::from_utf8(buf[*at..end].to_vec())?;
    *at = end + 1;
    Ok(s)
}

/// (user, scramble) of a HandshakeResponse41.
fn parse_response(p: &[u8]) -> Res<(String, Vec<u8>)> {
    let caps = u32::from_le_bytes(p[0..4].try_into()?);
    let mut at = 32;
    let user = nul_str(p, &mut at)?;
    let len = if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 || caps & CLIENT_SECURE_CONNECTION != 0 {
        let l = p[at] as usize; // lenenc: short scrambles fit one byte
        at += 1;
        l
    } else {
        0
    };
    Ok((user, p[at..at + len].to_vec()))
}

fn fast_scramble(password: &str) -> Vec<u8> {
    let stage1 = Sha256::digest(password.as_bytes());
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(NONCE);
    let pad = h.finalize();
    stage1.iter().zip(pad.iter()).map(|(a, b)| a ^ b).collect()
}

async fn serve(mut s: TcpStream, auth: &Auth) -> Res<()> {
    write_packet(&mut s, 0, &handshake()).await?;
    let (seq, response) = read_packet(&mut s).await?;
    let (user, scramble) = parse_response(&response)?;
    let mut seq = seq + 1;
    let denied = err_packet(
        1045,
        "28000",
        &format!("Access denied for user '{user}'@'127.0.0.1' (using password: YES)"),
    );
    if user != auth.user {
        auth.counters.denied.fetch_add(1, Ordering::SeqCst);
        write_packet(&mut s, seq, &denied).await?;
        return Ok(());
    }
    if auth.counters.cached.load(Ordering::SeqCst) {
        if scramble != fast_scramble(&auth.password) {
            auth.counters.denied.fetch_add(1, Ordering::SeqCst);
            write_packet(&mut s, seq, &denied).await?;
            return Ok(());
        }
        auth.counters.fast_auths.fetch_add(1, Ordering::SeqCst);
        write_packet(&mut s, seq, &[0x01, 0x03]).await?;
        write_packet(&mut s, seq + 1, &ok_packet()).await?;
    } else {
        // Cache empty: demand full authentication, whatever the scramble says.
        write_packet(&mut s, seq, &[0x01, 0x04]).await?;
        let (rseq, request) = read_packet(&mut s).await?;
        if request != [0x02] {
            return Err("expected a public key request (0x02)".into());
        }
        let pem = auth.key.to_public_key().to_public_key_pem(LineEnding::LF)?;
        let mut key_packet = vec![0x01];
        key_packet.extend_from_slice(pem.as_bytes());
        write_packet(&mut s, rseq + 1, &key_packet).await?;
        let (eseq, encrypted) = read_packet(&mut s).await?;
        seq = eseq + 1;
        let plain = auth
            .key
            .decrypt(Oaep::<sha1::Sha1>::new(), &encrypted)
            .unwrap_or_default();
        let clear: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ NONCE[i % NONCE.len()])
            .collect();
        let mut expected = auth.password.as_bytes().to_vec();
        expected.push(0);
        if clear != expected {
            auth.counters.denied.fetch_add(1, Ordering::SeqCst);
            write_packet(&mut s, seq, &denied).await?;
            return Ok(());
        }
        auth.counters.full_auths.fetch_add(1, Ordering::SeqCst);
        auth.counters.cached.store(true, Ordering::SeqCst);
        write_packet(&mut s, seq, &ok_packet()).await?;
    }
    loop {
        let (seq, command) = read_packet(&mut s).await?;
        match command.first() {
            Some(0x01) | None => return Ok(()), // COM_QUIT
            Some(0x03) | Some(0x0e) => {
                auth.counters.queries.fetch_add(1, Ordering::SeqCst);
                write_packet(&mut s, seq + 1, &ok_packet()).await?;
            }
            Some(c) => {
                let e = err_packet(1047, "08S01", &format!("emulator: command 0x{c:02x}"));
                write_packet(&mut s, seq + 1, &e).await?;
            }
        }
    }
}
