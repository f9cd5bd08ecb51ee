//! Input strategies shared by the property tests.

use proptest::prelude::*;

/// Up to `most` pieces, concatenated: each either arbitrary bytes or one of
/// `snippets` (pieces of real log lines, as likely each as arbitrary bytes), so that
/// random input reaches past a parser's first checks often enough.
pub fn bytes_with(
    snippets: &'static [&'static [u8]],
    most: usize,
) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        1 => any::<Vec<u8>>(),
        snippets.len() as u32 => prop::sample::select(snippets).prop_map(<[u8]>::to_vec),
    ];
    prop::collection::vec(piece, 0..most).prop_map(|v| v.concat())
}
