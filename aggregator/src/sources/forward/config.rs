//! The `forward` source's config.
//!
//! ```yaml
//! sources:
//!   from_nodes:
//!     type: forward
//!     bind: 0.0.0.0:24224
//!     max_frame_size: 32MiB
//!     max_decompressed_size: 128MiB
//!     max_connections: 1024
//!     idle_timeout: 120s
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration};
use nagare_core::forward::DecodeLimits;
use serde::Deserialize;

/// Largest frame the protocol can express: a `bin 32` payload is at most 4 GiB.
const PROTOCOL_MAX_FRAME: u64 = 4 << 30;

/// Config of the Forward Protocol server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSourceConfig {
    /// Address and port to listen on (`0.0.0.0:24224`, `[::]:24224`,
    /// `127.0.0.1:0` for a port chosen by the system).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Largest frame accepted, as received on the wire. A client that sends a larger
    /// one is disconnected (it should split its chunks: Fluentd's `chunk_limit_size`,
    /// Fluent Bit's `Buffer_Chunk_Size`).
    #[serde(default = "default_max_frame_size")]
    pub max_frame_size: ByteSize,
    /// Largest payload a compressed frame may inflate to; guards against
    /// compression bombs.
    #[serde(default = "default_max_decompressed_size")]
    pub max_decompressed_size: ByteSize,
    /// Most clients served at once. Further connections wait in the listen backlog
    /// until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing (not even a heartbeat) for this long is closed.
    /// `0` keeps idle connections open forever.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 24224))
}

fn default_max_frame_size() -> ByteSize {
    ByteSize(32 << 20)
}

fn default_max_decompressed_size() -> ByteSize {
    ByteSize(128 << 20)
}

fn default_max_connections() -> usize {
    1024
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration::secs(120)
}

impl Default for ForwardSourceConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            max_frame_size: default_max_frame_size(),
            max_decompressed_size: default_max_decompressed_size(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl ForwardSourceConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_frame_size.0 == 0 || self.max_frame_size.0 > PROTOCOL_MAX_FRAME {
            return Err(Invalid::new(
                "max_frame_size",
                format!(
                    "`{}` is not a usable frame limit; give a size between 1 byte and 4GiB (default 32MiB)",
                    self.max_frame_size
                ),
            ));
        }
        if self.max_decompressed_size < self.max_frame_size {
            return Err(Invalid::new(
                "max_decompressed_size",
                format!(
                    "`{}` is smaller than max_frame_size ({}), so compressed frames that fit on the wire would be refused once inflated; make it at least max_frame_size",
                    self.max_decompressed_size, self.max_frame_size
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(Invalid::new(
                "max_connections",
                "0 would refuse every client; give at least 1 (default 1024)",
            ));
        }
        Ok(())
    }

    /// The limits the frame decoder enforces.
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_frame_bytes: self.max_frame_size.as_usize(),
            max_decompressed_bytes: self.max_decompressed_size.as_usize(),
        }
    }

    /// The idle timeout, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        let d = Duration::from(self.idle_timeout);
        (!d.is_zero()).then_some(d)
    }
}
