//! What operating the chat relies on: graceful drains on SIGTERM, the
//! metrics exposition, and a real Prometheus scraping it with the shipped
//! rules.

mod drain;
mod metrics;
mod prometheus;
