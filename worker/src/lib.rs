//! The worker: the single writer of the record. It owns command partitions
//! through leases, applies each batch of commands in one store transaction,
//! and only then answers the callers and fans the resulting events out.
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod decide;
pub mod lanes;
pub mod metrics;
pub mod ops;
pub mod processor;
pub mod router;
pub mod runner;
pub mod stats;

pub use config::WorkerConfig;
pub use runner::Worker;
