//! The forwarder's `forward` sink run in-process, draining a buffer the test pushes
//! chunks into, as the binary wires it (for the tests of the forward link).

use std::path::PathBuf;

use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::component::SinkContext;
use nagare_core::shutdown::Shutdown;
use nagare_forwarder::sinks::forward::{self as forward_sink, ForwardSinkConfig, ForwardSinkError};
use tokio::task::JoinHandle;

/// The forwarder side: chunks pushed into `buffer` are sent by the sink task.
pub struct Forwarder {
    pub buffer: Buffer,
    pub abort: Shutdown,
    pub task: JoinHandle<Result<(), ForwardSinkError>>,
}

/// Starts the sink `name` with a default memory buffer.
pub fn start_forwarder(name: &str, config: ForwardSinkConfig) -> Forwarder {
    let buffer = Buffer::new(name, &BufferConfig::default());
    let abort = Shutdown::new();
    let ctx = SinkContext {
        name: name.into(),
        buffer: buffer.clone(),
        abort: abort.clone(),
        data_dir: PathBuf::new(),
    };
    Forwarder {
        task: tokio::spawn(forward_sink::run(config, ctx)),
        buffer,
        abort,
    }
}
