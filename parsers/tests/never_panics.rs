//! Property tests: arbitrary bytes, split into arbitrary reads, never panic any part
//! of the container framing, and the splitter never loses or invents a byte.

use nagare_parsers::container::{
    ContainerFormat, ContainerParser, LineSplitter, cri, decode_text, detect, docker,
    parse_pod_log_file_name,
};
use proptest::prelude::*;

mod support;

/// Bytes that look like container log lines often enough to reach the merging code.
fn log_bytes() -> impl Strategy<Value = Vec<u8>> {
    support::bytes_with(
        &[
            b"2024-01-15T10:30:00.1Z stdout P ",
            b"2024-01-15T10:30:00Z stderr F ",
            b"{\"log\":\"",
            b"\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-15T10:30:00Z\"}",
            b"\\ud83d\\u",
            b"\n",
        ],
        24,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn framing_never_panics(data in log_bytes(), cuts in prop::collection::vec(0usize..64, 0..8), max in 1usize..96) {
        for format in [Some(ContainerFormat::Cri), Some(ContainerFormat::Docker), None] {
            let mut parser = match format {
                Some(f) => ContainerParser::new(f, max),
                None => ContainerParser::Raw,
            };
            let mut splitter = LineSplitter::new(max);
            let mut rest: &[u8] = &data;
            let mut emitted = 0usize;
            for cut in cuts.iter().copied().chain(std::iter::once(usize::MAX)) {
                let (read, more) = rest.split_at(cut.min(rest.len()));
                rest = more;
                for line in splitter.feed(read) {
                    prop_assert!(line.bytes.len() <= max);
                    parser.push(line, |l| {
                        let _ = decode_text(l.message);
                        emitted += 1;
                    });
                }
                prop_assert!(splitter.pending() <= max);
            }
            let _ = (emitted, parser.has_pending());
        }
    }

    #[test]
    fn parsers_never_panic_on_single_lines(line in log_bytes()) {
        let _ = cri::parse(&line);
        let _ = docker::parse(&line, &mut Vec::new());
        let _ = detect(&line);
        let _ = parse_pod_log_file_name(&String::from_utf8_lossy(&line));
    }

    #[test]
    fn splitter_gives_back_every_byte(data in any::<Vec<u8>>(), cuts in prop::collection::vec(0usize..40, 0..6), max in 1usize..64) {
        let whole: Vec<_> = {
            let mut s = LineSplitter::new(max);
            let lines: Vec<(Vec<u8>, bool, bool)> = s.feed(&data).map(|l| (l.bytes.to_vec(), l.truncated, l.continuation)).collect();
            let consumed = data.len() - s.pending();
            // Lines and pieces never hold a newline; everything handed out, newlines
            // aside, is exactly the input up to what is still pending.
            let kept: Vec<u8> = data[..consumed].iter().copied().filter(|&b| b != b'\n').collect();
            let joined: Vec<u8> = lines.iter().flat_map(|(b, _, _)| b.clone()).collect();
            prop_assert_eq!(kept, joined);
            lines
        };
        // However the input is cut into reads, the same lines come out.
        let mut s = LineSplitter::new(max);
        let mut pieces = Vec::new();
        let mut rest: &[u8] = &data;
        for cut in cuts.iter().copied().chain(std::iter::once(usize::MAX)) {
            let (read, more) = rest.split_at(cut.min(rest.len()));
            rest = more;
            pieces.extend(s.feed(read).map(|l| (l.bytes.to_vec(), l.truncated, l.continuation)));
        }
        prop_assert_eq!(pieces, whole);
    }
}
