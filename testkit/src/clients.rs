//! The real Forward Protocol clients: Python's and Node's `fluent-logger`, run as
//! child processes of a test with a script the test writes, and Go's
//! `fluent-logger-golang` (the library behind Docker's fluentd log driver), built from
//! a program the test writes.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::child::Child;
use crate::paths;

/// The Python interpreter of the venv that holds `fluent-logger` (Message mode,
/// EventTime with `nanosecond_precision=True`).
#[derive(Debug, Clone)]
pub struct Python {
    /// The venv's interpreter.
    pub interpreter: PathBuf,
}

impl Python {
    /// The interpreter with `fluent-logger` importable; panics if it is not installed.
    pub fn fluent_logger() -> Python {
        Python {
            interpreter: paths::python(),
        }
    }

    /// A command running the interpreter.
    pub fn command(&self) -> Command {
        Command::new(&self.interpreter)
    }

    /// Starts `python -c script args...` as a [`Child`].
    pub fn spawn_script(&self, script: &str, args: &[&str]) -> Child {
        let mut cmd = self.command();
        cmd.arg("-c").arg(script).args(args);
        Child::spawn("python", cmd)
    }
}

/// Node.js with `fluent-logger` on its module path (Message, PackedForward and
/// CompressedPackedForward modes, acks, the shared-key handshake).
#[derive(Debug, Clone)]
pub struct Node {
    /// The `node` executable (from `PATH`).
    pub node: PathBuf,
    /// The `node_modules` folder holding `fluent-logger`, given as `NODE_PATH`.
    pub node_path: PathBuf,
}

impl Node {
    /// Node with `fluent-logger` resolvable by `require`; panics if it is not
    /// installed.
    pub fn fluent_logger() -> Node {
        Node {
            node: PathBuf::from("node"),
            node_path: paths::node_modules(),
        }
    }

    /// A command running `node` with `NODE_PATH` set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.env("NODE_PATH", &self.node_path);
        cmd
    }

    /// Starts `node -e script args...` as a [`Child`].
    pub fn spawn_script(&self, script: &str, args: &[&str]) -> Child {
        let mut cmd = self.command();
        cmd.arg("-e").arg(script).args(args);
        Child::spawn("node", cmd)
    }
}

/// Where Debian's `golang-github-fluent-fluent-logger-golang-dev` puts the library.
const GOPATH: &str = "/usr/share/gocode";

/// Go with `github.com/fluent/fluent-logger-golang` on its `GOPATH` (Message mode,
/// EventTime with `SubSecondPrecision`, the JSON form with `MarshalAsJSON`, acks with
/// `RequestAck`). `scripts/test` installs both from Debian's packages.
#[derive(Debug, Clone)]
pub struct Go {
    /// The `go` executable (from `PATH`).
    pub go: PathBuf,
    /// The `GOPATH` holding the library's sources.
    pub gopath: PathBuf,
}

/// A Go program built by [`Go::build`]; its folder goes when it is dropped.
#[derive(Debug)]
pub struct GoProgram {
    binary: PathBuf,
    _dir: tempfile::TempDir,
}

impl Go {
    /// Go with the library; panics if either is not installed.
    pub fn fluent_logger() -> Go {
        let gopath = PathBuf::from(GOPATH);
        paths::require(
            gopath.join("src/github.com/fluent/fluent-logger-golang/fluent/fluent.go"),
            "Go's fluent-logger-golang",
        );
        Go {
            go: PathBuf::from("go"),
            gopath,
        }
    }

    /// Builds `source` (a `package main` file) in GOPATH mode; panics with the
    /// compiler's output if it does not build.
    pub fn build(&self, name: &str, source: &str) -> GoProgram {
        let dir = tempfile::Builder::new()
            .prefix(&format!("nagare-go-{name}-"))
            .tempdir()
            .expect("create a folder for a Go program");
        std::fs::write(dir.path().join("main.go"), source).expect("write main.go");
        let binary = dir.path().join(name);
        let cache = paths::testenv().join("go-cache");
        let out = Command::new(&self.go)
            .current_dir(dir.path())
            .env("GOPATH", &self.gopath)
            .env("GO111MODULE", "off")
            .env("GOCACHE", &cache)
            .env("GOFLAGS", "")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("main.go")
            .output()
            .unwrap_or_else(|e| panic!("cannot run `go build` ({e}): {}", paths::INSTALL_HINT));
        if !out.status.success() {
            panic!(
                "go build of {name} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        GoProgram { binary, _dir: dir }
    }
}

impl GoProgram {
    /// The built executable.
    pub fn path(&self) -> &Path {
        &self.binary
    }

    /// Starts the program with `args` as a [`Child`].
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args);
        Child::spawn("go", cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn python_imports_fluent_logger() {
        let mut child = Python::fluent_logger()
            .spawn_script("import sys, fluent.sender; print(sys.argv[1])", &["ok"]);
        child.expect_success(Duration::from_secs(30));
        assert_eq!(child.stdout(), "ok\n");
    }

    #[test]
    fn node_requires_fluent_logger() {
        let mut child = Node::fluent_logger().spawn_script(
            "const f = require('fluent-logger'); console.log(typeof f.createFluentSender, process.argv[1])",
            &["ok"],
        );
        child.expect_success(Duration::from_secs(30));
        assert_eq!(child.stdout(), "function ok\n");
    }

    #[test]
    fn go_builds_against_fluent_logger_golang() {
        let program = Go::fluent_logger().build(
            "hello",
            "package main\nimport (\"fmt\"; \"os\"; \"github.com/fluent/fluent-logger-golang/fluent\")\nfunc main() { _ = fluent.Config{RequestAck: true}; fmt.Println(os.Args[1]) }\n",
        );
        let mut child = program.spawn(&["ok"]);
        child.expect_success(Duration::from_secs(30));
        assert_eq!(child.stdout(), "ok\n");
    }
}
