//! `chat-bench assign`: automatic assignment under a burst of new sessions.
//! Owns the run and its judgement. Agents of one pool connect (spread over
//! the gateways) and say `online`; one customer per session connects
//! beforehand; then each customer opens its session (REST `POST
//! /sessions`, the protocol's one way to open a session) when it is due on
//! a fixed open-loop schedule. Each session is timed from its due time to
//! the `session-updated` its customer's socket receives showing it
//! `active` with an agent: the protocol sends that event to the customer
//! concerned on every assignment, whether or not they joined the session.
//! Beside it, the same event on the assigned agent's own socket. At the end
//! the agent directory, read as an admin, gives every agent's open chats,
//! and the CPU of the watched processes over the run is printed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chat_shared::auth::{Identity, TokenMinter};
use chat_shared::protocol::Role;
use chat_shared::Timestamp;
use futures_util::StreamExt;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::args::{AssignArgs, ProcGroup};
use crate::client::{self, AckOutcome, Endpoint, Incoming, Parsed, SharedSink, WsStream};
use crate::hostile::{cpu_ticks, TICKS_PER_SECOND};
use crate::load;
use crate::pacer::Pacer;
use crate::report::{micros, ms, percentiles, Percentiles};
use crate::rest;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const STATUS_TIMEOUT: Duration = Duration::from_secs(20);
const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(15);
/// Time between planning the schedule and its first due creation.
const START_DELAY: Duration = Duration::from_millis(500);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The generator's lag p99 above which the run says nothing about the
/// rate it was asked for.
pub const LAG_P99_LIMIT: Duration = Duration::from_millis(50);
const STATUS_ACK_ID: u64 = 1;
const EVENT: &str = "42/chat,";
const SESSION_UPDATED: &str = r#"42/chat,["session-updated","#;
const AGENT_UPDATED: &str = r#"42/chat,["agent-updated","#;
const QUEUE_POSITION: &str = r#"42/chat,["queue-position","#;
/// The directory's answer is 100 small entries; anything much larger is
/// wrong.
const MAX_DIRECTORY: u64 = 16 * 1024 * 1024;

/// The fields of a Session the run reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    id: String,
    status: String,
    #[serde(default)]
    agent_id: Option<String>,
    created_at: Timestamp,
    #[serde(default)]
    assigned_at: Option<Timestamp>,
}

impl SessionView {
    fn assigned_agent(&self) -> Option<&str> {
        (self.status == "active")
            .then_some(self.agent_id.as_deref())
            .flatten()
    }
}

#[derive(Deserialize)]
struct SessionEnvelope {
    session: SessionView,
}

/// The fields of a directory entry (Agent) the run reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentView {
    id: String,
    #[serde(default)]
    status: String,
    open_chats: i64,
    capacity: i64,
}

#[derive(Deserialize)]
struct AgentEnvelope {
    agent: AgentView,
}

#[derive(Deserialize)]
struct Directory {
    items: Vec<AgentView>,
}

/// Which socket a frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Customer(usize),
    Agent(usize),
}

/// What a socket's reader looks for; everything else it drops unparsed,
/// so 100 agents hearing every pool broadcast cost the bench little.
#[derive(Debug, Clone, Default)]
struct Interest {
    /// A customer: its `session-updated` and `queue-position`.
    customer: bool,
    /// An agent: `session-updated` frames holding this text (its own
    /// `"agentId":"…"`), the ones that give it a session.
    own_agent: Option<String>,
    /// `agent-updated` (one agent watches every agent's load).
    loads: bool,
}

#[derive(Debug)]
enum What {
    Updated(SessionView),
    Load(AgentView),
    QueuePosition,
    Ack { id: u64, outcome: AckOutcome },
    Unparsable,
    Closed(String),
}

#[derive(Debug)]
struct Heard {
    side: Side,
    at: Instant,
    what: What,
}

/// How a reader treats one text frame.
#[derive(Debug)]
enum Frame {
    Ping(String),
    Heard(What),
    Disconnect,
    Ignored,
}

fn read_frame(text: &str, interest: &Interest) -> Frame {
    if text.starts_with(SESSION_UPDATED) {
        let wanted = match &interest.own_agent {
            Some(needle) => text.contains(needle.as_str()),
            None => interest.customer,
        };
        if !wanted {
            return Frame::Ignored;
        }
        return Frame::Heard(
            event_payload::<SessionEnvelope>(text)
                .map_or(What::Unparsable, |e| What::Updated(e.session)),
        );
    }
    if text.starts_with(AGENT_UPDATED) {
        if !interest.loads {
            return Frame::Ignored;
        }
        return Frame::Heard(
            event_payload::<AgentEnvelope>(text).map_or(What::Unparsable, |e| What::Load(e.agent)),
        );
    }
    if text.starts_with(QUEUE_POSITION) {
        return if interest.customer {
            Frame::Heard(What::QueuePosition)
        } else {
            Frame::Ignored
        };
    }
    match client::parse_frame(text) {
        Parsed::Ping(data) => Frame::Ping(data),
        Parsed::Item(Incoming::Ack { id, outcome }) => Frame::Heard(What::Ack { id, outcome }),
        Parsed::Item(Incoming::Unparsable(_)) => Frame::Heard(What::Unparsable),
        Parsed::Item(_) | Parsed::Ignored => Frame::Ignored,
        Parsed::Disconnect => Frame::Disconnect,
    }
}

/// The payload of `42/chat,["name",payload]`.
fn event_payload<T: DeserializeOwned>(text: &str) -> Option<T> {
    let body = text.strip_prefix(EVENT)?;
    serde_json::from_str::<(IgnoredAny, T)>(body)
        .ok()
        .map(|(_, payload)| payload)
}

/// Reads one socket until it ends, answering pings and handing on what
/// `interest` names; a `Closed` item comes last.
fn spawn_reader(
    mut stream: WsStream,
    sink: SharedSink,
    side: Side,
    interest: Interest,
    heard: mpsc::UnboundedSender<Heard>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let reason = loop {
            let text = match stream.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => break "closed by the server".to_owned(),
                Some(Ok(_)) => continue,
                Some(Err(error)) => break error.to_string(),
            };
            let at = Instant::now();
            match read_frame(text.as_str(), &interest) {
                Frame::Ping(data) => {
                    if let Err(error) = client::send_frame(&sink, format!("3{data}")).await {
                        break format!("cannot answer a ping: {error}");
                    }
                }
                Frame::Heard(what) => {
                    let _ = heard.send(Heard { side, at, what });
                }
                Frame::Disconnect => break "disconnected by the server".to_owned(),
                Frame::Ignored => {}
            }
        };
        let _ = heard.send(Heard {
            side,
            at: Instant::now(),
            what: What::Closed(reason),
        });
    })
}

/// Who the run's users are, and their tokens.
struct Cast {
    run: String,
    pool: String,
    minter: TokenMinter,
    endpoints: Vec<Endpoint>,
}

const TOKEN_TTL: i64 = 3 * 3600;

impl Cast {
    fn agent_id(&self, index: usize) -> String {
        format!("assign-{}-a{index}", self.run)
    }

    fn token(&self, side: Side) -> anyhow::Result<String> {
        let (user_id, role, pools) = match side {
            Side::Agent(i) => (self.agent_id(i), Role::Agent, vec![self.pool.clone()]),
            Side::Customer(k) => (
                format!("assign-{}-c{k}", self.run),
                Role::Customer,
                Vec::new(),
            ),
        };
        self.mint(user_id, role, pools)
    }

    fn admin_token(&self) -> anyhow::Result<String> {
        self.mint(
            format!("assign-{}-admin", self.run),
            Role::Admin,
            Vec::new(),
        )
    }

    fn mint(&self, user_id: String, role: Role, pools: Vec<String>) -> anyhow::Result<String> {
        let identity = Identity {
            name: user_id.clone(),
            user_id,
            role,
            pools,
        };
        Ok(self.minter.mint(&identity, TOKEN_TTL)?)
    }

    /// Sockets go round-robin over the gateways, each customer's REST call
    /// to the gateway of its socket.
    fn endpoint(&self, side: Side) -> &Endpoint {
        let index = match side {
            Side::Agent(i) | Side::Customer(i) => i,
        };
        &self.endpoints[index % self.endpoints.len()]
    }

    fn interest(&self, side: Side) -> Interest {
        match side {
            Side::Customer(_) => Interest {
                customer: true,
                ..Interest::default()
            },
            Side::Agent(i) => Interest {
                customer: false,
                own_agent: Some(format!(r#""agentId":"{}""#, self.agent_id(i))),
                loads: i == 0,
            },
        }
    }
}

/// An open socket: its write half and its reader.
struct Held {
    sink: SharedSink,
    reader: JoinHandle<()>,
}

async fn close_all(held: Vec<Held>) {
    futures_util::future::join_all(held.iter().map(|h| client::close(&h.sink))).await;
    for h in held {
        h.reader.abort();
    }
}

/// Opens `sides`' sockets, `concurrency` at a time; fails (closing what
/// was opened) when any cannot be opened.
async fn open_all(
    cast: &Arc<Cast>,
    sides: Vec<Side>,
    concurrency: usize,
    heard: &mpsc::UnboundedSender<Heard>,
) -> anyhow::Result<Vec<Held>> {
    let count = sides.len();
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for (slot, side) in sides.into_iter().enumerate() {
        let cast = cast.clone();
        let permits = permits.clone();
        let heard = heard.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let opened = async {
                let token = cast.token(side)?;
                let socket = client::connect(cast.endpoint(side), &token, CONNECT_TIMEOUT).await?;
                let reader = spawn_reader(
                    socket.stream,
                    socket.sink.clone(),
                    side,
                    cast.interest(side),
                    heard,
                );
                anyhow::Ok(Held {
                    sink: socket.sink,
                    reader,
                })
            };
            (slot, side, opened.await)
        });
    }
    let mut held: Vec<Option<Held>> = (0..count).map(|_| None).collect();
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (slot, side, outcome) = done.context("a connect task failed")?;
        match outcome {
            Ok(h) => held[slot] = Some(h),
            Err(error) => failures.push(format!("{side:?}: {error:#}")),
        }
    }
    let held: Vec<Held> = held.into_iter().flatten().collect();
    if failures.is_empty() {
        return Ok(held);
    }
    for failure in failures.iter().take(5) {
        eprintln!("{failure}");
    }
    close_all(held).await;
    bail!("{} of {count} sockets could not be opened", failures.len())
}

/// When each session is due: `k / rate` seconds after `start`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    rate: f64,
}

impl Schedule {
    fn due(&self, k: usize) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }
}

/// One creation's answer.
#[derive(Debug)]
struct Created {
    index: usize,
    /// When the creation started, minus when it was due.
    lag: Duration,
    answered: Instant,
    outcome: Result<SessionView, String>,
}

/// What one session went through.
#[derive(Debug, Default, Clone)]
struct Track {
    session_id: Option<String>,
    created: bool,
    failed: Option<String>,
    active_in_reply: bool,
    /// The customer's first `session-updated` showing it assigned.
    assigned: Option<(Instant, String)>,
    server_ms: Option<i64>,
}

/// Everything the run counts.
#[derive(Debug, Default)]
struct Books {
    tracks: Vec<Track>,
    answered: usize,
    lag_us: Vec<u32>,
    reply_us: Vec<u32>,
    /// A customer told of its session being given again (or to another).
    repeated: u64,
    /// A customer's `session-updated` that does not show it assigned.
    not_assigned_updates: u64,
    /// The agent's own socket, by session id: which agent and when.
    told: HashMap<String, (usize, Instant)>,
    told_twice: u64,
    /// The highest `openChats` seen for each agent in `agent-updated`.
    loads: HashMap<String, i64>,
    queue_positions: u64,
    unparsable: u64,
    status_acks: usize,
    status_failures: Vec<String>,
    closed: Vec<String>,
}

impl Books {
    fn new(sessions: usize) -> Self {
        Books {
            tracks: vec![Track::default(); sessions],
            ..Books::default()
        }
    }

    fn hear(&mut self, heard: Heard) {
        match (heard.side, heard.what) {
            (Side::Customer(k), What::Updated(session)) => {
                let Some(track) = self.tracks.get_mut(k) else {
                    return;
                };
                let Some(agent) = session.assigned_agent() else {
                    self.not_assigned_updates += 1;
                    return;
                };
                if track.assigned.is_some() {
                    self.repeated += 1;
                    return;
                }
                track.assigned = Some((heard.at, agent.to_owned()));
                track.server_ms = session
                    .assigned_at
                    .map(|at| at.millis() - session.created_at.millis());
                track.session_id.get_or_insert(session.id);
            }
            (Side::Agent(i), What::Updated(session)) => {
                if session.assigned_agent().is_none() {
                    return;
                }
                if self.told.insert(session.id, (i, heard.at)).is_some() {
                    self.told_twice += 1;
                }
            }
            (_, What::Load(agent)) => {
                let seen = self.loads.entry(agent.id).or_insert(agent.open_chats);
                *seen = (*seen).max(agent.open_chats);
            }
            (_, What::QueuePosition) => self.queue_positions += 1,
            (Side::Agent(i), What::Ack { id, outcome }) if id == STATUS_ACK_ID => {
                self.status_acks += 1;
                if let AckOutcome::Failed { code } = outcome {
                    self.status_failures.push(format!("agent {i}: {code}"));
                }
            }
            (_, What::Ack { .. }) => {}
            (_, What::Unparsable) => self.unparsable += 1,
            (side, What::Closed(reason)) => self.closed.push(format!("{side:?}: {reason}")),
        }
    }

    fn created(&mut self, created: Created, schedule: &Schedule) {
        self.answered += 1;
        self.lag_us.push(micros(created.lag));
        let Some(track) = self.tracks.get_mut(created.index) else {
            return;
        };
        match created.outcome {
            Ok(session) => {
                self.reply_us.push(micros(
                    created
                        .answered
                        .saturating_duration_since(schedule.due(created.index)),
                ));
                track.created = true;
                track.active_in_reply = session.assigned_agent().is_some();
                track.session_id = Some(session.id);
            }
            Err(error) => track.failed = Some(error),
        }
    }

    fn assigned(&self) -> usize {
        self.tracks.iter().filter(|t| t.assigned.is_some()).count()
    }

    /// Every creation answered, every created session seen assigned by its
    /// customer and by its agent: nothing more to wait for.
    fn complete(&self) -> bool {
        let created = self.tracks.iter().filter(|t| t.created).count();
        self.answered == self.tracks.len()
            && self.assigned() >= created
            && self.told.len() >= created
    }
}

pub async fn run(args: AssignArgs) -> anyhow::Result<bool> {
    let cast = Arc::new(Cast {
        run: load::run_id(),
        pool: args.pool.clone(),
        minter: TokenMinter::new(&args.jwt_secret),
        endpoints: args.endpoints.clone(),
    });
    let window = args.sessions as f64 / args.rate;
    println!(
        "== assign: {} sessions at {:.0}/s ({window:.1} s) into pool {}, {} agents (capacity {}), over {} gateway(s)",
        args.sessions,
        args.rate,
        args.pool,
        args.agents,
        args.capacity,
        args.endpoints.len()
    );
    let (heard_tx, mut heard_rx) = mpsc::unbounded_channel();
    let mut books = Books::new(args.sessions);

    let started = Instant::now();
    let agents = open_all(
        &cast,
        (0..args.agents).map(Side::Agent).collect(),
        args.concurrency,
        &heard_tx,
    )
    .await?;
    let status = client::event_frame(
        Some(STATUS_ACK_ID),
        "set-status",
        &json!({ "status": "online" }),
    );
    for agent in &agents {
        if let Err(error) = client::send_frame(&agent.sink, status.clone()).await {
            close_all(agents).await;
            bail!("set-status: {error}");
        }
    }
    let status_deadline = Instant::now() + STATUS_TIMEOUT;
    while books.status_acks < agents.len() && books.closed.is_empty() {
        match tokio::time::timeout_at(status_deadline, heard_rx.recv()).await {
            Ok(Some(heard)) => books.hear(heard),
            Ok(None) | Err(_) => break,
        }
    }
    if books.status_acks < agents.len()
        || !books.status_failures.is_empty()
        || !books.closed.is_empty()
    {
        let problems = books
            .status_failures
            .iter()
            .chain(&books.closed)
            .take(5)
            .cloned()
            .collect::<Vec<_>>();
        close_all(agents).await;
        bail!(
            "set-status online: {} of {} acked ok within {STATUS_TIMEOUT:?} {problems:?}",
            books.status_acks - books.status_failures.len(),
            args.agents
        );
    }
    eprintln!(
        "{} agents online in {:.1} s",
        agents.len(),
        started.elapsed().as_secs_f64()
    );

    let customers = match open_all(
        &cast,
        (0..args.sessions).map(Side::Customer).collect(),
        args.concurrency,
        &heard_tx,
    )
    .await
    {
        Ok(customers) => customers,
        Err(error) => {
            close_all(agents).await;
            return Err(error);
        }
    };
    eprintln!(
        "{} customers connected in {:.1} s",
        customers.len(),
        started.elapsed().as_secs_f64()
    );
    drop(heard_tx);

    let outcome = measure(&args, &cast, &mut books, &mut heard_rx).await;
    let directory = match &outcome {
        Ok(_) => Some(read_directory(&cast).await),
        Err(_) => None,
    };
    close_all(customers).await;
    close_all(agents).await;
    let usage = outcome?;
    let directory = directory.unwrap_or_else(|| Err(anyhow!("not read")));
    Ok(print_report(&args, &cast, &mut books, &usage, directory))
}

/// CPU of the watched processes over the measured time.
struct Usage {
    from: CpuSnapshot,
    to: CpuSnapshot,
    groups: Vec<ProcGroup>,
    schedule: Schedule,
    /// Last due time to the end of waiting.
    waited: Duration,
}

/// Runs the schedule and books what comes back until everything is
/// assigned or `args.timeout` after the last due time.
async fn measure(
    args: &AssignArgs,
    cast: &Arc<Cast>,
    books: &mut Books,
    heard: &mut mpsc::UnboundedReceiver<Heard>,
) -> anyhow::Result<Usage> {
    let mut groups = args.procs.clone();
    groups.push(ProcGroup {
        kind: "chat-bench".to_owned(),
        pids: vec![(std::process::id(), false)],
    });
    let from = CpuSnapshot::take(&groups);
    let schedule = Schedule {
        start: Instant::now() + START_DELAY,
        rate: args.rate,
    };
    let last_due = schedule.due(args.sessions.saturating_sub(1));
    let deadline = last_due + args.timeout;
    let (created_tx, mut created) = mpsc::unbounded_channel();
    let mut pacer = Pacer::new()?;
    let mut progress = tokio::time::interval_at(schedule.start + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut next = 0;
    loop {
        let next_due = (next < args.sessions).then(|| schedule.due(next));
        if next_due.is_none() && books.complete() {
            break;
        }
        tokio::select! {
            clock = pacer.wait_until(next_due.unwrap_or(deadline)), if next_due.is_some() => {
                clock?;
                spawn_creation(cast, &schedule, next, created_tx.clone())?;
                next += 1;
            }
            item = heard.recv() => match item {
                Some(item) => books.hear(item),
                None => bail!("every socket's reader stopped"),
            },
            done = created.recv() => {
                if let Some(done) = done {
                    books.created(done, &schedule);
                }
            }
            _ = progress.tick() => eprintln!(
                "  {:>5.1} s: {next} created, {} answered, {} assigned",
                schedule.start.elapsed().as_secs_f64(),
                books.answered,
                books.assigned()
            ),
            _ = sleep_until(deadline) => break,
        }
    }
    let to = CpuSnapshot::take(&groups);
    // Answers that came in with the last event still count.
    while let Ok(item) = heard.try_recv() {
        books.hear(item);
    }
    while let Ok(done) = created.try_recv() {
        books.created(done, &schedule);
    }
    Ok(Usage {
        from,
        to,
        groups,
        schedule,
        waited: Instant::now().saturating_duration_since(last_due),
    })
}

/// Opens session `k` from a task of its own, so that a slow answer never
/// delays the next one's start.
fn spawn_creation(
    cast: &Arc<Cast>,
    schedule: &Schedule,
    k: usize,
    done: mpsc::UnboundedSender<Created>,
) -> anyhow::Result<()> {
    let token = cast.token(Side::Customer(k))?;
    let endpoint = cast.endpoint(Side::Customer(k)).clone();
    let body = json!({ "subject": format!("assign {} session {k}", cast.run), "pool": cast.pool });
    let due = schedule.due(k);
    tokio::spawn(async move {
        let lag = Instant::now().saturating_duration_since(due);
        let result = rest::post_json(&endpoint, "/api/chat/sessions", &token, &body).await;
        let answered = Instant::now();
        let outcome = match result {
            Ok(value) => serde_json::from_value::<SessionView>(value)
                .map_err(|e| format!("the created session does not parse: {e}")),
            Err(error) => Err(error.to_string()),
        };
        let _ = done.send(Created {
            index: k,
            lag,
            answered,
            outcome,
        });
    });
    Ok(())
}

/// This run's agents as the directory lists them (`GET /agents?pool=`, as
/// an admin).
async fn read_directory(cast: &Cast) -> anyhow::Result<Vec<AgentView>> {
    let token = cast.admin_token()?;
    let path = format!("/api/chat/agents?pool={}", cast.pool);
    let body = tokio::time::timeout(DIRECTORY_TIMEOUT, get(&cast.endpoints[0], &path, &token))
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {DIRECTORY_TIMEOUT:?}"))??;
    let directory: Directory =
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not a directory"))?;
    let prefix = format!("assign-{}-a", cast.run);
    Ok(directory
        .items
        .into_iter()
        .filter(|agent| agent.id.starts_with(&prefix))
        .collect())
}

/// One GET over HTTP/1.0, so the answer comes whole and unchunked, the
/// connection closing after it; the body of a 2xx answer.
async fn get(endpoint: &Endpoint, path: &str, token: &str) -> anyhow::Result<Vec<u8>> {
    let authority = endpoint.authority();
    let mut stream = TcpStream::connect(&authority).await?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_DIRECTORY)
        .read_to_end(&mut raw)
        .await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path}: no end of headers"))?;
    let status = std::str::from_utf8(&raw[..split])
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("GET {path}: no status line"))?;
    let body = raw.split_off(split + 4);
    if !(200..300).contains(&status) {
        bail!(
            "GET {path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        );
    }
    Ok(body)
}

/// CPU ticks of every watched process at one moment, by group and pid.
struct CpuSnapshot {
    at: Instant,
    ticks: Vec<BTreeMap<u32, u64>>,
}

impl CpuSnapshot {
    fn take(groups: &[ProcGroup]) -> Self {
        let parents = if groups.iter().any(|g| g.pids.iter().any(|(_, tree)| *tree)) {
            parent_map()
        } else {
            Vec::new()
        };
        let ticks = groups
            .iter()
            .map(|group| {
                let mut pids = Vec::new();
                for &(pid, tree) in &group.pids {
                    pids.push(pid);
                    if tree {
                        pids.extend(
                            parents
                                .iter()
                                .filter(|(_, parent)| *parent == pid)
                                .map(|(child, _)| *child),
                        );
                    }
                }
                pids.into_iter()
                    .filter_map(|pid| {
                        cpu_ticks(&format!("/proc/{pid}/stat"))
                            .ok()
                            .map(|t| (pid, t))
                    })
                    .collect()
            })
            .collect();
        CpuSnapshot {
            at: Instant::now(),
            ticks,
        }
    }
}

/// Every process's parent, from /proc.
fn parent_map() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_parent(&stat)?))
        })
        .collect()
}

/// The parent pid (field 4) of a `/proc/*/stat` line; the command name in
/// parentheses may hold spaces, so fields count from its `)`.
fn parse_parent(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

impl Usage {
    /// One line per group: its processes' CPU between the snapshots as a
    /// share of one core. A process born in between (a new PostgreSQL
    /// backend) counts all its CPU; one that ended in between, none.
    fn print(&self) {
        let wall = self
            .to
            .at
            .duration_since(self.from.at)
            .max(Duration::from_millis(1));
        println!(
            "CPU over the run ({:.1} s, % of one core; {} cores):",
            wall.as_secs_f64(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        println!(
            "  {:<12} {:>5} {:>8} {:>8} {:>10}",
            "process", "count", "CPU %", "max 1 %", "CPU s"
        );
        for (index, group) in self.groups.iter().enumerate() {
            let before = &self.from.ticks[index];
            let mut total = 0u64;
            let mut busiest = 0u64;
            for (pid, after) in &self.to.ticks[index] {
                let spent = after.saturating_sub(before.get(pid).copied().unwrap_or(0));
                total += spent;
                busiest = busiest.max(spent);
            }
            let share = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / wall.as_secs_f64() * 100.0;
            println!(
                "  {:<12} {:>5} {:>8.1} {:>8.1} {:>10.2}",
                group.kind,
                self.to.ticks[index].len(),
                share(total),
                share(busiest),
                total as f64 / TICKS_PER_SECOND
            );
        }
    }
}

/// The directory's view of the load, and what breaks the bound.
#[derive(Debug, PartialEq, Eq)]
struct Spread {
    agents: usize,
    online: usize,
    min: i64,
    max: i64,
    total: i64,
    capacities: (i64, i64),
    over: Vec<String>,
}

fn spread(directory: &[AgentView]) -> Option<Spread> {
    let min = directory.iter().map(|a| a.open_chats).min()?;
    let max = directory.iter().map(|a| a.open_chats).max()?;
    let capacities = (
        directory.iter().map(|a| a.capacity).min()?,
        directory.iter().map(|a| a.capacity).max()?,
    );
    Some(Spread {
        agents: directory.len(),
        online: directory.iter().filter(|a| a.status == "online").count(),
        min,
        max,
        total: directory.iter().map(|a| a.open_chats).sum(),
        capacities,
        over: directory
            .iter()
            .filter(|a| a.open_chats > a.capacity)
            .map(|a| format!("{} {}/{}", a.id, a.open_chats, a.capacity))
            .collect(),
    })
}

fn print_row(label: &str, p: Option<Percentiles>) {
    match p {
        Some(p) => println!(
            "  {label:<30} {:>7} {:>8} {:>8} {:>8} {:>8}",
            p.count,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        ),
        None => println!("  {label:<30} {:>7}", 0),
    }
}

/// Prints the report; returns whether the run passed.
fn print_report(
    args: &AssignArgs,
    cast: &Cast,
    books: &mut Books,
    usage: &Usage,
    directory: anyhow::Result<Vec<AgentView>>,
) -> bool {
    let mut reasons = Vec::new();
    let created = books.tracks.iter().filter(|t| t.created).count();
    let failed: BTreeMap<&str, usize> = books
        .tracks
        .iter()
        .filter_map(|t| t.failed.as_deref())
        .fold(BTreeMap::new(), |mut counts, error| {
            *counts.entry(error).or_default() += 1;
            counts
        });
    let unanswered = args.sessions - books.answered;
    let in_reply = books.tracks.iter().filter(|t| t.active_in_reply).count();

    let mut assigned_us = Vec::new();
    let mut told_us = Vec::new();
    let mut server_ms = Vec::new();
    let mut per_agent: HashMap<&str, i64> = HashMap::new();
    let mut disagree = 0u64;
    let mut never_told = 0usize;
    let mut never_assigned = 0usize;
    // Every latency counts from the session's due time on the schedule.
    let since_due =
        |k: usize, at: Instant| micros(at.saturating_duration_since(usage.schedule.due(k)));
    for (k, track) in books.tracks.iter().enumerate() {
        if !track.created {
            continue;
        }
        let Some((at, agent)) = &track.assigned else {
            never_assigned += 1;
            continue;
        };
        *per_agent.entry(agent.as_str()).or_default() += 1;
        if let Some(ms) = track.server_ms {
            server_ms.push(u32::try_from(ms.max(0) * 1000).unwrap_or(u32::MAX));
        }
        assigned_us.push(since_due(k, *at));
        match track.session_id.as_ref().and_then(|id| books.told.get(id)) {
            Some((i, told_at)) => {
                told_us.push(since_due(k, *told_at));
                if cast.agent_id(*i) != *agent {
                    disagree += 1;
                }
            }
            None => never_told += 1,
        }
    }

    println!();
    println!(
        "created    {created} of {} (failed {}, unanswered {unanswered}; already active in the creation reply {in_reply})",
        args.sessions,
        failed.values().sum::<usize>()
    );
    for (error, count) in &failed {
        println!("  failed {count}: {error}");
    }
    println!(
        "assigned   {} seen by the customer; never assigned {never_assigned} (done {:.1} ms after the last due time, limit {:.0} s)",
        assigned_us.len(),
        usage.waited.as_secs_f64() * 1000.0,
        args.timeout.as_secs_f64()
    );
    println!(
        "agent told {} (never told {never_told}, told twice {}, other agent than the customer heard {disagree})",
        told_us.len(),
        books.told_twice
    );
    println!(
        "customers told twice {}, updates not showing an assignment {}, queue-position events {}, unparsable {}",
        books.repeated, books.not_assigned_updates, books.queue_positions, books.unparsable
    );
    println!();
    println!(
        "  {:<30} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "latency (ms)", "count", "p50", "p90", "p99", "max"
    );
    print_row(
        "due -> customer session-updated",
        percentiles(&mut assigned_us),
    );
    print_row("due -> agent's session-updated", percentiles(&mut told_us));
    print_row("due -> creation reply", percentiles(&mut books.reply_us));
    print_row(
        "server createdAt -> assignedAt",
        percentiles(&mut server_ms),
    );
    let lag = percentiles(&mut books.lag_us);
    print_row("generator lag (start - due)", lag);
    println!("  (assignment is timed from each session's due time on the open-loop schedule to");
    println!("   the session-updated showing it active with an agent: the customer's socket is");
    println!("   the figure; the agent's own socket beside it; server: the session's stamps, ms)");
    println!();

    let bound = |agent: &str| -> i64 {
        directory
            .as_ref()
            .ok()
            .and_then(|d| d.iter().find(|a| a.id == agent))
            .map_or(args.capacity, |a| a.capacity)
    };
    let heard_over: Vec<String> = per_agent
        .iter()
        .filter(|(agent, count)| **count > bound(agent))
        .map(|(agent, count)| format!("{agent} given {count}"))
        .collect();
    let updates_over: Vec<String> = books
        .loads
        .iter()
        .filter(|(agent, open)| {
            agent.starts_with(&format!("assign-{}-a", cast.run)) && **open > bound(agent)
        })
        .map(|(agent, open)| format!("{agent} agent-updated openChats {open}"))
        .collect();
    let observed_max = books.loads.values().copied().max();
    println!(
        "given per agent (customers' view): {} agents, max {}; agent-updated openChats max seen {}",
        per_agent.len(),
        per_agent.values().copied().max().unwrap_or(0),
        observed_max.map_or_else(|| "-".to_owned(), |m| m.to_string())
    );
    match &directory {
        Ok(list) => match spread(list) {
            Some(s) => {
                println!(
                    "directory: {} of {} agents listed ({} online), open chats min {} max {} spread {} total {}, capacity {}..{}",
                    s.agents,
                    args.agents,
                    s.online,
                    s.min,
                    s.max,
                    s.max - s.min,
                    s.total,
                    s.capacities.0,
                    s.capacities.1
                );
                if s.agents != args.agents {
                    reasons.push(format!(
                        "the directory lists {} of {} agents",
                        s.agents, args.agents
                    ));
                }
                if !s.over.is_empty() {
                    reasons.push(format!(
                        "directory: {} agent(s) over capacity ({})",
                        s.over.len(),
                        s.over
                            .iter()
                            .take(5)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if s.max > args.capacity {
                    reasons.push(format!(
                        "directory: an agent holds {} open chats > {}",
                        s.max, args.capacity
                    ));
                }
            }
            None => {
                println!("directory: none of this run's agents listed");
                reasons.push("the directory lists none of this run's agents".to_owned());
            }
        },
        Err(error) => {
            println!("directory: {error:#}");
            reasons.push(format!("directory not read: {error:#}"));
        }
    }
    println!();
    usage.print();

    if created < args.sessions {
        reasons.push(format!(
            "{} session(s) not created",
            args.sessions - created
        ));
    }
    if never_assigned > 0 {
        reasons.push(format!("{never_assigned} session(s) never assigned"));
    }
    if never_told > 0 || disagree > 0 {
        reasons.push(format!(
            "agents: {never_told} assignment(s) never told to the agent, {disagree} told to another"
        ));
    }
    if books.repeated > 0 || books.told_twice > 0 {
        reasons.push(format!(
            "assignments told twice: {} to customers, {} to agents",
            books.repeated, books.told_twice
        ));
    }
    if !heard_over.is_empty() {
        reasons.push(format!("over capacity: {}", heard_over.join(", ")));
    }
    if !updates_over.is_empty() {
        reasons.push(format!("over capacity: {}", updates_over.join(", ")));
    }
    if let Some(lag) = lag {
        if u128::from(lag.p99) > LAG_P99_LIMIT.as_micros() {
            reasons.push(format!(
                "generator lag p99 {} ms > {} ms: the bench did not offer the rate asked for",
                ms(lag.p99),
                LAG_P99_LIMIT.as_millis()
            ));
        }
    }
    if !books.closed.is_empty() {
        let mut list = String::new();
        for reason in books.closed.iter().take(3) {
            let _ = write!(list, "; {reason}");
        }
        reasons.push(format!(
            "{} socket(s) closed early{list}",
            books.closed.len()
        ));
    }
    if reasons.is_empty() {
        println!("result: PASS");
    } else {
        println!("result: FAIL ({})", reasons.join("; "));
    }
    reasons.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_only_what_they_watch() {
        let session = r#"42/chat,["session-updated",{"session":{"id":"s1","customerId":"c","customerName":"c","agentId":"assign-x-a1","agentName":"a","pool":"p","status":"active","subject":null,"createdAt":"2026-01-31T09:15:02.120Z","assignedAt":"2026-01-31T09:15:02.180Z","closedAt":null,"lastSeq":0,"lastMessageAt":null}}]"#;
        let customer = Interest {
            customer: true,
            ..Interest::default()
        };
        let Frame::Heard(What::Updated(view)) = read_frame(session, &customer) else {
            panic!("a customer reads its session-updated");
        };
        assert_eq!(view.assigned_agent(), Some("assign-x-a1"));
        assert_eq!(
            view.assigned_at
                .map(|a| a.millis() - view.created_at.millis()),
            Some(60)
        );
        let own = |i: usize| Interest {
            own_agent: Some(format!(r#""agentId":"assign-x-a{i}""#)),
            ..Interest::default()
        };
        assert!(matches!(
            read_frame(session, &own(1)),
            Frame::Heard(What::Updated(_))
        ));
        // a1 is a prefix of a10's id: the closing quote keeps them apart.
        assert!(matches!(read_frame(session, &own(10)), Frame::Ignored));
        let load = r#"42/chat,["agent-updated",{"agent":{"id":"a","name":"a","pools":["p"],"online":true,"lastSeenAt":"2026-01-31T09:15:02.120Z","status":"online","openChats":3,"capacity":10}}]"#;
        assert!(matches!(read_frame(load, &customer), Frame::Ignored));
        let watcher = Interest {
            loads: true,
            ..Interest::default()
        };
        let Frame::Heard(What::Load(agent)) = read_frame(load, &watcher) else {
            panic!("the watcher reads agent-updated");
        };
        assert_eq!((agent.open_chats, agent.capacity), (3, 10));
        assert!(matches!(read_frame("2", &customer), Frame::Ping(d) if d.is_empty()));
        assert!(matches!(
            read_frame(r#"42/chat,["session-updated",{"nope":1}]"#, &customer),
            Frame::Heard(What::Unparsable)
        ));
        assert!(matches!(
            read_frame(r#"42/chat,["new-pending-session",{}]"#, &own(1)),
            Frame::Ignored
        ));
        assert!(matches!(
            read_frame(r#"43/chat,1[{"ok":true,"agent":{}}]"#, &own(1)),
            Frame::Heard(What::Ack {
                id: 1,
                outcome: AckOutcome::Ok { .. }
            })
        ));
    }

    #[test]
    fn the_spread_flags_agents_over_their_capacity() {
        let agent = |id: &str, open: i64, capacity: i64| AgentView {
            id: id.to_owned(),
            status: "online".to_owned(),
            open_chats: open,
            capacity,
        };
        let s = spread(&[agent("a", 10, 10), agent("b", 7, 10), agent("c", 3, 2)]).unwrap();
        assert_eq!(
            (s.min, s.max, s.total, s.agents, s.online),
            (3, 10, 20, 3, 3)
        );
        assert_eq!(s.capacities, (2, 10));
        assert_eq!(s.over, vec!["c 3/2"]);
        assert!(spread(&[]).is_none());
    }

    #[test]
    fn parents_come_from_after_the_command_name() {
        assert_eq!(parse_parent("42 (post gres: x) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn books_wait_for_every_customer_and_agent() {
        let start = Instant::now();
        let schedule = Schedule { start, rate: 100.0 };
        assert_eq!(schedule.due(50) - start, Duration::from_millis(500));
        let mut books = Books::new(2);
        let view = |id: &str, agent: Option<&str>| SessionView {
            id: id.to_owned(),
            status: if agent.is_some() { "active" } else { "pending" }.to_owned(),
            agent_id: agent.map(str::to_owned),
            created_at: Timestamp::from_millis(1_000),
            assigned_at: agent.map(|_| Timestamp::from_millis(1_020)),
        };
        for k in 0..2 {
            books.created(
                Created {
                    index: k,
                    lag: Duration::from_millis(1),
                    answered: start,
                    outcome: Ok(view(&format!("s{k}"), None)),
                },
                &schedule,
            );
        }
        assert!(!books.complete());
        for k in 0..2 {
            let session = view(&format!("s{k}"), Some("a0"));
            books.hear(Heard {
                side: Side::Customer(k),
                at: start,
                what: What::Updated(session.clone()),
            });
            assert!(!books.complete(), "the agent has not been told yet");
            books.hear(Heard {
                side: Side::Agent(0),
                at: start,
                what: What::Updated(session),
            });
        }
        assert!(books.complete());
        books.hear(Heard {
            side: Side::Customer(1),
            at: start,
            what: What::Updated(view("s1", Some("a1"))),
        });
        assert_eq!(books.repeated, 1);
        assert_eq!(books.tracks[0].server_ms, Some(20));
    }
}
