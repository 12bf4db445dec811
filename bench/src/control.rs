//! The control chat of the hostile run: one customer and one agent assigned
//! to its session, exchanging messages on an open-loop schedule (message
//! `i` is due at `t0 + i * period`, the customer sends the even ones and the
//! agent the odd ones) on a thread and runtime of their own, so that the
//! flooders on the main runtime cannot delay the generator. The round trip
//! of a message is measured from its due time, not from when it was
//! written, so a late generator counts against the server's figure as well
//! as in its own lag. Every message is booked in a shared log; a phase's
//! figures are read afterwards from the messages due within it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::client::{self, AckOutcome, Endpoint, Incoming, Received, SharedSink};
use crate::report::{micros, percentiles};
use crate::rest;

const CUSTOMER: u8 = 0;
const AGENT: u8 = 1;
const JOIN_ACK_ID: u64 = 0;
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the control keeps reading after it stopped sending.
const DRAIN: Duration = Duration::from_secs(2);

/// Phase verdict thresholds.
pub const MAX_LAG: Duration = Duration::from_millis(20);
pub const MAX_P99: Duration = Duration::from_millis(50);

/// What the control chat needs to start.
pub struct ControlSetup {
    pub endpoint: Endpoint,
    pub customer_token: String,
    pub agent_token: String,
    pub pool: String,
    pub run_id: String,
    /// Messages per second, both directions together.
    pub rate: f64,
}

/// One scheduled message.
#[derive(Debug, Clone, Copy)]
struct Record {
    due: Instant,
    sent: Option<Instant>,
    /// First arrival on the other side's socket.
    received: Option<Instant>,
    /// Arrivals on the other side's socket (more than one is a duplicate).
    copies: u32,
    /// Some(true) ok, Some(false) refused, None unanswered.
    acked: Option<bool>,
}

#[derive(Debug, Default)]
struct Log {
    records: Vec<Record>,
    /// Sockets of the control that closed, with why and when.
    closed: Vec<(Instant, String)>,
    unparsable: u64,
}

/// The control chat's figures over one window of due times.
#[derive(Debug, Clone, Default)]
pub struct ControlStats {
    pub messages: usize,
    pub p50_us: Option<u32>,
    pub p99_us: Option<u32>,
    pub max_us: Option<u32>,
    /// Largest lateness of the generator against the schedule.
    pub lag_max_us: u32,
    pub lost: usize,
    pub duplicated: usize,
    pub failed_acks: usize,
    pub closed: Vec<String>,
}

impl ControlStats {
    /// Why the window fails, empty when it passes.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.messages == 0 {
            why.push("no control messages".to_owned());
        }
        if self.lag_max_us > micros(MAX_LAG) {
            why.push(format!(
                "generator lag {:.1} ms > 20 ms",
                f64::from(self.lag_max_us) / 1000.0
            ));
        }
        if self.p99_us.is_some_and(|p99| p99 >= micros(MAX_P99)) {
            why.push("control p99 >= 50 ms".to_owned());
        }
        if self.lost > 0 {
            why.push(format!("{} control messages lost", self.lost));
        }
        if self.duplicated > 0 {
            why.push(format!("{} control messages duplicated", self.duplicated));
        }
        if self.failed_acks > 0 {
            why.push(format!("{} control sends refused", self.failed_acks));
        }
        if !self.closed.is_empty() {
            why.push(format!("control socket closed: {}", self.closed.join("; ")));
        }
        why
    }
}

/// The running control chat.
pub struct Control {
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Control {
    /// Sets the chat up on its own thread and starts sending; returns once
    /// both sockets joined the session.
    pub async fn start(setup: ControlSetup) -> anyhow::Result<Control> {
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let (thread_log, thread_stop) = (log.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("control-chat".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(format!("cannot start a runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Chat::set_up(&setup).await {
                        Ok(chat) => {
                            let _ = ready_tx.send(Ok(()));
                            chat.run(setup.rate, &thread_log, &thread_stop).await;
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(format!("{error:#}")));
                        }
                    }
                });
            })
            .context("starting the control thread")?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Control { log, stop, thread }),
            Ok(Err(error)) => bail!("control chat: {error}"),
            Err(_) => bail!("control chat: the thread ended during setup"),
        }
    }

    /// The figures of the messages due in `[from, to)`. Read it a moment
    /// after `to`: a message not yet received counts as lost.
    pub fn window(&self, from: Instant, to: Instant) -> ControlStats {
        let log = match self.log.lock() {
            Ok(log) => log,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut stats = ControlStats::default();
        let mut samples = Vec::new();
        for record in log.records.iter().filter(|r| r.due >= from && r.due < to) {
            stats.messages += 1;
            let sent = record.sent.unwrap_or_else(Instant::now);
            stats.lag_max_us = stats.lag_max_us.max(micros(sent - record.due));
            match record.received {
                Some(at) => samples.push(micros(at.saturating_duration_since(record.due))),
                None => stats.lost += 1,
            }
            if record.copies > 1 {
                stats.duplicated += 1;
            }
            if record.acked == Some(false) {
                stats.failed_acks += 1;
            }
        }
        if let Some(p) = percentiles(&mut samples) {
            stats.p50_us = Some(p.p50);
            stats.p99_us = Some(p.p99);
            stats.max_us = Some(p.max);
        }
        stats.closed = log
            .closed
            .iter()
            .filter(|(at, _)| *at < to)
            .map(|(_, why)| why.clone())
            .collect();
        stats
    }

    /// Stops sending, lets the chat drain and close, and waits for its
    /// thread.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// The two joined sockets and their events.
struct Chat {
    session_id: String,
    client_id_prefix: String,
    customer: SharedSink,
    agent: SharedSink,
    events: mpsc::UnboundedReceiver<Received>,
}

impl Chat {
    async fn set_up(setup: &ControlSetup) -> anyhow::Result<Chat> {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let agent = client::connect(&setup.endpoint, &setup.agent_token, SETUP_TIMEOUT)
            .await
            .context("connecting the control agent")?;
        let agent_sink = agent.sink.clone();
        client::spawn_reader(agent.stream, agent.sink, AGENT, Some(events_tx.clone()));
        let customer = client::connect(&setup.endpoint, &setup.customer_token, SETUP_TIMEOUT)
            .await
            .context("connecting the control customer")?;
        let customer_sink = customer.sink.clone();
        client::spawn_reader(customer.stream, customer.sink, CUSTOMER, Some(events_tx));

        let body =
            json!({ "subject": format!("hostile {} control", setup.run_id), "pool": setup.pool });
        let session = rest::post_json(
            &setup.endpoint,
            "/api/chat/sessions",
            &setup.customer_token,
            &body,
        )
        .await
        .context("creating the control session")?;
        let session_id = session
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the created session has no id"))?
            .to_owned();
        let assign = format!("/api/chat/sessions/{session_id}/assign");
        rest::post_json(&setup.endpoint, &assign, &setup.agent_token, &json!({}))
            .await
            .context("assigning the control session")?;
        let join = client::event_frame(
            Some(JOIN_ACK_ID),
            "join-session",
            &json!({ "sessionId": session_id }),
        );
        client::send_frame(&agent_sink, join.clone()).await?;
        client::send_frame(&customer_sink, join).await?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut joined = [false, false];
        while !(joined[0] && joined[1]) {
            let received = tokio::time::timeout_at(deadline, events.recv())
                .await
                .map_err(|_| anyhow!("control join: no ack within {SETUP_TIMEOUT:?}"))?
                .ok_or_else(|| anyhow!("control join: both sockets closed"))?;
            match received.item {
                Incoming::Ack {
                    id: JOIN_ACK_ID,
                    outcome: AckOutcome::Ok { .. },
                } => joined[usize::from(received.tag)] = true,
                Incoming::Ack {
                    id: JOIN_ACK_ID,
                    outcome: AckOutcome::Failed { code },
                } => bail!("control join refused: {code}"),
                Incoming::Closed(reason) => bail!("control socket closed: {reason}"),
                _ => {}
            }
        }
        Ok(Chat {
            session_id,
            client_id_prefix: format!("ctl-{}-", setup.run_id),
            customer: customer_sink,
            agent: agent_sink,
            events,
        })
    }

    async fn run(self, rate: f64, log: &Mutex<Log>, stop: &AtomicBool) {
        let Chat {
            session_id,
            client_id_prefix,
            customer,
            agent,
            mut events,
        } = self;
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now() + Duration::from_millis(100);
        let mut index: u32 = 0;
        let mut writable = true;
        while !stop.load(Ordering::SeqCst) {
            let due = start + period * index;
            tokio::select! {
                () = sleep_until(due) => {
                    if !writable {
                        // A dead socket: keep booking the schedule as lost.
                        push(log, Record { due, sent: None, received: None, copies: 0, acked: None });
                        index += 1;
                        continue;
                    }
                    let sink = if index.is_multiple_of(2) { &customer } else { &agent };
                    let frame = client::event_frame(
                        Some(u64::from(index) + 1),
                        "send-message",
                        &json!({
                            "sessionId": session_id,
                            "content": format!("control {index}"),
                            "clientMsgId": format!("{client_id_prefix}{index}"),
                        }),
                    );
                    push(log, Record { due, sent: None, received: None, copies: 0, acked: None });
                    let result = client::send_frame(sink, frame).await;
                    let now = Instant::now();
                    with_log(log, |log| {
                        if let Some(record) = log.records.get_mut(index as usize) {
                            record.sent = Some(now);
                        }
                        if let Err(error) = &result {
                            log.closed.push((now, format!("cannot send: {error}")));
                        }
                    });
                    writable = result.is_ok();
                    index += 1;
                }
                Some(received) = events.recv() => book(&client_id_prefix, log, received),
            }
        }
        let drain_end = Instant::now() + DRAIN;
        while let Ok(Some(received)) = tokio::time::timeout_at(drain_end, events.recv()).await {
            book(&client_id_prefix, log, received);
        }
        client::close(&customer).await;
        client::close(&agent).await;
    }
}

/// Books one event of the control's sockets.
fn book(client_id_prefix: &str, log: &Mutex<Log>, received: Received) {
    {
        with_log(log, |log| match received.item {
            Incoming::Ack { id, outcome } => {
                let Some(index) = id.checked_sub(1) else {
                    return;
                };
                if let Some(record) = usize::try_from(index)
                    .ok()
                    .and_then(|i| log.records.get_mut(i))
                {
                    record.acked = Some(matches!(outcome, AckOutcome::Ok { .. }));
                }
            }
            Incoming::NewMessage(message) => {
                let Some(index) = message
                    .client_msg_id
                    .as_deref()
                    .and_then(|id| id.strip_prefix(client_id_prefix))
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    return;
                };
                // The other side's copy is the round trip; the sender's own
                // echo is not.
                let receiver = if index % 2 == 0 { AGENT } else { CUSTOMER };
                if received.tag != receiver {
                    return;
                }
                if let Some(record) = log.records.get_mut(index) {
                    record.copies += 1;
                    record.received.get_or_insert(received.at);
                }
            }
            Incoming::Unparsable(_) => log.unparsable += 1,
            Incoming::Closed(reason) => {
                let who = if received.tag == AGENT {
                    "agent"
                } else {
                    "customer"
                };
                log.closed.push((received.at, format!("{who}: {reason}")));
            }
        });
    }
}

fn push(log: &Mutex<Log>, record: Record) {
    with_log(log, |log| log.records.push(record));
}

fn with_log(log: &Mutex<Log>, f: impl FnOnce(&mut Log)) {
    let mut guard = match log.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_judges_lag_latency_and_losses() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut log = Log::default();
        for i in 0..100u32 {
            log.records.push(Record {
                due: t0 + ms(50) * i,
                sent: Some(t0 + ms(50) * i + ms(1)),
                received: Some(t0 + ms(50) * i + ms(2)),
                copies: 1,
                acked: Some(true),
            });
        }
        let control = Control {
            log: Arc::new(Mutex::new(log)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: std::thread::spawn(|| {}),
        };
        let stats = control.window(t0, t0 + ms(5000));
        assert_eq!(stats.messages, 100);
        assert_eq!(stats.p99_us, Some(2000));
        assert_eq!(stats.lag_max_us, 1000);
        assert!(stats.failures().is_empty(), "{:?}", stats.failures());
        {
            let mut log = control.log.lock().unwrap();
            log.records[10].received = None;
            log.records[11].copies = 2;
            log.records[12].sent = Some(t0 + ms(50) * 12 + ms(30));
        }
        let stats = control.window(t0, t0 + ms(5000));
        assert_eq!((stats.lost, stats.duplicated), (1, 1));
        assert_eq!(stats.failures().len(), 3, "{:?}", stats.failures());
        assert_eq!(control.window(t0, t0 + ms(100)).messages, 2);
    }
}
