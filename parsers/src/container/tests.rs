//! Unit tests of the container framing, one section per module.

use super::*;

/// What a test compares: the fields of an emitted message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    time: Option<EventTime>,
    stream: Option<Stream>,
    logtag: Option<&'static str>,
    message: String,
    truncated: bool,
    malformed: bool,
}

impl From<LogLine<'_>> for Out {
    fn from(l: LogLine<'_>) -> Self {
        Out {
            time: l.time,
            stream: l.stream,
            logtag: l.logtag,
            message: String::from_utf8_lossy(l.message).into_owned(),
            truncated: l.truncated,
            malformed: l.malformed,
        }
    }
}

/// Splits `input` into lines (cap `max`) and runs them through `parser`.
fn run(parser: &mut ContainerParser, max: usize, input: &[u8]) -> Vec<Out> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    for line in splitter.feed(input) {
        parser.push(line, |l| out.push(Out::from(l)));
    }
    out
}

/// The offset of each message `parser` emits for `input`.
fn offsets(parser: &mut ContainerParser, max: usize, input: &[u8]) -> Vec<u64> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    for line in splitter.feed(input) {
        parser.push(line, |l| out.push(l.offset));
    }
    out
}

fn t(s: &str) -> Option<EventTime> {
    EventTime::parse_rfc3339(s.as_bytes())
}

fn messages(out: &[Out]) -> Vec<&str> {
    out.iter().map(|o| o.message.as_str()).collect()
}

mod lines {
    use super::*;

    fn split_all(max: usize, reads: &[&[u8]]) -> Vec<(Vec<u8>, bool, bool)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for r in reads {
            for l in s.feed(r) {
                out.push((l.bytes.to_vec(), l.truncated, l.continuation));
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_the_incomplete_rest() {
        let mut s = LineSplitter::new(100);
        let got: Vec<&[u8]> = s.feed(b"one\ntwo\n\nthr").map(|l| l.bytes).collect();
        assert_eq!(got, [&b"one"[..], b"two", b""]);
        assert_eq!(s.pending(), 3);
        let got: Vec<&[u8]> = s.feed(b"ee\nfour").map(|l| l.bytes).collect();
        assert_eq!(got, [&b"three"[..]]);
        assert_eq!(s.pending(), 4);
    }

    #[test]
    fn a_line_split_across_two_reads_at_every_byte() {
        let text = b"first line\nsecond, longer line\nthird\n";
        for cut in 0..=text.len() {
            let got = split_all(1024, &[&text[..cut], &text[cut..]]);
            let lines: Vec<&[u8]> = got.iter().map(|(b, _, _)| b.as_slice()).collect();
            assert_eq!(
                lines,
                [&b"first line"[..], b"second, longer line", b"third"],
                "cut at {cut}"
            );
            assert!(got.iter().all(|(_, t, c)| !t && !c));
        }
    }

    #[test]
    fn lines_not_taken_are_handed_out_by_the_next_feed() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.feed(b"a\nb\nc").next().unwrap().bytes, b"a");
        let got: Vec<&[u8]> = s.feed(b"\n").map(|l| l.bytes).collect();
        assert_eq!(got, [&b"b"[..], b"c"]);
    }

    #[test]
    fn a_line_longer_than_the_cap_comes_out_in_flagged_pieces() {
        let got = split_all(4, &[b"abcdefghij\nok\n"]);
        assert_eq!(
            got,
            [
                (b"abcd".to_vec(), true, false),
                (b"efgh".to_vec(), true, true),
                (b"ij".to_vec(), true, true),
                (b"ok".to_vec(), false, false),
            ]
        );
        // Exactly the cap is not truncated; one byte more is.
        assert_eq!(
            split_all(4, &[b"abcd\n"]),
            [(b"abcd".to_vec(), false, false)]
        );
        assert_eq!(
            split_all(4, &[b"abcde\n"]),
            [(b"abcd".to_vec(), true, false), (b"e".to_vec(), true, true)]
        );
        // A long line whose length is a multiple of the cap ends without an empty piece.
        assert_eq!(
            split_all(2, &[b"abcd\n"]),
            [(b"ab".to_vec(), true, false), (b"cd".to_vec(), true, true)]
        );
    }

    #[test]
    fn a_long_line_is_never_held_whole() {
        let mut s = LineSplitter::new(8);
        let mut pieces = 0;
        for _ in 0..100 {
            pieces += s.feed(b"0123456789").count();
            assert!(s.pending() <= 8, "held {} bytes", s.pending());
        }
        // The last 8 bytes wait for a ninth (or a newline) to tell whether they are cut.
        assert_eq!(pieces, (1000 - 8) / 8);
    }

    #[test]
    fn lines_know_where_they_start_across_reads_pieces_and_resets() {
        let mut s = LineSplitter::starting_at(4, 1000);
        let mut got = Vec::new();
        for read in [&b"ab\ncd"[..], b"e\n0123456789\n"] {
            got.extend(s.feed(read).map(|l| (l.offset, l.bytes.to_vec())));
        }
        let want: Vec<(u64, Vec<u8>)> = vec![
            (1000, b"ab".to_vec()),
            (1003, b"cde".to_vec()),
            (1007, b"0123".to_vec()),
            (1011, b"4567".to_vec()),
            (1015, b"89".to_vec()),
        ];
        assert_eq!(got, want);
        s.reset();
        let first = s.feed(b"x\n").next().map(|l| l.offset);
        assert_eq!(first, Some(0));
    }

    #[test]
    fn reset_forgets_the_partial_line() {
        let mut s = LineSplitter::new(100);
        assert_eq!(s.feed(b"old partial").count(), 0);
        s.reset();
        let got: Vec<&[u8]> = s.feed(b"new\n").map(|l| l.bytes).collect();
        assert_eq!(got, [&b"new"[..]]);
    }
}

mod cri {
    use super::*;
    use crate::container::cri::{CriError, parse};

    const T1: &str = "2024-01-15T10:30:00.000000001Z";
    const T2: &str = "2024-01-15T10:30:00.000000002Z";
    const T3: &str = "2024-01-15T10:30:00.000000003Z";

    fn cri() -> ContainerParser {
        ContainerParser::new(ContainerFormat::Cri, 1 << 20)
    }

    #[test]
    fn parses_the_fields() {
        let l = parse(b"2024-01-15T10:30:00.123456789Z stderr F hello world").unwrap();
        assert_eq!(l.time, t("2024-01-15T10:30:00.123456789Z").unwrap());
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(l.message, b"hello world");
        // Extra tags after `:`; an empty message with or without its space.
        let l = parse(b"2024-01-15T10:30:00Z stdout P:x:y  two spaces").unwrap();
        assert!(l.partial);
        assert_eq!(l.message, b" two spaces");
        assert_eq!(
            parse(b"2024-01-15T10:30:00Z stdout F ").unwrap().message,
            b""
        );
        assert_eq!(
            parse(b"2024-01-15T10:30:00Z stdout F").unwrap().message,
            b""
        );
    }

    #[test]
    fn refuses_malformed_lines() {
        assert_eq!(parse(b"hello world"), Err(CriError::Time));
        assert_eq!(parse(b"2024-01-15T10:30:00Z"), Err(CriError::Time));
        assert_eq!(
            parse(b"2024-01-15T10:30:00Z stdin F x"),
            Err(CriError::Stream)
        );
        assert_eq!(parse(b"2024-01-15T10:30:00Z stdout"), Err(CriError::Stream));
        assert_eq!(
            parse(b"2024-01-15T10:30:00Z stdout X x"),
            Err(CriError::Tag)
        );
        assert_eq!(
            parse(b"2024-01-15T10:30:00Z stdout PF x"),
            Err(CriError::Tag)
        );
    }

    #[test]
    fn merges_several_p_pieces_with_their_f() {
        let input = format!("{T1} stdout P one \n{T2} stdout P two \n{T3} stdout F three\n");
        let out = run(&mut cri(), 1 << 20, input.as_bytes());
        assert_eq!(
            out,
            [Out {
                time: t(T1),
                stream: Some(Stream::Stdout),
                logtag: Some("F"),
                message: "one two three".into(),
                truncated: false,
                malformed: false,
            }]
        );
    }

    #[test]
    fn merges_interleaved_stdout_and_stderr_pieces_separately() {
        let input = format!(
            "{T1} stdout P out-a \n{T1} stderr P err-a \n{T2} stderr F err-b\n{T2} stdout P out-b \n{T3} stdout F out-c\n{T3} stderr F whole\n"
        );
        let out = run(&mut cri(), 1 << 20, input.as_bytes());
        let got: Vec<(Option<Stream>, &str)> =
            out.iter().map(|o| (o.stream, o.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (Some(Stream::Stderr), "err-a err-b"),
                (Some(Stream::Stdout), "out-a out-b out-c"),
                (Some(Stream::Stderr), "whole"),
            ]
        );
        assert_eq!(out[1].time, t(T1), "a merged message keeps its first time");
        // And the offset of its first piece's line.
        let starts: Vec<u64> = input
            .match_indices('\n')
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let line_at = |n: usize| if n == 0 { 0 } else { starts[n - 1] };
        assert_eq!(
            offsets(&mut cri(), 1 << 20, input.as_bytes()),
            [line_at(1), line_at(0), line_at(5)]
        );
    }

    #[test]
    fn keeps_malformed_lines_whole_and_flagged() {
        let mut p = cri();
        let input = format!("{T1} stdout P held \nnot a cri line\n{T2} stdout F done\n");
        let out = run(&mut p, 1 << 20, input.as_bytes());
        assert_eq!(messages(&out), ["not a cri line", "held done"]);
        assert!(out[0].malformed && out[0].time.is_none() && out[0].stream.is_none());
        assert!(!out[1].malformed);
    }

    #[test]
    fn a_p_piece_without_its_f_stays_held() {
        let mut p = cri();
        let out = run(&mut p, 1 << 20, format!("{T1} stdout P alone\n").as_bytes());
        assert!(out.is_empty());
        assert!(p.has_pending());
        p.reset();
        assert!(!p.has_pending());
    }

    #[test]
    fn a_merged_message_past_the_cap_is_emitted_in_truncated_pieces() {
        let mut p = ContainerParser::new(ContainerFormat::Cri, 10);
        let input = format!("{T1} stdout P 123456\n{T2} stdout P 7890ab\n{T3} stdout F cd\n");
        // The line cap must hold the CRI header; the message cap is the parser's.
        let out = run(&mut p, 1024, input.as_bytes());
        assert_eq!(messages(&out), ["123456", "7890abcd"]);
        assert_eq!(out[0].logtag, Some("P"));
        assert_eq!(out[0].time, t(T1));
        assert_eq!(out[1].logtag, Some("F"));
        assert_eq!(out[1].time, t(T2));
        assert!(out.iter().all(|o| o.truncated));
        // The next message is whole again.
        let out = run(&mut p, 1024, format!("{T1} stdout F next\n").as_bytes());
        assert!(!out[0].truncated);
    }

    #[test]
    fn pieces_of_a_line_longer_than_the_line_cap_keep_its_time_and_stream() {
        let line = format!("{T1} stderr F {}\n", "x".repeat(40));
        let mut p = cri();
        let out = run(&mut p, 50, line.as_bytes());
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].message, "x".repeat(50 - T1.len() - 10));
        assert_eq!(out[0].message.len() + out[1].message.len(), 40);
        for o in &out {
            assert_eq!(
                (o.time, o.stream, o.truncated),
                (t(T1), Some(Stream::Stderr), true)
            );
        }
        // A continuation piece with no parsable head is kept as malformed text.
        let out = run(&mut cri(), 8, b"garbage-garbage\n");
        assert_eq!(messages(&out), ["garbage-", "garbage"]);
        assert!(out.iter().all(|o| o.malformed && o.truncated));
    }

    #[test]
    fn invalid_utf8_is_kept() {
        let mut line = format!("{T1} stdout F ok ").into_bytes();
        line.extend_from_slice(b"\xff\xfe end\n");
        let mut p = cri();
        let mut seen = Vec::new();
        for l in LineSplitter::new(1024).feed(&line) {
            p.push(l, |m| seen.push(m.message.to_vec()));
        }
        assert_eq!(seen, [b"ok \xff\xfe end".to_vec()]);
        let (text, invalid) = decode_text(&seen[0]);
        assert!(invalid);
        assert_eq!(text, "ok \u{fffd}\u{fffd} end");
        let (text, invalid) = decode_text("héllo".as_bytes());
        assert!(!invalid && matches!(text, std::borrow::Cow::Borrowed("héllo")));
    }
}

mod docker {
    use super::*;
    use crate::container::docker::parse;

    const TIME: &str = "2024-01-15T10:30:00.123456789Z";

    fn line(log: &str, stream: &str) -> String {
        format!(
            "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"{TIME}\"}}\n",
            serde_json::to_string(log).unwrap()
        )
    }

    fn docker() -> ContainerParser {
        ContainerParser::new(ContainerFormat::Docker, 1 << 20)
    }

    #[test]
    fn parses_docker_lines_and_strips_the_newline() {
        let mut scratch = Vec::new();
        let l = parse(br#"{"log":"a \"quoted\" \\ \u00e9 \ud83d\ude00 tab\t\n","stream":"stderr","time":"2024-01-15T10:30:00.123456789Z"}"#, &mut scratch).unwrap();
        assert_eq!(l.log, "a \"quoted\" \\ é 😀 tab\t\n".as_bytes());
        assert_eq!(l.stream, Stream::Stderr);
        assert_eq!(l.time, t(TIME));
        let out = run(&mut docker(), 1 << 20, line("hello\n", "stdout").as_bytes());
        assert_eq!(
            out,
            [Out {
                time: t(TIME),
                stream: Some(Stream::Stdout),
                logtag: None,
                message: "hello".into(),
                truncated: false,
                malformed: false,
            }]
        );
    }

    #[test]
    fn reads_other_json_shapes_too() {
        let mut scratch = Vec::new();
        let l = parse(
            br#"{ "stream": "stdout", "attrs": {"a": "b"}, "log": "x\n", "time": "2024-01-15T10:30:00Z" }"#,
            &mut scratch,
        )
        .unwrap();
        assert_eq!((l.log, l.stream), (&b"x\n"[..], Stream::Stdout));
        // A bad time keeps the message; the reader's time is used instead.
        let l = parse(
            br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(l.time, None);
        // A lone surrogate becomes U+FFFD rather than failing the line.
        let l = parse(
            br#"{"log":"\ud800!","stream":"stdout","time":"yesterday"}"#,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(l.log, "\u{fffd}!".as_bytes());
    }

    #[test]
    fn merges_16k_splits() {
        let big = "a".repeat(16 * 1024);
        let input = format!(
            "{}{}{}",
            line(&big, "stdout"),
            line(&big, "stdout"),
            line("end\n", "stdout")
        );
        let out = run(&mut docker(), 1 << 20, input.as_bytes());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message.len(), 32 * 1024 + 3);
        assert!(out[0].message.ends_with("aend"));
        assert!(!out[0].truncated);
        // The merged message is at its first piece's line.
        let first = line("first\n", "stdout");
        let after = format!("{first}{input}");
        assert_eq!(
            offsets(&mut docker(), 1 << 20, after.as_bytes()),
            [0, first.len() as u64]
        );
    }

    #[test]
    fn merges_interleaved_streams_separately() {
        let input = format!(
            "{}{}{}{}",
            line("out-a ", "stdout"),
            line("err-a ", "stderr"),
            line("out-b\n", "stdout"),
            line("err-b\n", "stderr"),
        );
        let out = run(&mut docker(), 1 << 20, input.as_bytes());
        assert_eq!(messages(&out), ["out-a out-b", "err-a err-b"]);
    }

    #[test]
    fn a_merged_message_past_the_cap_is_truncated() {
        let input = format!(
            "{}{}{}",
            line("123456", "stdout"),
            line("7890ab", "stdout"),
            line("cd\n", "stdout")
        );
        let mut p = ContainerParser::new(ContainerFormat::Docker, 10);
        let out = run(&mut p, 1024, input.as_bytes());
        assert_eq!(messages(&out), ["123456", "7890abcd"]);
        assert!(out.iter().all(|o| o.truncated && o.logtag.is_none()));
    }

    #[test]
    fn keeps_malformed_lines_whole_and_flagged() {
        let input = b"{\"log\": broken\nplain text\n{\"log\":\"x\\n\",\"stream\":\"stdin\"}\n{\"stream\":\"stdout\"}\n";
        let out = run(&mut docker(), 1 << 20, input);
        assert_eq!(
            messages(&out),
            [
                "{\"log\": broken",
                "plain text",
                "{\"log\":\"x\\n\",\"stream\":\"stdin\"}",
                "{\"stream\":\"stdout\"}"
            ]
        );
        assert!(out.iter().all(|o| o.malformed && o.time.is_none()));
    }

    #[test]
    fn keeps_invalid_utf8_bytes() {
        let mut input = b"{\"log\":\"bad \xff\\n\",\"stream\":\"stdout\",\"time\":\"".to_vec();
        input.extend_from_slice(TIME.as_bytes());
        input.extend_from_slice(b"\"}\n");
        let mut p = docker();
        let mut seen = Vec::new();
        for l in LineSplitter::new(1024).feed(&input) {
            p.push(l, |m| seen.push((m.message.to_vec(), m.malformed)));
        }
        assert_eq!(seen, [(b"bad \xff".to_vec(), false)]);
    }

    #[test]
    fn pieces_of_a_line_past_the_line_cap_are_unescaped_where_possible() {
        let input = line("0123456789\\tail\n", "stdout");
        let out = run(&mut docker(), 16, input.as_bytes());
        assert!(out.len() > 1);
        assert_eq!(out[0].message, "01234567");
        assert!(out.iter().all(|o| o.truncated && !o.malformed));
    }
}

mod detect {
    use super::*;

    #[test]
    fn tells_cri_from_docker() {
        assert_eq!(
            detect(b"2024-01-15T10:30:00.123456789Z stdout F hi"),
            Some(ContainerFormat::Cri)
        );
        assert_eq!(
            detect(br#"{"log":"hi\n","stream":"stdout","time":"2024-01-15T10:30:00Z"}"#),
            Some(ContainerFormat::Docker)
        );
        assert_eq!(detect(br#"{"msg":"an app's own json"}"#), None);
        assert_eq!(detect(b"plain text"), None);
        assert_eq!(detect(b""), None);
    }
}

mod path {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_kubernetes_log_file_names() {
        let name = format!("web-7d9f8b6c5-x2x4q_kube-system_istio-proxy-{ID}.log");
        assert_eq!(
            parse_pod_log_file_name(&name),
            Some(PodLogFile {
                pod_name: "web-7d9f8b6c5-x2x4q",
                namespace_name: "kube-system",
                container_name: "istio-proxy",
                container_id: ID,
            })
        );
        let name = format!("etcd-node1.example.com_kube-system_etcd-{ID}.log");
        let f = parse_pod_log_file_name(&name).unwrap();
        assert_eq!(
            (f.pod_name, f.container_name),
            ("etcd-node1.example.com", "etcd")
        );
    }

    #[test]
    fn other_names_give_none() {
        for name in [
            "syslog".to_string(),
            format!("web_default_nginx-{ID}"),
            format!("web_default_nginx-{}.log", &ID[1..]),
            format!("web_default_nginx-{}.log", ID.to_uppercase()),
            format!("web_default_nginx_extra-{ID}.log"),
            format!("web_default_-{ID}.log"),
            format!("_default_nginx-{ID}.log"),
            format!("web_default_{ID}.log"),
            format!("web_de.fault_nginx-{ID}.log"),
        ] {
            assert_eq!(parse_pod_log_file_name(&name), None, "{name}");
        }
    }
}

mod raw {
    use super::*;

    #[test]
    fn each_line_is_a_message() {
        let out = run(&mut ContainerParser::Raw, 4, b"one\nlonger\n");
        assert_eq!(messages(&out), ["one", "long", "er"]);
        assert_eq!(
            out.iter().map(|o| o.truncated).collect::<Vec<_>>(),
            [false, true, true]
        );
        assert!(out.iter().all(|o| o.time.is_none() && !o.malformed));
    }
}
