//! `LocalBigQuery`: local-bigquery (a DuckDB-backed emulator of BigQuery's REST API,
//! and of the Storage Write API over gRPC), started once per test binary.
//!
//! It starts in 1.5–3 s, so a test binary shares one server and its tests keep apart
//! by unique dataset names ([`LocalBigQuery::unique`]). Its data lives in a temporary
//! folder that the server removes when it ends.
//!
//! The helpers speak BigQuery's REST API as documented (`datasets.insert`,
//! `tables.insert`, `tabledata.insertAll`, `tabledata.list`, `jobs.query`), so what a
//! test reads back is what BigQuery itself would answer.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::child::Child;
use crate::http::{self, Response};
use crate::paths;

/// The project the server serves (`--project`).
pub const PROJECT: &str = "test-proj";

/// Starts local-bigquery's command line in-process, with a thread that ends it (and
/// removes its data folder) as soon as its parent, the test binary, is gone: the
/// server lives in a `static` that is never dropped, and must not outlive the tests.
///
/// It also makes the emulator's write streams take one call at a time, as BigQuery's
/// do. local-bigquery 0.3.2 (`local_bigquery/grpc/write.py`) answers each gRPC call on
/// a thread of a pool, with no lock around a stream: `_append` checks `finalized` and
/// the offset against `stream.count`, inserts the rows into the table, and only then
/// adds them to `stream.count`; `finalize` sets `finalized` and answers
/// `stream.count` at once. So a `FinalizeWriteStream` that comes while an append is
/// being inserted (the append of a client killed a moment before) answers a length
/// without it, and the append lands after it, on a finalized stream; and two appends
/// at one offset from two connections both land. BigQuery finalizes a stream so that
/// no append can land on it any more, and writes an offset once: a lock per stream
/// around `_append` and `finalize` gives the emulator that behaviour.
const LAUNCHER: &str = r#"
import os, shutil, sys, threading, time
parent = os.getppid()
data_dir = sys.argv[sys.argv.index("--data-dir") + 1]
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    shutil.rmtree(data_dir, ignore_errors=True)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from local_bigquery.grpc import write
locks, guard = {}, threading.Lock()
def stream_lock(name):
    with guard:
        return locks.setdefault(name, threading.Lock())
def serialized(call, name_of):
    def run(*args):
        name = name_of(*args)
        if name.endswith("/streams/_default"):
            return call(*args)
        with stream_lock(name):
            return call(*args)
    return run
write._append = serialized(write._append, lambda stream, rows, offset: stream.name)
write.finalize = serialized(write.finalize, lambda request: request.name)
from local_bigquery.cli import main
main(sys.argv[1:])
"#;

/// The shared local-bigquery server of this test binary.
#[derive(Debug)]
pub struct LocalBigQuery {
    child: Child,
    url: String,
    grpc_url: String,
}

static SHARED: OnceLock<LocalBigQuery> = OnceLock::new();
static UNIQUE: AtomicU64 = AtomicU64::new(0);

impl LocalBigQuery {
    /// The server of this test binary, started on first use.
    pub fn shared() -> &'static LocalBigQuery {
        SHARED.get_or_init(LocalBigQuery::start)
    }

    fn start() -> LocalBigQuery {
        let python = paths::bigquery_python();
        let port = crate::free_port();
        let grpc_port = crate::free_port();
        // Kept (not removed on drop): the launcher removes it when the server ends.
        let data_dir = tempfile::Builder::new()
            .prefix("nagare-bigquery-")
            .tempdir()
            .expect("create local-bigquery's data folder")
            .keep();
        let mut cmd = Command::new(python);
        cmd.args(["-c", LAUNCHER, "serve", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--grpc-port", &grpc_port.to_string()])
            .args(["--project", PROJECT])
            .arg("--data-dir")
            .arg(&data_dir);
        let mut child = Child::spawn("local-bigquery", cmd);
        let url = format!("http://127.0.0.1:{port}");
        let ready = crate::wait::wait_until(Duration::from_secs(60), || {
            child.try_wait().is_none()
                && http::send(&url, "GET", "/bigquery/v2/projects", &[], b"")
                    .is_ok_and(|r| r.status == 200)
        });
        assert!(
            ready,
            "local-bigquery did not start on {url}\n{}",
            child.logs()
        );
        LocalBigQuery {
            child,
            url,
            grpc_url: format!("http://127.0.0.1:{grpc_port}"),
        }
    }

    /// `http://127.0.0.1:PORT`: the REST endpoint (where `https://bigquery.googleapis.com`
    /// would be); the API is under `/bigquery/v2`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `http://127.0.0.1:PORT`: the Storage Write API's gRPC endpoint.
    pub fn grpc_url(&self) -> &str {
        &self.grpc_url
    }

    /// The project every helper works in.
    pub fn project(&self) -> &str {
        PROJECT
    }

    /// The server process (its logs).
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// A dataset or table name no other caller in this test binary gets:
    /// `{prefix}_{pid}_{n}` (BigQuery names allow letters, digits and `_`).
    pub fn unique(prefix: &str) -> String {
        let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_{}_{n}", std::process::id())
    }

    /// A request to `path` under `/bigquery/v2/projects/{project}` with a JSON body (or
    /// none); the raw response.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let full = format!("/bigquery/v2/projects/{PROJECT}{path}");
        http::send_json(&self.url, method, &full, body)
            .unwrap_or_else(|e| panic!("local-bigquery {method} {full}: {e}"))
    }

    /// `request`, which must answer 200; its JSON.
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let resp = self.request(method, path, body);
        assert_eq!(
            resp.status,
            200,
            "local-bigquery {method} {path}: {}",
            resp.text()
        );
        resp.json()
    }

    /// Creates the dataset `dataset` (`datasets.insert`).
    pub fn create_dataset(&self, dataset: &str) {
        let body = json!({ "datasetReference": { "projectId": PROJECT, "datasetId": dataset } });
        self.ok("POST", "/datasets", Some(&body));
    }

    /// Creates `dataset.table` (`tables.insert`) with `schema`: a `TableSchema`
    /// (`{"fields": [...]}`) or a bare list of fields as the `bq` command line's schema
    /// files hold. Returns the table resource.
    pub fn create_table(&self, dataset: &str, table: &str, schema: &Value) -> Value {
        let schema = match schema {
            Value::Array(_) => json!({ "fields": schema }),
            other => other.clone(),
        };
        let body = json!({
            "tableReference": { "projectId": PROJECT, "datasetId": dataset, "tableId": table },
            "schema": schema,
        });
        self.ok("POST", &format!("/datasets/{dataset}/tables"), Some(&body))
    }

    /// The table resource of `dataset.table` (`tables.get`), or `None` when it does not
    /// exist.
    pub fn table(&self, dataset: &str, table: &str) -> Option<Value> {
        let resp = self.request("GET", &format!("/datasets/{dataset}/tables/{table}"), None);
        match resp.status {
            404 => None,
            200 => Some(resp.json()),
            other => panic!(
                "local-bigquery tables.get {dataset}.{table}: {other} {}",
                resp.text()
            ),
        }
    }

    /// `tabledata.insertAll` of `body` as given (`{"rows": [{"insertId", "json"}], ...}`);
    /// the response (with `insertErrors`, if any). Panics unless the request itself
    /// succeeds.
    pub fn insert_all(&self, dataset: &str, table: &str, body: &Value) -> Value {
        let path = format!("/datasets/{dataset}/tables/{table}/insertAll");
        self.ok("POST", &path, Some(body))
    }

    /// `insert_all` of a body already serialized (as a sink builds it); the raw
    /// response.
    pub fn insert_all_raw(&self, dataset: &str, table: &str, body: &[u8]) -> Response {
        let path =
            format!("/bigquery/v2/projects/{PROJECT}/datasets/{dataset}/tables/{table}/insertAll");
        let headers = [("Content-Type".to_string(), "application/json".to_string())];
        http::send(&self.url, "POST", &path, &headers, body)
            .unwrap_or_else(|e| panic!("local-bigquery insertAll {dataset}.{table}: {e}"))
    }

    /// The rows `sql` (GoogleSQL) selects (`jobs.query`), each an object of column name
    /// to value as BigQuery's REST API gives them: scalars as strings (TIMESTAMP as
    /// epoch seconds with microseconds), `null`, REPEATED as arrays, RECORD as objects.
    pub fn query(&self, sql: &str) -> Vec<Value> {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`query`](Self::query), with a failed call (the server busy inserting closes
    /// the connection now and then) as an error rather than a panic, for callers
    /// that poll.
    pub fn try_query(&self, sql: &str) -> Result<Vec<Value>, String> {
        let body = json!({ "query": sql, "useLegacySql": false, "timeoutMs": 30_000 });
        let full = format!("/bigquery/v2/projects/{PROJECT}/queries");
        let resp = http::send_json(&self.url, "POST", &full, Some(&body))
            .map_err(|e| format!("local-bigquery POST {full}: {e}"))?;
        if resp.status != 200 {
            return Err(format!("query {sql}: {} {}", resp.status, resp.text()));
        }
        let resp = resp.json();
        if resp["jobComplete"] != true {
            return Err(format!("query {sql}: {resp}"));
        }
        let fields = resp["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(resp["rows"]
            .as_array()
            .map(|rows| rows.iter().map(|r| decode_row(&fields, r)).collect())
            .unwrap_or_default())
    }

    /// Every row of `dataset.table` (`tabledata.list`, all pages), decoded as in
    /// [`query`](Self::query).
    pub fn rows(&self, dataset: &str, table: &str) -> Vec<Value> {
        let resource = self
            .table(dataset, table)
            .unwrap_or_else(|| panic!("no table {dataset}.{table}"));
        let fields = resource["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/datasets/{dataset}/tables/{table}/data?maxResults=10000");
            if let Some(t) = &token {
                path.push_str("&pageToken=");
                path.push_str(t);
            }
            let page = self.ok("GET", &path, None);
            let rows = page["rows"].as_array().cloned().unwrap_or_default();
            out.extend(rows.iter().map(|r| decode_row(&fields, r)));
            match page["pageToken"].as_str() {
                Some(t) if !t.is_empty() && !rows.is_empty() => token = Some(t.to_string()),
                _ => return out,
            }
        }
    }
}

/// One row in the REST API's `{"f": [{"v": ...}]}` form as an object of column name to
/// value, by the schema's `fields`.
fn decode_row(fields: &[Value], row: &Value) -> Value {
    let cells = row["f"].as_array().cloned().unwrap_or_default();
    let mut out = Map::new();
    for (field, cell) in fields.iter().zip(&cells) {
        let name = field["name"].as_str().unwrap_or_default().to_string();
        out.insert(name, decode_cell(field, &cell["v"]));
    }
    Value::Object(out)
}

/// One cell's `v` by its field: REPEATED values are `[{"v": ...}]`, RECORDs `{"f": [...]}`.
fn decode_cell(field: &Value, v: &Value) -> Value {
    if field["mode"] == "REPEATED"
        && let Value::Array(items) = v
    {
        let mut one = field.clone();
        one["mode"] = json!("NULLABLE");
        return Value::Array(items.iter().map(|i| decode_cell(&one, &i["v"])).collect());
    }
    let is_record = matches!(field["type"].as_str(), Some("RECORD" | "STRUCT"));
    if is_record && v.is_object() {
        let sub = field["fields"].as_array().cloned().unwrap_or_default();
        return decode_row(&sub, v);
    }
    v.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_inserts_and_reads_back() {
        let bq = LocalBigQuery::shared();
        let dataset = LocalBigQuery::unique("testkit");
        bq.create_dataset(&dataset);
        let table = bq.create_table(
            &dataset,
            "t",
            &json!([
                { "name": "n", "type": "INTEGER", "mode": "REQUIRED" },
                { "name": "ts", "type": "TIMESTAMP" },
                { "name": "tags", "type": "STRING", "mode": "REPEATED" },
                { "name": "r", "type": "RECORD", "fields": [{ "name": "x", "type": "STRING" }] },
            ]),
        );
        assert_eq!(table["schema"]["fields"][0]["name"], "n");
        assert!(bq.table(&dataset, "t").is_some());
        assert!(bq.table(&dataset, "absent").is_none());

        let resp = bq.insert_all(
            &dataset,
            "t",
            &json!({ "rows": [
                { "insertId": "1", "json": {
                    "n": 1, "ts": "2024-01-02T03:04:05.123456Z",
                    "tags": ["a", "b"], "r": { "x": "q" } } },
                { "insertId": "2", "json": { "n": 2 } },
            ] }),
        );
        assert!(resp.get("insertErrors").is_none(), "{resp}");
        // The same insertId again is deduplicated.
        bq.insert_all(
            &dataset,
            "t",
            &json!({ "rows": [{ "insertId": "2", "json": { "n": 2 } }] }),
        );

        let rows = bq.rows(&dataset, "t");
        assert_eq!(rows.len(), 2, "{rows:?}");
        let rows = bq.query(&format!("SELECT * FROM `{dataset}.t` ORDER BY n"));
        assert_eq!(
            rows,
            [
                json!({ "n": "1", "ts": "1704164645.123456", "tags": ["a", "b"], "r": { "x": "q" } }),
                json!({ "n": "2", "ts": null, "tags": [], "r": null }),
            ]
        );
        assert!(bq.grpc_url().starts_with("http://127.0.0.1:"));
    }
}
