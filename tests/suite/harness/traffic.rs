//! A steady stream of conversations through the cluster, driven the way
//! real clients drive it, and the check of what every socket saw.
//!
//! Each conversation is a session with one customer and one assigned agent.
//! The customer talks to one gateway and the agent to another, so that
//! every message crosses pods. Both join the session; the customer sends at
//! a fixed rate with an acknowledgement per message. Like a real client,
//! each member:
//! - resends a message whose ack failed (`unavailable`, no ack in time, the
//!   connection lost) with its original `clientMsgId`, until it is acked;
//! - reconnects when its connection ends, to its own gateway or, failing
//!   that, to the next one, joins again with `lastSeq` (the highest `seq`
//!   it has seen), then resends what was not acked.
//!
//! Everything is recorded: per connection, the `seq` of each message the
//! socket received (the `session-joined` history, then live `new-message`
//! events) in arrival order; per message, every attempt and its outcome.
//! [`Traffic::finish`] stops the new messages, lets the resends complete,
//! waits until every member has seen the session's last message, and
//! [`Report::violations`] then compares everything with the REST history.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::http::{try_history, try_rest};
use super::sio_client::{await_ack, AckError, SioClient};
use super::tokens::token_signed_with;

/// How long a client waits for an ack before it gives up and resends; the
/// gateway answers `unavailable` well before (its `REQUEST_TIMEOUT_MS`).
const ACK_WAIT: Duration = Duration::from_secs(8);
/// How long a member keeps trying to reconnect before it gives up.
const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
/// Pause between two rounds of reconnection attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Most resends per tick, so that a backlog drains without a burst.
const RESENDS_PER_TICK: usize = 10;

/// The shape of the traffic.
#[derive(Debug, Clone)]
pub struct Plan {
    pub conversations: usize,
    /// Messages per second from each customer.
    pub rate_per_sec: u32,
    /// Index of the gateway customers connect to first.
    pub customer_gateway: usize,
    /// Index of the gateway agents connect to first.
    pub agent_gateway: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            conversations: 5,
            rate_per_sec: 20,
            customer_gateway: 0,
            agent_gateway: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected and joined; nothing sent yet.
    Idle,
    /// New messages at the plan's rate, and resends.
    Sending,
    /// Resends only.
    Draining,
    /// Members disconnect and stop.
    Stopped,
}

/// What one socket connection received, in arrival order.
#[derive(Debug, Clone)]
pub struct ConnectionLog {
    /// Index of the gateway it was made to.
    pub gateway: usize,
    /// The `lastSeq` it joined with.
    pub last_seq: i64,
    /// `(seq, clientMsgId)` of each message received.
    pub received: Vec<(i64, String)>,
    /// When the connection was found ended.
    pub closed_at: Option<Instant>,
}

/// One attempt to send a message.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub answered_at: Option<Instant>,
    /// `Ok(seq)` for a successful ack, else the failure (error code,
    /// closed connection, no ack in time).
    pub outcome: Option<Result<i64, String>>,
}

/// Everything about one message a customer sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub client_msg_id: String,
    pub content: String,
    /// When it was first sent.
    pub first_sent: Instant,
    pub attempts: Vec<Attempt>,
}

impl Sent {
    /// The first successful ack: when it came and the `seq` it carried.
    pub fn acked(&self) -> Option<(Instant, i64)> {
        self.attempts
            .iter()
            .find_map(|a| match (&a.outcome, a.answered_at) {
                (Some(Ok(seq)), Some(at)) => Some((at, *seq)),
                _ => None,
            })
    }

    /// When failed attempts were answered.
    pub fn failures(&self) -> impl Iterator<Item = (Instant, &str)> {
        self.attempts
            .iter()
            .filter_map(|a| match (&a.outcome, a.answered_at) {
                (Some(Err(why)), Some(at)) => Some((at, why.as_str())),
                _ => None,
            })
    }
}

/// What a member did and saw.
#[derive(Debug, Clone, Default)]
pub struct MemberLog {
    pub connections: Vec<ConnectionLog>,
    /// Messages sent, in the order first sent.
    pub sent: Vec<Sent>,
    /// Connection and join failures, for the report.
    pub troubles: Vec<String>,
    /// Set when the member gave up (it could not reconnect).
    pub gave_up: Option<String>,
}

impl MemberLog {
    /// The highest `seq` any of its connections received.
    pub fn max_seen(&self) -> i64 {
        self.connections
            .iter()
            .flat_map(|c| c.received.iter().map(|(seq, _)| *seq))
            .max()
            .unwrap_or(0)
    }

    pub fn unacked(&self) -> usize {
        self.sent.iter().filter(|s| s.acked().is_none()).count()
    }

    /// Messages first sent at or after `since` and acked since.
    pub fn acked_first_sent_since(&self, since: Instant) -> usize {
        self.sent
            .iter()
            .filter(|s| s.first_sent >= since && s.acked().is_some())
            .count()
    }

    /// Messages first sent at or after `since` that had an attempt fail.
    pub fn failed_first_sent_since(&self, since: Instant) -> usize {
        self.sent
            .iter()
            .filter(|s| s.first_sent >= since && s.failures().next().is_some())
            .count()
    }

    /// Failed attempts answered at or after `since`.
    pub fn failures_since(&self, since: Instant) -> usize {
        self.sent
            .iter()
            .flat_map(Sent::failures)
            .filter(|(at, _)| *at >= since)
            .count()
    }
}

/// One side of a conversation.
pub struct Member {
    pub label: String,
    pub user_id: String,
    pub token: String,
    pub session_id: String,
    gateways: Vec<SocketAddr>,
    /// Index of the gateway it connects to first.
    home: usize,
    log: Mutex<MemberLog>,
    progress: Arc<watch::Sender<u64>>,
}

impl Member {
    pub fn log(&self) -> MutexGuard<'_, MemberLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update<T>(&self, change: impl FnOnce(&mut MemberLog) -> T) -> T {
        let result = change(&mut self.log());
        self.progress.send_modify(|n| *n += 1);
        result
    }

    /// Connects (home gateway first, then the others, in rounds, for up to
    /// [`RECONNECT_WINDOW`]) and joins with the highest `seq` seen so far.
    async fn connect_and_join(&self, phase: &watch::Receiver<Phase>) -> Option<SioClient> {
        let deadline = Instant::now() + RECONNECT_WINDOW;
        let order: Vec<usize> = (0..self.gateways.len())
            .map(|i| (self.home + i) % self.gateways.len())
            .collect();
        while Instant::now() < deadline {
            for &gateway in &order {
                if *phase.borrow() == Phase::Stopped {
                    return None;
                }
                let addr = self.gateways[gateway];
                let client =
                    match SioClient::try_connect(addr, &self.token, Duration::from_secs(5)).await {
                        Ok(client) => client,
                        Err(error) => {
                            self.update(|log| log.troubles.push(error));
                            continue;
                        }
                    };
                let last_seq = self.log().max_seen();
                let payload = json!({ "sessionId": self.session_id, "lastSeq": last_seq });
                match client.request("join-session", payload, ACK_WAIT).await {
                    Ok(ack) if ack["ok"] == json!(true) => {
                        self.update(|log| {
                            log.connections.push(ConnectionLog {
                                gateway,
                                last_seq,
                                received: Vec::new(),
                                closed_at: None,
                            });
                        });
                        return Some(client);
                    }
                    Ok(ack) => self.update(|log| {
                        log.troubles
                            .push(format!("join on gateway {gateway}: {ack}"))
                    }),
                    Err(error) => self.update(|log| {
                        log.troubles
                            .push(format!("join on gateway {gateway}: {error}"))
                    }),
                }
            }
            // A real client's reconnection delay, not a wait for anything.
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
        self.update(|log| {
            log.gave_up = Some(format!("could not reconnect within {RECONNECT_WINDOW:?}"));
        });
        None
    }

    /// Records a pushed event if it is a message of the session.
    fn record_event(&self, name: &str, payload: &Value) {
        let messages: Vec<&Value> = match name {
            "session-joined" if payload["session"]["id"] == self.session_id.as_str() => payload
                ["messages"]
                .as_array()
                .map(|m| m.iter().collect())
                .unwrap_or_default(),
            "new-message" if payload["sessionId"] == self.session_id.as_str() => vec![payload],
            _ => return,
        };
        self.update(|log| {
            let connection = log.connections.last_mut().expect("a joined connection");
            for message in messages {
                connection.received.push((
                    message["seq"].as_i64().unwrap_or(-1),
                    message["clientMsgId"].as_str().unwrap_or("").to_owned(),
                ));
            }
        });
    }
}

/// A session and its two members.
pub struct Conversation {
    pub session_id: String,
    pub customer: Arc<Member>,
    pub agent: Arc<Member>,
}

/// The running traffic.
pub struct Traffic {
    pub conversations: Vec<Conversation>,
    phase: watch::Sender<Phase>,
    progress: Arc<watch::Sender<u64>>,
    tasks: Vec<JoinHandle<()>>,
    gateways: Vec<SocketAddr>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Traffic {
    /// Opens the conversations (each customer creates a session, each
    /// agent takes it), connects and joins every member, and waits until
    /// all have joined. Nothing is sent until [`Traffic::start_sending`].
    pub async fn open(gateways: &[SocketAddr], secret: &str, plan: &Plan) -> Traffic {
        let (phase, _) = watch::channel(Phase::Idle);
        let progress = Arc::new(watch::channel(0u64).0);
        let mut traffic = Traffic {
            conversations: Vec::new(),
            phase,
            progress,
            tasks: Vec::new(),
            gateways: gateways.to_vec(),
        };
        let run = uuid::Uuid::new_v4().simple().to_string();
        for i in 0..plan.conversations {
            let customer_id = format!("customer-{i}-{}", &run[..8]);
            let agent_id = format!("agent-{i}-{}", &run[..8]);
            let customer_token =
                token_signed_with(secret, &customer_id, "customer", &["default"], 3600);
            let agent_token = token_signed_with(secret, &agent_id, "agent", &["default"], 3600);
            let session_id = traffic
                .create_assigned_session(plan, &customer_token, &agent_token, i)
                .await;
            let member = |label: String, user_id: String, token: String, home| {
                Arc::new(Member {
                    label,
                    user_id,
                    token,
                    session_id: session_id.clone(),
                    gateways: gateways.to_vec(),
                    home,
                    log: Mutex::new(MemberLog::default()),
                    progress: traffic.progress.clone(),
                })
            };
            let customer = member(
                format!("customer {i}"),
                customer_id,
                customer_token,
                plan.customer_gateway,
            );
            let agent = member(
                format!("agent {i}"),
                agent_id,
                agent_token,
                plan.agent_gateway,
            );
            for (member, rate) in [(&customer, plan.rate_per_sec), (&agent, 0)] {
                let task = run_member(member.clone(), traffic.phase.subscribe(), rate);
                traffic.tasks.push(tokio::spawn(task));
            }
            traffic.conversations.push(Conversation {
                session_id,
                customer,
                agent,
            });
        }
        traffic
            .wait_until("every member joined", Duration::from_secs(30), |t| {
                t.members().all(|m| !m.log().connections.is_empty())
            })
            .await;
        traffic
    }

    async fn create_assigned_session(
        &self,
        plan: &Plan,
        customer: &str,
        agent: &str,
        index: usize,
    ) -> String {
        let wait = Duration::from_secs(10);
        let body = json!({ "subject": format!("conversation {index}") });
        let (status, session) = try_rest(
            self.gateways[plan.customer_gateway],
            "POST",
            "/api/chat/sessions",
            Some(customer),
            Some(body),
            wait,
        )
        .await
        .expect("create a session");
        assert_eq!(status, 201, "create a session: {session}");
        let session_id = session["id"].as_str().expect("session id").to_owned();
        let path = format!("/api/chat/sessions/{session_id}/assign");
        let (status, assigned) = try_rest(
            self.gateways[plan.agent_gateway],
            "POST",
            &path,
            Some(agent),
            Some(json!({})),
            wait,
        )
        .await
        .expect("assign the session");
        assert_eq!(status, 200, "assign the session: {assigned}");
        session_id
    }

    pub fn members(&self) -> impl Iterator<Item = &Arc<Member>> {
        self.conversations
            .iter()
            .flat_map(|c| [&c.customer, &c.agent])
    }

    pub fn customers(&self) -> impl Iterator<Item = &Arc<Member>> {
        self.conversations.iter().map(|c| &c.customer)
    }

    pub fn start_sending(&self) {
        self.phase.send_replace(Phase::Sending);
    }

    /// Waits until `condition` holds, re-checking whenever a member
    /// records something; panics with `what` and a summary after `wait`.
    pub async fn wait_until(
        &self,
        what: &str,
        wait: Duration,
        condition: impl Fn(&Traffic) -> bool,
    ) -> Duration {
        let started = Instant::now();
        let deadline = started + wait;
        let mut changes = self.progress.subscribe();
        loop {
            changes.mark_unchanged();
            if condition(self) {
                return started.elapsed();
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!("{what}: not within {wait:?}\n{}", self.summary());
            }
        }
    }

    /// Waits until every customer has had `count` messages first sent at
    /// or after `since` acknowledged.
    /// Starts sending and waits (20 s at most) until every customer has 40
    /// messages acknowledged: the cluster carries traffic before a fault.
    /// Returns when sending started.
    pub async fn start_and_settle(&self) -> Instant {
        let started = Instant::now();
        self.start_sending();
        self.wait_for_acks_since(started, 40, Duration::from_secs(20))
            .await;
        started
    }

    pub async fn wait_for_acks_since(
        &self,
        since: Instant,
        count: usize,
        wait: Duration,
    ) -> Duration {
        let what = format!("{count} acknowledged messages per customer");
        self.wait_until(&what, wait, |t| {
            t.customers()
                .all(|c| c.log().acked_first_sent_since(since) >= count)
        })
        .await
    }

    /// Stops new messages, waits until every message is acknowledged and
    /// every member has received the session's last message (as REST
    /// reports it), then disconnects everyone. Returns what was seen.
    pub async fn finish(&mut self, wait: Duration) -> Report {
        let started = Instant::now();
        self.phase.send_replace(Phase::Draining);
        self.wait_until("every message acknowledged", wait, |t| {
            t.customers().all(|c| c.log().unacked() == 0)
        })
        .await;
        let mut histories = HashMap::new();
        for conversation in &self.conversations {
            let history = self.history(&conversation.agent).await;
            histories.insert(conversation.session_id.clone(), history);
        }
        let last_seqs: HashMap<String, i64> = histories
            .iter()
            .map(|(id, h)| {
                (
                    id.clone(),
                    h.last().and_then(|m| m["seq"].as_i64()).unwrap_or(0),
                )
            })
            .collect();
        let left = wait.saturating_sub(started.elapsed());
        self.wait_until("every member saw the last message", left, |t| {
            t.members()
                .all(|m| m.log().max_seen() >= last_seqs[&m.session_id])
        })
        .await;
        self.phase.send_replace(Phase::Stopped);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        Report {
            conversations: self
                .conversations
                .iter()
                .map(|c| ConversationReport {
                    session_id: c.session_id.clone(),
                    customer: (c.customer.label.clone(), c.customer.log().clone()),
                    agent: (c.agent.label.clone(), c.agent.log().clone()),
                    history: histories.remove(&c.session_id).unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The member's session as REST gives it, from the first gateway that
    /// answers (its own first).
    async fn history(&self, member: &Member) -> Vec<Value> {
        let mut errors = Vec::new();
        for i in 0..self.gateways.len() {
            let gateway = self.gateways[(member.home + i) % self.gateways.len()];
            match try_history(gateway, &member.token, &member.session_id).await {
                Ok(history) => return history,
                Err(error) => errors.push(error),
            }
        }
        panic!("no gateway gave the history: {errors:?}");
    }

    /// One line per member: connections, messages seen, sends, failures.
    pub fn summary(&self) -> String {
        self.members()
            .map(|m| describe(&m.label, &m.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn describe(label: &str, log: &MemberLog) -> String {
    let gateways: Vec<String> = log
        .connections
        .iter()
        .map(|c| format!("gw{}:{}", c.gateway, c.received.len()))
        .collect();
    let failures: usize = log.sent.iter().map(|s| s.failures().count()).sum();
    let mut line = format!(
        "{label}: connections [{}], max seq seen {}, sent {}, acked {}, failed attempts {}",
        gateways.join(" "),
        log.max_seen(),
        log.sent.len(),
        log.sent.len() - log.unacked(),
        failures,
    );
    if let Some(why) = log.troubles.last() {
        line.push_str(&format!(", last trouble: {why}"));
    }
    if let Some(why) = &log.gave_up {
        line.push_str(&format!(", GAVE UP: {why}"));
    }
    line
}

/// The member's task: stay connected and joined; a customer also sends.
async fn run_member(member: Arc<Member>, mut phase: watch::Receiver<Phase>, rate_per_sec: u32) {
    let mut next_index = 0usize;
    loop {
        let Some(mut client) = member.connect_and_join(&phase).await else {
            return;
        };
        // After a reconnect, every message not yet acked goes again.
        let mut resend: VecDeque<usize> = {
            let log = member.log();
            (0..log.sent.len())
                .filter(|&i| log.sent[i].acked().is_none())
                .collect()
        };
        let mut in_flight: JoinSet<(usize, usize, Result<Value, AckError>)> = JoinSet::new();
        let period = Duration::from_secs(1) / rate_per_sec.max(1);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick(), if rate_per_sec > 0 => {
                    let current = *phase.borrow();
                    if current == Phase::Sending {
                        let index = member.update(|log| {
                            let client_msg_id = format!("{}-m{next_index}", member.user_id);
                            log.sent.push(Sent {
                                content: format!("message {next_index} from {}", member.label),
                                client_msg_id,
                                first_sent: Instant::now(),
                                attempts: Vec::new(),
                            });
                            log.sent.len() - 1
                        });
                        next_index += 1;
                        send(&member, &client, index, &mut in_flight);
                    }
                    if matches!(current, Phase::Sending | Phase::Draining) {
                        for _ in 0..RESENDS_PER_TICK {
                            let Some(index) = resend.pop_front() else { break };
                            if member.log().sent[index].acked().is_none() {
                                send(&member, &client, index, &mut in_flight);
                            }
                        }
                    }
                }
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let Ok((index, attempt, result)) = done else { continue };
                    let outcome = match result {
                        Ok(ack) if ack["ok"] == json!(true) => {
                            Ok(ack["message"]["seq"].as_i64().unwrap_or(-1))
                        }
                        Ok(ack) => Err(ack["error"]["code"].as_str().unwrap_or("malformed ack").to_owned()),
                        Err(error) => Err(error.to_string()),
                    };
                    let failed = outcome.is_err();
                    member.update(|log| {
                        let record = &mut log.sent[index].attempts[attempt];
                        record.answered_at = Some(Instant::now());
                        record.outcome = Some(outcome);
                    });
                    if failed {
                        resend.push_back(index);
                    }
                }
                event = client.recv_event() => match event {
                    Some((name, payload)) => member.record_event(&name, &payload),
                    None => {
                        member.update(|log| {
                            let now = Instant::now();
                            if let Some(connection) = log.connections.last_mut() {
                                connection.closed_at = Some(now);
                            }
                            // What was in flight on it fails, to be resent.
                            for sent in &mut log.sent {
                                if let Some(last) = sent.attempts.last_mut() {
                                    if last.outcome.is_none() {
                                        last.answered_at = Some(now);
                                        last.outcome = Some(Err(AckError::Closed.to_string()));
                                    }
                                }
                            }
                        });
                        break;
                    }
                },
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Stopped {
                        client.close();
                        return;
                    }
                }
            }
        }
        in_flight.abort_all();
    }
}

/// Sends message `index` once more and tracks its ack.
fn send(
    member: &Arc<Member>,
    client: &SioClient,
    index: usize,
    in_flight: &mut JoinSet<(usize, usize, Result<Value, AckError>)>,
) {
    let (payload, attempt) = member.update(|log| {
        let sent = &mut log.sent[index];
        sent.attempts.push(Attempt {
            answered_at: None,
            outcome: None,
        });
        let payload = json!({
            "sessionId": member.session_id,
            "content": sent.content,
            "clientMsgId": sent.client_msg_id,
        });
        (payload, sent.attempts.len() - 1)
    });
    let ack = client.call("send-message", payload);
    in_flight.spawn(async move { (index, attempt, await_ack(ack, ACK_WAIT).await) });
}

// ------------------------------------------------------------------ checks

/// What one conversation saw, and its history as REST gives it.
#[derive(Debug, Clone)]
pub struct ConversationReport {
    pub session_id: String,
    pub customer: (String, MemberLog),
    pub agent: (String, MemberLog),
    pub history: Vec<Value>,
}

/// What the traffic saw, to be checked against the delivery guarantees.
#[derive(Debug, Clone)]
pub struct Report {
    pub conversations: Vec<ConversationReport>,
}

impl Report {
    /// Every way the run broke a delivery guarantee, as sentences:
    /// - the history's `seq` runs 1, 2, 3, … without gaps or repeats, and
    ///   holds each `clientMsgId` once, each one a message the customer sent;
    /// - every acknowledged message is in the history, under the `seq` of
    ///   every ack it got;
    /// - on every connection, the messages received (history at the join,
    ///   then live) are consecutive `seq`s starting right after the join's
    ///   `lastSeq`, each the message the history holds under that `seq`;
    /// - each member's connections together received the whole history.
    pub fn violations(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for conversation in &self.conversations {
            check_conversation(conversation, &mut problems);
        }
        problems
    }

    /// Panics unless every member kept its first connection through the
    /// run (`through`: what happened meanwhile, for the message).
    pub fn assert_nobody_reconnected(&self, through: &str) {
        for conversation in &self.conversations {
            for (label, log) in [&conversation.customer, &conversation.agent] {
                assert_eq!(
                    log.connections.len(),
                    1,
                    "{label}'s socket did not stay connected through {through}"
                );
            }
        }
    }

    /// Panics, listing every violation, unless there is none.
    pub fn assert_delivery_guarantees(&self) {
        let problems = self.violations();
        assert!(
            problems.is_empty(),
            "{} violation(s) of the delivery guarantees:\n{}\n\n{}",
            problems.len(),
            problems.join("\n"),
            self.summary()
        );
    }

    pub fn summary(&self) -> String {
        self.conversations
            .iter()
            .flat_map(|c| {
                [
                    format!("session {}: {} messages", c.session_id, c.history.len()),
                    format!("  {}", describe(&c.customer.0, &c.customer.1)),
                    format!("  {}", describe(&c.agent.0, &c.agent.1)),
                ]
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Messages acknowledged over the whole run.
    pub fn acked(&self) -> usize {
        self.conversations
            .iter()
            .map(|c| {
                c.customer
                    .1
                    .sent
                    .iter()
                    .filter(|s| s.acked().is_some())
                    .count()
            })
            .sum()
    }

    /// The longest a message waited, from its first sending to its first
    /// successful ack (resends included).
    pub fn longest_wait(&self) -> Duration {
        self.conversations
            .iter()
            .flat_map(|c| c.customer.1.sent.iter())
            .filter_map(|s| s.acked().map(|(at, _)| at - s.first_sent))
            .max()
            .unwrap_or_default()
    }

    /// Failed send attempts over the whole run.
    pub fn failed_attempts(&self) -> usize {
        self.conversations
            .iter()
            .map(|c| {
                c.customer
                    .1
                    .sent
                    .iter()
                    .map(|s| s.failures().count())
                    .sum::<usize>()
            })
            .sum()
    }
}

fn check_conversation(c: &ConversationReport, problems: &mut Vec<String>) {
    let session = &c.session_id;
    let mut by_seq: BTreeMap<i64, String> = BTreeMap::new();
    let mut by_client_id: HashMap<String, i64> = HashMap::new();
    for (position, message) in c.history.iter().enumerate() {
        let seq = message["seq"].as_i64().unwrap_or(-1);
        let client_id = message["clientMsgId"].as_str().unwrap_or("").to_owned();
        let expected = i64::try_from(position).unwrap_or(i64::MAX) + 1;
        if seq != expected {
            problems.push(format!(
                "session {session}: history position {position} has seq {seq}, expected {expected}"
            ));
        }
        if let Some(earlier) = by_client_id.insert(client_id.clone(), seq) {
            problems.push(format!(
                "session {session}: clientMsgId {client_id} stored twice, as seq {earlier} and {seq}"
            ));
        }
        by_seq.insert(seq, client_id);
    }
    let (customer_label, customer) = &c.customer;
    let sent: BTreeSet<&str> = customer
        .sent
        .iter()
        .map(|s| s.client_msg_id.as_str())
        .collect();
    for client_id in by_client_id.keys() {
        if !sent.contains(client_id.as_str()) {
            problems.push(format!(
                "session {session}: the history holds {client_id}, which {customer_label} never sent"
            ));
        }
    }
    for message in &customer.sent {
        let stored = by_client_id.get(&message.client_msg_id);
        for attempt in &message.attempts {
            let Some(Ok(seq)) = attempt.outcome else {
                continue;
            };
            match stored {
                None => problems.push(format!(
                    "session {session}: {} was acknowledged as seq {seq} but is not in the history",
                    message.client_msg_id
                )),
                Some(stored) if *stored != seq => problems.push(format!(
                    "session {session}: {} was acknowledged as seq {seq} but stored as seq {stored}",
                    message.client_msg_id
                )),
                Some(_) => {}
            }
        }
    }
    let last = by_seq.keys().next_back().copied().unwrap_or(0);
    for (label, log) in [&c.customer, &c.agent] {
        let mut seen = BTreeSet::new();
        for (n, connection) in log.connections.iter().enumerate() {
            // Each seq must follow the one before it (the first after the
            // join's lastSeq); the first departure is reported, with all
            // the connection received.
            let mut previous = connection.last_seq;
            let mut in_order = true;
            for (seq, client_id) in &connection.received {
                if in_order && *seq != previous + 1 {
                    in_order = false;
                    problems.push(format!(
                        "session {session}: {label}'s connection {n} (gateway {}, lastSeq {}) received seq {seq} after seq {previous}; it received {:?}",
                        connection.gateway,
                        connection.last_seq,
                        compress(connection.received.iter().map(|(s, _)| *s)),
                    ));
                }
                if by_seq.get(seq) != Some(client_id) {
                    problems.push(format!(
                        "session {session}: {label} received {client_id} as seq {seq}, which the history holds as {:?}",
                        by_seq.get(seq)
                    ));
                }
                seen.insert(*seq);
                previous = *seq;
            }
        }
        let missing: Vec<i64> = (1..=last).filter(|seq| !seen.contains(seq)).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "session {session}: {label} never received seq {:?}",
                compress(missing.into_iter())
            ));
        }
    }
}

/// `1, 2, 3, 5, 6` as `["1-3", "5-6"]`, to keep long lists readable.
fn compress(seqs: impl Iterator<Item = i64>) -> Vec<String> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for seq in seqs {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == seq => *end = seq,
            _ => ranges.push((seq, seq)),
        }
    }
    ranges
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect()
}
