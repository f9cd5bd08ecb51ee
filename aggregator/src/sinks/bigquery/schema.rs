//! A BigQuery table schema: what rows are converted to, and what a table is created
//! with.
//!
//! It comes in three forms, all read into one validated [`Schema`]:
//! - the config's `schema:` list ([`FieldConfig`], unknown keys refused):
//!   ```yaml
//!   schema:
//!     - { name: time, type: TIMESTAMP, mode: REQUIRED }
//!     - { name: log, type: STRING }
//!     - name: kubernetes
//!       type: RECORD
//!       fields:
//!         - { name: namespace_name, type: STRING }
//!         - { name: labels, type: JSON }
//!   ```
//! - a `bq` command line schema file (`schema_file:`): the same list as JSON, as `bq
//!   show --schema` writes it (or wrapped in `{"fields": [...]}`);
//! - the REST API's `TableSchema` (`fetch_schema:`, and [`Schema::to_table_schema`]
//!   for `tables.insert`).
//!
//! The files and the API carry keys nagare has no use for (`policyTags`,
//! `maxLength`, ...); those are ignored there. Types are read case-insensitively with
//! GoogleSQL's names as aliases (INT64, FLOAT64, BOOL, STRUCT); errors name the field
//! by its path (`kubernetes.labels`).

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value as Json, json};

/// How deep RECORDs may nest (BigQuery's limit).
pub const MAX_DEPTH: usize = 15;
/// The longest column name BigQuery accepts, in characters.
pub const MAX_NAME_CHARS: usize = 300;

/// One field as the config's `schema:` list gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The column's name.
    pub name: String,
    /// Its type: STRING, BYTES, INTEGER (INT64), FLOAT (FLOAT64), NUMERIC, BIGNUMERIC,
    /// BOOLEAN (BOOL), TIMESTAMP, DATE, TIME, DATETIME, GEOGRAPHY, JSON or RECORD
    /// (STRUCT); any case.
    #[serde(rename = "type")]
    pub field_type: String,
    /// NULLABLE (the default), REQUIRED or REPEATED.
    #[serde(default)]
    pub mode: Option<String>,
    /// A RECORD's fields.
    #[serde(default)]
    pub fields: Vec<FieldConfig>,
    /// Shown in BigQuery's console for a table nagare creates.
    #[serde(default)]
    pub description: Option<String>,
}

/// A column's type, by BigQuery's REST (legacy) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text.
    String,
    /// Bytes, sent base64-encoded.
    Bytes,
    /// A 64-bit signed integer.
    Integer,
    /// A 64-bit float.
    Float,
    /// An exact decimal: 38 digits, 9 of them after the point.
    Numeric,
    /// An exact decimal: 76 digits, 38 of them after the point.
    BigNumeric,
    /// True or false.
    Boolean,
    /// A point in time, microsecond precision.
    Timestamp,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// A date and time of day, no zone.
    Datetime,
    /// A geography (WKT or GeoJSON text).
    Geography,
    /// A JSON document.
    Json,
    /// Nested fields.
    Record,
}

impl FieldType {
    /// The type `name` names (any case, GoogleSQL aliases included).
    pub fn parse(name: &str) -> Option<FieldType> {
        let upper = name.to_ascii_uppercase();
        Some(match upper.as_str() {
            "STRING" => FieldType::String,
            "BYTES" => FieldType::Bytes,
            "INTEGER" | "INT64" => FieldType::Integer,
            "FLOAT" | "FLOAT64" => FieldType::Float,
            "NUMERIC" | "DECIMAL" => FieldType::Numeric,
            "BIGNUMERIC" | "BIGDECIMAL" => FieldType::BigNumeric,
            "BOOLEAN" | "BOOL" => FieldType::Boolean,
            "TIMESTAMP" => FieldType::Timestamp,
            "DATE" => FieldType::Date,
            "TIME" => FieldType::Time,
            "DATETIME" => FieldType::Datetime,
            "GEOGRAPHY" => FieldType::Geography,
            "JSON" => FieldType::Json,
            "RECORD" | "STRUCT" => FieldType::Record,
            _ => return None,
        })
    }

    /// The REST API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "STRING",
            FieldType::Bytes => "BYTES",
            FieldType::Integer => "INTEGER",
            FieldType::Float => "FLOAT",
            FieldType::Numeric => "NUMERIC",
            FieldType::BigNumeric => "BIGNUMERIC",
            FieldType::Boolean => "BOOLEAN",
            FieldType::Timestamp => "TIMESTAMP",
            FieldType::Date => "DATE",
            FieldType::Time => "TIME",
            FieldType::Datetime => "DATETIME",
            FieldType::Geography => "GEOGRAPHY",
            FieldType::Json => "JSON",
            FieldType::Record => "RECORD",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a column holds one value, must hold one, or holds a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One value or none.
    #[default]
    Nullable,
    /// One value, always.
    Required,
    /// A list of values (none is an empty list).
    Repeated,
}

impl Mode {
    /// The mode `name` names (any case).
    pub fn parse(name: &str) -> Option<Mode> {
        match name.to_ascii_uppercase().as_str() {
            "NULLABLE" => Some(Mode::Nullable),
            "REQUIRED" => Some(Mode::Required),
            "REPEATED" => Some(Mode::Repeated),
            _ => None,
        }
    }

    /// The REST API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Nullable => "NULLABLE",
            Mode::Required => "REQUIRED",
            Mode::Repeated => "REPEATED",
        }
    }
}

/// One validated column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its name.
    pub name: String,
    /// Its type.
    pub field_type: FieldType,
    /// Its mode.
    pub mode: Mode,
    /// A RECORD's fields (none for any other type).
    pub fields: Vec<Field>,
    /// Its description, if any.
    pub description: Option<String>,
}

impl Field {
    /// The sub-field called `name`: the exact name first, else the one equal but for
    /// ASCII case, as BigQuery's column names are case-insensitive.
    pub fn field(&self, name: &str) -> Option<&Field> {
        find(&self.fields, name)
    }
}

/// A validated table schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// The top-level columns, in order.
    pub fields: Vec<Field>,
}

/// What is wrong with a schema; `path` names the field (`kubernetes.labels`, or
/// `fields[3]` for one without a name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The schema has no field.
    #[error("the schema has no fields; list at least one column (name, type)")]
    Empty,
    /// A field's name is empty or too long.
    #[error(
        "schema field `{path}`: a column name needs 1 to {MAX_NAME_CHARS} characters, got {chars}"
    )]
    BadName {
        /// The field.
        path: String,
        /// Its length in characters.
        chars: usize,
    },
    /// A name used twice at one level.
    #[error(
        "schema field `{path}`: the name is used twice at this level (BigQuery column names are case-insensitive); rename one"
    )]
    Duplicate {
        /// The second field of that name.
        path: String,
    },
    /// A type BigQuery does not have.
    #[error(
        "schema field `{path}`: unknown type {found:?}; use STRING, BYTES, INTEGER, FLOAT, NUMERIC, BIGNUMERIC, BOOLEAN, TIMESTAMP, DATE, TIME, DATETIME, GEOGRAPHY, JSON or RECORD"
    )]
    UnknownType {
        /// The field.
        path: String,
        /// The type given.
        found: String,
    },
    /// A mode BigQuery does not have.
    #[error("schema field `{path}`: unknown mode {found:?}; use NULLABLE, REQUIRED or REPEATED")]
    UnknownMode {
        /// The field.
        path: String,
        /// The mode given.
        found: String,
    },
    /// A RECORD without fields.
    #[error("schema field `{path}`: a RECORD needs `fields`, the columns inside it")]
    EmptyRecord {
        /// The field.
        path: String,
    },
    /// `fields` on a type other than RECORD.
    #[error("schema field `{path}`: only a RECORD has `fields`, and this is a {field_type}")]
    FieldsOnScalar {
        /// The field.
        path: String,
        /// Its type.
        field_type: FieldType,
    },
    /// RECORDs nested deeper than BigQuery allows.
    #[error("schema field `{path}`: RECORDs nest at most {MAX_DEPTH} levels deep")]
    TooDeep {
        /// The field.
        path: String,
    },
    /// A field of a JSON schema (file or API) that is not an object with a string
    /// `name` and `type`.
    #[error("schema field `{path}`: {what}")]
    Malformed {
        /// The field.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A schema file that cannot be read or is not JSON.
    #[error(
        "schema file {file}: {reason}; give a JSON list of fields as `bq show --schema` writes"
    )]
    File {
        /// The file.
        file: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl Schema {
    /// The schema of the config's `schema:` list.
    pub fn from_config(fields: &[FieldConfig]) -> Result<Schema, SchemaError> {
        let fields = config_fields(fields, None, 1)?;
        Schema::checked(fields)
    }

    /// The schema of a `bq` command line schema file's text: a list of fields, or
    /// `{"fields": [...]}`.
    pub fn from_bq_json(text: &str) -> Result<Schema, SchemaError> {
        let json: Json = serde_json::from_str(text).map_err(|e| SchemaError::File {
            file: "(text)".into(),
            reason: format!("not JSON ({e})"),
        })?;
        match &json {
            Json::Array(_) => Schema::from_json_fields(&json),
            _ => Schema::from_table_schema(&json),
        }
    }

    /// The schema of the `bq` command line schema file at `path`.
    pub fn from_file(path: &Path) -> Result<Schema, SchemaError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SchemaError::File {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Schema::from_bq_json(&text).map_err(|e| match e {
            SchemaError::File { reason, .. } => SchemaError::File { file, reason },
            other => other,
        })
    }

    /// The schema of a REST API `TableSchema` (`{"fields": [...]}`, as `tables.get`
    /// answers).
    pub fn from_table_schema(json: &Json) -> Result<Schema, SchemaError> {
        match json.get("fields") {
            Some(fields) => Schema::from_json_fields(fields),
            None => Err(SchemaError::Malformed {
                path: "fields".into(),
                what: "a table schema is an object with a `fields` list".into(),
            }),
        }
    }

    fn from_json_fields(fields: &Json) -> Result<Schema, SchemaError> {
        let fields = json_fields(fields, None, 1)?;
        Schema::checked(fields)
    }

    fn checked(fields: Vec<Field>) -> Result<Schema, SchemaError> {
        if fields.is_empty() {
            return Err(SchemaError::Empty);
        }
        Ok(Schema { fields })
    }

    /// The REST API's `TableSchema` of it (for `tables.insert`): REST type names,
    /// every mode spelled out.
    pub fn to_table_schema(&self) -> Json {
        json!({ "fields": self.fields.iter().map(field_json).collect::<Vec<_>>() })
    }

    /// The top-level column called `name` (exact, else equal but for ASCII case).
    pub fn field(&self, name: &str) -> Option<&Field> {
        find(&self.fields, name)
    }
}

fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields
        .iter()
        .find(|f| f.name == name)
        .or_else(|| fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)))
}

fn field_json(field: &Field) -> Json {
    let mut out = json!({
        "name": field.name,
        "type": field.field_type.as_str(),
        "mode": field.mode.as_str(),
    });
    if !field.fields.is_empty() {
        out["fields"] = field.fields.iter().map(field_json).collect();
    }
    if let Some(d) = &field.description {
        out["description"] = json!(d);
    }
    out
}

fn child_path(parent: Option<&str>, name: &str) -> String {
    match parent {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    }
}

/// A field as read, before it is checked.
struct Parts<'a> {
    name: &'a str,
    field_type: &'a str,
    mode: Option<&'a str>,
    fields: Vec<Field>,
    description: Option<String>,
}

/// One field from its parts, checked; `depth` is 1 at the top level.
fn field(path: String, parts: Parts<'_>, depth: usize) -> Result<Field, SchemaError> {
    let Parts {
        name,
        field_type,
        mode,
        fields,
        description,
    } = parts;
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(SchemaError::BadName { path, chars });
    }
    let Some(ty) = FieldType::parse(field_type) else {
        return Err(SchemaError::UnknownType {
            path,
            found: field_type.to_string(),
        });
    };
    let mode = match mode {
        None => Mode::Nullable,
        Some(m) => Mode::parse(m).ok_or_else(|| SchemaError::UnknownMode {
            path: path.clone(),
            found: m.to_string(),
        })?,
    };
    match ty {
        FieldType::Record if depth > MAX_DEPTH => return Err(SchemaError::TooDeep { path }),
        FieldType::Record if fields.is_empty() => return Err(SchemaError::EmptyRecord { path }),
        FieldType::Record => {}
        _ if !fields.is_empty() => {
            return Err(SchemaError::FieldsOnScalar {
                path,
                field_type: ty,
            });
        }
        _ => {}
    }
    Ok(Field {
        name: name.to_string(),
        field_type: ty,
        mode,
        fields,
        description,
    })
}

/// Refuses a second field of the same name (ignoring ASCII case) at one level.
fn check_unique(fields: &[Field], parent: Option<&str>) -> Result<(), SchemaError> {
    for (i, f) in fields.iter().enumerate() {
        if fields[..i]
            .iter()
            .any(|g| g.name.eq_ignore_ascii_case(&f.name))
        {
            return Err(SchemaError::Duplicate {
                path: child_path(parent, &f.name),
            });
        }
    }
    Ok(())
}

fn config_fields(
    list: &[FieldConfig],
    parent: Option<&str>,
    depth: usize,
) -> Result<Vec<Field>, SchemaError> {
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let path = child_path(parent, &c.name);
        let fields = config_fields(&c.fields, Some(&path), depth + 1)?;
        let parts = Parts {
            name: &c.name,
            field_type: &c.field_type,
            mode: c.mode.as_deref(),
            fields,
            description: c.description.clone(),
        };
        out.push(field(path, parts, depth)?);
    }
    check_unique(&out, parent)?;
    Ok(out)
}

fn json_fields(list: &Json, parent: Option<&str>, depth: usize) -> Result<Vec<Field>, SchemaError> {
    let Some(items) = list.as_array() else {
        return Err(SchemaError::Malformed {
            path: child_path(parent, "fields"),
            what: "`fields` must be a list".into(),
        });
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let unnamed = || child_path(parent, &format!("fields[{i}]"));
        let Some(name) = item.get("name").and_then(Json::as_str) else {
            return Err(SchemaError::Malformed {
                path: unnamed(),
                what: "a field needs a string `name`".into(),
            });
        };
        let path = child_path(parent, name);
        let Some(ty) = item.get("type").and_then(Json::as_str) else {
            return Err(SchemaError::Malformed {
                path,
                what: "a field needs a string `type`".into(),
            });
        };
        let mode = match item.get("mode") {
            None | Some(Json::Null) => None,
            Some(Json::String(m)) => Some(m.as_str()),
            Some(other) => {
                return Err(SchemaError::UnknownMode {
                    path,
                    found: other.to_string(),
                });
            }
        };
        let fields = match item.get("fields") {
            None | Some(Json::Null) => Vec::new(),
            Some(sub) => json_fields(sub, Some(&path), depth + 1)?,
        };
        let description = item
            .get("description")
            .and_then(Json::as_str)
            .map(str::to_string);
        let parts = Parts {
            name,
            field_type: ty,
            mode,
            fields,
            description,
        };
        out.push(field(path, parts, depth)?);
    }
    check_unique(&out, parent)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
