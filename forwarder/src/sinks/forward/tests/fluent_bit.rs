//! The sink's handshake against Fluent Bit's `in_forward`, byte for byte.
//!
//! Fluent Bit cannot be installed on the machines these tests run on, so a stand-in
//! plays its part. It is written from the protocol as Fluent Bit's `in_forward`
//! (v5.1) speaks it, not from nagare's codec, and is as strict as Fluent Bit is:
//!
//! - HELO: `["HELO", {"nonce": <str>, "auth": <str>}]`, each `str` holding 16 random
//!   bytes that need not be UTF-8, and no `keepalive` key;
//! - PING: read as one MessagePack value of fewer than 1,023 bytes; an array of 6
//!   whose every element must be a `str` (`"PING"`, the client's host name, its salt,
//!   the shared-key digest, the user name, the password digest), else the connection
//!   is refused ("Invalid shared_key_salt type message" for a `bin` salt);
//!   the digest must be `sha512_hex(salt + hostname + nonce + shared_key)`, and, with
//!   users, the password digest `sha512_hex(auth + username + password)`;
//! - PONG: `["PONG", true, "", <its host name>, sha512_hex(salt + its host name +
//!   nonce + shared_key)]`, every text a `str`;
//! - then frames, each acked with `{"ack": chunk}`.
//!
//! The digests here are computed with `sha2` directly, not with nagare's helpers.

use std::net::SocketAddr;

use bytes::Bytes;
use nagare_core::config::Secret;
use sha2::{Digest, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const WAIT: Duration = Duration::from_secs(10);
/// Fluent Bit reads PING into a buffer of this many bytes and refuses a PING that
/// fills it.
const PING_BUFFER: usize = 1023;
const NONCE: [u8; 16] = [
    0xff, 0x00, 0xc3, 0x28, 0x80, 0x01, 0xfe, 0x7f, 0x10, 0x20, 0xa0, 0xb0, 0xe2, 0x82, 0x28, 0x00,
];
const AUTH: [u8; 16] = [
    0x9c, 0x00, 0xed, 0xa0, 0x80, 0x41, 0x42, 0x43, 0xf0, 0x28, 0x8c, 0xbc, 0x00, 0x01, 0x02, 0x03,
];
const SERVER_NAME: &str = "fluent-bit";

fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn str_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=255 => out.extend_from_slice(&[0xd9, len as u8]),
        _ => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

fn push_str(out: &mut Vec<u8>, bytes: &[u8]) {
    str_header(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Fluent Bit's HELO: two keys, `str` values holding raw bytes.
fn fluent_bit_helo() -> Vec<u8> {
    let mut out = vec![0x92];
    push_str(&mut out, b"HELO");
    out.push(0x82);
    push_str(&mut out, b"nonce");
    push_str(&mut out, &NONCE);
    push_str(&mut out, b"auth");
    push_str(&mut out, &AUTH);
    out
}

/// Reads a `str` as Fluent Bit's check does: any other type is a refusal.
fn strict_str<'a>(buf: &'a [u8], at: &mut usize, field: &str) -> Result<&'a [u8], String> {
    let marker = *buf.get(*at).ok_or(format!("{field}: missing"))?;
    let (len, head) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), 1),
        0xd9 => (usize::from(buf[*at + 1]), 2),
        0xda => (
            usize::from(u16::from_be_bytes([buf[*at + 1], buf[*at + 2]])),
            3,
        ),
        0xdb => (
            u32::from_be_bytes([buf[*at + 1], buf[*at + 2], buf[*at + 3], buf[*at + 4]]) as usize,
            5,
        ),
        other => {
            return Err(format!(
                "Invalid {field} type message (marker {other:#04x})"
            ));
        }
    };
    let start = *at + head;
    let value = buf
        .get(start..start + len)
        .ok_or(format!("{field}: truncated"))?;
    *at = start + len;
    Ok(value)
}

/// A PING as Fluent Bit's `in_forward` checks it.
#[derive(Debug)]
struct CheckedPing {
    hostname: String,
    salt: Vec<u8>,
    digest: String,
    username: String,
    password_digest: String,
}

fn check_ping(buf: &[u8]) -> Result<CheckedPing, String> {
    if buf.len() >= PING_BUFFER {
        return Err(format!(
            "a PING of {} bytes overflows the read buffer",
            buf.len()
        ));
    }
    if buf.first() != Some(&0x96) {
        return Err(format!(
            "Invalid PING message (starts {:#04x?})",
            buf.first()
        ));
    }
    let mut at = 1;
    let kind = strict_str(buf, &mut at, "PING")?;
    if kind != b"PING" {
        return Err("not a PING".into());
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let hostname = text(strict_str(buf, &mut at, "hostname")?);
    let salt = strict_str(buf, &mut at, "shared_key_salt")?.to_vec();
    let digest = text(strict_str(buf, &mut at, "shared_key_digest")?);
    let username = text(strict_str(buf, &mut at, "username")?);
    let password_digest = text(strict_str(buf, &mut at, "password_digest")?);
    if at != buf.len() {
        return Err(format!("{} bytes after the PING", buf.len() - at));
    }
    Ok(CheckedPing {
        hostname,
        salt,
        digest,
        username,
        password_digest,
    })
}

/// Reads exactly one MessagePack value (the PING) off the socket.
async fn read_ping(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    loop {
        let mut r = nagare_core::msgpack::Reader::new(&buf);
        if let Ok(v) = r.skip_value() {
            assert_eq!(
                v.len(),
                buf.len(),
                "the client sent more than PING before PONG"
            );
            return buf;
        }
        let mut more = [0u8; 256];
        let n = tokio::time::timeout(WAIT, stream.read(&mut more))
            .await
            .expect("no PING")
            .unwrap();
        assert_ne!(n, 0, "the client closed instead of sending PING");
        buf.extend_from_slice(&more[..n]);
    }
}

/// What the stand-in saw of one client.
#[derive(Debug)]
struct Session {
    ping: Vec<u8>,
    checked: Result<CheckedPing, String>,
    acked: Vec<String>,
}

/// Serves one client as Fluent Bit's `in_forward` with `Shared_Key key` (and the
/// user `users`, if any): HELO, PING checked, PONG, then frames acked until the
/// client has had `frames` acks.
async fn fluent_bit_in_forward(
    listener: TcpListener,
    key: &'static str,
    user: Option<(&'static str, &'static str)>,
    frames: usize,
) -> Session {
    let (mut stream, _) = listener.accept().await.unwrap();
    stream.write_all(&fluent_bit_helo()).await.unwrap();
    let ping = read_ping(&mut stream).await;
    let checked = check_ping(&ping).and_then(|p| {
        let want = sha512_hex(&[&p.salt, p.hostname.as_bytes(), &NONCE, key.as_bytes()]);
        if p.digest != want {
            return Err("shared_key mismatch".into());
        }
        if let Some((name, password)) = user {
            let want = sha512_hex(&[&AUTH, name.as_bytes(), password.as_bytes()]);
            if p.username != name || p.password_digest != want {
                return Err("username/password mismatch".into());
            }
        }
        Ok(p)
    });
    let Ok(p) = &checked else {
        // Fluent Bit closes the connection without a PONG when PING is malformed.
        return Session {
            ping,
            checked,
            acked: Vec::new(),
        };
    };
    let mut pong = vec![0x95];
    push_str(&mut pong, b"PONG");
    pong.push(0xc3);
    push_str(&mut pong, b"");
    push_str(&mut pong, SERVER_NAME.as_bytes());
    let digest = sha512_hex(&[&p.salt, SERVER_NAME.as_bytes(), &NONCE, key.as_bytes()]);
    push_str(&mut pong, digest.as_bytes());
    stream.write_all(&pong).await.unwrap();

    let mut acked = Vec::new();
    let mut buf = Vec::new();
    let limits = DecodeLimits::default();
    while acked.len() < frames {
        if let Some(len) = forward::frame_len(&buf, &limits).unwrap() {
            let frame: Vec<u8> = buf.drain(..len).collect();
            if let Frame::Events(m) = forward::decode_frame(Bytes::from(frame), &limits).unwrap() {
                let chunk = m.options.chunk.expect("the sink asks for acks");
                stream
                    .write_all(&forward::encode_ack(&chunk))
                    .await
                    .unwrap();
                acked.push(chunk);
            }
            continue;
        }
        let mut more = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut more))
            .await
            .expect("no frame")
            .unwrap();
        assert_ne!(n, 0, "the client closed before its frames were acked");
        buf.extend_from_slice(&more[..n]);
    }
    Session {
        ping,
        checked,
        acked,
    }
}

fn sink_config(addr: SocketAddr, user: Option<(&str, &str)>) -> ForwardSinkConfig {
    let mut c = ForwardSinkConfig::new(vec![ServerConfig::new("127.0.0.1", addr.port())]);
    // One connection, the data's: the stand-in serves one client.
    c.heartbeat_type = HeartbeatType::None;
    c.security = Some(ClientSecurityConfig {
        self_hostname: Some("node-1".into()),
        shared_key: Secret::new("fluent-key"),
        username: user.map(|(u, _)| u.to_string()),
        password: user.map(|(_, p)| Secret::new(p)),
    });
    c
}

/// Runs the sink against the stand-in until it has acked one chunk.
async fn handshake_with_fluent_bit(user: Option<(&'static str, &'static str)>) -> Session {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(fluent_bit_in_forward(listener, "fluent-key", user, 1));
    let buffer = Buffer::new("to_fluent_bit", &BufferConfig::default());
    let sent = chunk("kube.app", 0, 3);
    buffer.push(sent.clone()).await.unwrap();
    let abort = Shutdown::new();
    let sink = tokio::spawn(run(sink_config(addr, user), context(&buffer, &abort)));
    let session = tokio::time::timeout(WAIT, server)
        .await
        .expect("the stand-in saw no complete session")
        .unwrap();
    if session.checked.is_ok() {
        assert_eq!(session.acked, vec![sent.id().to_base64()]);
        assert!(
            buffer.drained(WAIT).await,
            "the acked chunk left the buffer"
        );
    }
    abort.cancel();
    let _ = tokio::time::timeout(WAIT, sink).await;
    session
}

#[tokio::test]
async fn the_ping_has_every_field_as_str_and_fluent_bit_accepts_it() {
    let session = handshake_with_fluent_bit(None).await;
    let ping = session.checked.unwrap_or_else(|refusal| {
        panic!(
            "Fluent Bit would refuse this PING ({refusal}): {:02x?}",
            session.ping
        )
    });
    assert_eq!(ping.hostname, "node-1");
    assert_eq!(ping.salt.len(), 32, "16 random bytes as hex");
    assert!(
        ping.salt.iter().all(u8::is_ascii_hexdigit),
        "{:?}",
        ping.salt
    );
    assert_eq!(
        ping.digest,
        sha512_hex(&[&ping.salt, b"node-1", &NONCE, b"fluent-key"])
    );
    assert_eq!(
        (ping.username.as_str(), ping.password_digest.as_str()),
        ("", "")
    );
    assert!(session.ping.len() < 300, "{} bytes", session.ping.len());
}

#[tokio::test]
async fn with_users_the_password_digest_uses_fluent_bits_raw_auth_salt() {
    let session = handshake_with_fluent_bit(Some(("node", "node-password"))).await;
    let ping = session.checked.unwrap_or_else(|refusal| {
        panic!(
            "Fluent Bit would refuse this PING ({refusal}): {:02x?}",
            session.ping
        )
    });
    assert_eq!(ping.username, "node");
    assert_eq!(
        ping.password_digest,
        sha512_hex(&[&AUTH, b"node", b"node-password"])
    );
}
