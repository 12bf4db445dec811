//! The load run. Setup: for each pair, an agent socket and a customer
//! socket (on different gateways when several are given), a session created
//! over REST by the customer and assigned by the agent, and both sockets
//! joined to it. Run: every pair's customer sends on a fixed schedule (the
//! aggregate rate split evenly, pairs staggered across the period) from one
//! task per pair, which also books the acks and deliveries its two reader
//! tasks report. Nothing is shared between pairs while sending except a
//! few progress counters; the per-pair tallies are merged at the end.

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
use crate::report::{self, micros, LoadPlan, LoadTotals};
use crate::rest::{self, RestError};

const CUSTOMER: u8 = 0;
const AGENT: u8 = 1;
/// Ack id of the join during setup; message `k` is sent with ack id `k + 1`.
const JOIN_ACK_ID: u64 = 0;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Time between the end of setup and the first scheduled send.
const START_DELAY: Duration = Duration::from_millis(250);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Flags of one sent message.
const MEASURED: u8 = 1;
const ANSWERED: u8 = 2;
const ACKED: u8 = 4;
const DELIVERED: u8 = 8;
const ECHOED: u8 = 16;

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
    let total_time = args.warmup + args.duration + args.grace;
    let setup = Arc::new(Setup {
        endpoints: args.endpoints.clone(),
        minter: TokenMinter::new(&args.jwt_secret),
        pool: args.pool.clone(),
        run_id: run_id(),
        token_ttl: i64::try_from(total_time.as_secs())
            .unwrap_or(i64::MAX / 2)
            .saturating_add(3600),
    });
    let gateways: Vec<String> = args.endpoints.iter().map(ToString::to_string).collect();
    eprintln!(
        "setting up {} pairs on {} ({} at a time)...",
        args.pairs,
        gateways.join(", "),
        args.concurrency
    );
    let setup_started = Instant::now();
    let pairs = set_up_pairs(&setup, args.pairs, args.concurrency).await?;
    eprintln!(
        "set up {} pairs in {:.1} s",
        pairs.len(),
        setup_started.elapsed().as_secs_f64()
    );

    let start = Instant::now() + START_DELAY;
    let warmup_end = start + args.warmup;
    let send_end = warmup_end + args.duration;
    let schedule = Schedule {
        start,
        period: args.pairs as f64 / args.rate,
        pairs: args.pairs,
        warmup_end,
        send_end,
        deadline: send_end + args.grace,
    };
    eprintln!(
        "sending {:.0} msg/s ({:.2} msg/s per pair) for {:.1} s warm-up + {:.1} s measured, then up to {:.1} s grace",
        args.rate,
        args.rate / args.pairs as f64,
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
        args.grace.as_secs_f64()
    );
    let progress = Arc::new(Progress::default());
    let ticker = tokio::spawn(print_progress(progress.clone(), start));
    let mut runs = JoinSet::new();
    for pair in pairs {
        let runner = PairRun::new(
            pair,
            schedule.clone(),
            &args,
            &setup.run_id,
            progress.clone(),
        );
        runs.spawn(runner.run());
    }
    let mut totals = LoadTotals::default();
    while let Some(done) = runs.join_next().await {
        match done {
            Ok(pair_totals) => totals.merge(pair_totals),
            Err(error) => bail!("a pair's task failed: {error}"),
        }
    }
    ticker.abort();
    let plan = LoadPlan {
        pairs: args.pairs,
        gateways: args.endpoints.len(),
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
    };
    Ok(report::print_load(&plan, &mut totals))
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

/// When each pair sends. Message `k` of pair `i` is due at
/// `start + (i / pairs + k) * period`.
#[derive(Debug, Clone)]
struct Schedule {
    start: Instant,
    /// Seconds between two messages of one pair.
    period: f64,
    pairs: usize,
    warmup_end: Instant,
    send_end: Instant,
    deadline: Instant,
}

impl Schedule {
    fn due(&self, pair: usize, k: usize) -> Instant {
        let slots = pair as f64 / self.pairs as f64 + k as f64;
        self.start + Duration::from_secs_f64(slots * self.period)
    }

    /// Messages one pair sends in total (an upper bound for capacity).
    fn messages_per_pair(&self) -> usize {
        let seconds = (self.send_end - self.start).as_secs_f64();
        ((seconds / self.period).ceil() as usize + 1).min(50_000_000)
    }
}

/// One sent message: when it went out and what has happened to it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    flags: u8,
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

/// The sending and booking task of one pair.
struct PairRun {
    pair: Pair,
    schedule: Schedule,
    progress: Arc<Progress>,
    /// `["send-message",{"sessionId":…,"clientMsgId":"<prefix>`
    frame_head: String,
    /// `<filler>"}]`
    frame_tail: String,
    client_id_prefix: String,
    sent: Vec<Sent>,
    totals: LoadTotals,
    customer_seqs: SeqTracker,
    agent_seqs: SeqTracker,
    answered: usize,
    delivered: usize,
    echoed: usize,
    sending: bool,
}

impl PairRun {
    fn new(
        pair: Pair,
        schedule: Schedule,
        args: &LoadArgs,
        run_id: &str,
        progress: Arc<Progress>,
    ) -> Self {
        let client_id_prefix = format!("{run_id}-{}-", pair.index);
        let session = Value::String(pair.session_id.clone());
        let frame_head =
            format!(r#"["send-message",{{"sessionId":{session},"clientMsgId":"{client_id_prefix}"#);
        let filler = if args.size > 0 {
            format!(" {}", "x".repeat(args.size))
        } else {
            String::new()
        };
        let frame_tail = format!(r#"{filler}"}}]"#);
        let capacity = schedule.messages_per_pair();
        PairRun {
            pair,
            schedule,
            progress,
            frame_head,
            frame_tail,
            client_id_prefix,
            sent: Vec::with_capacity(capacity),
            totals: LoadTotals::default(),
            customer_seqs: SeqTracker::default(),
            agent_seqs: SeqTracker::default(),
            answered: 0,
            delivered: 0,
            echoed: 0,
            sending: true,
        }
    }

    async fn run(mut self) -> LoadTotals {
        loop {
            let next_due = self.schedule.due(self.pair.index, self.sent.len());
            if self.sending && next_due >= self.schedule.send_end {
                self.sending = false;
            }
            if !self.sending && self.settled() {
                break;
            }
            tokio::select! {
                received = self.pair.events.recv() => match received {
                    Some(received) => self.book(received),
                    None => break,
                },
                _ = sleep_until(next_due), if self.sending => self.send_due().await,
                _ = sleep_until(self.schedule.deadline) => break,
            }
        }
        self.finish().await
    }

    /// Everything sent has been answered, and every acked message has
    /// reached the agent and come back to the sender.
    fn settled(&self) -> bool {
        let acked = usize::try_from(self.totals.acked_ok).unwrap_or(usize::MAX);
        self.answered == self.sent.len() && self.delivered >= acked && self.echoed >= acked
    }

    /// Writes every message that is due by now, then flushes once.
    async fn send_due(&mut self) {
        let now = Instant::now();
        let first = self.sent.len();
        let sink = self.pair.customer.clone();
        let mut sink = sink.lock().await;
        let mut result = Ok(());
        loop {
            let k = self.sent.len();
            let due = self.schedule.due(self.pair.index, k);
            if due > now || due >= self.schedule.send_end {
                break;
            }
            let frame = self.frame(k);
            let at = Instant::now();
            if let Err(error) = sink.feed(Message::text(frame)).await {
                result = Err(error);
                break;
            }
            let mut flags = 0;
            if due >= self.schedule.warmup_end {
                flags |= MEASURED;
                self.totals.sent_measured += 1;
                self.totals
                    .lag_us
                    .push(micros(at.saturating_duration_since(due)));
            }
            self.sent.push(Sent { at, flags });
        }
        if result.is_ok() {
            result = sink.flush().await;
        }
        drop(sink);
        let written = self.sent.len() - first;
        self.progress
            .sent
            .fetch_add(written as u64, Ordering::Relaxed);
        if let Err(error) = result {
            self.totals.disconnects.push(format!(
                "pair {} customer: write failed: {error}",
                self.pair.index
            ));
            self.sending = false;
        }
    }

    /// `42/chat,<k+1>["send-message",{"sessionId":…,"clientMsgId":"<run>-<pair>-<k>","content":"m<k>…"}]`
    fn frame(&self, k: usize) -> String {
        let mut frame = String::with_capacity(self.frame_head.len() + self.frame_tail.len() + 48);
        let _ = write!(frame, "42/chat,{}", k + 1);
        frame.push_str(&self.frame_head);
        let _ = write!(frame, r#"{k}","content":"m{k}"#);
        frame.push_str(&self.frame_tail);
        frame
    }

    fn book(&mut self, received: Received) {
        match received.item {
            Incoming::Ack { id, outcome } if received.tag == CUSTOMER => {
                self.book_ack(id, outcome, received.at)
            }
            Incoming::Ack { .. } => {}
            Incoming::NewMessage(message) => {
                if message.session_id != self.pair.session_id {
                    self.totals.foreign += 1;
                    return;
                }
                let tracker = if received.tag == AGENT {
                    &mut self.agent_seqs
                } else {
                    &mut self.customer_seqs
                };
                tracker.observe(message.seq, &mut self.totals);
                let index = message
                    .client_msg_id
                    .as_deref()
                    .and_then(|id| id.strip_prefix(self.client_id_prefix.as_str()))
                    .and_then(|k| k.parse::<usize>().ok());
                match index {
                    Some(k) if k < self.sent.len() => {
                        self.book_delivery(k, received.tag, received.at)
                    }
                    _ => self.totals.foreign += 1,
                }
            }
            Incoming::Unparsable(_) => self.totals.unparsable += 1,
            Incoming::Closed(reason) => {
                let side = if received.tag == AGENT {
                    "agent"
                } else {
                    "customer"
                };
                self.totals
                    .disconnects
                    .push(format!("pair {} {side}: {reason}", self.pair.index));
                if received.tag == CUSTOMER {
                    self.sending = false;
                }
            }
        }
    }

    fn book_ack(&mut self, id: u64, outcome: AckOutcome, at: Instant) {
        let Some(sent) = id
            .checked_sub(1)
            .and_then(|k| usize::try_from(k).ok())
            .and_then(|k| self.sent.get_mut(k))
        else {
            // The join's ack, or an id this run never used.
            return;
        };
        if sent.flags & ANSWERED != 0 {
            return;
        }
        sent.flags |= ANSWERED;
        self.answered += 1;
        match outcome {
            AckOutcome::Ok { .. } => {
                sent.flags |= ACKED;
                self.totals.acked_ok += 1;
                if sent.flags & MEASURED != 0 {
                    self.totals
                        .ack_us
                        .push(micros(at.saturating_duration_since(sent.at)));
                }
                self.progress.acked.fetch_add(1, Ordering::Relaxed);
            }
            AckOutcome::Failed { code } => *self.totals.failed.entry(code).or_default() += 1,
        }
    }

    fn book_delivery(&mut self, k: usize, tag: u8, at: Instant) {
        let sent = &mut self.sent[k];
        if tag == CUSTOMER {
            if sent.flags & ECHOED == 0 {
                sent.flags |= ECHOED;
                self.echoed += 1;
                if sent.flags & MEASURED != 0 {
                    self.totals
                        .echo_us
                        .push(micros(at.saturating_duration_since(sent.at)));
                }
            }
            return;
        }
        if sent.flags & DELIVERED != 0 {
            return;
        }
        sent.flags |= DELIVERED;
        self.delivered += 1;
        self.totals.delivered_total += 1;
        if sent.flags & MEASURED != 0 {
            self.totals
                .delivery_us
                .push(micros(at.saturating_duration_since(sent.at)));
        }
        if at >= self.schedule.warmup_end && at < self.schedule.send_end {
            self.totals.delivered_in_window += 1;
        }
        self.progress.delivered.fetch_add(1, Ordering::Relaxed);
    }

    async fn finish(mut self) -> LoadTotals {
        for sent in &self.sent {
            if sent.flags & ANSWERED == 0 {
                self.totals.unanswered += 1;
            }
            if sent.flags & ACKED != 0 && sent.flags & DELIVERED == 0 {
                self.totals.lost += 1;
            }
            if sent.flags & ACKED != 0 && sent.flags & ECHOED == 0 {
                self.totals.missing_echo += 1;
            }
        }
        self.totals.sent_total = self.sent.len() as u64;
        self.pair.close().await;
        self.totals
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
fn run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{:x}", millis % (1 << 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(pairs: usize, rate: f64) -> Schedule {
        let start = Instant::now();
        Schedule {
            start,
            period: pairs as f64 / rate,
            pairs,
            warmup_end: start + Duration::from_secs(1),
            send_end: start + Duration::from_secs(3),
            deadline: start + Duration::from_secs(4),
        }
    }

    #[test]
    fn pairs_are_staggered_across_one_period() {
        let s = schedule(4, 100.0);
        // 25 msg/s per pair: 40 ms apart, pairs 10 ms apart.
        assert_eq!(s.due(0, 0), s.start);
        assert_eq!(s.due(1, 0) - s.start, Duration::from_millis(10));
        assert_eq!(s.due(0, 1) - s.start, Duration::from_millis(40));
        assert_eq!(s.due(3, 2) - s.start, Duration::from_millis(110));
        assert!(s.messages_per_pair() >= 75);
    }

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
