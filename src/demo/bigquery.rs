//! `nagare demo --bigquery <endpoint>`: the aggregator also inserts the records into
//! BigQuery (or an emulator of it) at that endpoint, creating a dataset and a
//! partitioned, clustered table, and the demo counts what arrived with a query.
//!
//! The dataset of one run is `nagare_demo_<run>`, `<run>` new each time, so that what
//! an earlier run left behind is not counted.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use nagare_aggregator::gcp::{BIGQUERY_SCOPE, CredentialsSource, GoogleAuth};
use serde_json::{Value, json};

/// The BigQuery endpoint the demo delivers to, and a client to query it.
pub(super) struct BigQuery {
    endpoint: String,
    project: String,
    dataset: String,
    auth: GoogleAuth,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// What arrived: rows per namespace.
pub(super) struct Arrived {
    pub(super) total: usize,
    pub(super) by_namespace: BTreeMap<String, usize>,
}

impl BigQuery {
    /// A client for `endpoint` in `project`, with the credentials the aggregator will
    /// use too: none for an `http://` endpoint (an emulator), else Application Default
    /// Credentials.
    pub(super) fn new(endpoint: &str, project: &str) -> anyhow::Result<BigQuery> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let source = if endpoint.starts_with("http://") {
            CredentialsSource::None
        } else {
            CredentialsSource::application_default(None)
        };
        let auth = runtime.block_on(GoogleAuth::new(source, &[BIGQUERY_SCOPE]))?;
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        Ok(BigQuery {
            endpoint,
            project: project.to_string(),
            dataset: format!("nagare_demo_{run}_{:04x}", rand::random::<u16>()),
            auth,
            client: reqwest::Client::new(),
            runtime,
        })
    }

    /// The table the demo fills.
    fn table(&self) -> String {
        format!("{}.{}.logs", self.project, self.dataset)
    }

    /// Where the demo delivers, for its summary.
    pub(super) fn describe(&self) -> String {
        format!("bigquery {} (table {})", self.endpoint, self.table())
    }

    /// The aggregator's sink, as config text (indented as an entry of `sinks:`).
    pub(super) fn sink(&self) -> String {
        format!(
            "  bigquery:
    type: bigquery
    match: \"kube.**\"
    project: {project}
    dataset: {dataset}
    table: logs
    endpoint: \"{endpoint}\"
    auto_create_dataset: true
    auto_create_table: true
    schema:
      - {{ name: time, type: TIMESTAMP, mode: REQUIRED }}
      - {{ name: log, type: STRING }}
      - {{ name: stream, type: STRING }}
      - name: kubernetes
        type: RECORD
        fields:
          - {{ name: namespace_name, type: STRING }}
          - {{ name: pod_name, type: STRING }}
          - {{ name: container_name, type: STRING }}
          - {{ name: host, type: STRING }}
      - {{ name: rest, type: JSON }}
    time_field: time
    unknown_fields: column
    unknown_fields_column: rest
    partition_field: time
    partition_type: DAY
    clustering_fields: [stream]
    compression: gzip
",
            project = self.project,
            dataset = self.dataset,
            endpoint = self.endpoint,
        )
    }

    /// The query that counts what arrived, for the user to run again.
    pub(super) fn query_text(&self) -> String {
        format!(
            "SELECT kubernetes.namespace_name AS namespace, COUNT(*) AS n FROM `{}` GROUP BY namespace ORDER BY namespace",
            self.table()
        )
    }

    /// Counts the rows until all `expected` are in, or `deadline`; `alive` checks that
    /// the aggregator still runs.
    pub(super) fn wait(
        &self,
        expected: usize,
        deadline: std::time::Instant,
        mut alive: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<Arrived> {
        loop {
            let now = self.arrived()?;
            if now.total >= expected || std::time::Instant::now() > deadline {
                return Ok(now);
            }
            alive()?;
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    /// Prints what arrived; whether it is all `expected`.
    pub(super) fn report(&self, arrived: &Arrived, expected: usize) -> bool {
        println!("\nin BigQuery: {} of {expected} rows", arrived.total);
        for (ns, n) in &arrived.by_namespace {
            println!("  {ns:<48} {n:>7}");
        }
        println!("count them again with:\n  {}", self.query_text());
        arrived.total == expected
    }

    /// Counts the rows of this run's table (none while it does not exist).
    pub(super) fn arrived(&self) -> anyhow::Result<Arrived> {
        self.runtime.block_on(self.read())
    }

    async fn read(&self) -> anyhow::Result<Arrived> {
        let mut arrived = Arrived {
            total: 0,
            by_namespace: BTreeMap::new(),
        };
        let url = format!(
            "{}/bigquery/v2/projects/{}/queries",
            self.endpoint, self.project
        );
        let mut request = self.client.post(&url).json(&json!({
            "query": self.query_text(), "useLegacySql": false, "timeoutMs": 30_000,
        }));
        if let Some(token) = self.auth.token().await? {
            request = request.bearer_auth(token.expose());
        }
        let context = || format!("cannot query BigQuery at {}", self.endpoint);
        let response = request.send().await.with_context(context)?;
        let status = response.status();
        let body: Value = response.json().await.with_context(context)?;
        // The table appears with the first rows.
        let not_found = body["error"]["errors"][0]["reason"] == "notFound";
        if status.as_u16() == 404 || not_found {
            return Ok(arrived);
        }
        if !status.is_success() {
            bail!("BigQuery at {} answered {status}: {body}", self.endpoint);
        }
        for row in body["rows"].as_array().into_iter().flatten() {
            let ns = row["f"][0]["v"].as_str().unwrap_or("(none)").to_string();
            let n: usize = row["f"][1]["v"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            arrived.total += n;
            arrived.by_namespace.insert(ns, n);
        }
        Ok(arrived)
    }
}
