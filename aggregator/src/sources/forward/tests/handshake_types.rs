//! The handshake on the wire, checked against what each real client sends and
//! accepts, with MessagePack types decoded here (not by nagare's codec):
//!
//! - salts in PING: Fluentd and Node's fluent-logger send 32 hex digits as `str`;
//!   Fluent Bit 16 random bytes (not UTF-8) in a `str`; older clients `bin`. The
//!   server must take each, and compute its digests over the bytes as sent.
//! - HELO must be read by Fluentd's and Node's clients (exactly 2 elements; Node
//!   computes the password digest only when `auth` is `bin`) and by Fluent Bit's
//!   `out_forward` (`str` "HELO", `str` or `bin` nonce, the whole message in one
//!   read of under 1,023 bytes).
//! - PONG: exactly 5 elements (Fluentd, Node), `str` texts and a boolean, and a
//!   refusal reason under 32 bytes (Fluent Bit copies it into a 32-byte buffer).

use sha2::{Digest, Sha512};

use super::*;

/// A decoded MessagePack value that keeps `str` and `bin` apart.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Str(Vec<u8>),
    Bin(Vec<u8>),
    Bool(bool),
    Map(Vec<(V, V)>),
    Array(Vec<V>),
}

fn be(buf: &[u8], at: usize, n: usize) -> usize {
    buf[at..at + n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
}

/// Decodes the value at `*at`; panics on a type a handshake never holds.
fn value(buf: &[u8], at: &mut usize) -> V {
    let m = buf[*at];
    *at += 1;
    let take = |n: usize, at: &mut usize| {
        let v = buf[*at..*at + n].to_vec();
        *at += n;
        v
    };
    match m {
        0xa0..=0xbf => V::Str(take(usize::from(m & 0x1f), at)),
        0xd9 | 0xda | 0xdb | 0xc4 | 0xc5 | 0xc6 => {
            let width = match m {
                0xd9 | 0xc4 => 1,
                0xda | 0xc5 => 2,
                _ => 4,
            };
            let len = be(buf, *at, width);
            *at += width;
            let bytes = take(len, at);
            if m >= 0xd9 {
                V::Str(bytes)
            } else {
                V::Bin(bytes)
            }
        }
        0xc2 => V::Bool(false),
        0xc3 => V::Bool(true),
        0x80..=0x8f => V::Map(
            (0..m & 0x0f)
                .map(|_| (value(buf, at), value(buf, at)))
                .collect(),
        ),
        0x90..=0x9f => V::Array((0..m & 0x0f).map(|_| value(buf, at)).collect()),
        other => panic!("unexpected marker {other:#04x} in a handshake message"),
    }
}

/// Reads one whole handshake message off the socket, as raw bytes.
async fn read_raw(stream: &mut TcpStream) -> Vec<u8> {
    read_whole(stream, "handshake message", |buf| {
        let v = nagare_core::msgpack::Reader::new(buf).skip_value().ok()?;
        Some((v.to_vec(), v.len()))
    })
    .await
}

fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn str_header(out: &mut Vec<u8>, len: usize) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else {
        out.extend_from_slice(&[0xd9, len as u8]);
    }
}

/// How a client puts its salt in PING.
#[derive(Debug, Clone, Copy)]
enum Salt {
    /// 16 random bytes as `bin`.
    Bin,
    /// 16 random bytes, not UTF-8, in a `str` (Fluent Bit).
    RawStr,
    /// 32 hex digits as `str` (Fluentd, Node's fluent-logger, nagare).
    HexStr,
}

impl Salt {
    fn bytes(self) -> Vec<u8> {
        match self {
            Salt::Bin | Salt::RawStr => vec![
                0xff, 0xc3, 0x28, 0x00, 0x80, 7, 7, 7, 0xfe, 1, 2, 3, 4, 5, 6, 0xed,
            ],
            Salt::HexStr => b"0f1e2d3c4b5a69788796a5b4c3d2e1f0".to_vec(),
        }
    }
}

/// A PING as a client of that kind writes it.
fn ping(salt: Salt, nonce: &[u8], key: &str, user: Option<(&str, &str, &[u8])>) -> Vec<u8> {
    let s = salt.bytes();
    let digest = sha512_hex(&[&s, b"node-1", nonce, key.as_bytes()]);
    let mut out = vec![0x96, 0xa4];
    out.extend_from_slice(b"PING");
    out.push(0xa6);
    out.extend_from_slice(b"node-1");
    match salt {
        Salt::Bin => out.extend_from_slice(&[0xc4, s.len() as u8]),
        Salt::RawStr | Salt::HexStr => str_header(&mut out, s.len()),
    }
    out.extend_from_slice(&s);
    str_header(&mut out, digest.len());
    out.extend_from_slice(digest.as_bytes());
    let (name, password) = match user {
        Some((name, password, auth)) => (
            name.to_string(),
            sha512_hex(&[auth, name.as_bytes(), password.as_bytes()]),
        ),
        None => (String::new(), String::new()),
    };
    str_header(&mut out, name.len());
    out.extend_from_slice(name.as_bytes());
    str_header(&mut out, password.len());
    out.extend_from_slice(password.as_bytes());
    out
}

/// Checks HELO as Fluentd's, Node's and Fluent Bit's clients read it; returns the
/// nonce and the auth salt (empty without user authentication).
fn check_helo(raw: &[u8], user_auth: bool) -> (Vec<u8>, Vec<u8>) {
    assert!(raw.len() < 1023, "HELO of {} bytes", raw.len());
    let V::Array(items) = value(raw, &mut 0) else {
        panic!("HELO is not an array: {raw:02x?}")
    };
    assert_eq!(items.len(), 2, "Fluentd and Node want exactly 2 elements");
    assert_eq!(items[0], V::Str(b"HELO".to_vec()));
    let V::Map(options) = &items[1] else {
        panic!("HELO options are not a map")
    };
    let get = |k: &str| {
        options
            .iter()
            .find(|(key, _)| *key == V::Str(k.as_bytes().to_vec()))
            .map(|(_, v)| v.clone())
    };
    let Some(V::Bin(nonce)) = get("nonce") else {
        panic!("nonce is not bin: {options:?}")
    };
    assert_eq!(nonce.len(), 16);
    assert!(matches!(get("keepalive"), Some(V::Bool(true))));
    let auth = match get("auth") {
        // Node's fluent-logger only answers a bin salt with a password digest.
        Some(V::Bin(salt)) if user_auth => salt,
        Some(V::Str(empty)) if !user_auth && empty.is_empty() => Vec::new(),
        other => panic!("auth {other:?} with user_auth {user_auth}"),
    };
    (nonce, auth)
}

/// Checks PONG as every client reads it; returns (auth_ok, reason, hostname, digest).
fn check_pong(raw: &[u8]) -> (bool, String, String, String) {
    assert!(raw.len() < 1023, "PONG of {} bytes", raw.len());
    let V::Array(items) = value(raw, &mut 0) else {
        panic!("PONG is not an array: {raw:02x?}")
    };
    let text = |v: &V| match v {
        V::Str(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("a PONG text that is not str: {other:?}"),
    };
    match items.as_slice() {
        [kind, V::Bool(ok), reason, hostname, digest] => {
            assert_eq!(text(kind), "PONG");
            let reason = text(reason);
            assert!(
                reason.len() < hs::MAX_REASON_BYTES,
                "Fluent Bit's out_forward copies the reason into 32 bytes: {reason:?}"
            );
            (*ok, reason, text(hostname), text(digest))
        }
        other => panic!("PONG must have 5 elements, a boolean second: {other:?}"),
    }
}

#[tokio::test]
async fn every_clients_salt_is_accepted_and_answered_in_types_every_client_reads() {
    let server = start(secured(false), BufferConfig::default()).await;
    for (i, salt) in [Salt::Bin, Salt::RawStr, Salt::HexStr]
        .into_iter()
        .enumerate()
    {
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let (nonce, auth) = check_helo(&read_raw(&mut client).await, false);
        assert!(auth.is_empty());
        client
            .write_all(&ping(salt, &nonce, "s3cret", None))
            .await
            .unwrap();
        let (ok, reason, hostname, digest) = check_pong(&read_raw(&mut client).await);
        assert!(ok, "{salt:?}: refused with {reason:?}");
        assert_eq!(hostname, "aggregator-0");
        assert_eq!(
            digest,
            sha512_hex(&[&salt.bytes(), b"aggregator-0", &nonce, b"s3cret"]),
            "{salt:?}: the PONG digest is over the salt's bytes as sent"
        );
        let id = format!("salt-{i}");
        send_acked(
            &mut client,
            &packed("t", &entries(0, 1), 1, &id, Compression::None),
            &id,
        )
        .await;
        assert_eq!(take(&server.buffer).await.count(), 1);
    }
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn refusals_are_pongs_every_client_reads() {
    let server = start(secured(true), BufferConfig::default()).await;
    let cases = [
        ("wrong-key", ("node", "pw"), "shared_key mismatch"),
        ("s3cret", ("node", "wrong"), "username/password mismatch"),
    ];
    for (key, (user, password), want) in cases {
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        let (nonce, auth) = check_helo(&read_raw(&mut client).await, true);
        assert_eq!(auth.len(), 16);
        let ping = ping(Salt::HexStr, &nonce, key, Some((user, password, &auth)));
        client.write_all(&ping).await.unwrap();
        let (ok, reason, hostname, digest) = check_pong(&read_raw(&mut client).await);
        assert!(!ok);
        assert_eq!(reason, want);
        assert_eq!((hostname.as_str(), digest.as_str()), ("", ""));
        assert!(closed_by_server(&mut client).await);
    }
    // And the right user is let in, its password digest over the bin auth salt.
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let (nonce, auth) = check_helo(&read_raw(&mut client).await, true);
    let ping = ping(Salt::RawStr, &nonce, "s3cret", Some(("node", "pw", &auth)));
    client.write_all(&ping).await.unwrap();
    assert!(check_pong(&read_raw(&mut client).await).0);
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}
