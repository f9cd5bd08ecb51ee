//! `Osmem`: an osmem-server per test, an in-memory server of the OpenSearch REST API
//! (`_bulk`, mappings, `_search`, `_count`; documents are searchable at once, with no
//! refresh delay). Its memory grows fast: keep a test's corpus to a few thousand
//! documents.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::child::Child;
use crate::http::{self, Response};
use crate::paths;

/// A running osmem-server on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct Osmem {
    child: Child,
    url: String,
    port: u16,
}

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The index it is in.
    pub index: String,
    /// Its `_id`.
    pub id: String,
    /// Its `_source`.
    pub source: Value,
}

impl Osmem {
    /// Starts a server on a port the OS picks.
    pub fn start() -> Osmem {
        Self::start_at("127.0.0.1:0")
    }

    /// Starts a server on `port` (for a test whose client was started first).
    pub fn start_on(port: u16) -> Osmem {
        Self::start_at(&format!("127.0.0.1:{port}"))
    }

    fn start_at(addr: &str) -> Osmem {
        let mut cmd = Command::new(paths::osmem_server());
        cmd.args(["-addr", addr, "-no-stdin-watch", "-no-ja"])
            // Exits by itself should the test process die without dropping us.
            .args(["-parent-pid", &std::process::id().to_string()]);
        let mut child = Child::spawn("osmem-server", cmd);
        // It announces itself with one JSON line: {"url": "http://127.0.0.1:PORT", ...}.
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let announced = child.stdout().lines().find_map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v.get("url")?.as_str().map(str::to_string))
            });
            if let Some(url) = announced {
                break url;
            }
            if let Some(status) = child.try_wait() {
                panic!(
                    "osmem-server on {addr} exited at start with {status}\n{}",
                    child.logs()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "osmem-server on {addr} did not start within 30 s\n{}",
                    child.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("osmem-server announced an unexpected url `{url}`"));
        let osmem = Osmem { child, url, port };
        let ready = crate::wait::wait_until(Duration::from_secs(30), || {
            osmem
                .request("GET", "/", None)
                .is_ok_and(|r| r.status == 200)
        });
        assert!(
            ready,
            "osmem-server does not answer GET /\n{}",
            osmem.child.logs()
        );
        osmem
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process (its logs, its PID).
    pub fn child(&self) -> &Child {
        &self.child
    }

    /// Any request, with an optional JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ureq::Error> {
        http::send_json(&self.url, method, path, body)
    }

    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let resp = self
            .request(method, path, body)
            .unwrap_or_else(|e| panic!("osmem {method} {path}: {e}"));
        assert!(
            (200..300).contains(&resp.status),
            "osmem {method} {path}: {} {}",
            resp.status,
            resp.text()
        );
        resp.json()
    }

    /// Documents in `index` (a name or pattern); 0 when it does not exist. A call
    /// that fails (the server, busy indexing on a loaded machine, drops a connection
    /// now and then) is made again, up to five times.
    pub fn count(&self, index: &str) -> u64 {
        let path = format!("/{index}/_count");
        let mut attempt = 0;
        let resp = loop {
            match self.request("GET", &path, None) {
                Ok(resp) => break resp,
                Err(e) if attempt == 4 => panic!("osmem count {index}: {e}"),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        };
        if resp.status == 404 {
            return 0;
        }
        assert_eq!(resp.status, 200, "osmem count {index}: {}", resp.text());
        resp.json()["count"].as_u64().unwrap_or(0)
    }

    /// Documents of `index` matching `query` (the body's `query` clause), at most
    /// 10,000.
    pub fn search(&self, index: &str, query: Value) -> Vec<Document> {
        let body = json!({ "query": query, "size": 10_000 });
        let resp = self
            .request("POST", &format!("/{index}/_search"), Some(&body))
            .unwrap_or_else(|e| panic!("osmem search {index}: {e}"));
        if resp.status == 404 {
            return Vec::new();
        }
        assert_eq!(resp.status, 200, "osmem search {index}: {}", resp.text());
        let v = resp.json();
        v["hits"]["hits"]
            .as_array()
            .map(|hits| {
                hits.iter()
                    .map(|h| Document {
                        index: h["_index"].as_str().unwrap_or_default().to_string(),
                        id: h["_id"].as_str().unwrap_or_default().to_string(),
                        source: h["_source"].clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every document of `index` (at most 10,000), sorted by `_id`.
    pub fn documents(&self, index: &str) -> Vec<Document> {
        let mut docs = self.search(index, json!({ "match_all": {} }));
        docs.sort_by(|a, b| a.id.cmp(&b.id));
        docs
    }

    /// Creates `index` with `mappings` (the body of the `mappings` key).
    pub fn put_mapping(&self, index: &str, mappings: Value) {
        self.ok(
            "PUT",
            &format!("/{index}"),
            Some(&json!({ "mappings": mappings })),
        );
    }

    /// Names of the existing indices, sorted.
    pub fn indices(&self) -> Vec<String> {
        let v = self.ok("GET", "/_cat/indices?format=json", None);
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["index"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_indexes_and_answers_queries() {
        let os = Osmem::start();
        os.put_mapping(
            "typed",
            json!({ "properties": { "n": { "type": "long" } } }),
        );
        let bulk = "{\"index\":{\"_index\":\"typed\",\"_id\":\"a\"}}\n{\"n\":1}\n{\"index\":{\"_index\":\"typed\",\"_id\":\"b\"}}\n{\"n\":\"x\"}\n";
        let headers = [(
            "Content-Type".to_string(),
            "application/x-ndjson".to_string(),
        )];
        let resp = http::send(os.url(), "POST", "/_bulk", &headers, bulk.as_bytes()).unwrap();
        let v = resp.json();
        assert_eq!(v["errors"], json!(true));
        assert_eq!(v["items"][1]["index"]["status"], json!(400));
        assert_eq!(os.count("typed"), 1);
        assert_eq!(os.count("missing"), 0);
        let docs = os.documents("typed");
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (docs[0].id.as_str(), &docs[0].source),
            ("a", &json!({ "n": 1 }))
        );
        assert_eq!(os.indices(), ["typed"]);
        assert!(os.search("typed", json!({ "term": { "n": 2 } })).is_empty());
    }

    #[test]
    fn starts_on_a_chosen_port() {
        let port = crate::free_port();
        let os = Osmem::start_on(port);
        assert_eq!(os.port(), port);
        assert_eq!(os.url(), format!("http://127.0.0.1:{port}"));
    }
}
