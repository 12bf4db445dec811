//! The backplane seam: everything that crosses processes except the record
//! itself, one trait per concern, each in a file of its own:
//! - [`CommandLog`] (`command_log`): durable partitioned command streams
//!   with consumer-group semantics and their dead letters;
//! - [`Leases`] (`leases`): partition leases with fencing tokens;
//! - [`PubSub`] (`pubsub`): channels and their subscribers;
//! - [`Presence`] (`presence`): who is online in a pool;
//! - [`Throttle`] (`throttle`): cluster-wide throttles and windowed counts.
//!
//! [`Backplane`] is all of them together plus a liveness probe: what the
//! gateway and the worker hold (`Arc<dyn Backplane>`), so a process is
//! handed one backplane however many concerns it uses. On `dyn Backplane`
//! (or any `B: Backplane`) every concern's methods are callable with only
//! `Backplane` imported; on a concrete backplane the concern's own trait
//! must be in scope. `memory` implements every concern inside one process
//! for standalone mode; `redis` serves the cluster. Both keep one file per
//! concern, mirroring the traits.
//!
//! Every implementation must pass the suite in `conformance`.

use async_trait::async_trait;

pub mod command_log;
pub mod leases;
pub mod memory;
pub mod presence;
pub mod pubsub;
#[cfg(feature = "redis")]
pub mod redis;
pub mod throttle;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use command_log::{CommandLog, DeadLetter, StreamEntry, StreamInfo};
pub use leases::{Lease, Leases};
pub use presence::Presence;
pub use pubsub::{ChannelMessage, PubSub, Subscriber, SubscriptionEvent};
pub use throttle::Throttle;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    #[error("backplane protocol error: {0}")]
    Protocol(String),
}

/// Every concern of the seam behind one object.
#[async_trait]
pub trait Backplane: CommandLog + Leases + PubSub + Presence + Throttle + 'static {
    /// Cheap liveness probe for readiness checks.
    async fn ping(&self) -> Result<(), BackplaneError>;
}
