//! The route graph `nagare validate` prints: which source feeds which filters and
//! sinks.
//!
//! A tail source's tags are known in shape (its `tag` with the file path in place of
//! `*`), so the graph follows one example tag per path glob through the real router.
//! A forward source's tags are chosen by its clients, so it lists every sink with the
//! pattern a client's tag must match.

use std::fmt::Write as _;

use nagare_core::router::Router;

use crate::config::{Config, SourceConfig};

/// An example tag for files matching `glob`, as a tail source with `tag` would
/// derive it (Fluentd's rule: `*` in the tag becomes the path, `/` turned into `.`).
pub fn example_tail_tag(tag: &str, glob: &str) -> String {
    let example: String = glob
        .replace("**", "x")
        .chars()
        .map(|c| if matches!(c, '*' | '?') { 'x' } else { c })
        .collect();
    let dotted = example.trim_start_matches('/').replace('/', ".");
    tag.replace('*', &dotted)
}

/// Renders the graph.
#[cfg_attr(not(feature = "forwarder"), allow(unused_variables))]
pub fn describe(origin: &str, config: &Config, router: &Router) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{origin}: valid ({} source{}, {} filter{}, {} sink{})\n",
        config.sources.len(),
        plural(config.sources.len()),
        config.filters.len(),
        plural(config.filters.len()),
        config.sinks.len(),
        plural(config.sinks.len()),
    );
    let mut fed = vec![false; config.sinks.len()];
    let sink_index = |name: &str| config.sinks.get_index_of(name);
    for (name, source) in &config.sources {
        match source {
            #[cfg(feature = "forwarder")]
            SourceConfig::Tail(c) => {
                let _ = writeln!(out, "{name} (tail: {})", c.paths.join(", "));
                for glob in &c.paths {
                    let tag = example_tail_tag(&c.tag, glob);
                    let (filters, sinks) = router.describe(&tag);
                    let _ = writeln!(out, "  tags like {tag}");
                    let _ = writeln!(out, "    -> filters: {}", list(&filters));
                    let _ = writeln!(out, "    -> sinks:   {}", list(&sinks));
                    for s in sinks {
                        if let Some(i) = sink_index(s) {
                            fed[i] = true;
                        }
                    }
                }
            }
            #[cfg(feature = "aggregator")]
            SourceConfig::Forward(_) | SourceConfig::Http(_) => {
                let listens = match source {
                    SourceConfig::Forward(c) => format!("forward on {}", c.bind),
                    SourceConfig::Http(c) => format!("http on {}", c.bind),
                    #[allow(unreachable_patterns)]
                    _ => String::new(),
                };
                let _ = writeln!(out, "{name} ({listens})");
                let _ = writeln!(out, "  tags chosen by its clients");
                for (fname, f) in &config.filters {
                    let _ = writeln!(out, "    -> filter {fname} for tags matching {}", f.pattern);
                }
                for (i, (sname, s)) in config.sinks.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "    -> sink {sname} ({}) for tags matching {}",
                        s.kind.kind(),
                        s.pattern
                    );
                    fed[i] = true;
                }
            }
        }
    }
    let unfed: Vec<String> = config
        .sinks
        .iter()
        .zip(&fed)
        .filter(|(_, f)| !**f)
        .map(|((n, s), _)| {
            format!(
                "sink `{n}` (match {}) receives nothing from the sources above",
                s.pattern
            )
        })
        .collect();
    if !unfed.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in unfed {
            let _ = writeln!(out, "  {w}");
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(feature = "forwarder")]
fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_tags_follow_fluentd() {
        assert_eq!(
            example_tail_tag("kube.*", "/var/log/containers/*.log"),
            "kube.var.log.containers.x.log"
        );
        assert_eq!(example_tail_tag("app", "/var/log/app.log"), "app");
    }
}
