use super::*;

fn config(yaml: &str) -> Result<Schema, SchemaError> {
    let fields: Vec<FieldConfig> = serde_norway::from_str(yaml).expect("schema YAML");
    Schema::from_config(&fields)
}

const NESTED: &str = r#"
- { name: time, type: TIMESTAMP, mode: REQUIRED }
- { name: log, type: string, description: the line }
- { name: n, type: INT64 }
- { name: x, type: FLOAT64 }
- { name: ok, type: bool }
- { name: tags, type: STRING, mode: repeated }
- name: kubernetes
  type: STRUCT
  fields:
    - { name: namespace_name, type: STRING }
    - { name: labels, type: JSON }
"#;

#[test]
fn config_form_with_aliases_and_nesting() {
    let schema = config(NESTED).unwrap();
    let types: Vec<FieldType> = schema.fields.iter().map(|f| f.field_type).collect();
    assert_eq!(
        types,
        [
            FieldType::Timestamp,
            FieldType::String,
            FieldType::Integer,
            FieldType::Float,
            FieldType::Boolean,
            FieldType::String,
            FieldType::Record,
        ]
    );
    assert_eq!(schema.fields[0].mode, Mode::Required);
    assert_eq!(schema.fields[1].mode, Mode::Nullable);
    assert_eq!(schema.fields[5].mode, Mode::Repeated);
    let k8s = schema.field("Kubernetes").expect("case-insensitive lookup");
    assert_eq!(k8s.field("labels").unwrap().field_type, FieldType::Json);
    assert_eq!(schema.fields[1].description.as_deref(), Some("the line"));
}

#[test]
fn config_form_refuses_unknown_keys() {
    let err = serde_norway::from_str::<Vec<FieldConfig>>("- { name: a, type: STRING, typo: 1 }")
        .unwrap_err();
    assert!(err.to_string().contains("typo"), "{err}");
}

#[test]
fn errors_name_the_field_path() {
    let cases = [
        (
            "- { name: k, type: RECORD, fields: [{ name: bad, type: INTEGR }] }",
            SchemaError::UnknownType {
                path: "k.bad".into(),
                found: "INTEGR".into(),
            },
        ),
        (
            "- { name: a, type: STRING, mode: OPTIONAL }",
            SchemaError::UnknownMode {
                path: "a".into(),
                found: "OPTIONAL".into(),
            },
        ),
        (
            "- { name: r, type: RECORD }",
            SchemaError::EmptyRecord { path: "r".into() },
        ),
        (
            "- { name: s, type: STRING, fields: [{ name: a, type: STRING }] }",
            SchemaError::FieldsOnScalar {
                path: "s".into(),
                field_type: FieldType::String,
            },
        ),
        (
            "- { name: k, type: RECORD, fields: [{ name: a, type: STRING }, { name: A, type: INTEGER }] }",
            SchemaError::Duplicate { path: "k.A".into() },
        ),
        (
            "- { name: '', type: STRING }",
            SchemaError::BadName {
                path: "".into(),
                chars: 0,
            },
        ),
        ("[]", SchemaError::Empty),
    ];
    for (yaml, want) in cases {
        assert_eq!(config(yaml).unwrap_err(), want, "{yaml}");
    }
    let message = config(cases_message_input()).unwrap_err().to_string();
    assert!(
        message.contains("`k.bad`") && message.contains("INTEGR"),
        "{message}"
    );
}

fn cases_message_input() -> &'static str {
    "- { name: k, type: RECORD, fields: [{ name: bad, type: INTEGR }] }"
}

#[test]
fn records_nest_at_most_fifteen_deep() {
    let nest = |depth: usize| {
        let mut field = json!({ "name": "leaf", "type": "STRING" });
        for i in (0..depth).rev() {
            field = json!({ "name": format!("r{i}"), "type": "RECORD", "fields": [field] });
        }
        json!([field])
    };
    assert!(Schema::from_bq_json(&nest(15).to_string()).is_ok());
    let err = Schema::from_bq_json(&nest(16).to_string()).unwrap_err();
    assert!(
        matches!(&err, SchemaError::TooDeep { path } if path.ends_with("r15")),
        "{err}"
    );
}

#[test]
fn bq_cli_file_form() {
    // As `bq show --schema --format=prettyjson` writes it, with keys nagare ignores.
    let text = r#"[
      {"name": "time", "type": "TIMESTAMP", "mode": "REQUIRED"},
      {"name": "price", "type": "NUMERIC", "precision": "10", "scale": "2"},
      {"name": "secret", "type": "STRING", "policyTags": {"names": []}},
      {"name": "req", "type": "RECORD", "mode": "REPEATED",
       "fields": [{"name": "path", "type": "STRING"}]}
    ]"#;
    let schema = Schema::from_bq_json(text).unwrap();
    assert_eq!(schema.fields.len(), 4);
    assert_eq!(schema.fields[3].mode, Mode::Repeated);
    assert_eq!(schema.fields[3].fields[0].name, "path");
    // The same wrapped in {"fields": [...]}.
    let wrapped = format!("{{\"fields\": {text}}}");
    assert_eq!(Schema::from_bq_json(&wrapped).unwrap(), schema);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    std::fs::write(&file, text).unwrap();
    assert_eq!(Schema::from_file(&file).unwrap(), schema);
    std::fs::write(&file, "{not json").unwrap();
    let err = Schema::from_file(&file).unwrap_err().to_string();
    assert!(
        err.contains("schema.json") && err.contains("not JSON"),
        "{err}"
    );
    let err = Schema::from_file(&dir.path().join("absent.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.json"), "{err}");
}

#[test]
fn json_form_errors_name_the_field() {
    let err = Schema::from_bq_json(r#"[{"name": "a", "type": "STRING"}, {"type": "STRING"}]"#)
        .unwrap_err();
    assert_eq!(
        err,
        SchemaError::Malformed {
            path: "fields[1]".into(),
            what: "a field needs a string `name`".into(),
        }
    );
    let err =
        Schema::from_bq_json(r#"[{"name": "r", "type": "RECORD", "fields": [{"name": "x"}]}]"#)
            .unwrap_err();
    assert!(
        matches!(&err, SchemaError::Malformed { path, .. } if path == "r.x"),
        "{err}"
    );
}

#[test]
fn round_trips_through_the_rest_table_schema() {
    let schema = config(NESTED).unwrap();
    let rest = schema.to_table_schema();
    assert_eq!(
        rest["fields"][2],
        json!({ "name": "n", "type": "INTEGER", "mode": "NULLABLE" })
    );
    assert_eq!(
        rest["fields"][1],
        json!({ "name": "log", "type": "STRING", "mode": "NULLABLE", "description": "the line" })
    );
    assert_eq!(rest["fields"][6]["type"], "RECORD");
    assert_eq!(rest["fields"][6]["fields"][1]["type"], "JSON");
    assert_eq!(Schema::from_table_schema(&rest).unwrap(), schema);
    assert!(Schema::from_table_schema(&json!({ "nofields": [] })).is_err());
}
