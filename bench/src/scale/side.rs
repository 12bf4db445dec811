//! The agents' side of a scale run, on a thread and runtime of its own:
//! each broadcast reaches every agent at once, and reading a thousand
//! frames in a burst on the chat's thread held the chat's sends back past
//! their due times. Here the agents are opened, then wait for the start
//! of the live phase, then the broadcasts run and are booked
//! ([`crate::scale::broadcast`]), and the sockets are closed.

use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::scale::agents::Agents;
use crate::scale::args::ScaleArgs;
use crate::scale::broadcast::{self, BroadcastPlan, BroadcastTotals};

/// Agents opened, and the failures of those that were not.
pub type Opened = (usize, Vec<String>);

pub struct AgentSide {
    opened: Option<oneshot::Receiver<Opened>>,
    go: Option<oneshot::Sender<Instant>>,
    done: oneshot::Receiver<anyhow::Result<BroadcastTotals>>,
    thread: std::thread::JoinHandle<()>,
}

/// How many sessions the live phase creates.
pub fn broadcast_count(args: &ScaleArgs) -> usize {
    ((args.broadcast_rate * args.duration.as_secs_f64()).round() as usize).max(1)
}

/// Starts the thread: it opens `args.agents` agents numbered from `offset`.
pub fn start(args: ScaleArgs, run: String, offset: usize) -> anyhow::Result<AgentSide> {
    let (opened_tx, opened) = oneshot::channel();
    let (go, go_rx) = oneshot::channel::<Instant>();
    let (done_tx, done) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the agents' runtime")?;
    let thread = std::thread::Builder::new()
        .name("agents".to_owned())
        .spawn(move || {
            let result = runtime.block_on(async move {
                let mut agents = Agents::open(&args, &run, offset).await?;
                let _ = opened_tx.send((agents.len(), agents.failures.clone()));
                let Ok(start) = go_rx.await else {
                    agents.close().await;
                    return Ok(BroadcastTotals::default());
                };
                let plan = BroadcastPlan {
                    endpoints: &args.endpoints,
                    jwt_secret: &args.jwt_secret,
                    run: &run,
                    pool: &args.pool,
                    start,
                    rate: args.broadcast_rate,
                    count: broadcast_count(&args),
                    grace: args.grace,
                };
                let totals = broadcast::run(&mut agents, &plan).await;
                agents.close().await;
                totals
            });
            let _ = done_tx.send(result);
        })
        .context("starting the agents' thread")?;
    Ok(AgentSide {
        opened: Some(opened),
        go: Some(go),
        done,
        thread,
    })
}

impl AgentSide {
    /// Waits until the agents are open.
    pub async fn opened(&mut self) -> anyhow::Result<Opened> {
        let opened = self.opened.take().context("asked twice")?;
        match opened.await {
            Ok(opened) => Ok(opened),
            // The thread ended before: its error says why.
            Err(_) => Err(match (&mut self.done).await {
                Ok(Err(error)) => error,
                _ => anyhow!("the agents' thread ended"),
            }),
        }
    }

    /// Starts the broadcasts, the first due at `start`.
    pub fn go(&mut self, start: Instant) {
        if let Some(go) = self.go.take() {
            let _ = go.send(start);
        }
    }

    /// Waits for the broadcasts' totals (the agents are closed by then).
    pub async fn finish(self) -> anyhow::Result<BroadcastTotals> {
        let totals = self
            .done
            .await
            .map_err(|_| anyhow!("the agents' thread ended without its totals"))?;
        // It sent its last word, so it is about to end.
        while !self.thread.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.thread.join();
        totals
    }
}
