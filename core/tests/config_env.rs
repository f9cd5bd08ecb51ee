//! `${ENV}` references are values, not YAML: whatever a variable holds reaches the
//! config exactly, in every kind of scalar, and a plain scalar made of references
//! still gets YAML's types (`port: ${PORT}` is a number).

use indexmap::IndexMap;
use nagare_core::config::{ConfigDocument, ConfigError, Secret};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Doc {
    password: Option<Secret>,
    name: Option<String>,
    port: Option<u16>,
    enabled: Option<bool>,
    ratio: Option<f64>,
    records: IndexMap<String, String>,
    list: Vec<String>,
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Doc, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    ConfigDocument::from_text("nagare.yaml", text, env)?.parse()
}

/// Values that are YAML syntax when pasted into the text.
const TRICKY: &[&str] = &[
    "a #b",
    "p: q",
    "*x",
    "&y",
    "!z",
    "{a: 1}",
    "[1]",
    "'q",
    "\"q",
    "a, b]",
    "- x",
    "? k",
    "%TAG",
    "@at",
    "`tick",
    "|",
    ">",
    " padded ",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nq+/=\n-----END PRIVATE KEY-----\n",
];

#[test]
fn a_value_that_looks_like_yaml_stays_the_value() {
    for value in TRICKY {
        let vars = [("PW", *value)];
        let shapes = [
            ("password: ${PW}\n", "plain"),
            ("password: \"${PW}\"\n", "double-quoted"),
            ("password: '${PW}'\n", "single-quoted"),
            ("records: { pw: ${PW} }\n", "flow map"),
            ("records:\n  pw: ${PW}\n", "block map"),
            ("list: [${PW}]\n", "flow sequence"),
            ("list:\n  - ${PW}\n", "block sequence"),
            ("records:\n  ${PW}: key\n", "key"),
        ];
        for (text, shape) in shapes {
            let doc =
                load(text, &vars).unwrap_or_else(|e| panic!("{shape}, PW={value:?}: {e}\n{text}"));
            let got = match shape {
                "flow map" | "block map" => doc.records.get("pw").cloned(),
                "key" => doc.records.keys().next().cloned(),
                "flow sequence" | "block sequence" => doc.list.first().cloned(),
                _ => doc.password.map(|p| p.expose().to_string()),
            };
            assert_eq!(got.as_deref(), Some(*value), "{shape}: {text}");
        }
        // Inside other text too.
        let doc = load("name: <${PW}>\n", &vars).unwrap();
        assert_eq!(doc.name, Some(format!("<{value}>")), "inside text");
    }
}

#[test]
fn a_plain_reference_gets_the_type_its_value_reads_as() {
    let doc = load(
        "port: ${PORT}\nenabled: ${FLAG}\nratio: ${RATIO}\nname: ${PORT}\n",
        &[("PORT", "24224"), ("FLAG", "true"), ("RATIO", "0.5")],
    )
    .unwrap();
    assert_eq!(doc.port, Some(24224));
    assert_eq!(doc.enabled, Some(true));
    assert_eq!(doc.ratio, Some(0.5));
    // A text field takes the digits as written.
    assert_eq!(doc.name.as_deref(), Some("24224"));
    // Digits with a leading zero are text in YAML 1.2, and stay as written.
    let doc = load("name: ${ZIP}\n", &[("ZIP", "01234")]).unwrap();
    assert_eq!(doc.name.as_deref(), Some("01234"));
    // A number made of two references.
    let doc = load("port: ${A}${B}\n", &[("A", "24"), ("B", "224")]).unwrap();
    assert_eq!(doc.port, Some(24224));
    // An empty value is YAML's null, as `password:` is; quoting keeps it text.
    let doc = load("password: ${PW}\n", &[("PW", "")]).unwrap();
    assert!(doc.password.is_none());
    let doc = load("password: \"${PW}\"\n", &[("PW", "")]).unwrap();
    assert_eq!(
        doc.password.map(|p| p.expose().to_string()).as_deref(),
        Some("")
    );
    // A quoted reference is text, as any quoted scalar.
    let err = load("port: \"${PORT}\"\n", &[("PORT", "24224")]).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(1), Some("port")),
        "{err}"
    );
    // A value that is not a number, where one is needed.
    let err = load("records: {}\nport: ${PORT}\n", &[("PORT", "high")]).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_deref()),
        (Some(2), Some("port")),
        "{err}"
    );
    assert!(err.message.contains("\"high\""), "{err}");
}

#[test]
fn unresolvable_references_name_their_line() {
    let err = load("records:\n  a: x\n  b: ${NOPE}\n", &[]).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.message.contains("`NOPE` is not set"), "{err}");
    // In a block scalar, the line of the reference itself.
    let err = load("name: |\n  line one\n  ${NOPE}\n", &[]).unwrap_err();
    assert_eq!(err.line, Some(3), "{err}");
    // In a comment, nothing is resolved.
    load("name: x # ${NOPE}\n# ${NOPE}\n", &[]).unwrap();
    // Defaults and the escape.
    let doc = load("name: ${NOPE:-a #b}$${X}\n", &[]).unwrap();
    assert_eq!(doc.name.as_deref(), Some("a #b${X}"));
}
