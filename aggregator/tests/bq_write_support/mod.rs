//! What the Storage Write tests share: a table of every column type in
//! local-bigquery, rows of it as the sink's items (by origin chunk and position),
//! write services on it, and the table's row counts.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use nagare_aggregator::sinks::bigquery::rows::{RowBuilder, RowOptions, UnknownFields};
use nagare_aggregator::sinks::bigquery::schema::{FieldConfig, Schema};
use nagare_aggregator::sinks::bigquery::storage_write::client::WriteClient;
use nagare_aggregator::sinks::bigquery::storage_write::descriptor::descriptor;
use nagare_aggregator::sinks::bigquery::storage_write::encode::{RowEncoder, item_bytes};
use nagare_aggregator::sinks::bigquery::storage_write::service::{
    Streams, WriteService, table_path,
};
use nagare_aggregator::sinks::bigquery::{Key, TableKey};
use nagare_core::chunk::ChunkId;
use nagare_core::sink::{BatchOutcome, Item, Outcome, Service, Ticket};
use nagare_core::value::parse_json_object;
use nagare_core::{EventTime, Map};
use nagare_testkit::LocalBigQuery;
use serde_json::{Value, json};

pub const SCHEMA: &str = r#"
- { name: time, type: TIMESTAMP, mode: REQUIRED }
- { name: seq, type: INT64, mode: REQUIRED }
- { name: log, type: STRING }
- { name: x, type: FLOAT }
- { name: ok, type: BOOL }
- { name: price, type: NUMERIC }
- { name: day, type: DATE }
- { name: at, type: DATETIME }
- { name: tags, type: STRING, mode: REPEATED }
- name: kubernetes
  type: RECORD
  fields:
    - { name: pod_name, type: STRING }
    - { name: namespace_name, type: STRING }
- { name: rest, type: JSON }
"#;

pub const ORIGIN: ChunkId = ChunkId([0x5a; 16]);
pub const OTHER: ChunkId = ChunkId([0x6b; 16]);
pub const THIRD: ChunkId = ChunkId([0x7c; 16]);

pub fn record(json: Value) -> Map {
    parse_json_object(json.to_string().as_bytes()).expect("a JSON object")
}

pub struct Table {
    pub dataset: String,
    pub key: Key,
    pub path: String,
    pub encoder: RowEncoder,
}

pub fn table(bq: &LocalBigQuery) -> Table {
    let fields: Vec<FieldConfig> = serde_norway::from_str(SCHEMA).unwrap();
    let schema = Schema::from_config(&fields).unwrap();
    let dataset = LocalBigQuery::unique("write");
    bq.create_dataset(&dataset);
    bq.create_table(&dataset, "logs", &schema.to_table_schema());
    let options = RowOptions {
        time_field: Some("time".into()),
        unknown_fields: UnknownFields::Column("rest".into()),
        insert_id_key: None,
    };
    let key = Arc::new(TableKey::new(bq.project(), &dataset, "logs", None));
    Table {
        path: table_path(&key),
        key,
        dataset,
        encoder: RowEncoder::new(RowBuilder::new(schema, options).unwrap()),
    }
}

pub fn client(bq: &LocalBigQuery) -> WriteClient {
    WriteClient::new(bq.grpc_url(), None, Duration::from_secs(20)).unwrap()
}

pub fn service(bq: &LocalBigQuery, t: &Table, streams: Streams) -> WriteService {
    let schema = Arc::new(descriptor(t.encoder.schema()).unwrap());
    WriteService::new(client(bq), schema, streams)
}

/// Items of the records, the n-th at position n of [`ORIGIN`].
pub fn items(t: &Table, records: &[Value]) -> Vec<Item<Key>> {
    items_of(t, ORIGIN, records)
}

/// Items of the records, the n-th at position n of `origin`.
pub fn items_of(t: &Table, origin: ChunkId, records: &[Value]) -> Vec<Item<Key>> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let time = EventTime::new(1_700_000_000 + i as i64, 250_000_000);
            let bytes = item_bytes(&t.encoder, (origin, i as u32), &record(r.clone()), time)
                .expect("the record is a row");
            Item {
                key: t.key.clone(),
                size: bytes.len(),
                bytes,
                time,
                ticket: Ticket {
                    slot: 0,
                    position: i as u32,
                    events: 1,
                },
            }
        })
        .collect()
}

pub async fn send(s: &mut WriteService, t: &Table, items: &[Item<Key>]) -> BatchOutcome {
    let mut items = items.to_vec();
    let mut request = s.build(&t.key, &mut items);
    s.send(&mut request).await.outcome
}

pub fn delivered(outcome: &BatchOutcome, n: usize) -> bool {
    matches!(outcome, BatchOutcome::Items(o) if o.len() == n && o.iter().all(|o| *o == Outcome::Delivered))
}

pub fn seqs(n: usize) -> Vec<Value> {
    seqs_from(0, n)
}

pub fn seqs_from(first: usize, n: usize) -> Vec<Value> {
    (first..first + n)
        .map(|i| json!({"seq": i, "log": format!("line {i}")}))
        .collect()
}

pub fn count(bq: &LocalBigQuery, dataset: &str) -> (i64, i64) {
    let rows = bq.query(&format!(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS d FROM `{dataset}.logs`"
    ));
    let num = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .or(v.as_i64())
            .unwrap()
    };
    (num(&rows[0]["n"]), num(&rows[0]["d"]))
}
