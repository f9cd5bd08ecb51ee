//! The Storage Write API's writer schema: a table [`Schema`] as a self-contained
//! proto2 `DescriptorProto`, built at run time.
//!
//! Field `n` of a message is the `n`-th column of its level (numbers from 1, in the
//! schema's order); RECORD columns are nested messages, all declared inside the row
//! message (the API wants one self-contained descriptor) and named after their
//! position (`R_2_1`: the first RECORD-column position path 2 then 1), so no column
//! name can clash with a type name. Labels: REPEATED columns are `repeated`, every
//! other column `optional` (a REQUIRED column's value is checked when the row is
//! encoded, with an error that names the field).
//!
//! The types are those BigQuery documents for the Storage Write API's protobuf rows:
//!
//! | column | proto |
//! | --- | --- |
//! | STRING, JSON, GEOGRAPHY, NUMERIC, BIGNUMERIC, TIME, DATETIME | `string` |
//! | BYTES | `bytes` |
//! | INTEGER | `int64` |
//! | FLOAT | `double` |
//! | BOOLEAN | `bool` |
//! | TIMESTAMP | `int64`, microseconds since the epoch |
//! | DATE | `int32`, days since the epoch |
//! | RECORD | a nested message |

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::super::schema::{Field, FieldType, Mode, Schema};

/// The row message's name.
pub const ROW_MESSAGE: &str = "Row";

/// A column whose name cannot be a protobuf field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "schema field `{path}`: the Storage Write API sends rows as protobuf, whose field names are letters, digits and underscores (not starting with a digit); rename the column or use `method: insert_all`"
)]
pub struct DescriptorError {
    /// The column, by its path.
    pub path: String,
}

/// The wire type and proto type a column's values are written with.
pub fn proto_type(ty: FieldType) -> Type {
    match ty {
        FieldType::String
        | FieldType::Json
        | FieldType::Geography
        | FieldType::Numeric
        | FieldType::BigNumeric
        | FieldType::Time
        | FieldType::Datetime => Type::String,
        FieldType::Bytes => Type::Bytes,
        FieldType::Integer | FieldType::Timestamp => Type::Int64,
        FieldType::Float => Type::Double,
        FieldType::Boolean => Type::Bool,
        FieldType::Date => Type::Int32,
        FieldType::Record => Type::Message,
    }
}

/// The writer schema of rows for `schema`.
pub fn descriptor(schema: &Schema) -> Result<DescriptorProto, DescriptorError> {
    let mut nested = Vec::new();
    let fields = message_fields(&schema.fields, "", None, &mut nested)?;
    Ok(DescriptorProto {
        name: Some(ROW_MESSAGE.to_string()),
        field: fields,
        nested_type: nested,
        ..Default::default()
    })
}

/// The fields of the message for `fields`; the messages of its RECORD columns are
/// pushed onto `nested`. `suffix` is the position path of the message (`""` for the
/// row, `_2_1` inside), `parent` the column path, for errors.
fn message_fields(
    fields: &[Field],
    suffix: &str,
    parent: Option<&str>,
    nested: &mut Vec<DescriptorProto>,
) -> Result<Vec<FieldDescriptorProto>, DescriptorError> {
    let mut out = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let path = match parent {
            Some(p) => format!("{p}.{}", f.name),
            None => f.name.clone(),
        };
        if !is_proto_name(&f.name) {
            return Err(DescriptorError { path });
        }
        let number = i as i32 + 1;
        let ty = proto_type(f.field_type);
        let type_name = if f.field_type == FieldType::Record {
            let suffix = format!("{suffix}_{number}");
            let name = format!("R{suffix}");
            let fields = message_fields(&f.fields, &suffix, Some(&path), nested)?;
            nested.push(DescriptorProto {
                name: Some(name.clone()),
                field: fields,
                ..Default::default()
            });
            Some(name)
        } else {
            None
        };
        let label = match f.mode {
            Mode::Repeated => Label::Repeated,
            Mode::Nullable | Mode::Required => Label::Optional,
        };
        out.push(FieldDescriptorProto {
            name: Some(f.name.clone()),
            number: Some(number),
            label: Some(label as i32),
            r#type: Some(ty as i32),
            type_name,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Whether `name` is a protobuf identifier.
fn is_proto_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
