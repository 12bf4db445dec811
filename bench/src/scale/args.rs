//! The flags of `chat-bench scale` and of `chat-bench hold`, the helper
//! process it starts for each share of the idle sockets. Kept apart from
//! the other modes' flags because a scale run spans several processes and
//! the two must agree on how sockets are numbered and spread.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::args::{invalid, ArgsError, Flags};
use crate::client::Endpoint;

/// The most loopback source addresses a run spreads its sockets over.
const MAX_SOURCES: usize = 200;

#[derive(Debug, Clone)]
pub struct ScaleArgs {
    pub endpoints: Vec<Endpoint>,
    pub jwt_secret: String,
    /// Idle sockets in all, agents included.
    pub connections: usize,
    /// How many of them are agents of `pool`.
    pub agents: usize,
    /// Customer sockets per helper process (each under its descriptor limit).
    pub per_process: usize,
    pub sources: Vec<IpAddr>,
    /// Sockets being opened at once, per process.
    pub concurrency: usize,
    /// Gateway processes: their memory per connection and CPU.
    pub gateway_pids: Vec<u32>,
    /// Other processes whose CPU and memory are reported, by kind.
    pub procs: Vec<(String, Vec<u32>)>,
    pub broadcast_rate: f64,
    pub chat_pairs: usize,
    pub chat_rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub grace: Duration,
    pub pool: String,
}

#[derive(Debug, Clone)]
pub struct HoldArgs {
    pub endpoints: Vec<Endpoint>,
    pub jwt_secret: String,
    pub connections: usize,
    /// Global number of this process's first socket: it picks the gateway,
    /// the source address and the user id, so processes never overlap.
    pub offset: usize,
    pub sources: Vec<IpAddr>,
    pub concurrency: usize,
    /// Shared by every process of one run, in the user ids.
    pub run: String,
}

pub const SCALE_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "connections",
    "agents",
    "per-process",
    "sources",
    "concurrency",
    "pid",
    "procs",
    "broadcast-rate",
    "chat-pairs",
    "chat-rate",
    "duration",
    "warmup",
    "grace",
    "pool",
];

pub const HOLD_FLAGS: &[&str] = &[
    "url",
    "jwt-secret",
    "connections",
    "offset",
    "sources",
    "concurrency",
    "run",
];

pub fn scale(flags: &Flags) -> Result<ScaleArgs, ArgsError> {
    let connections = flags.number("connections", 100_000, 2..=1_000_000)?;
    let agents = flags.number("agents", 1_000, 1..=50_000)?;
    if agents >= connections {
        return Err(invalid("agents", "must be fewer than --connections"));
    }
    Ok(ScaleArgs {
        endpoints: flags.endpoints()?,
        jwt_secret: flags.secret()?,
        connections,
        agents,
        per_process: flags.number("per-process", 15_000, 1..=1_000_000)?,
        sources: sources(flags)?,
        concurrency: flags.number("concurrency", 200, 1..=10_000)?,
        gateway_pids: flags.pids()?,
        procs: procs(flags.values.get("procs").map_or("", String::as_str))?,
        broadcast_rate: flags.rate_or("broadcast-rate", 2.0)?,
        chat_pairs: flags.number("chat-pairs", 100, 1..=10_000)?,
        chat_rate: flags.rate_or("chat-rate", 200.0)?,
        duration: flags.seconds("duration", 20.0)?,
        warmup: flags.seconds("warmup", 3.0)?,
        grace: flags.seconds("grace", 5.0)?,
        pool: flags.text("pool", "scale"),
    })
}

pub fn hold(flags: &Flags) -> Result<HoldArgs, ArgsError> {
    Ok(HoldArgs {
        endpoints: flags.endpoints()?,
        jwt_secret: flags.secret()?,
        connections: flags.number("connections", 1_000, 1..=1_000_000)?,
        offset: flags.number("offset", 0, 0..=10_000_000)?,
        sources: sources(flags)?,
        concurrency: flags.number("concurrency", 200, 1..=10_000)?,
        run: flags.text("run", "hold"),
    })
}

/// `--sources N`: 127.0.0.2 … 127.0.0.(N+1). 127.0.0.1 is left to
/// everything else on the machine, whose ephemeral ports a run would
/// otherwise eat.
fn sources(flags: &Flags) -> Result<Vec<IpAddr>, ArgsError> {
    let count = flags.number("sources", 8, 1..=MAX_SOURCES)?;
    Ok((0..count)
        .map(|n| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n as u8)))
        .collect())
}

/// `KIND=PID,PID;KIND=PID`.
fn procs(raw: &str) -> Result<Vec<(String, Vec<u32>)>, ArgsError> {
    raw.split(';')
        .filter(|group| !group.trim().is_empty())
        .map(|group| {
            let (kind, list) = group
                .split_once('=')
                .ok_or_else(|| invalid("procs", format!("{group:?} is not KIND=PID,PID")))?;
            let pids = list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse::<u32>()
                        .map_err(|_| invalid("procs", format!("{s:?} is not a process id")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((kind.trim().to_owned(), pids))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_are_grouped_by_kind() {
        let parsed = procs("worker=1,2;redis=3;").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("worker".to_owned(), vec![1, 2]),
                ("redis".to_owned(), vec![3])
            ]
        );
        assert!(procs("worker").is_err());
        assert!(procs("worker=x").is_err());
        assert_eq!(procs("").unwrap(), Vec::new());
    }
}
