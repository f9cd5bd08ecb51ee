//! `record_modifier`: add or overwrite fields with fixed values and remove fields.
//!
//! ```yaml
//! filters:
//!   add_cluster:
//!     type: record_modifier
//!     match: "kube.**"
//!     records:
//!       cluster: ${CLUSTER_NAME}
//!       kubernetes.node: ${NODE_NAME}
//!     remove_keys: [logtag]
//! ```
//!
//! Keys with dots address nested maps (`kubernetes.node`), which are created when
//! missing. Values are YAML values (strings, numbers, booleans, lists, maps);
//! `${ENV}` references are resolved when the config is loaded.

use indexmap::IndexMap;
use serde::Deserialize;

use crate::component::{FilterComponent, Invalid};
use crate::event::Event;
use crate::router::{Filter, Verdict};
use crate::value::{Map, Value};

/// Config of a `record_modifier` filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordModifierConfig {
    /// Fields to set, by (dotted) key; an existing value is replaced.
    #[serde(default)]
    pub records: IndexMap<String, Value>,
    /// Fields to remove, by (dotted) key.
    #[serde(default)]
    pub remove_keys: Vec<String>,
}

impl RecordModifierConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.records.is_empty() && self.remove_keys.is_empty() {
            return Err(Invalid::new(
                "records",
                "a record_modifier needs `records` to set or `remove_keys` to remove",
            ));
        }
        for key in self.records.keys().chain(&self.remove_keys) {
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(Invalid::new(
                    key.clone(),
                    format!("`{key}` is not a valid field key"),
                ));
            }
        }
        Ok(())
    }
}

/// The running filter.
#[derive(Debug, Clone)]
pub struct RecordModifier {
    set: Vec<(Vec<String>, Value)>,
    remove: Vec<Vec<String>>,
}

impl RecordModifier {
    /// Builds the filter from its config.
    pub fn new(config: &RecordModifierConfig) -> Self {
        let split = |k: &str| k.split('.').map(str::to_string).collect::<Vec<_>>();
        Self {
            set: config
                .records
                .iter()
                .map(|(k, v)| (split(k), v.clone()))
                .collect(),
            remove: config.remove_keys.iter().map(|k| split(k)).collect(),
        }
    }
}

fn set_path(map: &mut Map, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert(last.as_str(), value);
        }
        [first, rest @ ..] => set_path(map.map_mut(first), rest, value),
    }
}

fn remove_path(map: &mut Map, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            map.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Map(inner)) = map.get_mut(first) {
                remove_path(inner, rest);
            }
        }
    }
}

impl FilterComponent for RecordModifier {
    const TYPE: &'static str = "record_modifier";
    type Config = RecordModifierConfig;

    fn validate(config: &RecordModifierConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn build(config: &RecordModifierConfig) -> Result<Self, Invalid> {
        Ok(Self::new(config))
    }
}

impl Filter for RecordModifier {
    fn filter(&self, event: &mut Event) -> Verdict {
        for path in &self.remove {
            remove_path(&mut event.record, path);
        }
        for (path, value) in &self.set {
            set_path(&mut event.record, path, value.clone());
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::EventTime;

    #[test]
    fn sets_nested_and_removes() {
        let config: RecordModifierConfig = serde_norway::from_str(
            "records:\n  cluster: prod\n  kubernetes.node: n1\n  n: 3\nremove_keys: [logtag, kubernetes.container_id]\n",
        )
        .unwrap();
        config.validate().unwrap();
        let f = RecordModifier::new(&config);
        let mut record = Map::new();
        record.insert("logtag", "F");
        record.map_mut("kubernetes").insert("container_id", "abc");
        record.map_mut("kubernetes").insert("pod_name", "web");
        let mut e = Event::new("t".into(), EventTime::new(0, 0), record);
        assert_eq!(f.filter(&mut e), Verdict::Keep);
        assert_eq!(
            serde_json::to_string(&e.record).unwrap(),
            r#"{"kubernetes":{"pod_name":"web","node":"n1"},"cluster":"prod","n":3}"#
        );
    }

    #[test]
    fn empty_config_is_refused() {
        let err = RecordModifierConfig::default().validate().unwrap_err();
        assert!(err.message.contains("needs `records`"), "{err}");
        let c: RecordModifierConfig = serde_norway::from_str("remove_keys: ['a..b']").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .message
                .contains("not a valid field key")
        );
    }
}
