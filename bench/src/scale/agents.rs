//! The agents of a scale run and what reaches them: one socket per agent
//! of the pool, each read by a task of its own that answers pings and
//! stamps the pool broadcasts it receives (`new-pending-session`, by the
//! session's subject, and `stats-update`, with its `updatedAt`) on
//! arrival. The stamps go through one channel to whoever books them, so a
//! receipt is timed when the frame was read, not when it was booked.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_shared::auth::TokenMinter;
use chat_shared::protocol::Role;
use futures_util::StreamExt;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, ClientError, SharedSink, WsStream};
use crate::idle::holding_token;
use crate::scale::args::ScaleArgs;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const PENDING_PREFIX: &str = r#"42/chat,["new-pending-session","#;
const STATS_PREFIX: &str = r#"42/chat,["stats-update","#;

/// One pool event one agent read.
#[derive(Debug)]
pub struct Heard {
    pub agent: usize,
    pub at: Instant,
    /// The wall clock at the same moment, to compare with server stamps.
    pub wall_us: i64,
    pub what: PoolEvent,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// `new-pending-session` of a session with this subject.
    Pending(String),
    /// `stats-update` stamped `updatedAt` (µs since the epoch).
    Stats(i64),
    /// A broadcast frame that did not parse.
    Unparsable,
    Closed(String),
}

pub struct Agents {
    /// Agents asked for; `Heard::agent` is below it.
    pub asked: usize,
    pub sinks: Vec<SharedSink>,
    readers: Vec<JoinHandle<()>>,
    pub heard: mpsc::UnboundedReceiver<Heard>,
    pub failures: Vec<String>,
}

impl Agents {
    /// Opens `args.agents` agent sockets, numbered from `offset` for the
    /// gateway and source address they use.
    pub async fn open(args: &ScaleArgs, run: &str, offset: usize) -> anyhow::Result<Agents> {
        let minter = TokenMinter::new(&args.jwt_secret);
        let permits = Arc::new(Semaphore::new(args.concurrency));
        let (tx, heard) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        for agent in 0..args.agents {
            let index = offset + agent;
            let user_id = format!("scale-{run}-a{agent}");
            let token = holding_token(&minter, user_id, Role::Agent, vec![args.pool.clone()])?;
            let endpoint = args.endpoints[index % args.endpoints.len()].clone();
            let source = args.sources[index % args.sources.len()];
            let permits = permits.clone();
            let tx = tx.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let socket =
                    client::connect_from(&endpoint, &token, CONNECT_TIMEOUT, source).await?;
                let reader = tokio::spawn(read(agent, socket.stream, socket.sink.clone(), tx));
                Ok::<_, ClientError>((socket.sink, reader))
            });
        }
        let mut agents = Agents {
            asked: args.agents,
            sinks: Vec::with_capacity(args.agents),
            readers: Vec::with_capacity(args.agents),
            heard,
            failures: Vec::new(),
        };
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok((sink, reader))) => {
                    agents.sinks.push(sink);
                    agents.readers.push(reader);
                }
                Ok(Err(error)) => agents.failures.push(error.to_string()),
                Err(error) => agents.failures.push(format!("task failed: {error}")),
            }
        }
        Ok(agents)
    }

    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    pub async fn close(self) {
        for sink in &self.sinks {
            client::close(sink).await;
        }
        for reader in self.readers {
            reader.abort();
        }
    }
}

async fn read(
    agent: usize,
    mut stream: WsStream,
    sink: SharedSink,
    tx: mpsc::UnboundedSender<Heard>,
) {
    let reason = loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => break "closed by the server".to_owned(),
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error.to_string(),
        };
        let at = Instant::now();
        let text = text.as_str();
        if let Some(data) = text.strip_prefix('2') {
            if let Err(error) = client::send_frame(&sink, format!("3{data}")).await {
                break format!("cannot answer a ping: {error}");
            }
            continue;
        }
        if text.starts_with("41/chat") || text == "1" {
            break "disconnected by the server".to_owned();
        }
        if let Some(what) = parse_broadcast(text) {
            let _ = tx.send(Heard {
                agent,
                at,
                wall_us: wall_micros(SystemTime::now()),
                what,
            });
        }
    };
    let _ = tx.send(Heard {
        agent,
        at: Instant::now(),
        wall_us: wall_micros(SystemTime::now()),
        what: PoolEvent::Closed(reason),
    });
}

#[derive(Deserialize)]
struct PendingBody {
    session: SubjectOnly,
}

#[derive(Deserialize)]
struct SubjectOnly {
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatsBody {
    updated_at: String,
}

/// The pool broadcast in one frame; None for every other frame.
fn parse_broadcast(text: &str) -> Option<PoolEvent> {
    let body = text.get("42/chat,".len()..)?;
    if text.starts_with(PENDING_PREFIX) {
        return Some(
            match serde_json::from_str::<(IgnoredAny, PendingBody)>(body) {
                Ok((_, pending)) => PoolEvent::Pending(pending.session.subject.unwrap_or_default()),
                Err(_) => PoolEvent::Unparsable,
            },
        );
    }
    if text.starts_with(STATS_PREFIX) {
        return Some(
            match serde_json::from_str::<(IgnoredAny, StatsBody)>(body)
                .ok()
                .and_then(|(_, stats)| rfc3339_micros(&stats.updated_at))
            {
                Some(micros) => PoolEvent::Stats(micros),
                None => PoolEvent::Unparsable,
            },
        );
    }
    None
}

fn wall_micros(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff]Z`, the form
/// the server writes its times in.
fn rfc3339_micros(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut micros_part = 0i64;
    for (i, digit) in fraction.bytes().take(6).enumerate() {
        micros_part += i64::from(digit - b'0') * 10i64.pow(5 - i as u32);
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000) + micros_part)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_times() {
        assert_eq!(rfc3339_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_micros("1970-01-02T00:00:01.250Z"),
            Some(86_401_250_000)
        );
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        assert_eq!(days_from_civil(2026, 12, 3), 20_790);
        assert!(secs > 0);
        assert_eq!(
            rfc3339_micros("2026-12-03T19:20:15.123Z"),
            Some((20_790 * 86_400 + 69_615) * 1_000_000 + 123_000)
        );
        assert_eq!(rfc3339_micros("2026-13-03T19:20:15Z"), None);
        assert_eq!(rfc3339_micros("garbage"), None);
    }

    #[test]
    fn recognises_pool_broadcasts() {
        let pending =
            r#"42/chat,["new-pending-session",{"session":{"id":"s","subject":"scale-x-3"}}]"#;
        assert_eq!(
            parse_broadcast(pending),
            Some(PoolEvent::Pending("scale-x-3".into()))
        );
        let stats =
            r#"42/chat,["stats-update",{"pool":"p","updatedAt":"1970-01-01T00:00:01.000Z"}]"#;
        assert_eq!(parse_broadcast(stats), Some(PoolEvent::Stats(1_000_000)));
        assert_eq!(
            parse_broadcast(r#"42/chat,["stats-update",{"pool":"p"}]"#),
            Some(PoolEvent::Unparsable)
        );
        assert_eq!(parse_broadcast(r#"42/chat,["session-updated",{}]"#), None);
    }
}
