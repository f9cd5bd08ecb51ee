//! The Fluentd Forward Protocol v1, shared by the forwarder (client) and the
//! aggregator (server).
//!
//! - [`codec`]: frames to bytes and back: Message, Forward, PackedForward and
//!   CompressedPackedForward; EventTime; options; the ack.
//! - [`handshake`]: HELO / PING / PONG with their SHA-512 digests (shared key and
//!   users), and the one-byte UDP heartbeat.
//! - [`json`]: the JSON form simple clients may send instead of MessagePack.
//! - [`fuzz`]: the body of the `forward_frame` fuzz target (`fuzz/`), smoke-run in
//!   the tests.
//!
//! Decoding is two steps, as in mini-redis: a cheap "is a whole frame here?" check
//! over the receive buffer ([`codec::frame_len`]), then a parse of exactly those bytes
//! ([`codec::decode_frame`]) that borrows the entries from the buffer instead of
//! copying them.

pub mod codec;
pub mod fuzz;
pub mod handshake;
pub mod json;

pub use codec::{
    DecodeError, DecodeLimits, EventsMessage, Frame, Mode, Options, decode_ack, decode_frame,
    encode_ack, encode_forward, encode_message, encode_packed_forward, frame_len,
};
pub use handshake::{Helo, Ping, Pong, UDP_HEARTBEAT};
pub use json::{JsonScanner, decode_json_frame, encode_json_ack, is_json_start};
