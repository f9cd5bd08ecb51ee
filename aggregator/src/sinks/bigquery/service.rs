//! Sends insertAll requests over BigQuery's REST API, and, as the kit's [`Service`],
//! builds a batch's request and says what its answer means (`retry.rs`).
//!
//! A table found missing (404) is created when allowed, with the schema rows are
//! written for, the partitioning and the clustering of the config (its dataset
//! first, when that is missing too and may be created), and the request sent again.
//! With `fetch_schema` the schema is read from the table (`tables.get`) at start, and
//! again when BigQuery answers that a row names a field the table lacks; those rows
//! are then written for the new schema and sent once more (`reencode.rs`).

use std::sync::Arc;

use nagare_core::sink::{BatchOutcome, Item, Outcome, Sent, Service};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value as Json, json};

use super::config::{BigQueryConfig, PartitionType};
use super::reencode;
use super::request_builder::{BodyOptions, InsertRequest, SharedRows, build, build_items};
use super::retry::{self, Failure};
use super::rows::{RowBuilder, RowOptions};
use super::schema::Schema;
use super::table::{Key, TableKey};
use crate::gcp::GoogleAuth;

/// What the sink may create, and how.
#[derive(Debug, Clone)]
struct Creation {
    tables: bool,
    datasets: bool,
    partition: Option<(PartitionType, Option<String>, Option<u128>)>,
    clustering: Vec<String>,
}

/// Talks to BigQuery's REST API; one per worker, sharing the client and the
/// credentials.
#[derive(Debug, Clone)]
pub struct BigQueryService {
    rest: Rest,
    creation: Arc<Creation>,
    rows: SharedRows,
    row_options: RowOptions,
    options: BodyOptions,
    fetch_schema: bool,
    hint: Arc<str>,
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// The REST client: the HTTP client, the endpoint and the credentials, shared by
/// the workers and by the sink's start (which reads the schema with `fetch_schema`).
#[derive(Debug, Clone)]
pub struct Rest {
    client: reqwest::Client,
    endpoint: Arc<str>,
    auth: Arc<GoogleAuth>,
}

impl Rest {
    /// Where the credentials come from.
    pub fn credentials(&self) -> &crate::gcp::CredentialsSource {
        self.auth.source()
    }

    /// A client for a validated config's endpoint and timeout, with `auth`.
    pub fn new(config: &BigQueryConfig, auth: Arc<GoogleAuth>) -> Result<Rest, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout.0)
            .connect_timeout(
                config
                    .request_timeout
                    .0
                    .min(std::time::Duration::from_secs(10)),
            )
            .build()?;
        Ok(Rest {
            client,
            endpoint: config.endpoint().into(),
            auth,
        })
    }

    /// The project's API root.
    pub fn project_url(&self, project: &str) -> String {
        format!("{}/bigquery/v2/projects/{}", self.endpoint, seg(project))
    }

    /// A table's API root.
    pub fn table_url(&self, key: &TableKey, table: &str) -> String {
        format!(
            "{}/datasets/{}/tables/{}",
            self.project_url(&key.project),
            seg(&key.dataset),
            seg(table)
        )
    }

    /// A request with the bearer token, if the credentials give one.
    pub async fn authorized(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, BatchOutcome> {
        let request = self.client.request(method, url);
        match self.auth.token().await {
            Ok(Some(token)) => Ok(request.bearer_auth(token.expose())),
            Ok(None) => Ok(request),
            Err(e) => Err(BatchOutcome::Blocked {
                status: None,
                reason: format!("no access token: {e}"),
            }),
        }
    }

    /// Sends `request`; the body of a 2xx answer, or what failed.
    pub async fn call(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| Failure::transport(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::transport(error_chain(&e)))?;
        if (200..300).contains(&status) {
            Ok(body.to_vec())
        } else {
            Err(Failure::from_answer(status, &body))
        }
    }

    /// The schema of `key`'s table (`tables.get`).
    pub async fn fetch_schema(&self, key: &TableKey) -> Result<Schema, String> {
        let url = self.table_url(key, &key.table);
        let call = self
            .authorized(reqwest::Method::GET, &url)
            .await
            .map_err(|o| match o {
                BatchOutcome::Blocked { reason, .. } => reason,
                other => format!("{other:?}"),
            })?;
        let body = self
            .call(call)
            .await
            .map_err(|f| format!("tables.get {key}: {}", f.describe()))?;
        let json: Json = serde_json::from_slice(&body)
            .map_err(|e| format!("tables.get {key}: the answer is not JSON ({e})"))?;
        Schema::from_table_schema(&json["schema"]).map_err(|e| format!("the schema of {key}: {e}"))
    }
}

impl BigQueryService {
    /// A service for a validated config; `rows` is shared with the encoders, `hint`
    /// says what to check when the credentials are refused.
    pub fn new(config: &BigQueryConfig, rest: Rest, rows: SharedRows, hint: String) -> Self {
        BigQueryService {
            rest,
            creation: Arc::new(Creation {
                tables: config.auto_create_table,
                datasets: config.auto_create_dataset,
                partition: config.partition_type.map(|t| {
                    (
                        t,
                        config.partition_field.clone(),
                        config.partition_expiration.map(|d| d.0.as_millis()),
                    )
                }),
                clustering: config.clustering_fields.clone(),
            }),
            rows,
            row_options: config.row_options().unwrap_or_default(),
            options: BodyOptions::of(config),
            fetch_schema: config.fetch_schema,
            hint: hint.into(),
        }
    }

    /// One insertAll request.
    async fn insert(
        &self,
        request: &InsertRequest,
    ) -> Result<Result<Vec<u8>, Failure>, BatchOutcome> {
        let url = format!(
            "{}/insertAll",
            self.rest.table_url(&request.key, &request.key.table)
        );
        let mut call = self
            .rest
            .authorized(reqwest::Method::POST, &url)
            .await?
            .header("Content-Type", "application/json")
            .body(request.body.clone());
        if request.gzip {
            call = call.header("Content-Encoding", "gzip");
        }
        Ok(self.rest.call(call).await)
    }

    /// Reads the base table's schema again and writes rows for it from now on.
    async fn refresh_schema(&self, key: &TableKey) {
        let base = TableKey::new(
            &key.project,
            &key.dataset,
            key.base.as_deref().unwrap_or(&key.table),
            None,
        );
        let fetched = self.rest.fetch_schema(&base).await;
        match fetched.and_then(|schema| {
            RowBuilder::new(schema, self.row_options.clone())
                .map_err(|e| format!("the schema of {base} no longer fits the config: {e}"))
        }) {
            Ok(rows) => {
                tracing::info!(table = %base, "read the table's schema again after BigQuery refused rows for a field it lacks");
                *self.rows.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rows);
            }
            Err(e) => {
                tracing::warn!(table = %base, error = %e, "could not read the table's schema again")
            }
        }
    }

    fn current_rows(&self) -> Arc<RowBuilder> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends the rows of `request` refused for a field the table lacks once more,
    /// written for the schema just read, and puts what became of them in `items`.
    async fn send_again(&self, request: &InsertRequest, old: &RowBuilder, items: &mut [Outcome]) {
        let new = self.current_rows();
        if new.schema() == old.schema() {
            return;
        }
        let destination = request.key.to_string();
        let sent_rows = match reencode::rows_of(request) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(table = %destination, error = %e, "cannot write refused rows again");
                return;
            }
        };
        let time_field = self.row_options.time_field.as_deref();
        let (mut which, mut rows) = (Vec::new(), Vec::new());
        for (i, outcome) in items.iter_mut().enumerate() {
            if !retry::is_schema_mismatch(outcome) {
                continue;
            }
            let rewritten = sent_rows
                .get(i)
                .ok_or_else(|| "the row is missing from the request sent".to_string())
                .and_then(|row| reencode::rewrite(row, old, &new, time_field));
            match rewritten {
                Ok(row) => {
                    which.push(i);
                    rows.push(row);
                }
                Err(e) => {
                    if let Outcome::Rejected { reason, .. } = outcome {
                        reason.push_str(&format!(
                            "; written again for the table's schema read again, it fails: {e}"
                        ));
                    }
                }
            }
        }
        if rows.is_empty() {
            return;
        }
        let again = build(&request.key, rows.iter().map(Vec::as_slice), self.options);
        let outcome = match self.insert(&again).await {
            Ok(Ok(body)) => retry::outcomes(&body, again.rows, &destination),
            Ok(Err(f)) => retry::classify(&f, &destination, &self.hint),
            Err(outcome) => outcome,
        };
        let per_row = match outcome {
            BatchOutcome::Items(outcomes) => outcomes,
            BatchOutcome::All(o) => vec![o; which.len()],
            BatchOutcome::Split { status, reason } | BatchOutcome::Blocked { status, reason } => {
                vec![Outcome::Retry { status, reason }; which.len()]
            }
        };
        tracing::info!(table = %destination, rows = which.len(), "sent rows refused for a field the table lacks again, written for its schema read again");
        for (i, o) in which.into_iter().zip(per_row) {
            items[i] = o;
        }
    }

    /// Creates the table of `key` (and its dataset when missing and allowed).
    pub async fn create_table(&self, key: &Key) -> Result<(), BatchOutcome> {
        let destination = key.to_string();
        if !self.creation.tables {
            return Err(retry::missing(&destination, "table"));
        }
        match self.try_create_table(key).await {
            Ok(()) => return Ok(()),
            Err(f) if f.is_not_found() => {}
            Err(f) => return Err(self.creation_failed(&destination, &f)),
        }
        if !self.creation.datasets {
            return Err(retry::missing(&destination, "dataset"));
        }
        let url = format!("{}/datasets", self.rest.project_url(&key.project));
        let body =
            json!({ "datasetReference": { "projectId": key.project, "datasetId": key.dataset } });
        let call = self
            .rest
            .authorized(reqwest::Method::POST, &url)
            .await?
            .json(&body);
        match self.rest.call(call).await {
            Ok(_) => {
                tracing::info!(project = %key.project, dataset = %key.dataset, "created the dataset")
            }
            Err(f) if f.is_already_there() => {}
            Err(f) => return Err(self.creation_failed(&destination, &f)),
        }
        self.try_create_table(key)
            .await
            .map_err(|f| self.creation_failed(&destination, &f))
    }

    fn creation_failed(&self, table: &str, f: &Failure) -> BatchOutcome {
        match retry::classify(f, table, &self.hint) {
            BatchOutcome::Split { status, reason } => BatchOutcome::All(Outcome::Retry {
                status,
                reason: format!("creating {table}: {reason}"),
            }),
            other => other,
        }
    }

    async fn try_create_table(&self, key: &Key) -> Result<(), Failure> {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner()).clone();
        let body = table_resource(key, rows.schema(), &self.creation);
        let url = format!(
            "{}/datasets/{}/tables",
            self.rest.project_url(&key.project),
            seg(&key.dataset)
        );
        let call = match self.rest.authorized(reqwest::Method::POST, &url).await {
            Ok(call) => call.json(&body),
            Err(_) => return Err(Failure::transport("no access token".into())),
        };
        match self.rest.call(call).await {
            Ok(_) => {
                tracing::info!(table = %key, "created the table");
                Ok(())
            }
            Err(f) if f.is_already_there() => Ok(()),
            Err(f) => Err(f),
        }
    }
}

/// The `tables.insert` body of `key` with `schema` and the config's partitioning and
/// clustering.
fn table_resource(key: &TableKey, schema: &Schema, creation: &Creation) -> Json {
    let mut body = json!({
        "tableReference": { "projectId": key.project, "datasetId": key.dataset, "tableId": key.table },
        "schema": schema.to_table_schema(),
    });
    if let Some((kind, field, expiration)) = &creation.partition {
        let mut p = json!({ "type": kind.as_str() });
        if let Some(field) = field {
            p["field"] = json!(field);
        }
        if let Some(ms) = expiration {
            // int64 values travel as strings in BigQuery's REST API.
            p["expirationMs"] = json!(ms.to_string());
        }
        body["timePartitioning"] = p;
    }
    if !creation.clustering.is_empty() {
        body["clustering"] = json!({ "fields": creation.clustering });
    }
    body
}

/// An error and its causes, in words (reqwest's own display hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Service<Key> for BigQueryService {
    type Request = InsertRequest;

    fn build(&mut self, key: &Key, items: &mut [Item<Key>]) -> InsertRequest {
        build_items(key, items, self.options)
    }

    async fn send(&mut self, request: &mut InsertRequest) -> Sent {
        let destination = request.key.to_string();
        let sent = |outcome| Sent {
            destination: destination.clone(),
            outcome,
        };
        let mut answer = match self.insert(request).await {
            Ok(answer) => answer,
            Err(outcome) => return sent(outcome),
        };
        if let Err(f) = &answer
            && f.is_not_found()
        {
            if let Err(outcome) = self.create_table(&request.key).await {
                return sent(outcome);
            }
            answer = match self.insert(request).await {
                Ok(answer) => answer,
                Err(outcome) => return sent(outcome),
            };
        }
        let mut outcome = match answer {
            Ok(body) => retry::outcomes(&body, request.rows, &destination),
            Err(f) => retry::classify(&f, &destination, &self.hint),
        };
        if self.fetch_schema
            && let BatchOutcome::Items(items) = &mut outcome
            && items.iter().any(retry::is_schema_mismatch)
        {
            let old = self.current_rows();
            self.refresh_schema(&request.key).await;
            self.send_again(request, &old, items).await;
        }
        sent(outcome)
    }
}
