//! The Unix socket listener (`unix_path`): the socket file's life from start to stop.
//!
//! A socket file outlives the process that bound it when that process is killed, and
//! binding again on the same path then fails with "address in use". So at start a
//! socket file nobody listens on any more is removed first; a socket someone still
//! listens on, or a file of another kind, is left alone and the start fails with the
//! reason. At stop the file is removed, if it is still the one this server made.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::net::UnixListener;

use super::config::FileMode;

/// How long a connection to an existing socket file may take before its server is
/// taken to be alive but busy.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the Unix socket could not be opened.
#[derive(Debug, Error)]
pub enum UnixSocketError {
    /// Something other than a socket is at the path.
    #[error(
        "cannot listen for forward clients on {}: it exists and is not a socket, so nagare leaves it alone; remove it or choose another unix_path",
        .path.display()
    )]
    NotASocket {
        /// The configured `unix_path`.
        path: PathBuf,
    },
    /// Another process accepts connections on the socket.
    #[error(
        "cannot listen for forward clients on {}: another process (a Fluent Bit, another nagare) listens on this socket; stop it or choose another unix_path",
        .path.display()
    )]
    InUse {
        /// The configured `unix_path`.
        path: PathBuf,
    },
    /// The existing socket could not be probed (it belongs to another user).
    #[error(
        "cannot listen for forward clients on {}: a socket is there and connecting to it to see whether a process listens failed: {source}; if it is left over from an earlier run, remove it, or choose another unix_path",
        .path.display()
    )]
    Unprobed {
        /// The configured `unix_path`.
        path: PathBuf,
        /// The system's reason.
        source: io::Error,
    },
    /// A file system operation on the path failed.
    #[error(
        "cannot listen for forward clients on {}: cannot {action}: {source}; {}",
        .path.display(),
        hint(source)
    )]
    Io {
        /// The configured `unix_path`.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The system's reason.
        source: io::Error,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => {
            "its directory does not exist; create it, or mount the volume that holds it"
        }
        io::ErrorKind::PermissionDenied => {
            "this user may not write in its directory; run as a user who may, or choose another unix_path"
        }
        _ => "check unix_path",
    }
}

/// A listening Unix socket and its file, removed when this is dropped.
#[derive(Debug)]
pub(super) struct UnixSocket {
    pub(super) listener: UnixListener,
    file: SocketFile,
}

impl UnixSocket {
    /// Binds `path` (after removing a stale socket file there) and gives the file
    /// `mode`.
    pub(super) async fn bind(path: &Path, mode: FileMode) -> Result<UnixSocket, UnixSocketError> {
        let error = |action, source| UnixSocketError::Io {
            path: path.to_path_buf(),
            action,
            source,
        };
        remove_stale(path).await?;
        let listener = UnixListener::bind(path).map_err(|e| error("create the socket", e))?;
        let meta = std::fs::metadata(path).map_err(|e| error("inspect the new socket", e))?;
        // From here on the file is ours: dropping `file` removes it, also when setting
        // its permissions fails.
        let file = SocketFile {
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.0))
            .map_err(|e| error("set the socket's permissions (unix_perm)", e))?;
        Ok(UnixSocket { listener, file })
    }

    /// The socket file's path.
    pub(super) fn path(&self) -> &Path {
        &self.file.path
    }
}

/// Removes the socket file at `path` if no process listens on it any more.
async fn remove_stale(path: &Path) -> Result<(), UnixSocketError> {
    let error = |action, source| UnixSocketError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(error("inspect the existing file", e)),
    };
    if !meta.file_type().is_socket() {
        return Err(UnixSocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    // A connection that is accepted means a live server: its file must stay. So does
    // the file of one too busy to accept (its backlog full), and one this user may
    // not connect to: only a refusal says that nobody listens.
    let probe = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::UnixStream::connect(path)).await;
    match probe {
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Ok(Err(source)) => {
            return Err(UnixSocketError::Unprobed {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(Ok(_)) | Err(_) => {
            return Err(UnixSocketError::InUse {
                path: path.to_path_buf(),
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed the socket file an earlier run left behind");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error("remove the stale socket file", e)),
    }
}

/// The socket file this server created, removed on drop.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file as created: a file put at the path since (by a
    /// new server started while this one stops) is not removed.
    identity: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the forward source's socket file; the next start replaces it");
        }
    }
}
