//! Test support shared by this crate's seam tests, the worker's tests and the
//! cluster tests: a free loopback port, Redis and PostgreSQL servers of a
//! test's own, to crash and restart at will (the shared servers must never be
//! stopped), and waiting for a condition with a deadline.

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

mod certificates;
mod gated_backplane;
mod postgres;
mod redis;
mod redis_cluster;
mod redis_keys;

pub use certificates::TestCertificates;
pub use gated_backplane::GatedBackplane;

pub use postgres::ThrowawayPostgres;
pub use redis::ThrowawayRedis;
pub use redis_cluster::ThrowawayRedisCluster;
pub use redis_keys::delete_matching;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// Waits until `holds` answers true, checking every few milliseconds, and
/// panics naming `what` once `within` has passed. For state that follows an
/// observed event only eventually (an acknowledgement written beside the
/// reply, a counter updated after the broadcast): asserting it right after
/// the event races the writer under load.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if holds().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not true after {within:?}"
        );
        tokio::time::sleep(RECHECK).await;
    }
}

/// `wait_until` for synchronous code (a test server started from a
/// synchronous constructor), blocking the thread between checks. Answers
/// whether `holds` came true within `within` instead of panicking, so that
/// the caller can tell what it found (a server's log) as it gives up.
fn came_true_blocking(within: Duration, mut holds: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if holds() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(RECHECK);
    }
}

/// How often `wait_until` looks again: short against any deadline a test
/// uses, long enough not to steal the CPU from what it waits for.
const RECHECK: Duration = Duration::from_millis(5);
