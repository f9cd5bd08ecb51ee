//! The decoder: scalar types as YAML resolves them, [`Tagged`] configs with exact
//! locations (and through other deserializers), and errors located from the tree
//! even inside maps that serde buffers.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};

use super::*;
use crate::pattern::TagPattern;
use crate::value::Value;

fn doc(text: &str) -> ConfigDocument {
    ConfigDocument::from_text("nagare.yaml", text, |_| None).unwrap()
}

fn shown<T: DeserializeOwned + fmt::Debug>(text: &str) -> String {
    doc(text).parse::<T>().unwrap_err().to_string()
}

#[test]
fn plain_scalars_resolve_as_yaml_does() {
    let v: IndexMap<String, Value> = doc(
        "n: ~\ne:\nt: True\nf: false\nu: 24224\ni: -5\nh: 0x1F\no: 0o17\nb: 0b101\nz: 0123\nx: 1.5\ninf: .inf\ns: 'true'\nw: yes\nbig: 18446744073709551615\n",
    )
    .parse()
    .unwrap();
    assert_eq!(v["n"], Value::Null);
    assert_eq!(v["e"], Value::Null);
    assert_eq!(v["t"], Value::Bool(true));
    assert_eq!(v["f"], Value::Bool(false));
    assert_eq!(v["u"], Value::Int(24224));
    assert_eq!(v["i"], Value::Int(-5));
    assert_eq!(v["h"], Value::Int(31));
    assert_eq!(v["o"], Value::Int(15));
    assert_eq!(v["b"], Value::Int(5));
    assert_eq!(v["z"], Value::from("0123"), "leading zeros are text");
    assert_eq!(v["x"], Value::Float(1.5));
    assert_eq!(v["inf"], Value::Float(f64::INFINITY));
    assert_eq!(v["s"], Value::from("true"), "quoted is text");
    assert_eq!(v["w"], Value::from("yes"), "YAML 1.2: `yes` is text");
    assert_eq!(v["big"], Value::UInt(u64::MAX));
    // Text fields take any scalar as written; an empty `key:` is an empty list or map.
    #[derive(Debug, Deserialize)]
    struct Typed {
        a: String,
        b: Vec<u8>,
        c: IndexMap<String, u8>,
        d: Option<u8>,
        e: Option<String>,
    }
    let t: Typed = doc("a: 0x1F\nb:\nc:\nd: ~\ne: ''\n").parse().unwrap();
    assert_eq!(t.a, "0x1F");
    assert!(t.b.is_empty() && t.c.is_empty() && t.d.is_none());
    assert_eq!(t.e.as_deref(), Some(""));
    let err = shown::<Typed>("a: x\nb: [1, 300]\nc:\n");
    assert!(
        err.starts_with("nagare.yaml:2: at `b.1`: invalid value: integer `300`, expected u8"),
        "{err}"
    );
}

/// A sink section as the binary writes it: `type` and `match` beside the sink's own keys.
#[derive(Debug)]
struct Entry {
    pattern: TagPattern,
    kind: Kind2,
}

#[derive(Debug, PartialEq)]
enum Kind2 {
    File(FileSink),
    Null,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    path: String,
    #[serde(default)]
    limit: Option<ByteSize>,
    #[serde(default)]
    servers: Vec<Server>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    host: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: Kind<Entry>,
    #[serde(rename = "match")]
    pattern: TagPattern,
}

impl Tagged for Entry {
    type Head = Head;
    const KINDS: &'static [&'static str] = &["file", "null"];

    fn decode<'de, D: Deserializer<'de>>(head: Head, rest: D) -> Result<Self, D::Error> {
        let kind = match head.kind.as_str() {
            "file" => Kind2::File(FileSink::deserialize(rest)?),
            _ => {
                IndexMap::<String, Value>::deserialize(rest)?;
                Kind2::Null
            }
        };
        Ok(Entry {
            pattern: head.pattern,
            kind,
        })
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    sinks: IndexMap<String, Entry>,
}

const SINKS: &str = "sinks:\n  out:\n    path: /x\n    match: 'app.**'\n    type: file\n    servers:\n      - {host: a, port: 1}\n      - host: b\n        port: 2\n";

#[test]
fn tagged_configs_decode_and_place_every_error() {
    let root: Root = doc(SINKS).parse().unwrap();
    let out = &root.sinks["out"];
    assert!(out.pattern.matches("app.web"));
    let Kind2::File(f) = &out.kind else {
        panic!("{out:?}")
    };
    assert_eq!(f.path, "/x");
    assert_eq!(
        f.servers[1],
        Server {
            host: "b".into(),
            port: 2
        }
    );

    let cases = [
        (
            "type: file",
            "type: flie",
            "nagare.yaml:5: at `sinks.out.type`: unknown variant `flie`, expected `file` or `null`; check the spelling of the value",
        ),
        (
            "match: 'app.**'",
            "match: 'a.{b'",
            "nagare.yaml:4: at `sinks.out.match`: invalid tag pattern `a.{b`",
        ),
        (
            "match: 'app.**'",
            "mach: 'app.**'",
            "nagare.yaml:2: at `sinks.out`: missing field `match`",
        ),
        (
            "path: /x",
            "paht: /x",
            "nagare.yaml:3: at `sinks.out.paht`: unknown field `paht`, expected one of `path`, `limit`, `servers`; check the spelling",
        ),
        (
            "path: /x",
            "limit: 8k",
            "nagare.yaml:2: at `sinks.out`: missing field `path`",
        ),
        (
            "{host: a, port: 1}",
            "{host: a, port: x}",
            "nagare.yaml:7: at `sinks.out.servers.0.port`: invalid type: string \"x\", expected u16",
        ),
        (
            "{host: a, port: 1}",
            "{port: 1}",
            "nagare.yaml:7: at `sinks.out.servers.0`: missing field `host`",
        ),
        (
            "port: 2",
            "port: 70000",
            "nagare.yaml:9: at `sinks.out.servers.1.port`: invalid value: integer `70000`, expected u16",
        ),
        (
            "  out:\n",
            "  out: []\n",
            "nagare.yaml:2: at `sinks.out`: invalid type: sequence, expected a map naming one of the kinds file, null",
        ),
    ];
    for (from, to, want) in cases {
        let text = SINKS.replacen(from, to, 1);
        let text = if from == "  out:\n" {
            "sinks:\n  out: []\n".to_string()
        } else {
            text
        };
        let got = shown::<Root>(&text);
        assert!(got.starts_with(want), "{to}:\n  want {want}\n  got  {got}");
    }
}

#[test]
fn tagged_configs_decode_through_other_deserializers_too() {
    let root: Root = serde_norway::from_str(SINKS).unwrap();
    assert!(matches!(root.sinks["out"].kind, Kind2::File(_)));
    let json = r#"{"sinks": {"n": {"type": "null", "match": "**", "anything": [1]}}}"#;
    let root: Root = serde_json::from_str(json).unwrap();
    assert_eq!(root.sinks["n"].kind, Kind2::Null);
    let err =
        serde_norway::from_str::<Root>(&SINKS.replace("paths", "pahts").replace("path:", "paht:"))
            .unwrap_err()
            .to_string();
    assert!(err.contains("unknown field `paht`"), "{err}");
}

/// serde's own `tag`, which buffers the section: errors that name a key or a value
/// are found in the section by what they name; others point at the section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SerdeRoot {
    sinks: IndexMap<String, SerdeSink>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum SerdeSink {
    File(FileSink),
}

#[test]
fn errors_inside_buffered_sections_are_found_by_what_they_name() {
    let text = "sinks:\n  out:\n    type: file\n    path: /x\n    servers:\n      - {host: a, port: 1}\n      - {host: b, prot: 2}\n";
    let err = shown::<SerdeRoot>(text);
    assert!(
        err.starts_with("nagare.yaml:7: at `sinks.out.servers.1.prot`: unknown field `prot`"),
        "{err}"
    );
    let err = shown::<SerdeRoot>(&text.replace("port: 1", "port: one").replace("prot", "port"));
    assert!(
        err.starts_with(
            "nagare.yaml:6: at `sinks.out.servers.0.port`: invalid type: string \"one\""
        ),
        "{err}"
    );
    let err = shown::<SerdeRoot>(
        &text
            .replace("path: /x", "limit: 8 parsecs")
            .replace("prot", "port"),
    );
    assert!(
        err.starts_with("nagare.yaml:4: at `sinks.out.limit`: invalid value: string \"8 parsecs\""),
        "{err}"
    );
    let err = shown::<SerdeRoot>(&text.replace("    path: /x\n", "").replace("prot", "port"));
    assert!(
        err.starts_with("nagare.yaml:2: at `sinks.out`: missing field `path`"),
        "{err}"
    );
}

/// A type whose error message quotes text from elsewhere in the file: the location
/// is the value's, whatever the message says.
#[derive(Debug)]
struct Port;

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = String::deserialize(d)?;
        Err(serde::de::Error::custom(
            "`agg-0` is not a port; at line 1 column 1; unknown field `host`",
        ))
    }
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Servers {
    servers: Vec<PortServer>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct PortServer {
    host: String,
    port: Port,
}

#[test]
fn the_location_never_comes_from_the_message() {
    let err = doc("servers:\n  - host: agg-0\n    port: x\n")
        .parse::<Servers>()
        .unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert_eq!(err.key.as_deref(), Some("servers.0.port"), "{err}");
    let err = doc("servers: [{host: agg-0, port: x}]\n")
        .parse::<Servers>()
        .unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(1), Some("servers.0.port")),
        "{err}"
    );
}

#[test]
fn errors_after_decoding_point_at_the_closest_written_key() {
    let d = doc("sinks:\n  es:\n    endpoints: []\n    batch:\n      max_events: 5\n");
    assert_eq!(d.error("sinks.es.batch.max_events", "m").line, Some(5));
    assert_eq!(d.error("sinks.es.endpoints", "m").line, Some(3));
    // Not written (a default): the closest enclosing key that is.
    assert_eq!(d.error("sinks.es.buffer.path", "m").line, Some(2));
    assert_eq!(d.error("sources", "m").line, None);
    assert_eq!(
        d.error("sinks.es.buffer.path", "m").to_string(),
        "nagare.yaml:2: at `sinks.es.buffer.path`: m"
    );
}
