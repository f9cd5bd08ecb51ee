//! The route graph `nagare validate` prints: which source feeds which filters and
//! sinks.
//!
//! Each source says what it knows of its tags (`SourceComponent::describe`). Tags
//! known in shape (a tail source's: its `tag` with the file path in place of `*`)
//! are followed through the real router, one example tag per input. Tags chosen by
//! the source's clients (forward, http) are not known, so every sink is listed with
//! the pattern a client's tag must match.

use std::fmt::Write as _;

use nagare_core::router::Router;

use crate::config::Config;

/// Renders the graph.
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
        let tags = source.describe();
        let _ = writeln!(out, "{name} ({})", tags.summary);
        match tags.examples {
            Some(examples) => {
                for tag in examples {
                    let (filters, sinks) = router.describe(&tag);
                    let _ = writeln!(out, "  tags like {tag}");
                    let _ = writeln!(out, "    -> filters: {}", list(&filters));
                    let _ = writeln!(out, "    -> sinks:   {}", list(&sinks));
                    for s in &sinks {
                        if let Some(i) = sink_index(s) {
                            fed[i] = true;
                        }
                    }
                }
            }
            None => {
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

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}
