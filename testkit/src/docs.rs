//! The configuration examples the documentation shows, so tests read them from where
//! they are written and check that the code accepts them: a change of an example is
//! then tested, and an example cannot drift from a copy in a test.
//!
//! - [`documented_example`]: the example in a module's `//!` docs, as the component
//!   reads it.
//! - [`markdown_yaml_blocks`]: every ```` ```yaml ```` block of a Markdown page.

use std::path::Path;

/// The first ```` ```yaml ```` block of `//!` lines in `source` (a module's text, from
/// `include_str!`), as written.
pub fn module_doc_yaml(source: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in source.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.strip_prefix(' ').unwrap_or(doc);
        if !inside {
            inside = doc.starts_with("```yaml");
            continue;
        }
        if doc.starts_with("```") {
            break;
        }
        out.push_str(doc);
        out.push('\n');
    }
    out
}

/// The YAML example of a module's docs (see [`module_doc_yaml`]) as the component's
/// config parser reads it, without the wrapper the binary reads:
///
/// - under `sources:`, `filters:` or `sinks:`: the section, the component's name, and
///   its `type` and `match` keys go, and its own keys are dedented to the top level;
/// - under one other key (`multiline:`): that key goes, and what is under it is
///   dedented;
/// - otherwise (`format: json` ...): the block as it is.
pub fn documented_example(source: &str) -> String {
    let block = module_doc_yaml(source);
    let first = block.lines().next().unwrap_or_default().trim_end();
    let component = ["sources:", "filters:", "sinks:"].contains(&first);
    let depth = if component {
        4
    } else if first.ends_with(':') && !first.starts_with([' ', '-', '#']) {
        2
    } else {
        0
    };
    let mut out = String::new();
    for line in block.lines() {
        let indent = line.len() - line.trim_start().len();
        let key = line.trim_start();
        if indent < depth
            || (component
                && indent == depth
                && (key.starts_with("type:") || key.starts_with("match:")))
        {
            continue;
        }
        out.push_str(&line[depth..]);
        out.push('\n');
    }
    out
}

/// Every ```` ```yaml ```` block of the Markdown file at `path`, with the line its
/// text starts on (1-based).
pub fn markdown_yaml_blocks(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut block {
            None if line.trim_start().starts_with("```yaml") => {
                block = Some((i + 2, String::new()));
            }
            Some(_) if line.trim_start().starts_with("```") => out.extend(block.take()),
            Some((_, b)) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_components_own_keys() {
        let source = "//! A sink.\n//!\n//! ```yaml\n//! sinks:\n//!   out:\n//!     type: forward\n//!     match: \"**\"\n//!     servers:\n//!       - host: a\n//! ```\n//! After.\n";
        assert_eq!(documented_example(source), "servers:\n  - host: a\n");
    }

    #[test]
    fn unwraps_one_key_and_keeps_a_bare_block() {
        let wrapped =
            "//! ```yaml\n//! multiline:\n//!   languages: [java]\n//!   max_lines: 9\n//! ```\n";
        assert_eq!(
            documented_example(wrapped),
            "languages: [java]\nmax_lines: 9\n"
        );
        let bare = "//! ```yaml\n//! format: json\n//! time_key: ts\n//! ```\n";
        assert_eq!(documented_example(bare), "format: json\ntime_key: ts\n");
        assert_eq!(module_doc_yaml("//! no example\n"), "");
    }

    #[test]
    fn finds_every_markdown_block_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("page.md");
        std::fs::write(
            &page,
            "# T\n\n```yaml\na: 1\n```\n\n```text\nno\n```\n\n  ```yaml\n  b: 2\n  ```\n",
        )
        .unwrap();
        assert_eq!(
            markdown_yaml_blocks(&page),
            [(4, "a: 1\n".to_string()), (12, "  b: 2\n".to_string())]
        );
    }
}
