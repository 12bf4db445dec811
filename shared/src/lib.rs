//! Everything the gateway and the worker must agree on: the public protocol
//! types, token verification, configuration pieces, the internal wire
//! envelopes, and the two seams (backplane and store) with their
//! implementations.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backplane;
pub mod blob;
pub mod config;
pub mod directory;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod names;
pub mod permissions;
pub mod protocol;
pub mod routing;
pub mod runtime;
pub mod stats;
pub mod store;
#[cfg(any(test, feature = "conformance"))]
pub mod testing;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
pub mod validate;

pub use error::{ChatError, ErrorCode};
pub use time::Timestamp;
