//! Which table each event goes to: `project`, `dataset`, `table` and
//! `template_suffix` as templates over the tag and record fields
//! ([`nagare_core::template`]) and the event time (strftime, UTC: `events_%Y%m%d`,
//! as Fluentd's BigQuery plugin writes it), rendered per event and checked against
//! BigQuery's naming rules.
//!
//! The time is applied to a template's text first, then the fields: a `%` in a
//! record's value is never read as a conversion. A template with conversions is
//! parsed again only when the event time enters another period of its format (a
//! day for `%Y%m%d`), so most events reuse the one parsed before.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use nagare_core::component::Invalid;
use nagare_core::template::Template;
use nagare_core::{EventTime, Map};

use super::config::BigQueryConfig;
use crate::sinks::elasticsearch::format_period;

/// Longest dataset and table names BigQuery takes (characters; bytes for tables).
const MAX_NAME: usize = 1024;
/// Longest project id, a domain-scoped one (`example.com:logs`) included.
const MAX_PROJECT: usize = 128;
/// How many recent tables a builder keeps.
const RECENT: usize = 16;

/// One table: what items are batched by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    /// The project.
    pub project: String,
    /// The dataset.
    pub dataset: String,
    /// The table (with its suffix).
    pub table: String,
    /// With `template_suffix`: the base table, whose schema a missing table gets.
    pub base: Option<String>,
    hash: u64,
}

impl TableKey {
    /// The key of `project.dataset.table` (`base`: the table without its suffix).
    pub fn new(project: &str, dataset: &str, table: &str, base: Option<&str>) -> TableKey {
        let hash =
            BuildHasherDefault::<DefaultHasher>::default().hash_one((project, dataset, table));
        TableKey {
            project: project.to_string(),
            dataset: dataset.to_string(),
            table: table.to_string(),
            base: base.map(str::to_string),
            hash,
        }
    }
}

impl Hash for TableKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal keys have equal names, hence equal hashes.
        state.write_u64(self.hash);
    }
}

impl std::fmt::Display for TableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// The kit's key: shared, since every item of a table holds it.
pub type Key = Arc<TableKey>;

/// A template over the tag, record fields and, with `%` conversions, the event time.
#[derive(Debug, Clone)]
pub struct TimedTemplate {
    source: String,
    /// Seconds over which the time conversions print the same text; 0: none.
    period: i64,
    /// The template for the period `cached.0` (or for every time, without
    /// conversions).
    cached: (i64, Template),
}

impl TimedTemplate {
    /// Parses `source`; errors name `key`.
    pub fn parse(key: &str, source: &str) -> Result<TimedTemplate, Invalid> {
        let invalid = |m: String| Invalid::new(key, m);
        if !source.contains('%') {
            let t = Template::parse(source).map_err(|e| invalid(e.to_string()))?;
            return Ok(TimedTemplate {
                source: source.to_string(),
                period: 0,
                cached: (0, t),
            });
        }
        let sample = EventTime::new(1_700_000_000, 0);
        let text = strftime(source, sample)
            .map_err(|e| invalid(format!("`{source}` is not a strftime format: {e}")))?;
        let t = Template::parse(&text).map_err(|e| invalid(e.to_string()))?;
        let period = format_period(source).max(1);
        Ok(TimedTemplate {
            source: source.to_string(),
            period,
            cached: (sample.secs().div_euclid(period), t),
        })
    }

    /// Whether every event gets the same text.
    pub fn is_constant(&self) -> bool {
        self.period == 0 && self.cached.1.is_constant()
    }

    /// The template for events at `time`.
    fn at(&mut self, time: EventTime) -> &Template {
        if self.period > 0 {
            let bucket = time.secs().div_euclid(self.period);
            if bucket != self.cached.0 {
                // Checked at parse: formats, and its output parses, for any time.
                let text = strftime(&self.source, time).unwrap_or_default();
                if let Ok(t) = Template::parse(&text) {
                    self.cached = (bucket, t);
                }
            }
        }
        &self.cached.1
    }

    /// Appends the text for an event to `out`; the reason when it has none.
    pub fn render_into(
        &mut self,
        (tag, record, time): (&str, &Map, EventTime),
        out: &mut String,
    ) -> Result<(), String> {
        let source = self.source.clone();
        self.at(time)
            .render_into(tag, record, out)
            .map_err(|m| format!("`{source}`: {m}"))
    }
}

/// `format` with the event time's conversions applied (UTC).
fn strftime(format: &str, time: EventTime) -> Result<String, String> {
    let ts =
        jiff::Timestamp::new(time.secs(), time.subsec_nanos() as i32).map_err(|e| e.to_string())?;
    jiff::fmt::strtime::format(format, ts).map_err(|e| e.to_string())
}

/// The config's table templates, per worker (a template is not `Sync`).
#[derive(Debug, Clone)]
pub struct TableTemplates {
    project: TimedTemplate,
    dataset: TimedTemplate,
    table: TimedTemplate,
    suffix: Option<TimedTemplate>,
    recent: Vec<Key>,
    names: [String; 4],
}

impl TableTemplates {
    /// The templates of a config; fixed names are checked here.
    pub fn new(config: &BigQueryConfig) -> Result<TableTemplates, Invalid> {
        let project = TimedTemplate::parse("project", &config.project)?;
        let dataset = TimedTemplate::parse("dataset", &config.dataset)?;
        let table = TimedTemplate::parse("table", &config.table)?;
        let suffix = config
            .template_suffix
            .as_deref()
            .map(|s| TimedTemplate::parse("template_suffix", s))
            .transpose()?;
        for (key, t, check) in [
            ("project", &project, project_problem as NameCheck),
            ("dataset", &dataset, dataset_problem),
            ("table", &table, table_problem),
        ] {
            if t.is_constant()
                && let Some(problem) = check(t.cached.1.as_str())
            {
                return Err(Invalid::new(key, problem));
            }
        }
        if suffix.as_ref().is_some_and(|s| s.source.is_empty()) {
            return Err(Invalid::new(
                "template_suffix",
                "must not be empty; remove it for one table",
            ));
        }
        Ok(TableTemplates {
            project,
            dataset,
            table,
            suffix,
            recent: Vec::with_capacity(RECENT),
            names: Default::default(),
        })
    }

    /// Whether `project`, `dataset` and `table` are fixed names (a suffix may vary).
    pub fn fixed_table(&self) -> bool {
        self.project.is_constant() && self.dataset.is_constant() && self.table.is_constant()
    }

    /// The base table of a config whose names are fixed: what `fetch_schema` reads.
    pub fn base(&self) -> Option<TableKey> {
        self.fixed_table().then(|| {
            TableKey::new(
                self.project.cached.1.as_str(),
                self.dataset.cached.1.as_str(),
                self.table.cached.1.as_str(),
                None,
            )
        })
    }

    /// The table of an event, or why it has none.
    pub fn key_for(&mut self, tag: &str, record: &Map, time: EventTime) -> Result<Key, String> {
        let event = (tag, record, time);
        let [project, dataset, table, base] = &mut self.names;
        for s in [&mut *project, &mut *dataset, &mut *table, &mut *base] {
            s.clear();
        }
        self.project
            .render_into(event, project)
            .map_err(|m| format!("project {m}"))?;
        self.dataset
            .render_into(event, dataset)
            .map_err(|m| format!("dataset {m}"))?;
        self.table
            .render_into(event, table)
            .map_err(|m| format!("table {m}"))?;
        if let Some(suffix) = &mut self.suffix {
            base.push_str(table);
            suffix
                .render_into(event, table)
                .map_err(|m| format!("template_suffix {m}"))?;
        }
        if let Some(key) = self
            .recent
            .iter()
            .rev()
            .find(|k| k.table == *table && k.dataset == *dataset && k.project == *project)
        {
            return Ok(key.clone());
        }
        if let Some(problem) = project_problem(project)
            .or_else(|| dataset_problem(dataset))
            .or_else(|| table_problem(table))
        {
            return Err(problem);
        }
        let base = (self.suffix.is_some()).then_some(base.as_str());
        let key = Arc::new(TableKey::new(project, dataset, table, base));
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push(key.clone());
        Ok(key)
    }
}

/// Why a name is illegal, if it is.
type NameCheck = fn(&str) -> Option<String>;

/// Why BigQuery would refuse `name` as a project id, if it would: lowercase letters,
/// digits, `-`, and `.` `:` of a domain-scoped id.
pub fn project_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_PROJECT {
        return Some(format!(
            "project id `{name}` must be 1 to {MAX_PROJECT} characters"
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')))
        .map(|c| format!("project id `{name}` holds `{c}`; only lowercase letters, digits and - (with . : in a domain-scoped id) are allowed"))
}

/// Why BigQuery would refuse `name` as a dataset id, if it would: letters, digits
/// and `_`, at most 1,024.
pub fn dataset_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Some(format!(
            "dataset `{name}` must be 1 to {MAX_NAME} characters"
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map(|c| format!("dataset `{name}` holds `{c}`; only letters, digits and _ are allowed"))
}

/// Why BigQuery would refuse `name` as a table id, if it would: letters, marks and
/// digits of any script, `_`, `-` and spaces, at most 1,024 UTF-8 bytes.
pub fn table_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Some(format!("table `{name}` must be 1 to {MAX_NAME} bytes"));
    }
    name.chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | ' ')))
        .map(|c| {
            format!("table `{name}` holds `{c}`; only letters, digits, _ - and spaces are allowed")
        })
}
