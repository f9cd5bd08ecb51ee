//! The Forward Protocol's authentication handshake, and the UDP heartbeat.
//!
//! ```text
//! server -> client  HELO  ["HELO", {"nonce": n, "auth": salt | "", "keepalive": bool}]
//! client -> server  PING  ["PING", client_hostname, shared_key_salt,
//!                          sha512_hex(shared_key_salt + client_hostname + n + shared_key),
//!                          username | "", sha512_hex(salt + username + password) | ""]
//! server -> client  PONG  ["PONG", auth_ok, reason | "", server_hostname,
//!                          sha512_hex(shared_key_salt + server_hostname + n + shared_key)]
//! ```
//!
//! The server speaks first, as soon as the connection is open; events flow only after
//! a PONG with `auth_ok = true`, whose digest proves to the client that the server
//! knows the shared key too. Digests are computed over the bytes of each field as
//! received.
//!
//! ## MessagePack types, by implementation
//!
//! The specification says "string" for salts and nonces without saying `str` or
//! `bin`, and implementations disagree on both what they send and what they accept:
//!
//! | message | field | Fluentd sends | Fluent Bit sends | Node fluent-logger sends | strict readers |
//! |---|---|---|---|---|---|
//! | HELO | `nonce`, `auth` | `bin` (16 random bytes) | `str` holding 16 random bytes (not UTF-8), no `keepalive` | (client only) | Node computes the password digest only when `auth` is `bin` |
//! | PING | every element | `str` (its salt is 32 hex digits) | `str` (its salt: 16 random bytes in a `str`) | `str` (salt: 32 hex digits) | Fluent Bit's `in_forward` refuses any element that is not `str` ("Invalid shared_key_salt type message"), and a PING of 1,023 bytes or more |
//! | PONG | `"PONG"`, reason, hostname, digest | `str`, and `auth_ok` a boolean | `str` | (client only) | Fluentd's and Node's clients want exactly 5 elements; Fluent Bit's `out_forward` copies the reason into a 32-byte buffer, so it must stay under 32 bytes |
//!
//! So nagare sends what every reader takes: HELO as Fluentd does (`bin` nonce and
//! salt, `""` for "no user authentication", `keepalive`), PING and PONG with `str`
//! everywhere and a salt of 32 hex digits ([`new_shared_key_salt`]), refusal reasons
//! under 32 bytes. It reads `str` and `bin` alike wherever bytes are expected, UTF-8
//! or not, and a HELO without `keepalive` as keepalive (Fluent Bit's).
//!
//! Heartbeats over UDP are one byte, `0x00`, sent to the server's port; the server
//! answers each with the same byte (Fluentd's `heartbeat_type udp`).

use rmp::Marker;
use sha2::{Digest, Sha512};

use super::codec::DecodeError;
use crate::msgpack::{self, ReadError, Reader};

/// The payload of a UDP heartbeat and of its answer.
pub const UDP_HEARTBEAT: &[u8] = b"\0";

/// Largest handshake message accepted; real ones are a few hundred bytes.
pub const MAX_HANDSHAKE_BYTES: usize = 16 * 1024;

/// A refusal reason in PONG is shorter than this: Fluent Bit's `out_forward` copies
/// it into a buffer of this size.
pub const MAX_REASON_BYTES: usize = 32;

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo {
    /// Random bytes the client must mix into its shared-key digest.
    pub nonce: Vec<u8>,
    /// Salt for the password digest; empty when the server does not check users.
    pub auth_salt: Vec<u8>,
    /// Whether the server keeps the connection open after a chunk.
    pub keepalive: bool,
}

/// The client's answer to HELO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The client's self-declared host name.
    pub hostname: String,
    /// The client's salt for the shared-key digests (either direction), as received:
    /// any bytes from other clients; 32 hex digits from nagare
    /// ([`new_shared_key_salt`]).
    pub shared_key_salt: Vec<u8>,
    /// `sha512_hex(shared_key_salt + hostname + nonce + shared_key)`.
    pub shared_key_digest: String,
    /// User name, empty without user authentication.
    pub username: String,
    /// `sha512_hex(auth_salt + username + password)`, empty without user
    /// authentication.
    pub password_digest: String,
}

/// The server's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// Whether the client was accepted.
    pub auth_ok: bool,
    /// Why not, when it was not.
    pub reason: String,
    /// The server's self-declared host name.
    pub hostname: String,
    /// `sha512_hex(shared_key_salt + server hostname + nonce + shared_key)`.
    pub shared_key_digest: String,
}

fn sha512_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The shared-key digest both sides compute: the client with its own host name in
/// PING, the server with its host name in PONG.
pub fn shared_key_digest(salt: &[u8], hostname: &str, nonce: &[u8], shared_key: &str) -> String {
    sha512_hex(&[salt, hostname.as_bytes(), nonce, shared_key.as_bytes()])
}

/// The password digest of user authentication.
pub fn password_digest(auth_salt: &[u8], username: &str, password: &str) -> String {
    sha512_hex(&[auth_salt, username.as_bytes(), password.as_bytes()])
}

/// A fresh salt for PING: 16 random bytes as 32 lowercase hex digits, which is what
/// Fluentd's and Node's clients send, and valid UTF-8 in the `str` that Fluent Bit
/// requires.
pub fn new_shared_key_salt() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Encodes HELO. The nonce and salt go as `bin`, as Fluentd sends them; an empty salt
/// goes as the empty `str`, which is how Fluentd says "no user authentication".
pub fn encode_helo(helo: &Helo) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    msgpack::write_array_len(&mut out, 2);
    msgpack::write_str(&mut out, "HELO");
    msgpack::write_map_len(&mut out, 3);
    msgpack::write_str(&mut out, "nonce");
    msgpack::write_bin(&mut out, &helo.nonce);
    msgpack::write_str(&mut out, "auth");
    if helo.auth_salt.is_empty() {
        msgpack::write_str(&mut out, "");
    } else {
        msgpack::write_bin(&mut out, &helo.auth_salt);
    }
    msgpack::write_str(&mut out, "keepalive");
    out.push(if helo.keepalive { 0xc3 } else { 0xc2 });
    out
}

/// Encodes PING, every element a `str` (Fluent Bit refuses anything else). The salt
/// goes as `str` whatever its bytes; [`new_shared_key_salt`] makes them hex.
pub fn encode_ping(ping: &Ping) -> Vec<u8> {
    let mut out = Vec::with_capacity(320);
    msgpack::write_array_len(&mut out, 6);
    msgpack::write_str(&mut out, "PING");
    msgpack::write_str(&mut out, &ping.hostname);
    msgpack::write_str_bytes(&mut out, &ping.shared_key_salt);
    msgpack::write_str(&mut out, &ping.shared_key_digest);
    msgpack::write_str(&mut out, &ping.username);
    msgpack::write_str(&mut out, &ping.password_digest);
    out
}

/// Encodes PONG.
pub fn encode_pong(pong: &Pong) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    msgpack::write_array_len(&mut out, 5);
    msgpack::write_str(&mut out, "PONG");
    out.push(if pong.auth_ok { 0xc3 } else { 0xc2 });
    msgpack::write_str(&mut out, &pong.reason);
    msgpack::write_str(&mut out, &pong.hostname);
    msgpack::write_str(&mut out, &pong.shared_key_digest);
    out
}

fn invalid(what: impl Into<String>, offset: usize) -> DecodeError {
    DecodeError::Invalid {
        what: what.into(),
        offset,
    }
}

fn read_error(e: ReadError, context: &str) -> DecodeError {
    match e {
        ReadError::Incomplete => invalid(format!("{context}: truncated"), 0),
        ReadError::Invalid { what, offset } => invalid(format!("{context}: {what}"), offset),
    }
}

/// The length of the whole MessagePack value at the start of `buf`, `None` when more
/// bytes are needed; refuses values over [`MAX_HANDSHAKE_BYTES`].
fn whole_message(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let mut r = Reader::new(buf);
    match r.skip_value() {
        Ok(v) if v.len() > MAX_HANDSHAKE_BYTES => Err(DecodeError::TooLarge {
            size: v.len(),
            limit: MAX_HANDSHAKE_BYTES,
        }),
        Ok(v) => Ok(Some(v.len())),
        Err(ReadError::Incomplete) if r.needed() > MAX_HANDSHAKE_BYTES => {
            Err(DecodeError::TooLarge {
                size: r.needed(),
                limit: MAX_HANDSHAKE_BYTES,
            })
        }
        Err(ReadError::Incomplete) if buf.len() > MAX_HANDSHAKE_BYTES => {
            Err(DecodeError::TooLarge {
                size: buf.len(),
                limit: MAX_HANDSHAKE_BYTES,
            })
        }
        Err(ReadError::Incomplete) => Ok(None),
        Err(e) => Err(read_error(e, "handshake")),
    }
}

/// Opens `[kind, ...]` and checks the kind; returns the reader past it and the
/// array's length.
fn open<'a>(buf: &'a [u8], kind: &str) -> Result<(Reader<'a>, usize), DecodeError> {
    let mut r = Reader::new(buf);
    let n = r
        .read_array_len()
        .map_err(|e| read_error(e, &format!("a {kind} message must be an array")))?;
    if n == 0 {
        return Err(invalid(format!("expected {kind}, found an empty array"), 0));
    }
    let at = r.position();
    let got = r
        .read_str_or_bin()
        .map_err(|e| read_error(e, &format!("expected {kind}")))?;
    if got != kind.as_bytes() {
        return Err(invalid(
            format!("expected {kind}, found {:?}", String::from_utf8_lossy(got)),
            at,
        ));
    }
    Ok((r, n))
}

fn bytes_field(r: &mut Reader<'_>, what: &str) -> Result<Vec<u8>, DecodeError> {
    r.read_str_or_bin()
        .map(<[u8]>::to_vec)
        .map_err(|e| read_error(e, what))
}

fn text_field(r: &mut Reader<'_>, what: &str) -> Result<String, DecodeError> {
    let at = r.position();
    if r.peek_is_nil() {
        r.skip_value().map_err(|e| read_error(e, what))?;
        return Ok(String::new());
    }
    let b = r.read_str_or_bin().map_err(|e| read_error(e, what))?;
    String::from_utf8(b.to_vec()).map_err(|_| invalid(format!("{what} is not UTF-8"), at))
}

fn bool_field(r: &mut Reader<'_>, what: &str) -> Result<bool, DecodeError> {
    let at = r.position();
    match r.peek_marker().map_err(|e| read_error(e, what))? {
        Marker::True | Marker::False => {
            let v = matches!(r.peek_marker(), Ok(Marker::True));
            r.skip_value().map_err(|e| read_error(e, what))?;
            Ok(v)
        }
        _ => Err(invalid(format!("{what} must be a boolean"), at)),
    }
}

/// Decodes HELO at the start of `buf`: `Ok(Some((helo, len)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn decode_helo(buf: &[u8]) -> Result<Option<(Helo, usize)>, DecodeError> {
    let Some(len) = whole_message(buf)? else {
        return Ok(None);
    };
    let (mut r, n) = open(&buf[..len], "HELO")?;
    let mut helo = Helo {
        nonce: Vec::new(),
        auth_salt: Vec::new(),
        keepalive: true,
    };
    if n >= 2 {
        let at = r.position();
        let pairs = r
            .read_map_len()
            .map_err(|e| read_error(e, "HELO options must be a map"))?;
        for _ in 0..pairs {
            let key = r
                .read_str_or_bin()
                .map_err(|e| read_error(e, "HELO option key"))?;
            match key {
                b"nonce" => helo.nonce = bytes_field(&mut r, "HELO nonce")?,
                b"auth" => helo.auth_salt = bytes_field(&mut r, "HELO auth salt")?,
                b"keepalive" => helo.keepalive = bool_field(&mut r, "HELO keepalive")?,
                _ => {
                    r.skip_value()
                        .map_err(|e| read_error(e, "HELO option value"))?;
                }
            }
        }
        if helo.nonce.is_empty() {
            return Err(invalid("HELO without a nonce", at));
        }
    } else {
        return Err(invalid("HELO without options", 0));
    }
    Ok(Some((helo, len)))
}

/// Decodes PING at the start of `buf`: `Ok(Some((ping, len)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn decode_ping(buf: &[u8]) -> Result<Option<(Ping, usize)>, DecodeError> {
    let Some(len) = whole_message(buf)? else {
        return Ok(None);
    };
    let (mut r, n) = open(&buf[..len], "PING")?;
    if n != 6 {
        return Err(invalid(
            format!("a PING message has 6 elements, this one has {n}"),
            0,
        ));
    }
    let ping = Ping {
        hostname: text_field(&mut r, "PING hostname")?,
        shared_key_salt: bytes_field(&mut r, "PING shared key salt")?,
        shared_key_digest: text_field(&mut r, "PING shared key digest")?,
        username: text_field(&mut r, "PING username")?,
        password_digest: text_field(&mut r, "PING password digest")?,
    };
    Ok(Some((ping, len)))
}

/// Decodes PONG at the start of `buf`: `Ok(Some((pong, len)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn decode_pong(buf: &[u8]) -> Result<Option<(Pong, usize)>, DecodeError> {
    let Some(len) = whole_message(buf)? else {
        return Ok(None);
    };
    let (mut r, n) = open(&buf[..len], "PONG")?;
    if n != 5 {
        return Err(invalid(
            format!("a PONG message has 5 elements, this one has {n}"),
            0,
        ));
    }
    let pong = Pong {
        auth_ok: bool_field(&mut r, "PONG result")?,
        reason: text_field(&mut r, "PONG reason")?,
        hostname: text_field(&mut r, "PONG hostname")?,
        shared_key_digest: text_field(&mut r, "PONG shared key digest")?,
    };
    Ok(Some((pong, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn helo_byte_for_byte() {
        let helo = Helo {
            nonce: vec![1, 2, 3],
            auth_salt: Vec::new(),
            keepalive: true,
        };
        let want = bytes(&[
            &[0x92, 0xa4],
            b"HELO",
            &[0x83, 0xa5],
            b"nonce",
            &[0xc4, 0x03, 1, 2, 3],
            &[0xa4],
            b"auth",
            &[0xa0],
            &[0xa9],
            b"keepalive",
            &[0xc3],
        ]);
        assert_eq!(encode_helo(&helo), want);
        assert_eq!(decode_helo(&want).unwrap(), Some((helo, want.len())));
        for cut in 0..want.len() {
            assert_eq!(decode_helo(&want[..cut]).unwrap(), None, "cut {cut}");
        }

        let with_users = Helo {
            nonce: vec![9; 16],
            auth_salt: vec![7; 16],
            keepalive: false,
        };
        let encoded = encode_helo(&with_users);
        let want = bytes(&[
            &[0x92, 0xa4],
            b"HELO",
            &[0x83, 0xa5],
            b"nonce",
            &[0xc4, 16],
            &[9; 16],
            &[0xa4],
            b"auth",
            &[0xc4, 16],
            &[7; 16],
            &[0xa9],
            b"keepalive",
            &[0xc2],
        ]);
        assert_eq!(encoded, want);
        assert_eq!(decode_helo(&encoded).unwrap().unwrap().0, with_users);
    }

    #[test]
    fn helo_with_str_salts_as_other_servers_send() {
        // ["HELO", {"nonce": "abc", "auth": "salt", "keepalive": true}]
        let msg = bytes(&[
            &[0x92, 0xa4],
            b"HELO",
            &[0x83, 0xa5],
            b"nonce",
            &[0xa3],
            b"abc",
            &[0xa4],
            b"auth",
            &[0xa4],
            b"salt",
            &[0xa9],
            b"keepalive",
            &[0xc3],
        ]);
        let (helo, _) = decode_helo(&msg).unwrap().unwrap();
        assert_eq!(helo.nonce, b"abc");
        assert_eq!(helo.auth_salt, b"salt");

        // Fluent Bit's in_forward: two keys, no keepalive, 16 random bytes (not UTF-8)
        // in each str.
        let nonce = [0xffu8, 0xfe, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xc3];
        let salt = [0x80u8; 16];
        let msg = bytes(&[
            &[0x92, 0xa4],
            b"HELO",
            &[0x82, 0xa5],
            b"nonce",
            &[0xb0],
            &nonce,
            &[0xa4],
            b"auth",
            &[0xb0],
            &salt,
        ]);
        let (helo, len) = decode_helo(&msg).unwrap().unwrap();
        assert_eq!(len, msg.len());
        assert_eq!(
            (helo.nonce.as_slice(), helo.auth_salt.as_slice()),
            (&nonce[..], &salt[..])
        );
        assert!(helo.keepalive, "keepalive unless the server says otherwise");
    }

    #[test]
    fn ping_byte_for_byte_with_str_or_bin_salt() {
        let ping = Ping {
            hostname: "node-1".into(),
            shared_key_salt: b"s4lt".to_vec(),
            shared_key_digest: "ab".into(),
            username: String::new(),
            password_digest: String::new(),
        };
        // Every element a str: the salt too, as Fluent Bit requires.
        let want = bytes(&[
            &[0x96, 0xa4],
            b"PING",
            &[0xa6],
            b"node-1",
            &[0xa4],
            b"s4lt",
            &[0xa2],
            b"ab",
            &[0xa0, 0xa0],
        ]);
        assert_eq!(encode_ping(&ping), want);
        assert_eq!(
            decode_ping(&want).unwrap(),
            Some((ping.clone(), want.len()))
        );
        // A salt as bin (older clients) reads the same.
        let mut as_bin = want.clone();
        as_bin[13] = 0x04;
        as_bin.insert(13, 0xc4);
        assert_eq!(decode_ping(&as_bin).unwrap().unwrap().0, ping);
        for cut in 0..want.len() {
            assert_eq!(decode_ping(&want[..cut]).unwrap(), None, "cut {cut}");
        }
        // Fluent Bit's salt: random bytes, not UTF-8, in a str.
        let raw = Ping {
            shared_key_salt: vec![0xff, 0x00, 0xc3, 0x28],
            ..ping
        };
        let encoded = encode_ping(&raw);
        assert_eq!(&encoded[13..18], &[0xa4, 0xff, 0x00, 0xc3, 0x28]);
        assert_eq!(decode_ping(&encoded).unwrap().unwrap().0, raw);
    }

    #[test]
    fn salts_are_32_fresh_hex_digits() {
        let a = new_shared_key_salt();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, new_shared_key_salt());
    }

    #[test]
    fn pong_byte_for_byte() {
        let pong = Pong {
            auth_ok: false,
            reason: "shared_key mismatch".into(),
            hostname: String::new(),
            shared_key_digest: String::new(),
        };
        let want = bytes(&[
            &[0x95, 0xa4],
            b"PONG",
            &[0xc2, 0xb3],
            b"shared_key mismatch",
            &[0xa0, 0xa0],
        ]);
        assert_eq!(encode_pong(&pong), want);
        assert_eq!(decode_pong(&want).unwrap(), Some((pong, want.len())));
    }

    #[test]
    fn digests_are_sha512_hex_of_the_concatenation() {
        // sha512("abc"), the FIPS 180-2 test vector, split across the parts.
        let want = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
        assert_eq!(shared_key_digest(b"a", "b", b"", "c"), want);
        assert_eq!(password_digest(b"ab", "", "c"), want);
        assert_eq!(shared_key_digest(b"", "", b"", "").len(), 128);
    }

    #[test]
    fn wrong_or_oversized_messages_are_refused() {
        let pong = encode_pong(&Pong {
            auth_ok: true,
            reason: String::new(),
            hostname: "h".into(),
            shared_key_digest: "d".into(),
        });
        let err = decode_ping(&pong).unwrap_err();
        assert!(err.to_string().contains("expected PING"), "{err}");
        let err = decode_helo(&[0x81, 0xa1, b'a', 0x01]).unwrap_err();
        assert!(err.to_string().contains("must be an array"), "{err}");
        // A str32 header announcing 4 GiB.
        let err = decode_ping(&[
            0x96, 0xa4, b'P', b'I', b'N', b'G', 0xdb, 0xff, 0xff, 0xff, 0xff,
        ])
        .unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
        let err = decode_ping(&bytes(&[&[0x93, 0xa4], b"PING", &[0xa0, 0xa0]])).unwrap_err();
        assert!(err.to_string().contains("6 elements"), "{err}");
    }
}
