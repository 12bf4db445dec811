//! The pool broadcasts of a scale run and their timing. Sessions are
//! created in the agents' pool on a fixed open-loop schedule (each by a
//! customer of its own, so no customer reaches its cap of open sessions),
//! and every agent of the pool is sent `new-pending-session` for each: a
//! receipt counts from the session's due time, so a generator or server
//! that falls behind cannot hide the wait. The `stats-update` pushes the
//! creations cause are timed from their `updatedAt` stamp, the one time
//! the server gives them.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_shared::auth::{Identity, TokenMinter};
use chat_shared::protocol::Role;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::client::Endpoint;
use crate::pacer::Pacer;
use crate::report::micros;
use crate::rest;
use crate::scale::agents::{Agents, PoolEvent};

pub struct BroadcastPlan<'a> {
    pub endpoints: &'a [Endpoint],
    pub jwt_secret: &'a str,
    pub run: &'a str,
    pub pool: &'a str,
    pub start: Instant,
    pub rate: f64,
    pub count: usize,
    pub grace: Duration,
}

impl BroadcastPlan<'_> {
    fn due(&self, k: usize) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }

    fn subject(&self, k: usize) -> String {
        format!("scale-{}-b{k}", self.run)
    }
}

#[derive(Debug, Default)]
pub struct BroadcastTotals {
    pub sent: usize,
    /// Due → each agent's `new-pending-session`.
    pub receipt_us: Vec<u32>,
    /// Due → the last agent's, for each broadcast every agent got.
    pub last_us: Vec<u32>,
    /// Broadcasts some agent never got.
    pub incomplete: usize,
    pub missing: u64,
    pub duplicated: u64,
    /// Written minus due, of each session creation.
    pub lag_us: Vec<u32>,
    pub failed: BTreeMap<String, u64>,
    /// `updatedAt` → each agent's receipt of that `stats-update`.
    pub stats_us: Vec<u32>,
    /// `updatedAt` → the last agent's, for each push every agent got.
    pub stats_last_us: Vec<u32>,
    pub stats_pushes: usize,
    pub unparsable: u64,
    pub closed: Vec<String>,
}

struct Created {
    lag: Duration,
    error: Option<String>,
}

/// Runs the broadcasts and books what the agents receive until the grace
/// after the last one is over.
pub async fn run(agents: &mut Agents, plan: &BroadcastPlan<'_>) -> anyhow::Result<BroadcastTotals> {
    let (created_tx, mut created) = mpsc::unbounded_channel();
    let mut pacer = Pacer::new()?;
    let minter = TokenMinter::new(plan.jwt_secret);
    let deadline = plan.due(plan.count.saturating_sub(1)) + plan.grace;
    let population = agents.len();
    let mut seen = vec![vec![false; agents.asked]; plan.count];
    let mut last = vec![0u32; plan.count];
    let mut stats: BTreeMap<i64, (usize, u32)> = BTreeMap::new();
    let mut totals = BroadcastTotals::default();
    let mut next = 0;
    let prefix = format!("scale-{}-b", plan.run);
    loop {
        let next_due = (next < plan.count).then(|| plan.due(next));
        tokio::select! {
            clock = pacer.wait_until(next_due.unwrap_or(deadline)), if next_due.is_some() => {
                clock?;
                spawn_creation(plan, &minter, next, created_tx.clone())?;
                next += 1;
            }
            heard = agents.heard.recv() => {
                let Some(heard) = heard else { break };
                match heard.what {
                    PoolEvent::Pending(subject) => {
                        let k = subject.strip_prefix(prefix.as_str()).and_then(|k| k.parse::<usize>().ok());
                        let Some(k) = k.filter(|k| *k < plan.count) else { continue };
                        if std::mem::replace(&mut seen[k][heard.agent], true) {
                            totals.duplicated += 1;
                            continue;
                        }
                        let latency = micros(heard.at.saturating_duration_since(plan.due(k)));
                        totals.receipt_us.push(latency);
                        last[k] = last[k].max(latency);
                    }
                    PoolEvent::Stats(updated_at) if heard.at >= plan.start => {
                        let latency = u32::try_from((heard.wall_us - updated_at).max(0)).unwrap_or(u32::MAX);
                        totals.stats_us.push(latency);
                        let push = stats.entry(updated_at).or_default();
                        push.0 += 1;
                        push.1 = push.1.max(latency);
                    }
                    PoolEvent::Stats(_) => {}
                    PoolEvent::Unparsable => totals.unparsable += 1,
                    PoolEvent::Closed(reason) => totals.closed.push(format!("agent {}: {reason}", heard.agent)),
                }
            }
            done = created.recv() => {
                let Some(done) = done else { break };
                book_creation(&mut totals, done);
            }
            _ = sleep_until(deadline) => break,
        }
    }
    drop(created_tx);
    while let Ok(done) = created.try_recv() {
        book_creation(&mut totals, done);
    }
    totals.sent = next;
    let open = population - totals.closed.len();
    for (k, agents_seen) in seen.iter().enumerate() {
        let got = agents_seen.iter().filter(|s| **s).count();
        if got >= open && got > 0 {
            totals.last_us.push(last[k]);
        } else {
            totals.incomplete += 1;
            totals.missing += (open.saturating_sub(got)) as u64;
        }
    }
    for (count, latest) in stats.values() {
        totals.stats_pushes += 1;
        if *count >= open {
            totals.stats_last_us.push(*latest);
        }
    }
    Ok(totals)
}

fn book_creation(totals: &mut BroadcastTotals, done: Created) {
    totals.lag_us.push(micros(done.lag));
    if let Some(error) = done.error {
        *totals.failed.entry(error).or_default() += 1;
    }
}

/// Creates session `k` from a task of its own, so that a slow answer
/// never delays the next one's start.
fn spawn_creation(
    plan: &BroadcastPlan<'_>,
    minter: &TokenMinter,
    k: usize,
    done: mpsc::UnboundedSender<Created>,
) -> anyhow::Result<()> {
    let user_id = format!("scale-{}-s{k}", plan.run);
    let identity = Identity {
        name: user_id.clone(),
        user_id,
        role: Role::Customer,
        pools: Vec::new(),
    };
    let token = minter.mint(&identity, 3600)?;
    let endpoint = plan.endpoints[k % plan.endpoints.len()].clone();
    let body = json!({ "subject": plan.subject(k), "pool": plan.pool });
    let due = plan.due(k);
    tokio::spawn(async move {
        let lag = Instant::now().saturating_duration_since(due);
        let result = rest::post_json(&endpoint, "/api/chat/sessions", &token, &body).await;
        let _ = done.send(Created {
            lag,
            error: result.err().map(|e| e.to_string()),
        });
    });
    Ok(())
}
