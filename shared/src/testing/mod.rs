//! Test support shared by this crate's seam tests and the cluster tests: a
//! free loopback port, and Redis and PostgreSQL servers of a test's own, to
//! crash and restart at will (the shared servers must never be stopped).

use std::net::TcpListener;

mod postgres;
mod redis;

pub use postgres::ThrowawayPostgres;
pub use redis::ThrowawayRedis;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
