//! The configuration examples written in components' module docs, so tests can check
//! that what the documentation shows is what the code accepts.

/// The YAML example in a component's `config.rs` module doc (the first ```` ```yaml ````
/// block of `//!` lines), without the wrapper the binary reads: the
/// `sinks:`/`sources:` line, the component's name, and its `type` and `match` keys.
/// What is left is the component's own keys, dedented to the top level.
pub fn documented_example(source: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in source.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if doc.starts_with("```yaml") {
            inside = true;
            continue;
        }
        if inside && doc.starts_with("```") {
            break;
        }
        let indent = doc.len() - doc.trim_start().len();
        let key = doc.trim_start();
        if !inside
            || indent < 4
            || (indent == 4 && (key.starts_with("type:") || key.starts_with("match:")))
        {
            continue;
        }
        out.push_str(&doc[4..]);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::documented_example;

    #[test]
    fn keeps_the_components_own_keys() {
        let source = "//! A sink.\n//!\n//! ```yaml\n//! sinks:\n//!   out:\n//!     type: forward\n//!     match: \"**\"\n//!     servers:\n//!       - host: a\n//! ```\n//! After.\n";
        assert_eq!(documented_example(source), "servers:\n  - host: a\n");
    }
}
