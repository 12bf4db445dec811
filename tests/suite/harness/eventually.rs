//! Waiting for a condition that becomes true only some time after what the
//! test did (a lease taken over, a counter updated after the broadcast, a
//! process exited): asserting it at once would race the code under test,
//! and sleeping "long enough" is either slow or flaky. Every such wait in
//! the tests goes through here, so that each one is bounded and says what
//! it was waiting for when it gives up.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often a condition is checked again.
const RECHECK: Duration = Duration::from_millis(20);

/// What a probe answers: whether the condition holds yet, and if so with
/// what value.
pub trait Probe {
    type Value;
    /// `Ok` once the condition holds; `Err` with a description of how
    /// things stand (named in the panic if the wait runs out) until then.
    fn outcome(self) -> Result<Self::Value, String>;
}

impl Probe for bool {
    type Value = ();
    fn outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_owned())
        }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_owned())
    }
}

impl<T, E: Debug> Probe for Result<T, E> {
    type Value = T;
    fn outcome(self) -> Result<T, String> {
        self.map_err(|state| format!("{state:?}"))
    }
}

/// Checks `probe` until it holds and returns its value; panics naming
/// `what` and the last state the probe reported once `within` has passed.
pub async fn eventually<P, F, Fut>(within: Duration, what: &str, probe: F) -> P::Value
where
    P: Probe,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    try_eventually(within, probe)
        .await
        .unwrap_or_else(|last| panic!("{what}: not within {within:?}; last: {last}"))
}

/// [`eventually`] for a caller that reports a wait that ran out itself:
/// Err with the last state the probe reported.
pub async fn try_eventually<P, F, Fut>(within: Duration, mut probe: F) -> Result<P::Value, String>
where
    P: Probe,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let deadline = Instant::now() + within;
    loop {
        let last = match probe().await.outcome() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep_until((Instant::now() + RECHECK).min(deadline)).await;
    }
}
