//! Command-line parsing by hand: a subcommand (`load`, `sweep`, `idle`,
//! `hostile`, `assign`, or `scale` and its helper `hold`, whose flags live in
//! [`crate::scale::args`]) followed by
//! `--flag value` (or `--flag=value`) pairs, and `--help` anywhere. Every
//! flag has a default except the gateway URLs; the JWT secret falls back to
//! the `JWT_SECRET` environment variable.

use std::collections::HashMap;
use std::time::Duration;

use chat_shared::protocol::Role;

use crate::client::Endpoint;
use crate::scale::args::{self as scale_args, HoldArgs, ScaleArgs};

/// What the user asked for.
#[derive(Debug, Clone)]
pub enum Command {
    Help,
    Load(LoadArgs),
    Sweep(SweepArgs),
    Idle(IdleArgs),
    Hostile(HostileArgs),
    Assign(AssignArgs),
    Scale(ScaleArgs),
    Hold(HoldArgs),
}

#[derive(Debug, Clone)]
pub struct LoadArgs {
    pub endpoints: Vec<Endpoint>,
    pub jwt_secret: String,
    pub pairs: usize,
    /// Aggregate target, messages per second over all pairs.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    /// How long to wait after the last send for acks and deliveries.
    pub grace: Duration,
    pub pool: String,
    /// Bytes of filler added to each message's content.
    pub size: usize,
    /// Pairs set up at once.
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct SweepArgs {
    pub endpoints: Vec<Endpoint>,
    pub jwt_secret: String,
    /// Customer/agent pairs, set up once and used by every step.
    pub sessions: usize,
    pub rates: Rates,
    /// Measured seconds of each step.
    pub step_duration: Duration,
    /// Sending before each step's measuring starts.
    pub warmup: Duration,
    /// How long each step waits after its last send for acks and deliveries.
    pub grace: Duration,
    /// Pause between steps, so one step's backlog does not weigh on the next.
    pub settle: Duration,
    pub pool: String,
    pub size: usize,
    pub concurrency: usize,
}

/// The aggregate rates a sweep tries, in order (each above the one before).
#[derive(Debug, Clone, PartialEq)]
pub enum Rates {
    List(Vec<f64>),
    /// `from`, `from + step`, … up to and including `to`.
    Linear {
        from: f64,
        step: f64,
        to: f64,
    },
}

impl Rates {
    /// The `index`th rate, None past the last.
    pub fn get(&self, index: usize) -> Option<f64> {
        match self {
            Rates::List(list) => list.get(index).copied(),
            Rates::Linear { from, step, to } => {
                let rate = from + step * index as f64;
                // A hair of slack so that 0.1-steps reach `to` despite rounding.
                (rate <= to * (1.0 + 1e-9)).then_some(rate)
            }
        }
    }

    pub fn count(&self) -> usize {
        match self {
            Rates::List(list) => list.len(),
            Rates::Linear { from, step, to } => ((to - from) / step + 1e-9).floor() as usize + 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IdleArgs {
    pub endpoints: Vec<Endpoint>,
    pub jwt_secret: String,
    pub connections: usize,
    pub pids: Vec<u32>,
    pub role: Role,
    pub pool: String,
    /// Connections being opened at once.
    pub concurrency: usize,
    /// How long the connections stay open after the memory reading.
    pub hold: Duration,
}

#[derive(Debug, Clone)]
pub struct HostileArgs {
    pub endpoint: Endpoint,
    pub jwt_secret: String,
    /// The gateway process, whose VmRSS and CPU time are read.
    pub pid: u32,
    /// Length of the quiet baseline and of each flood.
    pub phase: Duration,
    /// Control chat messages per second (both directions together).
    pub control_rate: f64,
    /// Non-reading sockets.
    pub crowd: usize,
    /// `join-session` frames each non-reading socket sends.
    pub joins: usize,
    /// Sessions the crowd joins, each filled with `messages` messages.
    pub sessions: usize,
    pub messages: usize,
    pub pool: String,
}

#[derive(Debug, Clone)]
pub struct AssignArgs {
    pub endpoints: Vec<Endpoint>,
    pub jwt_secret: String,
    pub agents: usize,
    /// Sessions created, one customer each.
    pub sessions: usize,
    /// Sessions created per second.
    pub rate: f64,
    /// Open chats no agent may exceed (the server's `POOL_CAPACITY`); the
    /// directory's own figure for an agent wins where it is read.
    pub capacity: i64,
    /// How long after the last due creation a session may take to be
    /// assigned.
    pub timeout: Duration,
    pub pool: String,
    /// Sockets being opened at once.
    pub concurrency: usize,
    /// Processes whose CPU over the run is reported.
    pub procs: Vec<ProcGroup>,
}

/// Processes of one kind: each pid, and whether its children (at each
/// reading) count with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcGroup {
    pub kind: String,
    pub pids: Vec<(u32, bool)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error(
        "missing subcommand: expected `load`, `sweep`, `idle`, `hostile`, `assign` or `scale` (see --help)"
    )]
    MissingCommand,
    #[error(
        "unknown subcommand {0:?}: expected `load`, `sweep`, `idle`, `hostile`, `assign` or `scale`"
    )]
    UnknownCommand(String),
    #[error("unknown flag {flag} for `{command}`")]
    UnknownFlag { command: &'static str, flag: String },
    #[error("flag {0} needs a value")]
    MissingValue(String),
    #[error("unexpected argument {0:?}: flags take the form --name value")]
    Unexpected(String),
    #[error("--{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
    #[error("--{0} is required")]
    Required(&'static str),
}

const LOAD_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "pairs",
    "rate",
    "duration",
    "warmup",
    "grace",
    "pool",
    "size",
    "concurrency",
];
const SWEEP_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "sessions",
    "from",
    "step",
    "to",
    "rates",
    "step-seconds",
    "warmup",
    "grace",
    "settle",
    "pool",
    "size",
    "concurrency",
];
const HOSTILE_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "pid",
    "phase",
    "control-rate",
    "crowd",
    "joins",
    "sessions",
    "messages",
    "pool",
];
const ASSIGN_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "agents",
    "sessions",
    "rate",
    "capacity",
    "timeout",
    "pool",
    "concurrency",
    "procs",
];
const IDLE_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "connections",
    "pid",
    "role",
    "pool",
    "concurrency",
    "hold",
];

/// Parses the arguments after the program name. `env_secret` is the value
/// of `JWT_SECRET`, used when `--jwt-secret` is absent.
pub fn parse(args: &[String], env_secret: Option<String>) -> Result<Command, ArgsError> {
    let help_flag = args.iter().any(|a| a == "--help" || a == "-h");
    if help_flag || args.first().is_some_and(|a| a == "help") {
        return Ok(Command::Help);
    }
    let (command, rest) = args.split_first().ok_or(ArgsError::MissingCommand)?;
    match command.as_str() {
        "load" => {
            let flags = Flags::parse("load", LOAD_FLAGS, rest, env_secret)?;
            Ok(Command::Load(LoadArgs {
                endpoints: flags.endpoints()?,
                jwt_secret: flags.secret()?,
                pairs: flags.number("pairs", 100, 1..=50_000)?,
                rate: flags.rate()?,
                duration: flags.seconds("duration", 20.0)?,
                warmup: flags.seconds("warmup", 3.0)?,
                grace: flags.seconds("grace", 5.0)?,
                pool: flags.text("pool", "bench"),
                size: flags.number("size", 0, 0..=3_900)?,
                concurrency: flags.number("concurrency", 50, 1..=10_000)?,
            }))
        }
        "sweep" => {
            let flags = Flags::parse("sweep", SWEEP_FLAGS, rest, env_secret)?;
            Ok(Command::Sweep(SweepArgs {
                endpoints: flags.endpoints()?,
                jwt_secret: flags.secret()?,
                sessions: flags.number("sessions", 200, 1..=50_000)?,
                rates: flags.rates()?,
                step_duration: flags.seconds("step-seconds", 15.0)?,
                warmup: flags.seconds("warmup", 2.0)?,
                grace: flags.seconds("grace", 5.0)?,
                settle: flags.seconds("settle", 2.0)?,
                pool: flags.text("pool", "bench"),
                size: flags.number("size", 0, 0..=3_900)?,
                concurrency: flags.number("concurrency", 50, 1..=10_000)?,
            }))
        }
        "idle" => {
            let flags = Flags::parse("idle", IDLE_FLAGS, rest, env_secret)?;
            Ok(Command::Idle(IdleArgs {
                endpoints: flags.endpoints()?,
                jwt_secret: flags.secret()?,
                connections: flags.number("connections", 10_000, 1..=1_000_000)?,
                pids: flags.pids()?,
                role: flags.role()?,
                pool: flags.text("pool", "bench"),
                concurrency: flags.number("concurrency", 200, 1..=10_000)?,
                hold: flags.seconds("hold", 5.0)?,
            }))
        }
        "hostile" => {
            let flags = Flags::parse("hostile", HOSTILE_FLAGS, rest, env_secret)?;
            let mut endpoints = flags.endpoints()?;
            if endpoints.len() != 1 {
                return Err(invalid("url", "hostile takes one gateway URL"));
            }
            let pids = flags.pids()?;
            let [pid] = pids[..] else {
                return Err(invalid("pid", "hostile needs the gateway's one process id"));
            };
            let control_rate = flags.rate_or("control-rate", 20.0)?;
            Ok(Command::Hostile(HostileArgs {
                endpoint: endpoints.remove(0),
                jwt_secret: flags.secret()?,
                pid,
                phase: flags.seconds("phase", 5.0)?,
                control_rate,
                crowd: flags.number("crowd", 50, 1..=10_000)?,
                joins: flags.number("joins", 20, 1..=1_000)?,
                sessions: flags.number("sessions", 4, 1..=100)?,
                messages: flags.number("messages", 200, 1..=10_000)?,
                pool: flags.text("pool", "hostile"),
            }))
        }
        "assign" => {
            let flags = Flags::parse("assign", ASSIGN_FLAGS, rest, env_secret)?;
            let capacity = flags.number("capacity", 10, 1..=1_000)?;
            Ok(Command::Assign(AssignArgs {
                endpoints: flags.endpoints()?,
                jwt_secret: flags.secret()?,
                agents: flags.number("agents", 100, 1..=10_000)?,
                sessions: flags.number("sessions", 1_000, 1..=100_000)?,
                rate: flags.rate_or("rate", 100.0)?,
                capacity: i64::try_from(capacity).unwrap_or(i64::MAX),
                timeout: flags.seconds("timeout", 30.0)?,
                pool: flags.text("pool", "assign"),
                concurrency: flags.number("concurrency", 50, 1..=10_000)?,
                procs: proc_groups(flags.values.get("procs").map_or("", String::as_str))?,
            }))
        }
        "scale" => {
            let flags = Flags::parse("scale", scale_args::SCALE_FLAGS, rest, env_secret)?;
            Ok(Command::Scale(scale_args::scale(&flags)?))
        }
        "hold" => {
            let flags = Flags::parse("hold", scale_args::HOLD_FLAGS, rest, env_secret)?;
            Ok(Command::Hold(scale_args::hold(&flags)?))
        }
        other => Err(ArgsError::UnknownCommand(other.to_owned())),
    }
}

/// The `--name value` pairs of one subcommand.
pub(crate) struct Flags {
    pub(crate) values: HashMap<&'static str, String>,
}

impl Flags {
    fn parse(
        command: &'static str,
        known: &[&'static str],
        args: &[String],
        env_secret: Option<String>,
    ) -> Result<Self, ArgsError> {
        let mut values = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(ArgsError::Unexpected(arg.clone()));
            };
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (body, None),
            };
            let Some(&flag) = known.iter().find(|k| **k == name) else {
                return Err(ArgsError::UnknownFlag {
                    command,
                    flag: arg.clone(),
                });
            };
            let value = match inline {
                Some(value) => value,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| ArgsError::MissingValue(arg.clone()))?,
            };
            values.insert(flag, value);
        }
        if let Some(secret) = env_secret {
            values.entry("jwt-secret").or_insert(secret);
        }
        Ok(Flags { values })
    }

    pub(crate) fn text(&self, flag: &'static str, default: &str) -> String {
        self.values
            .get(flag)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    pub(crate) fn secret(&self) -> Result<String, ArgsError> {
        let secret = self
            .values
            .get("jwt-secret")
            .ok_or(ArgsError::Required("jwt-secret"))?;
        if secret.is_empty() {
            return Err(invalid("jwt-secret", "must not be empty"));
        }
        Ok(secret.clone())
    }

    pub(crate) fn endpoints(&self) -> Result<Vec<Endpoint>, ArgsError> {
        let list = self.values.get("url").ok_or(ArgsError::Required("url"))?;
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| Endpoint::parse(s.trim()).map_err(|reason| invalid("url", reason)))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|list| {
                if list.is_empty() {
                    Err(invalid("url", "no URL given"))
                } else {
                    Ok(list)
                }
            })
    }

    pub(crate) fn number(
        &self,
        flag: &'static str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ArgsError> {
        let Some(raw) = self.values.get(flag) else {
            return Ok(default);
        };
        let value: usize = raw
            .replace('_', "")
            .parse()
            .map_err(|_| invalid(flag, format!("{raw:?} is not a whole number")))?;
        if !range.contains(&value) {
            return Err(invalid(
                flag,
                format!("must be between {} and {}", range.start(), range.end()),
            ));
        }
        Ok(value)
    }

    pub(crate) fn seconds(&self, flag: &'static str, default: f64) -> Result<Duration, ArgsError> {
        let value = match self.values.get(flag) {
            Some(raw) => raw
                .parse::<f64>()
                .map_err(|_| invalid(flag, format!("{raw:?} is not a number of seconds")))?,
            None => default,
        };
        if !(0.0..=86_400.0).contains(&value) {
            return Err(invalid(flag, "must be between 0 and 86400 seconds"));
        }
        Ok(Duration::from_secs_f64(value))
    }

    fn rate(&self) -> Result<f64, ArgsError> {
        self.rate_or("rate", 1000.0)
    }

    pub(crate) fn rate_or(&self, flag: &'static str, default: f64) -> Result<f64, ArgsError> {
        match self.values.get(flag) {
            Some(raw) => parse_rate(flag, raw),
            None => Ok(default),
        }
    }

    /// `--rates R1,R2,…`, or `--from`, `--step` and `--to`, never both.
    fn rates(&self) -> Result<Rates, ArgsError> {
        let Some(list) = self.values.get("rates") else {
            let from = self.rate_or("from", 1000.0)?;
            let step = self.rate_or("step", 1000.0)?;
            let to = self.rate_or("to", 1_000_000.0)?;
            if to < from {
                return Err(invalid("to", "must not be below --from"));
            }
            return Ok(Rates::Linear { from, step, to });
        };
        if let Some(other) = ["from", "step", "to"]
            .into_iter()
            .find(|flag| self.values.contains_key(flag))
        {
            return Err(invalid(
                "rates",
                format!("give either --rates or --{other}, not both"),
            ));
        }
        let rates = list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| parse_rate("rates", s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if rates.is_empty() {
            return Err(invalid("rates", "no rate given"));
        }
        if rates.windows(2).any(|w| w[1] <= w[0]) {
            return Err(invalid("rates", "each rate must be above the one before"));
        }
        Ok(Rates::List(rates))
    }

    pub(crate) fn pids(&self) -> Result<Vec<u32>, ArgsError> {
        let Some(list) = self.values.get("pid") else {
            return Ok(Vec::new());
        };
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse::<u32>()
                    .map_err(|_| invalid("pid", format!("{s:?} is not a process id")))
            })
            .collect()
    }

    fn role(&self) -> Result<Role, ArgsError> {
        match self.values.get("role").map(String::as_str) {
            None | Some("customer") => Ok(Role::Customer),
            Some("agent") => Ok(Role::Agent),
            Some(other) => Err(invalid(
                "role",
                format!("{other:?} is not `customer` or `agent`"),
            )),
        }
    }
}

/// `--procs 'KIND=PID,PID;KIND=PID+'`: a `+` after a pid counts its
/// children too (a PostgreSQL server's backends, which come and go).
fn proc_groups(raw: &str) -> Result<Vec<ProcGroup>, ArgsError> {
    raw.split(';')
        .filter(|group| !group.trim().is_empty())
        .map(|group| {
            let (kind, list) = group
                .split_once('=')
                .filter(|(kind, _)| !kind.trim().is_empty())
                .ok_or_else(|| invalid("procs", format!("{group:?} is not KIND=PID,PID")))?;
            let pids = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    let s = s.trim();
                    let (digits, tree) = match s.strip_suffix('+') {
                        Some(digits) => (digits, true),
                        None => (s, false),
                    };
                    digits
                        .parse::<u32>()
                        .map(|pid| (pid, tree))
                        .map_err(|_| invalid("procs", format!("{s:?} is not a process id")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ProcGroup {
                kind: kind.trim().to_owned(),
                pids,
            })
        })
        .collect()
}

fn parse_rate(flag: &'static str, raw: &str) -> Result<f64, ArgsError> {
    let value: f64 = raw
        .replace('_', "")
        .parse()
        .map_err(|_| invalid(flag, format!("{raw:?} is not a number")))?;
    if !(value > 0.0 && value <= 1_000_000.0) {
        return Err(invalid(flag, "must be above 0 and at most 1000000 msg/s"));
    }
    Ok(value)
}

pub(crate) fn invalid(flag: &'static str, reason: impl Into<String>) -> ArgsError {
    ArgsError::Invalid {
        flag,
        reason: reason.into(),
    }
}

pub const HELP: &str = "\
chat-bench: load generator and idle-connection memory probe for the support chat server

USAGE:
    chat-bench load --url URL[,URL...] --jwt-secret SECRET [options]
    chat-bench sweep --url URL[,URL...] --jwt-secret SECRET [options]
    chat-bench idle --url URL[,URL...] --jwt-secret SECRET [--pid PID[,PID...]] [options]
    chat-bench hostile --url URL --jwt-secret SECRET --pid PID [options]
    chat-bench assign --url URL[,URL...] --jwt-secret SECRET [options]
    chat-bench scale --url URL[,URL...] --jwt-secret SECRET [--pid PID[,PID...]] [options]
    chat-bench --help

The server must share the HS256 secret (its JWT_SECRET): the bench mints its
own tokens. --jwt-secret falls back to the JWT_SECRET environment variable.
Flags take the form `--name value` or `--name=value`.

LOAD: customer/agent pairs chatting at a fixed aggregate rate.
    Each pair: the customer creates a session (REST), its agent assigns it
    (REST), both sockets join it, then the customer sends messages on a fixed
    open-loop schedule: each message is due at its own time whether or not
    earlier ones were answered, and a sender that wakes late writes every
    message that came due meanwhile. With two or more URLs a customer and its agent are always on
    different gateways, so every delivery crosses the backplane.
    Start the server with RATE_LIMIT_PER_SEC=0, or the per-socket rate limit
    (20/s by default) answers most sends with `rate_limited`.

    --url URL[,URL...]   gateway base URLs (http://127.0.0.1:3001)
    --jwt-secret SECRET  HS256 secret of the server
    --pairs N            customer/agent pairs (100)
    --rate R             target messages per second, all pairs together (1000)
    --duration S         measured seconds of sending (20)
    --warmup S           seconds of sending before measuring starts (3)
    --grace S            wait after the last send for acks/deliveries (5)
    --pool NAME          agent pool the sessions go to (bench)
    --size BYTES         filler added to each message's content (0)
    --concurrency N      pairs being set up at once (50)

    Reports ack latency (due -> ack ok:true), delivery latency (due -> the
    agent's new-message) and echo latency (due -> the sender's own
    new-message) as p50/p90/p99/p99.9/max, all counted from when each
    message was due by the schedule, so time the bench spent behind is not
    hidden; beside them ack and delivery counted from the actual write, and
    the send lag (written minus due). Then achieved send and delivery rates
    and per-socket correctness: lost (acked, never delivered to the agent),
    missing echo (acked, never sent back to the sender), duplicated (a seq
    delivered twice to one socket), out-of-order (seq not increasing on one
    socket), unanswered (no ack by the end), failed acks by error code, and
    never written (scheduled, but the sender stopped).
    Exit status 1 when any of those is non-zero, a socket closed early, or
    the send lag p99 is over 10 ms: then the bench did not offer the rate
    it was asked for.

SWEEP: the highest rate the server sustains.
    Sets up --sessions pairs once, as LOAD does, then runs one LOAD step per
    rate, lowest first, with a pause between steps. A step passes when its
    open-loop delivery p99 is under 100 ms, nothing was lost, duplicated,
    reordered, refused or left unanswered, and the send lag p99 is at most
    10 ms. The sweep stops at the first failing step and prints a table
    (offered rate, achieved send and delivery rates, ack and delivery
    p50/p99 from the due time, delivery p99 from the write, lag p99,
    lost/duplicated/out-of-order, result) and the highest passing rate.
    When the first failure is the bench's own lag, the limit found is the
    bench's, not the server's, and the report says so.
    Exit status 1 when no step passed.

    --url URL[,URL...]   gateway base URLs, as for LOAD
    --jwt-secret SECRET  HS256 secret of the server
    --sessions N         customer/agent pairs (200)
    --from R             first rate, msg/s (1000)
    --step R             added to the rate after each step (1000)
    --to R               last rate tried (1000000)
    --rates R1,R2,...    the rates to try instead of --from/--step/--to
    --step-seconds S     measured seconds per step (15)
    --warmup S           seconds of sending before each step's measuring (2)
    --grace S            wait after each step's last send (5)
    --settle S           pause between steps (2)
    --pool NAME          agent pool the sessions go to (bench)
    --size BYTES         filler added to each message's content (0)
    --concurrency N      pairs being set up at once (50)

IDLE: memory per idle connection.
    Reads the servers' resident memory (VmRSS from /proc/PID/status), opens
    N authenticated Socket.IO connections (waiting for `connected` on each),
    waits until the memory settles, prints the growth per connection, holds
    the connections open (answering pings), then closes them.
    Both this process and the server need an open-file limit above N
    (for 10,000 connections run `ulimit -n 65536` in both shells).

    --url URL[,URL...]   gateway base URLs; connections go round-robin
    --jwt-secret SECRET  HS256 secret of the server
    --connections N      connections to open (10000)
    --pid PID[,PID...]   server processes whose memory is read (optional)
    --role ROLE          customer or agent (customer)
    --pool NAME          the agents' pool, for --role agent (bench)
    --concurrency N      connections being opened at once (200)
    --hold S             seconds to keep them open after measuring (5)

HOSTILE: what flooding and non-reading clients cost everyone else.
    Not a timed test: a report with a verdict. Run it against a server with
    its default budgets (no RATE_LIMIT_PER_SEC=0). A control chat (one
    customer, one assigned agent) exchanges messages on a fixed open-loop
    schedule the whole time; its round trip is measured from each message's
    due time to the other side's `new-message`. Phases, one after another:
    a quiet baseline; one flooding socket per event kind (send-message,
    typing, mark-read, join-session, leave-session, refresh-token, an
    unknown event) sending as fast as its acks come back; then N sockets
    with a 4 KiB receive buffer that each send J `join-session {lastSeq:0}`
    for sessions full of large messages and never read. Prints per phase
    the flooder's sent/accepted/refused counts, the control's p50/p99 and
    the generator's lag, the gateway's CPU and VmRSS (the crowd: before,
    peak sampled every 100 ms, after the server closed them).
    A phase fails when the control's p99 >= 50 ms, the generator lagged
    > 20 ms, a control message was lost or duplicated, or (crowd) the RSS
    grew by 64 MiB or more. Exit status 1 when any phase failed.

    --url URL            the gateway's base URL (one)
    --jwt-secret SECRET  HS256 secret of the server
    --pid PID            the gateway's process id (required)
    --phase S            seconds of the baseline and of each flood (5)
    --control-rate R     control messages per second, both ways (20)
    --crowd N            non-reading sockets (50)
    --joins J            join-session frames per non-reading socket (20)
    --sessions N         sessions the crowd joins (4)
    --messages M         messages of 4000 U+0001 in each of them (200)
    --pool NAME          agent pool of the sessions (hostile)

ASSIGN: automatic assignment of a burst of new sessions.
    Start the servers with ASSIGNMENT=auto and POOL_CAPACITY equal to
    --capacity. Connects --agents agents of --pool round-robin over the
    gateways, each saying `set-status online`, and one customer socket per
    session, likewise spread. Then each customer opens its session (REST
    POST /sessions, to its socket's gateway) when it is due on a fixed
    open-loop schedule, --rate per second. Each session is timed from its
    due time to the `session-updated` on its customer's socket showing it
    active with an agent (the event the protocol sends the customer on
    every assignment); beside it, the same event on the assigned agent's
    own socket, the creation's reply, and the session's own createdAt ->
    assignedAt. Waits until every session is assigned, or --timeout after
    the last due time. Then reads the agent directory as an admin (GET
    /agents?pool=) for each agent's open chats: min, max and spread.
    Prints the CPU of each --procs kind and of the bench over the run.
    Exit status 1 when a session was not created or never assigned, an
    agent holds more than its capacity (by the directory, by what the
    customers were told, or by any agent-updated), an assignment was told
    twice or not to its agent, a socket closed, or the generator's lag
    (start of a creation minus its due time) has a p99 over 50 ms.

    --url URL[,URL...]   gateway base URLs
    --jwt-secret SECRET  HS256 secret of the server
    --agents N           agents of the pool (100)
    --sessions N         sessions created, one customer each (1000)
    --rate R             sessions created per second (100)
    --capacity N         open chats no agent may exceed (10)
    --timeout S          wait after the last due creation (30)
    --pool NAME          the agents' pool (assign)
    --concurrency N      sockets being opened at once (50)
    --procs 'KIND=PID,PID;KIND=PID+'  processes whose CPU is reported; a
                         `+` counts the process's children too

SCALE: many idle sockets with pool broadcasts and a live chat through them.
    Opens --connections authenticated sockets (--agents of them agents of
    --pool, in this process; the customers in helper processes of
    --per-process sockets each, `chat-bench hold`, so that no process needs
    more descriptors than its limit) round-robin over the gateways, each
    bound to one of --sources loopback addresses (127.0.0.2 upwards: one
    address has about 28,000 ephemeral ports). Reports the connect rate and
    the gateways' VmRSS growth per connection. Then, with all of them open,
    for --duration seconds (after --warmup): customers create sessions in
    the pool at --broadcast-rate per second on an open-loop schedule, and
    each agent's `new-pending-session` is timed from the session's due
    time (every receipt, and the last agent of each); every `stats-update`
    the agents get is timed from its `updatedAt`; and --chat-pairs
    customer/agent pairs chat at --chat-rate msg/s as LOAD does. Prints the
    CPU and memory of every process given (--pid, --procs) over that time.
    Exit status 1 when a socket failed or closed, a broadcast missed an
    agent, or the chat failed as LOAD judges it.

    --url URL[,URL...]   gateway base URLs; sockets go round-robin
    --jwt-secret SECRET  HS256 secret of the server
    --connections N      idle sockets in all, agents included (100000)
    --agents N           how many of them are agents (1000)
    --per-process N      customer sockets per helper process (15000)
    --sources N          loopback source addresses (8)
    --concurrency N      sockets being opened at once per process (200)
    --pid PID[,PID...]   the gateways' process ids (memory per connection)
    --procs 'KIND=PID,PID;KIND=PID'  other processes to report (workers, ...)
    --broadcast-rate R   sessions created per second (2)
    --chat-pairs N       pairs of the live chat (100)
    --chat-rate R        its messages per second, all pairs together (200)
    --duration S         measured seconds (20)
    --warmup S           seconds before measuring starts (3)
    --grace S            wait after the last send for what is due (5)
    --pool NAME          the agents' pool (scale; the chat uses NAME-chat)

EXAMPLES:
    RATE_LIMIT_PER_SEC=0 JWT_SECRET=bench-secret-0123456789 support-chat &
    chat-bench idle --url http://127.0.0.1:3001 --jwt-secret bench-secret-0123456789 \\
        --connections 10000 --pid $!
    chat-bench load --url http://127.0.0.1:3001 --jwt-secret bench-secret-0123456789 \\
        --pairs 100 --rate 1000 --duration 20
    chat-bench load --url http://127.0.0.1:3001,http://127.0.0.1:3002 \\
        --jwt-secret bench-secret-0123456789 --rate 2000
    chat-bench sweep --url http://127.0.0.1:3001 --jwt-secret bench-secret-0123456789 \\
        --rates 1000,2000,4000,8000 --step-seconds 10
";

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn load_defaults_and_overrides() {
        let args = strings(&[
            "load",
            "--url",
            "http://127.0.0.1:3001,http://127.0.0.1:3002",
            "--rate=2500",
        ]);
        let Command::Load(load) = parse(&args, Some("s3cret".into())).unwrap() else {
            panic!("expected load");
        };
        assert_eq!(load.endpoints.len(), 2);
        assert_eq!(load.jwt_secret, "s3cret");
        assert_eq!(load.pairs, 100);
        assert!((load.rate - 2500.0).abs() < f64::EPSILON);
        assert_eq!(load.duration, Duration::from_secs(20));
        assert_eq!(load.warmup, Duration::from_secs(3));
        assert_eq!(load.pool, "bench");
    }

    #[test]
    fn sweep_rates_come_from_a_range_or_a_list() {
        let base = ["sweep", "--url", "http://a:1", "--jwt-secret", "s"];
        let sweep = |extra: &[&str]| {
            let mut args = strings(&base);
            args.extend(strings(extra));
            parse(&args, None).map(|command| match command {
                Command::Sweep(sweep) => sweep,
                other => panic!("expected sweep, got {other:?}"),
            })
        };
        let defaults = sweep(&[]).unwrap();
        assert_eq!(defaults.sessions, 200);
        assert_eq!(defaults.step_duration, Duration::from_secs(15));
        assert_eq!(defaults.rates.get(0), Some(1000.0));
        assert_eq!(defaults.rates.get(2), Some(3000.0));

        let range = sweep(&["--from", "500", "--step=250", "--to", "1500"]).unwrap();
        assert_eq!(range.rates.count(), 5);
        assert_eq!(range.rates.get(4), Some(1500.0));
        assert_eq!(range.rates.get(5), None);
        let tenths = Rates::Linear {
            from: 0.1,
            step: 0.1,
            to: 0.3,
        };
        assert_eq!(tenths.count(), 3);
        assert!(tenths.get(2).is_some() && tenths.get(3).is_none());

        let list = sweep(&["--rates", "1000,2_000, 4000", "--step-seconds", "5"]).unwrap();
        assert_eq!(list.rates, Rates::List(vec![1000.0, 2000.0, 4000.0]));
        assert_eq!(list.rates.count(), 3);
        assert_eq!(list.step_duration, Duration::from_secs(5));

        let both = sweep(&["--rates", "1000", "--step", "5"]).unwrap_err();
        assert!(both.to_string().contains("not both"));
        assert!(sweep(&["--rates", "2000,1000"]).is_err());
        assert!(sweep(&["--rates", ","]).is_err());
        assert!(sweep(&["--from", "2000", "--to", "1000"]).is_err());
        assert!(sweep(&["--step", "0"]).is_err());
        assert!(matches!(
            sweep(&["--rate", "1000"]),
            Err(ArgsError::UnknownFlag { .. })
        ));
    }

    #[test]
    fn idle_reads_pids_and_role() {
        let args = strings(&[
            "idle",
            "--url",
            "http://localhost:3001",
            "--jwt-secret",
            "x",
            "--pid",
            "12,34",
            "--role",
            "agent",
            "--connections",
            "10_000",
        ]);
        let Command::Idle(idle) = parse(&args, None).unwrap() else {
            panic!("expected idle");
        };
        assert_eq!(idle.pids, vec![12, 34]);
        assert_eq!(idle.role, Role::Agent);
        assert_eq!(idle.connections, 10_000);
        assert_eq!(idle.concurrency, 200);
    }

    #[test]
    fn assign_defaults_and_process_groups() {
        let base = [
            "assign",
            "--url",
            "http://a:1,http://b:2",
            "--jwt-secret",
            "s",
        ];
        let assign = |extra: &[&str]| {
            let mut args = strings(&base);
            args.extend(strings(extra));
            parse(&args, None).map(|command| match command {
                Command::Assign(assign) => assign,
                other => panic!("expected assign, got {other:?}"),
            })
        };
        let defaults = assign(&[]).unwrap();
        assert_eq!(
            (defaults.agents, defaults.sessions, defaults.capacity),
            (100, 1000, 10)
        );
        assert!((defaults.rate - 100.0).abs() < f64::EPSILON);
        assert_eq!(defaults.timeout, Duration::from_secs(30));
        assert!(defaults.procs.is_empty());
        let watched = assign(&["--procs", "gateway=1,2;postgres=9+;"]).unwrap();
        assert_eq!(
            watched.procs,
            vec![
                ProcGroup {
                    kind: "gateway".into(),
                    pids: vec![(1, false), (2, false)]
                },
                ProcGroup {
                    kind: "postgres".into(),
                    pids: vec![(9, true)]
                },
            ]
        );
        assert!(assign(&["--procs", "gateway"]).is_err());
        assert!(assign(&["--procs", "=1"]).is_err());
        assert!(assign(&["--procs", "worker=x+"]).is_err());
        assert!(assign(&["--capacity", "0"]).is_err());
        assert!(matches!(
            assign(&["--pairs", "3"]),
            Err(ArgsError::UnknownFlag { .. })
        ));
    }

    #[test]
    fn help_wins_and_errors_name_the_flag() {
        assert!(matches!(
            parse(&strings(&["load", "--help"]), None),
            Ok(Command::Help)
        ));
        assert_eq!(parse(&[], None).unwrap_err(), ArgsError::MissingCommand);
        let missing = parse(&strings(&["load", "--url", "http://a:1"]), None).unwrap_err();
        assert_eq!(missing, ArgsError::Required("jwt-secret"));
        let bad = parse(
            &strings(&[
                "load",
                "--url",
                "http://a:1",
                "--jwt-secret",
                "s",
                "--pairs",
                "x",
            ]),
            None,
        );
        assert!(bad.unwrap_err().to_string().contains("--pairs"));
        let unknown = parse(&strings(&["idle", "--rate", "3"]), None).unwrap_err();
        assert!(matches!(unknown, ArgsError::UnknownFlag { .. }));
        let dangling = parse(&strings(&["load", "--url"]), None).unwrap_err();
        assert_eq!(dangling, ArgsError::MissingValue("--url".into()));
        let zero = parse(
            &strings(&[
                "load",
                "--url",
                "http://a:1",
                "--jwt-secret",
                "s",
                "--rate",
                "0",
            ]),
            None,
        );
        assert!(zero.is_err());
    }
}
