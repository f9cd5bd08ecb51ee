//! The body of the `forward_frame` fuzz target (`fuzz/`), here so that the test
//! suite runs the same checks on every build (a smoke run below).
//!
//! Whatever the bytes, the decoders must not panic, must not claim more bytes than
//! they were given, and must agree with themselves: a frame that decodes has as many
//! entries as its entry stream holds, and re-encoding a decoded frame as
//! PackedForward decodes to the same entries.

use bytes::Bytes;

use super::codec::{self, DecodeLimits, Frame};
use super::{handshake, json};
use crate::chunk::{Entries, count_entries};
use crate::compression::Compression;

/// Runs every decoder over `data` and checks their invariants; panics on a violation.
pub fn check(data: &[u8]) {
    let limits = DecodeLimits {
        max_frame_bytes: 1 << 20,
        max_decompressed_bytes: 4 << 20,
    };
    // MessagePack frames, back to back, as a connection's receive buffer holds them.
    let mut rest = data;
    while let Ok(Some(len)) = codec::frame_len(rest, &limits) {
        assert!(
            len > 0 && len <= rest.len(),
            "frame_len {len} of {}",
            rest.len()
        );
        if let Ok(Frame::Events(m)) =
            codec::decode_frame(Bytes::copy_from_slice(&rest[..len]), &limits)
        {
            assert_eq!(count_entries(&m.entries), Ok(m.count), "count of {m:?}");
            // What the door lets in decodes, every entry of it.
            let decoded = Entries::new(&m.entries).filter(Result::is_ok).count();
            assert_eq!(decoded, m.count as usize, "decodable entries of {m:?}");
            let (mut again, tail) = codec::encode_packed_forward(
                &m.tag,
                m.entries.len(),
                m.count,
                m.options.chunk.as_deref(),
                Compression::None,
            );
            again.extend_from_slice(&m.entries);
            again.extend_from_slice(&tail);
            match codec::decode_frame(Bytes::from(again), &limits) {
                Ok(Frame::Events(back)) => {
                    assert_eq!(
                        (back.tag, back.entries, back.count),
                        (m.tag, m.entries, m.count)
                    )
                }
                other => panic!("a re-encoded frame does not decode: {other:?}"),
            }
        }
        rest = &rest[len..];
    }
    // The JSON form.
    let mut scanner = json::JsonScanner::new();
    if let Ok(Some(len)) = scanner.frame_len(data, &limits) {
        assert!(len <= data.len());
        if let Ok(Frame::Events(m)) = json::decode_json_frame(&data[..len]) {
            assert_eq!(count_entries(&m.entries), Ok(m.count));
        }
    }
    // What a client reads: acks and the handshake.
    if let Ok(Some((_, len))) = codec::decode_ack(data) {
        assert!(len <= data.len());
    }
    for decoded in [
        handshake::decode_helo(data).map(|o| o.map(|(_, n)| n)),
        handshake::decode_ping(data).map(|o| o.map(|(_, n)| n)),
        handshake::decode_pong(data).map(|o| o.map(|(_, n)| n)),
    ] {
        if let Ok(Some(len)) = decoded {
            assert!(len <= data.len());
        }
    }
    let _ = count_entries(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkBuilder;
    use crate::forward::handshake::{Helo, Ping, Pong};
    use crate::testing::Rng;
    use crate::{EventTime, Map, Tag};
    use std::io::Write;

    fn seeds() -> Vec<Vec<u8>> {
        let mut b = ChunkBuilder::new(Tag::new("t"));
        for i in 0..3 {
            let mut m = Map::new();
            m.insert("message", format!("line {i}"));
            m.insert("n", i);
            b.push(EventTime::new(1_700_000_000 + i, 5), &m);
        }
        let chunk = b.finish().unwrap();
        let entries = chunk.entries().to_vec();
        let packed = |payload: &[u8], c| {
            let (mut f, tail) =
                codec::encode_packed_forward("app", payload.len(), 3, Some("id"), c);
            f.extend_from_slice(payload);
            f.extend_from_slice(&tail);
            f
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&entries).unwrap();
        let gz = gz.finish().unwrap();
        let events: Vec<_> = chunk.events().map(Result::unwrap).collect();
        vec![
            packed(&entries, Compression::None),
            packed(&gz, Compression::Gzip),
            packed(
                &zstd::encode_all(&entries[..], 1).unwrap(),
                Compression::Zstd,
            ),
            codec::encode_forward("fwd", &events, Some("c")),
            codec::encode_message("msg", events[0].0, &events[0].1, None),
            codec::encode_ack("abc"),
            br#"["json", 1700000000, {"a": [1, {"b": "]"}]}, {"chunk": "x"}]"#.to_vec(),
            handshake::encode_helo(&Helo {
                nonce: vec![1; 16],
                auth_salt: vec![2; 16],
                keepalive: true,
            }),
            handshake::encode_ping(&Ping {
                hostname: "h".into(),
                shared_key_salt: vec![3; 16],
                shared_key_digest: "d".into(),
                username: "u".into(),
                password_digest: "p".into(),
            }),
            handshake::encode_pong(&Pong {
                auth_ok: true,
                reason: String::new(),
                hostname: "s".into(),
                shared_key_digest: "d".into(),
            }),
            vec![0xc0],
        ]
    }

    /// Bytes the decoders give meaning to, so that mutations reach deep states.
    const SPECIAL: &[u8] = &[
        0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xd7,
        0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff, b'[', b']', b'{', b'}', b'"', b'\\',
    ];

    #[test]
    fn the_fuzz_target_survives_its_seeds_and_mutations() {
        let seeds = seeds();
        let mut rng = Rng(0x5eed_f0a7);
        let mut runs = 0;
        for seed in &seeds {
            check(seed);
            let mut two = seed.clone();
            two.extend_from_slice(seed);
            check(&two);
            runs += 2;
        }
        for _ in 0..20_000 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(input.len() + 1);
                match rng.below(4) {
                    0 if at < input.len() => input[at] = SPECIAL[rng.below(SPECIAL.len())],
                    1 if at < input.len() => input[at] = rng.next_u64() as u8,
                    2 => input.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
                    _ => input.truncate(at),
                }
            }
            check(&input);
            runs += 1;
        }
        for _ in 0..2_000 {
            let n = rng.below(64);
            let input: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            check(&input);
            runs += 1;
        }
        assert!(runs > 22_000);
    }
}
