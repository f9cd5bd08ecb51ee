//! Which API the cluster speaks: `api_version` as configured, or (`auto`) as read
//! from the cluster's `GET /` once at start.
//!
//! What depends on it: Elasticsearch 6 wants `_type: _doc` in each bulk action
//! (unless `suppress_type_name`) and a legacy template with a type in its mappings;
//! Elasticsearch before 7.8 has only legacy templates (`_template`); OpenSearch has
//! ISM instead of ILM. Where `GET /` is refused (401, 403, 404: restricted users,
//! Serverless), the sink goes on as with Elasticsearch 8.

use serde::Deserialize;
use serde_json::Value;

/// The `api_version` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiVersion {
    /// Ask the cluster (`GET /`) at start; Elasticsearch 8 where it will not say.
    #[default]
    Auto,
    /// Elasticsearch 6.x: `_type: _doc` in actions, legacy templates.
    V6,
    /// Elasticsearch 7.x (composable templates, so 7.8 or later; `auto` finds older).
    V7,
    /// Elasticsearch 8.x and later, Elastic Cloud, Serverless.
    V8,
    /// OpenSearch (any version) and Amazon OpenSearch Service.
    Opensearch,
}

/// The cluster as the sink treats it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// Elasticsearch `major.minor`.
    Elasticsearch {
        /// Major version.
        major: u32,
        /// Minor version.
        minor: u32,
    },
    /// OpenSearch `major`.
    OpenSearch {
        /// Major version.
        major: u32,
    },
}

impl Cluster {
    /// What a configured `api_version` means; `None` for `auto`.
    pub fn configured(version: ApiVersion) -> Option<Cluster> {
        match version {
            ApiVersion::Auto => None,
            ApiVersion::V6 => Some(Cluster::elasticsearch(6, 8)),
            ApiVersion::V7 => Some(Cluster::elasticsearch(7, 17)),
            ApiVersion::V8 => Some(Cluster::elasticsearch(8, 0)),
            ApiVersion::Opensearch => Some(Cluster::OpenSearch { major: 2 }),
        }
    }

    /// Elasticsearch `major.minor`.
    pub fn elasticsearch(major: u32, minor: u32) -> Cluster {
        Cluster::Elasticsearch { major, minor }
    }

    /// What is assumed where `GET /` does not answer (Serverless, restricted users).
    pub fn fallback() -> Cluster {
        Cluster::elasticsearch(8, 0)
    }

    /// Reads a `GET /` answer: `version.distribution` (`opensearch`, absent for
    /// Elasticsearch) and `version.number`.
    pub fn from_root(body: &[u8]) -> Result<Cluster, String> {
        let root: Value = serde_json::from_slice(body)
            .map_err(|e| format!("the answer to GET / is not JSON: {e}"))?;
        let version = root
            .get("version")
            .ok_or("the answer to GET / has no `version`")?;
        let number = version
            .get("number")
            .and_then(Value::as_str)
            .ok_or("the answer to GET / has no `version.number`")?;
        let mut parts = number.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        let (Some(Some(major)), minor) = (parts.next(), parts.next()) else {
            return Err(format!("`version.number` `{number}` is not a version"));
        };
        let minor = minor.flatten().unwrap_or(0);
        match version.get("distribution").and_then(Value::as_str) {
            Some("opensearch") => Ok(Cluster::OpenSearch { major }),
            Some(other) if other != "elasticsearch" => Err(format!(
                "`version.distribution` is `{other}`, neither Elasticsearch nor OpenSearch"
            )),
            _ => Ok(Cluster::elasticsearch(major, minor)),
        }
    }

    /// Bulk actions carry `_type: _doc` (Elasticsearch 6 and older).
    pub fn wants_type_name(&self) -> bool {
        matches!(self, Cluster::Elasticsearch { major, .. } if *major < 7)
    }

    /// Only legacy templates (`_template`): Elasticsearch before 7.8.
    pub fn legacy_templates_only(&self) -> bool {
        matches!(self, Cluster::Elasticsearch { major, minor } if *major < 7 || (*major == 7 && *minor < 8))
    }

    /// OpenSearch (ISM rather than ILM).
    pub fn is_opensearch(&self) -> bool {
        matches!(self, Cluster::OpenSearch { .. })
    }
}

impl std::fmt::Display for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cluster::Elasticsearch { major, minor } => write!(f, "Elasticsearch {major}.{minor}"),
            Cluster::OpenSearch { major } => write!(f, "OpenSearch {major}"),
        }
    }
}

/// Statuses of `GET /` that mean "not allowed to ask", not "down": the sink goes on
/// as with Elasticsearch 8.
pub fn refused(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 405 | 410)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Cluster {
        let path = format!(
            "{}/tests/fixtures/es_root/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Cluster::from_root(&body).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn recorded_root_answers_give_the_distribution_and_version() {
        let cases = [
            ("elasticsearch-6.8.23", Cluster::elasticsearch(6, 8)),
            ("elasticsearch-oss-6.8.6", Cluster::elasticsearch(6, 8)),
            ("elasticsearch-7.2.0", Cluster::elasticsearch(7, 2)),
            ("elasticsearch-7.17.1", Cluster::elasticsearch(7, 17)),
            ("elasticsearch-8.10.2", Cluster::elasticsearch(8, 10)),
            ("elasticsearch-9.1.5", Cluster::elasticsearch(9, 1)),
            ("opensearch-2.9.0", Cluster::OpenSearch { major: 2 }),
            ("opensearch-3.5.0", Cluster::OpenSearch { major: 3 }),
            ("osmem", Cluster::OpenSearch { major: 3 }),
        ];
        for (name, want) in cases {
            assert_eq!(fixture(name), want, "{name}");
        }
        let es6 = fixture("elasticsearch-6.8.23");
        assert!(es6.wants_type_name() && es6.legacy_templates_only());
        let es72 = fixture("elasticsearch-7.2.0");
        assert!(!es72.wants_type_name() && es72.legacy_templates_only());
        for modern in [
            "elasticsearch-7.17.1",
            "elasticsearch-8.10.2",
            "elasticsearch-9.1.5",
        ] {
            let c = fixture(modern);
            assert!(!c.wants_type_name() && !c.legacy_templates_only() && !c.is_opensearch());
        }
        for os in ["opensearch-2.9.0", "opensearch-3.5.0", "osmem"] {
            let c = fixture(os);
            assert!(!c.wants_type_name() && !c.legacy_templates_only() && c.is_opensearch());
        }
    }

    #[test]
    fn answers_that_are_not_a_root_answer_say_why() {
        for (body, why) in [
            (&b"<html>"[..], "not JSON"),
            (b"{}", "no `version`"),
            (b"{\"version\":{}}", "no `version.number`"),
            (b"{\"version\":{\"number\":\"x.y\"}}", "is not a version"),
            (
                b"{\"version\":{\"number\":\"1.0\",\"distribution\":\"solr\"}}",
                "neither Elasticsearch nor OpenSearch",
            ),
        ] {
            let e = Cluster::from_root(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert!(refused(401) && refused(403) && refused(404));
        assert!(!refused(500) && !refused(503) && !refused(429));
    }
}
