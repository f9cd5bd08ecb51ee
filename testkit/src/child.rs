//! `Child`: a process started by a test, stopped with the test.
//!
//! Its standard output and error go to files in a temporary folder of its own, so a
//! chatty process can never block on a full pipe, and a failing test can show what it
//! said: [`Child::logs`], or automatically on drop while the test is panicking. On
//! drop the process is killed by its PID and reaped, so no test leaves one behind.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running process owned by a test.
pub struct Child {
    name: String,
    process: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    exited: Option<ExitStatus>,
    // Holds the log files' folder until the guard is dropped.
    _logs: tempfile::TempDir,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("name", &self.name)
            .field("pid", &self.process.id())
            .field("exited", &self.exited)
            .finish()
    }
}

impl Child {
    /// Starts `command` with no standard input and its output captured. `name` labels
    /// the process in messages. Panics if it cannot be started.
    pub fn spawn(name: &str, mut command: Command) -> Child {
        let logs = tempfile::Builder::new()
            .prefix(&format!("nagare-{name}-"))
            .tempdir()
            .expect("create a temporary folder for a child's output");
        let stdout = logs.path().join("stdout.log");
        let stderr = logs.path().join("stderr.log");
        let out = File::create(&stdout).expect("create stdout.log");
        let err = File::create(&stderr).expect("create stderr.log");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let process = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Child {
            name: name.to_string(),
            process,
            stdout,
            stderr,
            exited: None,
            _logs: logs,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the process wrote to standard output so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Both outputs, labelled, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- {name} (pid {pid}) stdout ---\n{out}\n--- {name} stderr ---\n{err}",
            name = self.name,
            pid = self.pid(),
            out = self.stdout(),
            err = self.stderr()
        )
    }

    /// The exit status if the process has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.process.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to end on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the process to end successfully within `timeout`; panics with its
    /// output otherwise (killing it if it is still running).
    pub fn expect_success(&mut self, timeout: Duration) {
        match self.wait_timeout(timeout) {
            Some(status) if status.success() => {}
            Some(status) => panic!("{} failed with {status}\n{}", self.name, self.logs()),
            None => {
                self.kill();
                panic!(
                    "{} did not finish within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                )
            }
        }
    }

    /// Kills the process (SIGKILL, by PID) and reaps it. Does nothing once it ended.
    pub fn kill(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        let _ = self.process.kill();
        self.exited = self.process.wait().ok();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_exit() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let mut child = Child::spawn("sh", c);
        let status = child.wait_timeout(Duration::from_secs(5)).expect("exits");
        assert_eq!(status.code(), Some(3));
        assert_eq!(child.stdout(), "out\n");
        assert_eq!(child.stderr(), "err\n");
        assert!(child.logs().contains("--- sh stderr ---\nerr"));
    }

    #[test]
    fn drop_kills_and_reaps() {
        let child = Child::spawn("sleep", {
            let mut c = Command::new("sleep");
            c.arg("30");
            c
        });
        let pid = child.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        // Reaped, so not even a zombie entry remains.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
