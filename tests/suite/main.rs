//! The integration tests of the root package, one crate so that the
//! harness is compiled once and shared by every test:
//!
//! - [`standalone`]: the standalone chat in this process, over its own
//!   data directory;
//! - [`cluster`]: the real `gateway` and `worker` binaries over real Redis
//!   and PostgreSQL, with processes and servers crashed under traffic;
//! - [`ops`]: what an operator relies on: drains on SIGTERM, the metrics
//!   and a real Prometheus scraping them.
//!
//! Tests are named by their module path (`cluster::worker_crash::…`),
//! which is what the nextest configuration filters on.

mod cluster;
mod harness;
mod ops;
mod standalone;
