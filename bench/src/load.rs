//! The load run. Setup: for each pair, an agent socket and a customer
//! socket (on different gateways when several are given), a session created
//! over REST by the customer and assigned by the agent, and both sockets
//! joined to it. A step: every pair's customer sends on an open-loop
//! schedule (the aggregate rate split evenly, pairs staggered across the
//! period; see [`crate::schedule`]) from one task per pair, which also
//! books the acks and deliveries its two reader tasks report. Nothing is
//! shared between pairs while sending except a few progress counters; the
//! per-pair tallies are merged at the end. The pairs outlive a step, so a
//! sweep sets them up once and runs step after step on them.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use chat_shared::auth::{Identity, JwtConfigError, TokenMinter};
use chat_shared::protocol::Role;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::args::LoadArgs;
use crate::client::{self, AckOutcome, ClientError, Endpoint, Incoming, Received, SharedSink};
use crate::pacer::Pacer;
use crate::report::{self, LoadPlan, LoadTotals};
use crate::rest::{self, RestError};
use crate::schedule::{Ledger, Schedule};

const CUSTOMER: u8 = 0;
const AGENT: u8 = 1;
/// Ack id of the join during setup; messages count up from 1 (see
/// [`Ledger::ack_id`]).
const JOIN_ACK_ID: u64 = 0;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Time between the start of a step and its first scheduled send.
const START_DELAY: Duration = Duration::from_millis(250);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("REST: {0}")]
    Rest(#[from] RestError),
    #[error("token: {0}")]
    Token(#[from] JwtConfigError),
    #[error("websocket write: {0}")]
    Write(#[from] tungstenite::Error),
    #[error("join-session: {0}")]
    Join(String),
    #[error("send clock: {0}")]
    Clock(std::io::Error),
}

/// What every pair's setup needs.
struct Setup {
    endpoints: Vec<Endpoint>,
    minter: TokenMinter,
    pool: String,
    run_id: String,
    token_ttl: i64,
}

impl Setup {
    fn token(&self, role: Role, index: usize) -> Result<String, JwtConfigError> {
        let (letter, pools) = match role {
            Role::Agent => ('a', vec![self.pool.clone()]),
            _ => ('c', Vec::new()),
        };
        let user_id = format!("bench-{}-{letter}{index}", self.run_id);
        let identity = Identity {
            name: user_id.clone(),
            user_id,
            role,
            pools,
        };
        self.minter.mint(&identity, self.token_ttl)
    }
}

/// One customer/agent pair, set up and joined to its session.
struct Pair {
    index: usize,
    session_id: String,
    customer: SharedSink,
    agent: SharedSink,
    events: mpsc::UnboundedReceiver<Received>,
    readers: Vec<JoinHandle<()>>,
}

impl Pair {
    async fn close(self) {
        client::close(&self.customer).await;
        client::close(&self.agent).await;
        for reader in self.readers {
            reader.abort();
        }
    }
}

/// Live counters for the progress line.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<bool> {
    let fleet_plan = FleetPlan {
        endpoints: &args.endpoints,
        jwt_secret: &args.jwt_secret,
        pool: &args.pool,
        pairs: args.pairs,
        concurrency: args.concurrency,
        lifetime: args.warmup + args.duration + args.grace,
    };
    let mut fleet = Fleet::set_up(&fleet_plan).await?;
    let step = StepPlan {
        index: 0,
        rate: args.rate,
        warmup: args.warmup,
        duration: args.duration,
        grace: args.grace,
        size: args.size,
    };
    let result = fleet.run_step(&step).await;
    fleet.close().await;
    let mut totals = result?;
    let plan = LoadPlan {
        pairs: args.pairs,
        gateways: args.endpoints.len(),
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
    };
    Ok(report::print_load(&plan, &mut totals))
}

/// Which pairs to set up, and for how long their tokens must last.
pub struct FleetPlan<'a> {
    pub endpoints: &'a [Endpoint],
    pub jwt_secret: &'a str,
    pub pool: &'a str,
    pub pairs: usize,
    pub concurrency: usize,
    /// How long the pairs are used after setup.
    pub lifetime: Duration,
}

/// One step's sending: its rate and phases.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// Keeps this step's client message ids apart from other steps'.
    pub index: usize,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub grace: Duration,
    /// Bytes of filler added to each message's content.
    pub size: usize,
}

/// The set-up pairs, kept between steps.
pub struct Fleet {
    setup: Arc<Setup>,
    pairs: Vec<PairState>,
}

impl Fleet {
    /// Sets every pair up; fails (closing what was opened) if any pair
    /// cannot be set up.
    pub async fn set_up(plan: &FleetPlan<'_>) -> anyhow::Result<Fleet> {
        let setup = Arc::new(Setup {
            endpoints: plan.endpoints.to_vec(),
            minter: TokenMinter::new(plan.jwt_secret),
            pool: plan.pool.to_owned(),
            run_id: run_id(),
            token_ttl: i64::try_from(plan.lifetime.as_secs())
                .unwrap_or(i64::MAX / 2)
                .saturating_add(3600),
        });
        let gateways: Vec<String> = plan.endpoints.iter().map(ToString::to_string).collect();
        eprintln!(
            "setting up {} pairs on {} ({} at a time)...",
            plan.pairs,
            gateways.join(", "),
            plan.concurrency
        );
        let setup_started = Instant::now();
        let pairs = set_up_pairs(&setup, plan.pairs, plan.concurrency).await?;
        eprintln!(
            "set up {} pairs in {:.1} s",
            pairs.len(),
            setup_started.elapsed().as_secs_f64()
        );
        let pairs = pairs
            .into_iter()
            .map(PairState::new)
            .collect::<Result<_, _>>()
            .map_err(SetupError::Clock)?;
        Ok(Fleet { setup, pairs })
    }

    /// Runs one step on every pair and merges their tallies.
    pub async fn run_step(&mut self, plan: &StepPlan) -> anyhow::Result<LoadTotals> {
        let count = self.pairs.len();
        let schedule = Schedule::new(
            Instant::now() + START_DELAY,
            plan.rate,
            count,
            plan.warmup,
            plan.duration,
            plan.grace,
        );
        eprintln!(
            "sending {:.0} msg/s ({:.2} msg/s per pair) for {:.1} s warm-up + {:.1} s measured, then up to {:.1} s grace",
            plan.rate,
            plan.rate / count as f64,
            plan.warmup.as_secs_f64(),
            plan.duration.as_secs_f64(),
            plan.grace.as_secs_f64()
        );
        let progress = Arc::new(Progress::default());
        let ticker = tokio::spawn(print_progress(progress.clone(), schedule.start));
        let mut runs = JoinSet::new();
        for state in self.pairs.drain(..) {
            let runner = PairRun::new(
                state,
                schedule.clone(),
                plan,
                &self.setup.run_id,
                progress.clone(),
            );
            runs.spawn(runner.run());
        }
        let mut totals = LoadTotals::default();
        let mut failure = None;
        while let Some(done) = runs.join_next().await {
            match done {
                Ok((state, pair_totals)) => {
                    totals.merge(pair_totals);
                    self.pairs.push(state);
                }
                Err(error) => failure = Some(error),
            }
        }
        ticker.abort();
        self.pairs.sort_by_key(|p| p.pair.index);
        if let Some(error) = failure {
            bail!("a pair's task failed: {error}");
        }
        Ok(totals)
    }

    pub async fn close(self) {
        futures_util::future::join_all(self.pairs.into_iter().map(|p| p.pair.close())).await;
    }
}

/// Sets every pair up, `concurrency` at a time; fails (closing what was
/// opened) if any pair cannot be set up.
async fn set_up_pairs(
    setup: &Arc<Setup>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Pair>> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let setup = setup.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            set_up_pair(&setup, index)
                .await
                .map_err(|error| (index, error))
        });
    }
    let mut pairs = Vec::with_capacity(count);
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(pair)) => pairs.push(pair),
            Ok(Err(failure)) => failures.push(failure),
            Err(error) => bail!("a setup task failed: {error}"),
        }
    }
    if failures.is_empty() {
        pairs.sort_by_key(|p| p.index);
        return Ok(pairs);
    }
    let exhausted = failures
        .iter()
        .any(|(_, e)| matches!(e, SetupError::Client(c) if c.is_resource_exhaustion()));
    for (index, error) in failures.iter().take(5) {
        eprintln!("pair {index}: {error}");
    }
    if exhausted {
        eprintln!("out of file descriptors or local ports: raise the limit with `ulimit -n 65536` (here and for the server)");
    }
    for pair in pairs {
        pair.close().await;
    }
    bail!("{} of {count} pairs could not be set up", failures.len())
}

async fn set_up_pair(setup: &Setup, index: usize) -> Result<Pair, SetupError> {
    let gateways = setup.endpoints.len();
    let customer_at = &setup.endpoints[index % gateways];
    // With several gateways the agent is always on another one than its
    // customer, so each delivery crosses the backplane.
    let agent_at = &setup.endpoints[(index + 1) % gateways];
    let customer_token = setup.token(Role::Customer, index)?;
    let agent_token = setup.token(Role::Agent, index)?;

    let (events_tx, events) = mpsc::unbounded_channel();
    let agent = client::connect(agent_at, &agent_token, CONNECT_TIMEOUT).await?;
    let agent_sink = agent.sink.clone();
    let agent_reader =
        client::spawn_reader(agent.stream, agent.sink, AGENT, Some(events_tx.clone()));
    let customer = match client::connect(customer_at, &customer_token, CONNECT_TIMEOUT).await {
        Ok(customer) => customer,
        Err(error) => {
            client::close(&agent_sink).await;
            agent_reader.abort();
            return Err(error.into());
        }
    };
    let customer_sink = customer.sink.clone();
    let customer_reader =
        client::spawn_reader(customer.stream, customer.sink, CUSTOMER, Some(events_tx));
    let mut pair = Pair {
        index,
        session_id: String::new(),
        customer: customer_sink,
        agent: agent_sink,
        events,
        readers: vec![agent_reader, customer_reader],
    };
    match open_session(
        setup,
        &mut pair,
        customer_at,
        &customer_token,
        agent_at,
        &agent_token,
    )
    .await
    {
        Ok(()) => Ok(pair),
        Err(error) => {
            pair.close().await;
            Err(error)
        }
    }
}

/// Creates the pair's session, has its agent assign it, and joins both
/// sockets to it.
async fn open_session(
    setup: &Setup,
    pair: &mut Pair,
    customer_at: &Endpoint,
    customer_token: &str,
    agent_at: &Endpoint,
    agent_token: &str,
) -> Result<(), SetupError> {
    let body = json!({ "subject": format!("bench {} pair {}", setup.run_id, pair.index), "pool": setup.pool });
    let session = rest::post_json(customer_at, "/api/chat/sessions", customer_token, &body).await?;
    pair.session_id = session
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| SetupError::Join("the created session has no id".into()))?
        .to_owned();
    let assign = format!("/api/chat/sessions/{}/assign", pair.session_id);
    rest::post_json(agent_at, &assign, agent_token, &json!({})).await?;
    let join = client::event_frame(
        Some(JOIN_ACK_ID),
        "join-session",
        &json!({ "sessionId": pair.session_id }),
    );
    client::send_frame(&pair.agent, join.clone()).await?;
    client::send_frame(&pair.customer, join).await?;
    let deadline = Instant::now() + JOIN_TIMEOUT;
    let mut joined = [false, false];
    while !(joined[0] && joined[1]) {
        let received = tokio::time::timeout_at(deadline, pair.events.recv())
            .await
            .map_err(|_| SetupError::Join(format!("no ack within {JOIN_TIMEOUT:?}")))?
            .ok_or_else(|| SetupError::Join("both sockets closed".into()))?;
        match received.item {
            Incoming::Ack {
                id: JOIN_ACK_ID,
                outcome: AckOutcome::Ok { .. },
            } => joined[usize::from(received.tag)] = true,
            Incoming::Ack {
                id: JOIN_ACK_ID,
                outcome: AckOutcome::Failed { code },
            } => return Err(SetupError::Join(format!("refused: {code}"))),
            Incoming::Closed(reason) => {
                return Err(SetupError::Join(format!("socket closed: {reason}")))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Seqs one socket has received: flags repeats and regressions.
#[derive(Debug, Default)]
struct SeqTracker {
    last: i64,
    seen: HashSet<i64>,
}

impl SeqTracker {
    fn observe(&mut self, seq: i64, totals: &mut LoadTotals) {
        if !self.seen.insert(seq) {
            totals.duplicated += 1;
        } else if seq <= self.last {
            totals.out_of_order += 1;
        } else {
            self.last = seq;
        }
    }
}

/// What a pair carries from one step to the next: its sockets, the order
/// each has seen (a session's seqs keep rising across steps), and where
/// its ack ids continue.
struct PairState {
    pair: Pair,
    customer_seqs: SeqTracker,
    agent_seqs: SeqTracker,
    next_ack_base: u64,
    /// A socket of the pair closed; later steps cannot send on it.
    closed: bool,
    /// When this pair's next send is due.
    pacer: Pacer,
}

impl PairState {
    fn new(pair: Pair) -> std::io::Result<Self> {
        Ok(PairState {
            pair,
            customer_seqs: SeqTracker::default(),
            agent_seqs: SeqTracker::default(),
            next_ack_base: 0,
            closed: false,
            pacer: Pacer::new()?,
        })
    }
}

/// The sending and booking task of one pair for one step.
struct PairRun {
    state: PairState,
    ledger: Ledger,
    progress: Arc<Progress>,
    /// `["send-message",{"sessionId":…,"clientMsgId":"<prefix>`
    frame_head: String,
    /// `<filler>"}]`
    frame_tail: String,
    client_id_prefix: String,
    sending: bool,
}

impl PairRun {
    fn new(
        state: PairState,
        schedule: Schedule,
        plan: &StepPlan,
        run_id: &str,
        progress: Arc<Progress>,
    ) -> Self {
        let index = state.pair.index;
        let client_id_prefix = format!("{run_id}-{}-{index}-", plan.index);
        let session = Value::String(state.pair.session_id.clone());
        let frame_head =
            format!(r#"["send-message",{{"sessionId":{session},"clientMsgId":"{client_id_prefix}"#);
        let filler = if plan.size > 0 {
            format!(" {}", "x".repeat(plan.size))
        } else {
            String::new()
        };
        let frame_tail = format!(r#"{filler}"}}]"#);
        let mut ledger = Ledger::new(schedule, index, state.next_ack_base);
        let sending = !state.closed;
        if state.closed {
            ledger
                .totals_mut()
                .disconnects
                .push(format!("pair {index}: closed in an earlier step"));
        }
        PairRun {
            state,
            ledger,
            progress,
            frame_head,
            frame_tail,
            client_id_prefix,
            sending,
        }
    }

    async fn run(mut self) -> (PairState, LoadTotals) {
        let deadline = self.ledger.schedule().deadline;
        loop {
            let next_due = if self.sending {
                self.ledger.next_due()
            } else {
                None
            };
            self.sending = next_due.is_some();
            if !self.sending && self.ledger.settled() {
                break;
            }
            tokio::select! {
                received = self.state.pair.events.recv() => match received {
                    Some(received) => self.book(received),
                    None => break,
                },
                clock = self.state.pacer.wait_until(next_due.unwrap_or(deadline)), if next_due.is_some() => {
                    match clock {
                        Ok(()) => self.send_due().await,
                        Err(error) => {
                            self.ledger.totals_mut().disconnects.push(format!(
                                "pair {}: send clock failed: {error}",
                                self.state.pair.index
                            ));
                            self.sending = false;
                        }
                    }
                }
                _ = sleep_until(deadline) => break,
            }
        }
        self.state.next_ack_base = self.ledger.next_ack_base();
        (self.state, self.ledger.finish())
    }

    /// Writes every message that is due by now, then flushes once. The
    /// messages count as written when the flush returns: that is when they
    /// left the bench, however long it waited for the socket.
    async fn send_due(&mut self) {
        let due = self.ledger.due_by(Instant::now());
        if due.is_empty() {
            return;
        }
        let sink = self.state.pair.customer.clone();
        let mut sink = sink.lock().await;
        let mut fed = due.start;
        let mut result = Ok(());
        for k in due.clone() {
            if let Err(error) = sink.feed(Message::text(self.frame(k))).await {
                result = Err(error);
                break;
            }
            fed = k + 1;
        }
        if result.is_ok() {
            result = sink.flush().await;
        }
        drop(sink);
        self.ledger.written(due.start..fed, Instant::now());
        self.progress
            .sent
            .fetch_add((fed - due.start) as u64, Ordering::Relaxed);
        if let Err(error) = result {
            self.ledger.totals_mut().disconnects.push(format!(
                "pair {} customer: write failed: {error}",
                self.state.pair.index
            ));
            self.state.closed = true;
            self.sending = false;
        }
    }

    /// `42/chat,<id>["send-message",{"sessionId":…,"clientMsgId":"<run>-<step>-<pair>-<k>","content":"m<k>…"}]`
    fn frame(&self, k: usize) -> String {
        let mut frame = String::with_capacity(self.frame_head.len() + self.frame_tail.len() + 48);
        let _ = write!(frame, "42/chat,{}", self.ledger.ack_id(k));
        frame.push_str(&self.frame_head);
        let _ = write!(frame, r#"{k}","content":"m{k}"#);
        frame.push_str(&self.frame_tail);
        frame
    }

    fn book(&mut self, received: Received) {
        match received.item {
            Incoming::Ack { id, outcome } if received.tag == CUSTOMER => {
                if self.ledger.ack(id, outcome, received.at) {
                    self.progress.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Incoming::Ack { .. } => {}
            Incoming::NewMessage(message) => {
                let totals = self.ledger.totals_mut();
                if message.session_id != self.state.pair.session_id {
                    totals.foreign += 1;
                    return;
                }
                let tracker = if received.tag == AGENT {
                    &mut self.state.agent_seqs
                } else {
                    &mut self.state.customer_seqs
                };
                tracker.observe(message.seq, totals);
                let index = message
                    .client_msg_id
                    .as_deref()
                    .and_then(|id| id.strip_prefix(self.client_id_prefix.as_str()))
                    .and_then(|k| k.parse::<usize>().ok());
                let booked =
                    index.and_then(|k| self.ledger.delivery(k, received.tag == AGENT, received.at));
                match booked {
                    Some(true) => {
                        self.progress.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(false) => {}
                    // Another step's message (late), or not this run's.
                    None => self.ledger.totals_mut().foreign += 1,
                }
            }
            Incoming::Unparsable(_) => self.ledger.totals_mut().unparsable += 1,
            Incoming::Closed(reason) => {
                let side = if received.tag == AGENT {
                    "agent"
                } else {
                    "customer"
                };
                self.ledger
                    .totals_mut()
                    .disconnects
                    .push(format!("pair {} {side}: {reason}", self.state.pair.index));
                self.state.closed = true;
                if received.tag == CUSTOMER {
                    self.sending = false;
                }
            }
        }
    }
}

async fn print_progress(progress: Arc<Progress>, start: Instant) {
    let mut tick = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tick.tick().await;
        eprintln!(
            "  t={:>5.1}s sent {:>9} acked {:>9} delivered {:>9}",
            start.elapsed().as_secs_f64(),
            progress.sent.load(Ordering::Relaxed),
            progress.acked.load(Ordering::Relaxed),
            progress.delivered.load(Ordering::Relaxed)
        );
    }
}

/// A short id that keeps this run's users and message ids apart from
/// earlier runs against the same server.
pub(crate) fn run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{:x}", millis % (1 << 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_flags_repeats_and_regressions() {
        let mut totals = LoadTotals::default();
        let mut seqs = SeqTracker::default();
        for seq in [1, 2, 2, 4, 3, 5, 1] {
            seqs.observe(seq, &mut totals);
        }
        assert_eq!(totals.duplicated, 2);
        assert_eq!(totals.out_of_order, 1);
    }
}
