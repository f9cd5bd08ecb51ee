//! The real Forward Protocol clients: Python's and Node's `fluent-logger`, run as
//! child processes of a test with a script the test writes.

use std::path::PathBuf;
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
}
