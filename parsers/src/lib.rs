//! nagare-parsers: pure, synchronous parsers that turn log bytes into messages and
//! records. No I/O, no async; parsers borrow from the caller's buffers and allocate
//! only where a result cannot borrow.
//!
//! - [`container`]: container log framing: the line splitter, CRI and docker
//!   json-file lines with their partial-line merging, format detection, and the
//!   Kubernetes names in a `/var/log/containers` file name.

pub mod container;
