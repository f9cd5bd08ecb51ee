//! Where things are: the repository, and the test servers and clients that
//! `scripts/test` installs under `.testenv/`.
//!
//! Every lookup panics with the same instruction when something is missing, so a
//! test run on a machine that skipped the install says what to do instead of failing
//! somewhere deep inside a test.

use std::path::{Path, PathBuf};

/// The message every missing-install panic carries.
pub const INSTALL_HINT: &str = "run scripts/test to install the test servers";

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    // This crate lives at <root>/testkit.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The `.testenv/` directory (`NAGARE_TESTENV` overrides it).
pub fn testenv() -> PathBuf {
    match std::env::var_os("NAGARE_TESTENV") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join(".testenv"),
    }
}

/// `path` if it exists; otherwise panics naming it and saying how to install it.
pub fn require(path: PathBuf, what: &str) -> PathBuf {
    if !path.exists() {
        panic!("{what} not found at {}: {INSTALL_HINT}", path.display());
    }
    path
}

/// The osmem-server binary.
pub fn osmem_server() -> PathBuf {
    require(testenv().join("osmem/osmem-server"), "osmem-server")
}

/// The Python interpreter of the venv that holds `fluent-logger`.
pub fn python() -> PathBuf {
    require(
        testenv().join("python/bin/python"),
        "the Python venv with fluent-logger",
    )
}

/// The `node_modules` folder that holds Node's `fluent-logger`.
pub fn node_modules() -> PathBuf {
    let dir = testenv().join("node/node_modules");
    require(dir.join("fluent-logger"), "Node's fluent-logger");
    dir
}

/// The Python interpreter of the venv that holds moto's server.
pub fn moto_python() -> PathBuf {
    require(
        testenv().join("moto/bin/python"),
        "moto's server (moto[server])",
    )
}

/// The Python interpreter of the venv that holds local-bigquery (BigQuery's emulator).
pub fn bigquery_python() -> PathBuf {
    let python = testenv().join("bigquery/bin/python");
    // The marker is written once DuckDB's extensions are installed too.
    require(
        testenv().join("bigquery/.extensions-installed"),
        "local-bigquery (with DuckDB's extensions)",
    );
    python
}
