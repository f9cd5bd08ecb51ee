//! Finding the files to follow: glob expansion minus the excludes.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The compiled `paths` and `exclude_paths`.
#[derive(Debug, Clone)]
pub struct Discovery {
    paths: Vec<String>,
    excludes: Vec<glob::Pattern>,
}

impl Discovery {
    /// Compiles the excludes; globs were checked by `TailConfig::validate`.
    pub fn new(paths: &[String], exclude_paths: &[String]) -> Result<Self, glob::PatternError> {
        let excludes = exclude_paths
            .iter()
            .map(|p| glob::Pattern::new(p))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            paths: paths.to_vec(),
            excludes,
        })
    }

    /// The regular files (symlinks followed, as `/var/log/containers` holds links)
    /// that match a path glob and no exclude, in path order.
    pub fn scan(&self) -> BTreeSet<PathBuf> {
        let mut found = BTreeSet::new();
        for pattern in &self.paths {
            let entries = match glob::glob(pattern) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(glob = %pattern, error = %e, "cannot expand a tail path glob");
                    continue;
                }
            };
            for entry in entries {
                match entry {
                    Ok(path) => {
                        if self.excludes.iter().any(|x| x.matches_path(&path)) {
                            continue;
                        }
                        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                            found.insert(path);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(path = %e.path().display(), error = %e.error(), "cannot read a directory while expanding a tail glob");
                    }
                }
            }
        }
        found
    }
}

/// The tag of the file at `path` for the configured `tag`: its `*` is replaced by the
/// path with `/` turned into `.`, runs of `.` collapsed and the leading `.` dropped,
/// as Fluentd's `in_tail` does. A tag without `*` is used as it is.
pub fn tag_for(tag: &str, path: &std::path::Path) -> String {
    let Some((prefix, suffix)) = tag.split_once('*') else {
        return tag.to_string();
    };
    let path = path.to_string_lossy();
    let mut out = String::with_capacity(prefix.len() + path.len() + suffix.len());
    out.push_str(prefix);
    let start = out.len();
    for c in path.chars() {
        let c = if c == '/' { '.' } else { c };
        if c == '.' && (out.len() == start || out.ends_with('.')) {
            continue;
        }
        out.push(c);
    }
    out.push_str(suffix);
    out
}

/// An example tag for files matching `glob` (its wildcards taken as `x`), as
/// [`tag_for`] derives it: what `nagare validate` shows for a tail source.
pub fn example_tag(tag: &str, glob: &str) -> String {
    let example: String = glob
        .replace("**", "x")
        .chars()
        .map(|c| if matches!(c, '*' | '?') { 'x' } else { c })
        .collect();
    tag_for(tag, std::path::Path::new(&example))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_tags_follow_fluentd() {
        assert_eq!(
            example_tag("kube.*", "/var/log/containers/*.log"),
            "kube.var.log.containers.x.log"
        );
        assert_eq!(example_tag("app", "/var/log/app.log"), "app");
    }
}
