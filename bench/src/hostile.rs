//! The hostile run: what abusive clients cost everyone else. A control chat
//! (see [`crate::control`]) runs throughout; the phases, one after
//! another, are a quiet baseline, one flooding socket per client event kind
//! (each sending as fast as its acks come back, up to a window of
//! unanswered frames, and counting accepted and `rate_limited` answers),
//! and a crowd of sockets with a tiny receive buffer that ask for large
//! join replies and never read. Each phase prints the flooder's counts, the
//! control's round trip, the generator's lag and the gateway's CPU and
//! VmRSS (`/proc/PID/stat` and `/proc/PID/status`); the crowd phase adds
//! the RSS before, its peak (sampled every 100 ms) and after the server
//! closed those sockets (seen as the gateway's open descriptors falling
//! back). A summary table and the verdict close the report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chat_shared::auth::{Identity, TokenMinter};
use chat_shared::protocol::Role;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use crate::args::HostileArgs;
use crate::client::{self, AckOutcome, Endpoint, Incoming, Received, SharedSink, WsStream};
use crate::control::{Control, ControlSetup, ControlStats};
use crate::idle::rss_kib;
use crate::report::{bytes, ms};
use crate::rest::{self, RestError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const TOKEN_TTL: i64 = 6 * 3600;
/// Unanswered frames a flooder keeps in flight.
const WINDOW: u64 = 256;
/// A flooder waiting this long for any answer stops counting on the
/// unanswered ones.
const STALL: Duration = Duration::from_millis(500);
/// Wait after a phase for the last acks and control deliveries.
const SETTLE: Duration = Duration::from_secs(2);
/// The crowd's kernel receive buffer.
const CROWD_RECEIVE_BUFFER: u32 = 4096;
const CROWD_SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// How long the server gets to close every non-reading socket.
const CROWD_LIMIT: Duration = Duration::from_secs(45);
const MAX_GROWTH_KIB: u64 = 64 * 1024;
const FILLER_CHARS: usize = 4000;
/// Linux's USER_HZ: `/proc/*/stat` times are in these ticks.
pub(crate) const TICKS_PER_SECOND: f64 = 100.0;

/// The client event kinds a flooder sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SendMessage,
    Typing,
    MarkRead,
    MarkDelivered,
    React,
    JoinSession,
    LeaveSession,
    RefreshToken,
    Unknown,
}

const KINDS: [Kind; 9] = [
    Kind::SendMessage,
    Kind::Typing,
    Kind::MarkRead,
    Kind::MarkDelivered,
    Kind::React,
    Kind::JoinSession,
    Kind::LeaveSession,
    Kind::RefreshToken,
    Kind::Unknown,
];

impl Kind {
    fn event(self) -> &'static str {
        match self {
            Kind::SendMessage => "send-message",
            Kind::Typing => "typing",
            Kind::MarkRead => "mark-read",
            Kind::MarkDelivered => "mark-delivered",
            Kind::React => "react",
            Kind::JoinSession => "join-session",
            Kind::LeaveSession => "leave-session",
            Kind::RefreshToken => "refresh-token",
            Kind::Unknown => "no-such-event",
        }
    }

    fn payload(self, session_id: &str, n: u64, token: &str) -> Value {
        match self {
            Kind::SendMessage => json!({
                "sessionId": session_id,
                "content": format!("flood {n}"),
                "clientMsgId": format!("flood-{n}"),
            }),
            Kind::Typing => json!({ "sessionId": session_id, "isTyping": n.is_multiple_of(2) }),
            Kind::MarkRead | Kind::MarkDelivered => {
                json!({ "sessionId": session_id, "upToSeq": n })
            }
            // Every stored change of message 1's reactions is fanned out:
            // the flood toggles one emoji on and off, the dearest pattern.
            Kind::React => json!({
                "sessionId": session_id,
                "seq": 1,
                "emoji": "👍",
                "on": !n.is_multiple_of(2),
            }),
            Kind::JoinSession | Kind::LeaveSession => json!({ "sessionId": session_id }),
            Kind::RefreshToken => json!({ "token": token }),
            Kind::Unknown => json!({ "n": n }),
        }
    }
}

struct Ctx {
    endpoint: Endpoint,
    minter: TokenMinter,
    run_id: String,
    pool: String,
}

impl Ctx {
    fn token(&self, role: Role, name: &str) -> anyhow::Result<String> {
        let user_id = format!("hostile-{}-{name}", self.run_id);
        let identity = Identity {
            name: user_id.clone(),
            user_id,
            role,
            pools: if role == Role::Agent {
                vec![self.pool.clone()]
            } else {
                Vec::new()
            },
        };
        self.minter
            .mint(&identity, TOKEN_TTL)
            .context("minting a token")
    }

    /// A new session of `customer_token`'s customer; its id.
    async fn create_session(&self, customer_token: &str, subject: &str) -> anyhow::Result<String> {
        // Message 1 gives the react flooder something to react to.
        let body = json!({
            "subject": format!("hostile {} {subject}", self.run_id),
            "pool": self.pool,
            "message": "hello",
        });
        let session = retry_rest(|| {
            rest::post_json(&self.endpoint, "/api/chat/sessions", customer_token, &body)
        })
        .await
        .context("creating a session")?;
        session
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the created session has no id"))
    }
}

/// A REST call, again after a second when answered 429 (up to a minute).
async fn retry_rest<F, Fut>(mut call: F) -> Result<Value, RestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, RestError>>,
{
    let mut attempts = 0;
    loop {
        match call().await {
            Err(RestError::Status { status: 429, .. }) if attempts < 60 => {
                attempts += 1;
                sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    at: Instant,
    ticks: u64,
}

pub(crate) fn cpu_ticks(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("{path}: no utime/stime"))
}

/// utime + stime (fields 14 and 15) of a `/proc/*/stat` line; the command
/// name in parentheses may hold spaces, so fields count from its `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    parse_user_system(stat).map(|(user, system)| user + system)
}

fn parse_user_system(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

fn sample(path: &str) -> anyhow::Result<ProcSample> {
    Ok(ProcSample {
        at: Instant::now(),
        ticks: cpu_ticks(path)?,
    })
}

/// Percent of one core between two samples.
fn cpu_percent(from: ProcSample, to: ProcSample) -> f64 {
    let seconds = (to.at - from.at).as_secs_f64().max(1e-9);
    (to.ticks.saturating_sub(from.ticks)) as f64 / TICKS_PER_SECOND / seconds * 100.0
}

fn open_descriptors(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// What one flooder got back.
#[derive(Debug, Default)]
struct FloodCounts {
    sent: u64,
    accepted: u64,
    refused: u64,
    /// ok:false answers other than `rate_limited`, by code.
    other: BTreeMap<String, u64>,
    closed: Option<String>,
}

impl FloodCounts {
    fn answered(&self) -> u64 {
        self.accepted + self.refused + self.other.values().sum::<u64>()
    }

    fn book(&mut self, received: Received) {
        match received.item {
            Incoming::Ack { outcome, .. } => match outcome {
                AckOutcome::Ok { .. } => self.accepted += 1,
                AckOutcome::Failed { code } if code == "rate_limited" => self.refused += 1,
                AckOutcome::Failed { code } => *self.other.entry(code).or_default() += 1,
            },
            Incoming::Closed(reason) => self.closed = Some(reason),
            Incoming::NewMessage(_) | Incoming::Unparsable(_) => {}
        }
    }
}

/// A socket joined to its own session, ready to flood.
struct Flooder {
    kind: Kind,
    session_id: String,
    token: String,
    sink: SharedSink,
    events: mpsc::UnboundedReceiver<Received>,
    reader: JoinHandle<()>,
}

async fn set_up_flooder(ctx: &Ctx, kind: Kind) -> anyhow::Result<Flooder> {
    let token = ctx.token(Role::Customer, &format!("flood-{}", kind.event()))?;
    let session_id = ctx
        .create_session(&token, &format!("flood {}", kind.event()))
        .await?;
    let socket = client::connect(&ctx.endpoint, &token, CONNECT_TIMEOUT).await?;
    let (tx, mut events) = mpsc::unbounded_channel();
    let reader = client::spawn_reader(socket.stream, socket.sink.clone(), 0, Some(tx));
    let join = client::event_frame(Some(0), "join-session", &json!({ "sessionId": session_id }));
    client::send_frame(&socket.sink, join).await?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let received = timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow!("flooder join: no ack"))?
            .ok_or_else(|| anyhow!("flooder join: socket closed"))?;
        match received.item {
            Incoming::Ack {
                id: 0,
                outcome: AckOutcome::Ok { .. },
            } => break,
            Incoming::Ack {
                id: 0,
                outcome: AckOutcome::Failed { code },
            } => return Err(anyhow!("flooder join refused: {code}")),
            Incoming::Closed(reason) => return Err(anyhow!("flooder closed: {reason}")),
            _ => {}
        }
    }
    Ok(Flooder {
        kind,
        session_id,
        token,
        sink: socket.sink,
        events,
        reader,
    })
}

/// Sends as fast as the answers allow until `until`, then collects the
/// last answers for a moment.
async fn flood(flooder: &mut Flooder, until: Instant) -> FloodCounts {
    let mut counts = FloodCounts::default();
    // Frames given up on after a stall no longer hold the window.
    let mut written_off = 0;
    let event = flooder.kind.event();
    while Instant::now() < until && counts.closed.is_none() {
        while let Ok(received) = flooder.events.try_recv() {
            counts.book(received);
        }
        if counts
            .sent
            .saturating_sub(counts.answered().max(written_off))
            >= WINDOW
        {
            let stall_end = (Instant::now() + STALL).min(until);
            match timeout_at(stall_end, flooder.events.recv()).await {
                Ok(Some(received)) => counts.book(received),
                Ok(None) => counts.closed = Some("reader ended".into()),
                Err(_) => written_off = counts.sent,
            }
            continue;
        }
        let n = counts.sent + 1;
        let frame = client::event_frame(
            Some(n),
            event,
            &flooder.kind.payload(&flooder.session_id, n, &flooder.token),
        );
        if let Err(error) = client::send_frame(&flooder.sink, frame).await {
            counts.closed = Some(format!("cannot send: {error}"));
            break;
        }
        counts.sent = n;
        if n % 32 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let settle_end = Instant::now() + SETTLE;
    while counts.answered() < counts.sent && counts.closed.is_none() {
        match timeout_at(settle_end, flooder.events.recv()).await {
            Ok(Some(received)) => counts.book(received),
            Ok(None) | Err(_) => break,
        }
    }
    counts
}

/// One phase's line of the report.
struct Phase {
    name: String,
    flood: Option<FloodCounts>,
    control: ControlStats,
    server_cpu: f64,
    bench_cpu: f64,
    rss_kib: u64,
    crowd: Option<CrowdMemory>,
    failures: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct CrowdMemory {
    before_kib: u64,
    peak_kib: u64,
    after_kib: u64,
    connected: usize,
    closed_by_server: usize,
    closed_after: Option<Duration>,
}

/// Measures one window: CPU of both processes, the control's figures and
/// the RSS at its end.
struct Window {
    pid: u32,
    start: Instant,
    server: ProcSample,
    bench: ProcSample,
}

impl Window {
    fn open(pid: u32) -> anyhow::Result<Window> {
        Ok(Window {
            pid,
            start: Instant::now(),
            server: sample(&format!("/proc/{pid}/stat"))?,
            bench: sample("/proc/self/stat")?,
        })
    }

    async fn close(
        self,
        name: String,
        control: &Control,
        flood: Option<FloodCounts>,
    ) -> anyhow::Result<Phase> {
        let end = Instant::now();
        let server = sample(&format!("/proc/{}/stat", self.pid))?;
        let bench = sample("/proc/self/stat")?;
        let rss_kib = rss_kib(&format!("/proc/{}/status", self.pid))?;
        // The control messages due at the very end need their round trip.
        sleep(SETTLE).await;
        let stats = control.window(self.start, end);
        let mut failures = stats.failures();
        if let Some(flood) = &flood {
            if let Some(reason) = &flood.closed {
                failures.push(format!("flooder closed: {reason}"));
            }
        }
        Ok(Phase {
            name,
            flood,
            control: stats,
            server_cpu: cpu_percent(self.server, server),
            bench_cpu: cpu_percent(self.bench, bench),
            rss_kib,
            crowd: None,
            failures,
        })
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

pub async fn run(args: HostileArgs) -> anyhow::Result<bool> {
    let ctx = Arc::new(Ctx {
        endpoint: args.endpoint.clone(),
        minter: TokenMinter::new(&args.jwt_secret),
        run_id: run_id(),
        pool: args.pool.clone(),
    });
    rss_kib(&format!("/proc/{}/status", args.pid))
        .with_context(|| format!("reading the memory of pid {}", args.pid))?;
    println!(
        "== hostile: gateway {} (pid {}), control chat {:.0} msg/s, {:.1} s per phase",
        args.endpoint,
        args.pid,
        args.control_rate,
        args.phase.as_secs_f64()
    );

    // First: its agent serves the pool the other sessions are created in.
    let control = Control::start(ControlSetup {
        endpoint: ctx.endpoint.clone(),
        customer_token: ctx.token(Role::Customer, "control-c")?,
        agent_token: ctx.token(Role::Agent, "control-a")?,
        pool: ctx.pool.clone(),
        run_id: ctx.run_id.clone(),
        rate: args.control_rate,
    })
    .await?;
    let mut flooders = Vec::new();
    for kind in KINDS {
        flooders.push(
            set_up_flooder(&ctx, kind)
                .await
                .with_context(|| format!("setting up the {} flooder", kind.event()))?,
        );
    }
    sleep(Duration::from_millis(500)).await;

    let mut phases = Vec::new();
    let window = Window::open(args.pid)?;
    sleep(args.phase).await;
    let phase = window.close("baseline".into(), &control, None).await?;
    print_phase(&phase);
    phases.push(phase);

    for flooder in &mut flooders {
        let window = Window::open(args.pid)?;
        let counts = flood(flooder, window.start + args.phase).await;
        let phase = window
            .close(flooder.kind.event().to_owned(), &control, Some(counts))
            .await?;
        print_phase(&phase);
        phases.push(phase);
        client::close(&flooder.sink).await;
        flooder.reader.abort();
    }

    let sessions = fill_sessions(&ctx, args.sessions, args.messages).await?;
    let phase = crowd_phase(&ctx, &args, &sessions, &control).await?;
    print_phase(&phase);
    phases.push(phase);

    control.stop().await;
    let passed = print_summary(&phases);
    if let Some((user, system)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_user_system(&stat))
    {
        println!(
            "chat-bench CPU over the whole run: user {:.2} s, system {:.2} s",
            user as f64 / TICKS_PER_SECOND,
            system as f64 / TICKS_PER_SECOND
        );
    }
    Ok(passed)
}

/// Sessions full of large messages (4000 U+0001: 24,000 bytes of JSON
/// each), each posted over REST by its own customer.
async fn fill_sessions(
    ctx: &Arc<Ctx>,
    count: usize,
    messages: usize,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let posted = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for s in 0..count {
        let ctx = ctx.clone();
        let posted = posted.clone();
        tasks.spawn(async move {
            let token = ctx.token(Role::Customer, &format!("crowd-owner-{s}"))?;
            let session_id = ctx.create_session(&token, &format!("crowd {s}")).await?;
            let path = format!("/api/chat/sessions/{session_id}/messages");
            let content = "\u{1}".repeat(FILLER_CHARS);
            for m in 0..messages {
                let body = json!({ "content": content, "clientMsgId": format!("fill-{s}-{m}") });
                retry_rest(|| rest::post_json(&ctx.endpoint, &path, &token, &body))
                    .await
                    .with_context(|| format!("posting message {m} to {session_id}"))?;
                posted.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(session_id)
        });
    }
    let mut sessions = Vec::new();
    while let Some(done) = tasks.join_next().await {
        sessions.push(done.map_err(|e| anyhow!("a fill task failed: {e}"))??);
    }
    println!(
        "filled {count} sessions with {} messages of {FILLER_CHARS} U+0001 in {:.1} s",
        posted.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(sessions)
}

/// A non-reading socket: its read half is kept, never polled.
struct Silent {
    sink: SharedSink,
    stream: WsStream,
}

async fn crowd_phase(
    ctx: &Arc<Ctx>,
    args: &HostileArgs,
    sessions: &[String],
    control: &Control,
) -> anyhow::Result<Phase> {
    let status_path = format!("/proc/{}/status", args.pid);
    sleep(Duration::from_secs(1)).await;
    let before_kib = rss_kib(&status_path)?;
    let descriptors_before = open_descriptors(args.pid);
    let window = Window::open(args.pid)?;

    let peak = Arc::new(AtomicU64::new(before_kib));
    let sampler = {
        let (peak, path) = (peak.clone(), status_path.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(kib) = rss_kib(&path) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                sleep(CROWD_SAMPLE_EVERY).await;
            }
        })
    };

    let mut tasks = JoinSet::new();
    for c in 0..args.crowd {
        let token = ctx.token(Role::Agent, &format!("silent-{c}"))?;
        let endpoint = ctx.endpoint.clone();
        let frames: Vec<String> = (0..args.joins)
            .map(|j| {
                let session_id = &sessions[(c + j) % sessions.len()];
                client::event_frame(
                    Some(j as u64 + 1),
                    "join-session",
                    &json!({ "sessionId": session_id, "lastSeq": 0 }),
                )
            })
            .collect();
        tasks.spawn(async move {
            let socket = client::connect_with_receive_buffer(
                &endpoint,
                &token,
                CONNECT_TIMEOUT,
                CROWD_RECEIVE_BUFFER,
            )
            .await?;
            for frame in frames {
                client::send_frame(&socket.sink, frame).await?;
            }
            Ok::<_, anyhow::Error>(Silent {
                sink: socket.sink,
                stream: socket.stream,
            })
        });
    }
    let mut silent = Vec::new();
    let mut failures = BTreeMap::<String, usize>::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(socket)) => silent.push(socket),
            Ok(Err(error)) => *failures.entry(format!("{error:#}")).or_default() += 1,
            Err(error) => *failures.entry(format!("task: {error}")).or_default() += 1,
        }
    }
    let connected_at = Instant::now();
    println!(
        "crowd: {} of {} non-reading sockets connected and sent {} join-session each",
        silent.len(),
        args.crowd,
        args.joins
    );
    for (error, count) in &failures {
        println!("  failed x{count}: {error}");
    }

    // The server closes them when their queues stay full: its open
    // descriptors fall back to where they were.
    let limit = connected_at + CROWD_LIMIT;
    let mut closed_after = None;
    if let Some(baseline) = descriptors_before {
        while Instant::now() < limit {
            if open_descriptors(args.pid).is_some_and(|n| n <= baseline) {
                closed_after = Some(connected_at.elapsed());
                break;
            }
            sleep(CROWD_SAMPLE_EVERY).await;
        }
    } else {
        sleep_until(limit).await;
    }
    sleep(Duration::from_secs(1)).await;
    let after_kib = rss_kib(&status_path)?;
    sampler.abort();

    // Confirm from our side: a socket the server closed ends after the
    // little it still had in flight.
    let connected = silent.len();
    let descriptors_waited = open_descriptors(args.pid);
    let (closed_by_server, endings) = confirm_closed(silent).await;
    println!(
        "crowd: gateway descriptors before {}, at the end of the wait {}, after reading the crowd to its end {}; \
         endings seen by the crowd: {}",
        descriptors_before.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        descriptors_waited.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        open_descriptors(args.pid).map_or_else(|| "?".to_owned(), |n| n.to_string()),
        endings
            .iter()
            .map(|(how, n)| format!("{how} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut phase = window
        .close(format!("crowd x{}", args.crowd), control, None)
        .await?;
    let memory = CrowdMemory {
        before_kib,
        peak_kib: peak.load(Ordering::Relaxed),
        after_kib,
        connected,
        closed_by_server,
        closed_after,
    };
    let growth = memory.peak_kib.saturating_sub(before_kib);
    if growth >= MAX_GROWTH_KIB {
        phase.failures.push(format!(
            "RSS grew {} >= 64 MiB",
            bytes(growth as f64 * 1024.0)
        ));
    }
    if connected < args.crowd {
        phase
            .failures
            .push(format!("{} crowd sockets failed", args.crowd - connected));
    }
    if closed_by_server < connected {
        phase.failures.push(format!(
            "{} non-reading sockets still open",
            connected - closed_by_server
        ));
    }
    phase.crowd = Some(memory);
    Ok(phase)
}

/// Reads each socket to its end (for up to 5 s in all); returns how many
/// ended, i.e. had been closed by the server, and how they ended.
async fn confirm_closed(silent: Vec<Silent>) -> (usize, BTreeMap<String, usize>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tasks = JoinSet::new();
    for mut socket in silent {
        tasks.spawn(async move {
            let mut frames = 0usize;
            let ending = loop {
                match timeout_at(deadline, socket.stream.next()).await {
                    Ok(None) => break Some("end of stream"),
                    Ok(Some(Err(_))) => break Some("error (reset)"),
                    Ok(Some(Ok(message))) if message.is_close() => break Some("close frame"),
                    Ok(Some(Ok(_))) => frames += 1,
                    Err(_) => break None,
                }
            };
            client::close(&socket.sink).await;
            (ending, frames)
        });
    }
    let mut ended = 0;
    let mut endings = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (how, frames) = match done {
            Ok((Some(how), frames)) => {
                ended += 1;
                (how, frames)
            }
            Ok((None, frames)) => ("still open", frames),
            Err(_) => ("task failed", 0),
        };
        let label = format!(
            "{how} ({} frames left)",
            if frames > 2 { "some" } else { "<= 2" }
        );
        *endings.entry(label).or_insert(0) += 1;
    }
    (ended, endings)
}

fn opt_ms(us: Option<u32>) -> String {
    us.map_or_else(|| "-".to_owned(), ms)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn print_phase(phase: &Phase) {
    println!();
    println!("-- phase {}", phase.name);
    if let Some(flood) = &phase.flood {
        let other: Vec<String> = flood
            .other
            .iter()
            .map(|(code, n)| format!("{code} x{n}"))
            .collect();
        println!(
            "flooder: sent {}, accepted {}, refused (rate_limited) {}, other errors [{}], unanswered {}",
            flood.sent,
            flood.accepted,
            flood.refused,
            other.join(", "),
            flood.sent.saturating_sub(flood.answered())
        );
    }
    if let Some(crowd) = &phase.crowd {
        println!(
            "crowd: gateway RSS before {} MiB, peak {} MiB (+{} MiB), after close {} MiB (+{} MiB)",
            mib(crowd.before_kib),
            mib(crowd.peak_kib),
            mib(crowd.peak_kib.saturating_sub(crowd.before_kib)),
            mib(crowd.after_kib),
            mib(crowd.after_kib.saturating_sub(crowd.before_kib)),
        );
        println!(
            "crowd: {} of {} closed by the server{}",
            crowd.closed_by_server,
            crowd.connected,
            crowd.closed_after.map_or_else(String::new, |d| format!(
                " (gateway descriptors back to baseline {:.1} s after connecting)",
                d.as_secs_f64()
            ))
        );
    }
    let c = &phase.control;
    println!(
        "control: {} messages, round trip p50 {} ms, p99 {} ms, max {} ms; generator lag max {} ms; lost {}, duplicated {}",
        c.messages,
        opt_ms(c.p50_us),
        opt_ms(c.p99_us),
        opt_ms(c.max_us),
        ms(c.lag_max_us),
        c.lost,
        c.duplicated
    );
    println!(
        "gateway: CPU {:.0}% of a core, VmRSS {} MiB; bench CPU {:.0}%",
        phase.server_cpu,
        mib(phase.rss_kib),
        phase.bench_cpu
    );
    if phase.failures.is_empty() {
        println!("phase result: PASS");
    } else {
        println!("phase result: FAIL ({})", phase.failures.join("; "));
    }
}

/// Prints the table; true when every phase passed.
fn print_summary(phases: &[Phase]) -> bool {
    println!();
    println!("== summary");
    println!(
        "{:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>9}  result",
        "phase",
        "sent",
        "accepted",
        "refused",
        "p50 ms",
        "p99 ms",
        "lag ms",
        "gw cpu",
        "bench",
        "RSS MiB"
    );
    let mut passed = true;
    for phase in phases {
        let (sent, accepted, refused) = phase.flood.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned(), "-".to_owned()),
            |f| {
                (
                    f.sent.to_string(),
                    f.accepted.to_string(),
                    f.refused.to_string(),
                )
            },
        );
        let rss = match &phase.crowd {
            Some(crowd) => format!(
                "{}/{}/{}",
                mib(crowd.before_kib),
                mib(crowd.peak_kib),
                mib(crowd.after_kib)
            ),
            None => mib(phase.rss_kib),
        };
        let ok = phase.failures.is_empty();
        passed &= ok;
        println!(
            "{:<14} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6.0}% {:>5.0}% {:>9}  {}",
            phase.name,
            sent,
            accepted,
            refused,
            opt_ms(phase.control.p50_us),
            opt_ms(phase.control.p99_us),
            ms(phase.control.lag_max_us),
            phase.server_cpu,
            phase.bench_cpu,
            rss,
            if ok { "PASS" } else { "FAIL" }
        );
    }
    println!("(crowd RSS: before/peak/after; targets: control p99 < 50 ms and lag <= 20 ms in every phase,");
    println!(" crowd RSS growth (peak - before) < 64 MiB)");
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_the_command_name() {
        let stat = "1234 (support chat) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
        assert!(cpu_ticks("/proc/self/stat").is_ok());
    }

    #[test]
    fn flood_counts_split_refusals() {
        let mut counts = FloodCounts {
            sent: 4,
            ..Default::default()
        };
        let ack = |outcome| Received {
            tag: 0,
            at: Instant::now(),
            item: Incoming::Ack { id: 1, outcome },
        };
        counts.book(ack(AckOutcome::Ok { seq: None }));
        counts.book(ack(AckOutcome::Failed {
            code: "rate_limited".into(),
        }));
        counts.book(ack(AckOutcome::Failed {
            code: "invalid_payload".into(),
        }));
        assert_eq!(
            (counts.accepted, counts.refused, counts.answered()),
            (1, 1, 3)
        );
    }
}
