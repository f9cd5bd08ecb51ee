//! Faults of the machine a test can really cause: [`Strace`] makes chosen system
//! calls of a running process fail (its fdatasyncs with EIO, as a failing disk
//! does), and [`Tmpfs`] is a small file system of its own that really fills up
//! (ENOSPC).
//!
//! Both need what not every machine gives: `strace` with `--inject` (Debian's 6.1,
//! installed by `scripts/test`), ptrace and mount rights (root). [`unavailable`] says
//! what is missing, so that a test can skip with the reason instead of passing
//! silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::child::Child;
use crate::wait::wait_until;

/// Why these faults cannot be caused on this machine, or `None` when they can.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Some(
            "not root: mounting a tmpfs and tracing another process need root (CI runs as root)"
                .to_string(),
        );
    }
    match Command::new("strace").arg("-h").output() {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("--inject") => None,
        Ok(_) => Some("this strace has no --inject; run scripts/test to install one".to_string()),
        Err(e) => Some(format!(
            "strace cannot be run ({e}); run scripts/test to install it"
        )),
    }
}

/// strace attached to every thread of a running process (and the threads it starts
/// later), failing chosen system calls on chosen files with an error until it is
/// detached. The process runs on, only those calls fail, and after
/// [`Strace::detach`] nothing fails any more.
pub struct Strace {
    child: Child,
    log: PathBuf,
    detached: bool,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Strace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strace")
            .field("child", &self.child)
            .field("log", &self.log)
            .finish()
    }
}

impl Strace {
    /// Attaches to `pid` and makes every call of `syscalls` (e.g. `fdatasync,fsync`)
    /// that acts on one of `paths` fail with `errno` (e.g. `EIO`). strace matches a
    /// call by the exact path of its file descriptor, so list every file that may be
    /// synced (a folder is synced by its own path). Returns once strace is attached
    /// to the process's threads; panics if it does not attach within 10 s.
    pub fn inject(pid: u32, syscalls: &str, errno: &str, paths: &[PathBuf]) -> Strace {
        Strace::attach(
            pid,
            &[
                format!("--trace={syscalls}"),
                format!("--inject={syscalls}:error={errno}"),
            ],
            paths,
        )
    }

    /// Attaches to `pid` with strace's `options` (what to trace and inject, e.g.
    /// `--inject=fdatasync:error=EIO:delay_enter=300ms:when=1`, which counts calls
    /// per thread), limited to the calls acting on `paths`. The log has one line per
    /// call, with its thread, time, the paths of descriptors (`-y`) and the first 64
    /// bytes of data in hex (`-xx -s 64`). Returns once strace is attached.
    pub fn attach(pid: u32, options: &[String], paths: &[PathBuf]) -> Strace {
        let dir = tempfile::Builder::new()
            .prefix("nagare-strace-")
            .tempdir()
            .expect("create a folder for strace's log");
        let log = dir.path().join("strace.log");
        let mut cmd = Command::new("strace");
        // -f: every thread, also those started later.
        cmd.args(["-f", "-y", "-tt", "-xx", "-s", "64", "-o"])
            .arg(&log)
            .args(options);
        for path in paths {
            cmd.arg("-P").arg(path);
        }
        cmd.arg("-p").arg(pid.to_string());
        let child = Child::spawn("strace", cmd);
        let mut strace = Strace {
            child,
            log,
            detached: false,
            _dir: dir,
        };
        // strace says "Process N attached" on its standard error once it traces.
        let attached = wait_until(Duration::from_secs(10), || {
            strace.child.try_wait().is_some() || strace.child.stderr().contains("attached")
        });
        if !attached || strace.child.try_wait().is_some() {
            panic!("strace did not attach to {pid}\n{}", strace.child.logs());
        }
        strace
    }

    /// The calls failed so far.
    pub fn injected(&self) -> usize {
        self.log_text().matches("(INJECTED)").count()
    }

    /// What strace logged: one line per traced call.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Detaches from the process (SIGINT makes strace let go of every thread), so
    /// that no call fails from now on; waits until strace has ended. Returns its log.
    pub fn detach(&mut self) -> String {
        if !self.detached {
            self.detached = true;
            let _ = signal::kill(Pid::from_raw(self.child.pid() as i32), Signal::SIGINT);
            if self.child.wait_timeout(Duration::from_secs(10)).is_none() {
                panic!("strace did not detach\n{}", self.child.logs());
            }
        }
        self.log_text()
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        // Never leave the process traced (or its calls failing) after the test.
        if !self.detached {
            self.detached = true;
            let _ = signal::kill(Pid::from_raw(self.child.pid() as i32), Signal::SIGINT);
            let _ = self.child.wait_timeout(Duration::from_secs(10));
        }
    }
}

/// A tmpfs of a given size mounted on a temporary folder: a file system that really
/// runs out of space. Unmounted (and its folder removed) on drop, also when the test
/// fails.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes; panics if it cannot (check
    /// [`unavailable`] first).
    pub fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("nagare-tmpfs-")
            .tempdir()
            .expect("create a mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs on {}: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir, mounted: true }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes that can still be written to it.
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.path())
            .output()
            .expect("run stat");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text
            .split_whitespace()
            .map(|p| p.parse::<u64>().unwrap_or(0));
        let (blocks, size) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        blocks * size
    }

    /// Writes a file of `bytes` bytes at `path` (on this file system, so it takes
    /// that much of its room), or as much of it as fits; returns the bytes written.
    pub fn fill(&self, path: &Path, bytes: u64) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(path).expect("create a filler file");
        let block = vec![0x5au8; 64 * 1024];
        let mut written = 0;
        while written < bytes {
            let n = block.len().min((bytes - written) as usize);
            match file.write(&block[..n]) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            self.mounted = false;
            // Lazily: a process of the test may still hold a file open on it.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
