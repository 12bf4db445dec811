//! Graceful drain of the cluster binaries under load, over real Redis and
//! PostgreSQL: SIGTERM a gateway while its customers are sending, and
//! SIGTERM a worker while commands flow.
//!
//! - The gateway turns unready at once, keeps serving through its drain
//!   delay, then closes its sockets with "going away" in batches spread
//!   over the drain window, and exits within its grace period. Its clients
//!   reconnect through a "load balancer" that only picks ready gateways
//!   (so they land on the other one), rejoin with `lastSeq` and resend
//!   what was not acknowledged.
//! - The worker finishes its batch, releases its leases and says so; the
//!   other worker takes every partition over far sooner than the leases
//!   would have expired.
//!
//! Either way, every acknowledged message is stored once and every client
//! receives every message exactly once, in order.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::harness::backing::Backing;
use crate::harness::chat_client::{assert_exactly_once_in_order, ChatClient, Upstream};
use crate::harness::eventually::eventually;
use crate::harness::http::{get, history, rest};
use crate::harness::metrics::metric_value;
use crate::harness::processes::{process_env, Process, Role};
use crate::harness::redis_admin::lease_holders;
use crate::harness::tokens::token;

const SESSIONS: usize = 8;
const PARTITIONS: u32 = 8;
/// Long on purpose: a takeover that waited for the leases to expire, or
/// for the next lease check (every third of this), would show.
const LEASE_TTL: Duration = Duration::from_secs(30);
// Long enough that a loaded machine can still probe the gateway inside
// the delay, short enough to keep the test quick.
const DRAIN_DELAY: Duration = Duration::from_millis(1_500);
const DRAIN_WINDOW: Duration = Duration::from_millis(3_000);
const SHUTDOWN_GRACE: Duration = Duration::from_millis(12_000);
/// Pause between two messages of one customer: steady load, not a flood.
const PACE: Duration = Duration::from_millis(30);
/// Messages each customer still sends once told to stop, so that every
/// one of them sends after the event under test.
const FINAL_MESSAGES: usize = 3;

/// Fields drop in order: the processes are killed before the database and
/// the keys are removed, so nothing writes them again afterwards.
struct Rig {
    gateways: Vec<Process>,
    workers: Vec<Process>,
    backing: Backing,
    _logs: tempfile::TempDir,
}

impl Rig {
    async fn start(gateways: usize, workers: usize) -> Rig {
        let backing = Backing::create().await;
        let logs = tempfile::Builder::new()
            .prefix("chat-ops-logs-")
            .tempdir()
            .expect("temp dir");
        let lease = LEASE_TTL.as_millis().to_string();
        let delay = DRAIN_DELAY.as_millis().to_string();
        let window = DRAIN_WINDOW.as_millis().to_string();
        let grace = SHUTDOWN_GRACE.as_millis().to_string();
        let env = process_env(
            &backing,
            &[
                ("LEASE_TTL_MS", lease.as_str()),
                ("DRAIN_DELAY_MS", delay.as_str()),
                ("DRAIN_WINDOW_MS", window.as_str()),
                ("SHUTDOWN_GRACE_MS", grace.as_str()),
            ],
        );
        let mut rig = Rig {
            gateways: Vec::new(),
            workers: Vec::new(),
            backing,
            _logs: logs,
        };
        for i in 0..workers {
            let name = format!("worker-{i}");
            let worker = Process::start(Role::Worker, &name, &env, rig._logs.path()).await;
            rig.workers.push(worker);
        }
        for i in 0..gateways {
            let name = format!("gateway-{i}");
            let gateway = Process::start(Role::Gateway, &name, &env, rig._logs.path()).await;
            rig.gateways.push(gateway);
        }
        rig
    }

    /// Who holds each partition's lease right now.
    async fn lease_holders(&self) -> Vec<Option<String>> {
        let redis = &self.backing.redis;
        lease_holders(&redis.url, &redis.prefix, PARTITIONS).await
    }

    fn upstream(&self, gateway: usize) -> Upstream {
        Upstream {
            public: self.gateways[gateway].addr(),
            admin: self.gateways[gateway].admin,
        }
    }

    /// Waits until the workers share every partition, each holding some.
    async fn wait_for_balanced_leases(&self) {
        let ids: Vec<String> = self
            .workers
            .iter()
            .map(|w| w.worker_id.clone().expect("worker id"))
            .collect();
        eventually(Duration::from_secs(20), "partitions shared out", || async {
            let holders = self.lease_holders().await;
            let all_held = holders.iter().all(Option::is_some);
            let each_holds = ids
                .iter()
                .all(|id| holders.iter().any(|h| h.as_deref() == Some(id.as_str())));
            if all_held && each_holds {
                Ok(())
            } else {
                Err(holders)
            }
        })
        .await;
    }
}

/// A session with its customer and assigned agent, created through `via`.
struct Conversation {
    session_id: String,
    customer: String,
    agent: String,
}

async fn conversations(via: std::net::SocketAddr, tag: &str) -> Vec<Conversation> {
    let mut out = Vec::new();
    for i in 0..SESSIONS {
        let customer = token(&format!("{tag}-c{i}"), "customer", &[]);
        let agent = token(&format!("{tag}-a{i}"), "agent", &["default"]);
        let (status, session) = rest(
            via,
            "POST",
            "/api/chat/sessions",
            Some(&customer),
            Some(json!({ "subject": format!("drain {i}") })),
        )
        .await;
        assert_eq!(status, 201, "create session: {session}");
        let session_id = session["id"].as_str().expect("id").to_owned();
        let path = format!("/api/chat/sessions/{session_id}/assign");
        let (status, assigned) = rest(via, "POST", &path, Some(&agent), Some(json!({}))).await;
        assert_eq!(status, 200, "assign: {assigned}");
        out.push(Conversation {
            session_id,
            customer,
            agent,
        });
    }
    out
}

/// Customers sending until told to stop (then a few more), counting acks.
struct Traffic {
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<ChatClient>>,
}

impl Traffic {
    fn start(customers: Vec<ChatClient>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let tasks = customers
            .into_iter()
            .map(|mut customer| {
                let (stop, acks) = (stop.clone(), acks.clone());
                tokio::spawn(async move {
                    let mut n = 0usize;
                    let mut after_stop = 0usize;
                    while after_stop < FINAL_MESSAGES {
                        if stop.load(Ordering::Relaxed) {
                            after_stop += 1;
                        }
                        let id = format!("{}-{n}", customer.session_id);
                        customer.send(&format!("message {n}"), &id).await;
                        acks.fetch_add(1, Ordering::Relaxed);
                        n += 1;
                        // The pace of the load, not a wait for anything.
                        tokio::time::sleep(PACE).await;
                    }
                    customer
                })
            })
            .collect();
        Traffic { stop, acks, tasks }
    }

    /// Waits until at least `count` messages were acknowledged in all.
    async fn wait_for_acks(&self, count: usize) {
        eventually(Duration::from_secs(30), "enough acks", || async {
            let acks = self.acks.load(Ordering::Relaxed);
            if acks >= count {
                Ok(())
            } else {
                Err(format!("only {acks} acks"))
            }
        })
        .await;
    }

    async fn finish(self) -> Vec<ChatClient> {
        self.stop.store(true, Ordering::Relaxed);
        let mut customers = Vec::new();
        for task in self.tasks {
            customers.push(task.await.expect("customer task"));
        }
        customers
    }
}

/// Every acknowledged message is in the store once, the history has no
/// gap, and every client saw exactly the history, once and in order.
async fn verify_delivery(
    via: std::net::SocketAddr,
    conversations: &[Conversation],
    customers: &mut [ChatClient],
    agents: &mut [ChatClient],
) {
    for ((conversation, customer), agent) in conversations.iter().zip(customers).zip(agents) {
        let history = history(via, &conversation.customer, &conversation.session_id).await;
        let last = history.len() as i64;
        let seqs: Vec<i64> = history
            .iter()
            .map(|m| m["seq"].as_i64().expect("seq"))
            .collect();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "history has gaps");
        let mut ids: Vec<&str> = history
            .iter()
            .map(|m| m["clientMsgId"].as_str().expect("clientMsgId"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), history.len(), "a message was stored twice");
        for (client_msg_id, seq) in &customer.view.acked {
            let stored = &history[usize::try_from(*seq - 1).expect("seq")];
            assert_eq!(
                stored["clientMsgId"],
                json!(client_msg_id),
                "acknowledged {client_msg_id} is not message {seq}"
            );
        }
        assert!(
            customer.view.acked.len() as i64 == last,
            "{} acks for {last} stored messages",
            customer.view.acked.len()
        );
        customer.wait_for_seq(last, Duration::from_secs(10)).await;
        agent.wait_for_seq(last, Duration::from_secs(10)).await;
        assert_exactly_once_in_order("the customer", &customer.view, last);
        assert_exactly_once_in_order("the agent", &agent.view, last);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_gateway_moves_its_clients_to_the_other_and_loses_nothing() {
    let mut rig = Rig::start(2, 2).await;
    let (a, b) = (rig.upstream(0), rig.upstream(1));
    let conversations = conversations(b.public, "gw").await;
    // The balancer hands customers to A first and agents to B first.
    let mut agents = Vec::new();
    let mut customers = Vec::new();
    for c in &conversations {
        agents.push(ChatClient::join(c.agent.clone(), c.session_id.clone(), vec![b, a], 0).await);
        customers
            .push(ChatClient::join(c.customer.clone(), c.session_id.clone(), vec![a, b], 0).await);
    }
    assert!(customers.iter().all(|c| c.gateway() == Some(a.public)));

    let traffic = Traffic::start(customers);
    traffic.wait_for_acks(5 * SESSIONS).await;

    let mut gateway_a = rig.gateways.remove(0);
    let signalled = Instant::now();
    gateway_a.sigterm();
    // Unready at once...
    eventually(
        DRAIN_DELAY,
        "/readyz turned 503 within the drain delay",
        || async { matches!(get(a.admin, "/readyz").await, Some((503, _))) },
    )
    .await;
    let unready_after = signalled.elapsed();
    // ...yet still serving while the load balancer catches up.
    let sample = &conversations[0];
    let (status, _) = rest(
        a.public,
        "GET",
        &format!("/api/chat/sessions/{}", sample.session_id),
        Some(&sample.customer),
        None,
    )
    .await;
    assert_eq!(
        status, 200,
        "the draining gateway still serves during its delay"
    );
    assert!(
        signalled.elapsed() < DRAIN_DELAY,
        "the check took too long to say anything about the delay"
    );

    let status = gateway_a
        .wait_exit(SHUTDOWN_GRACE + Duration::from_secs(2))
        .await
        .expect("the gateway exits within its grace period");
    let exited_after = signalled.elapsed();
    assert!(status.success(), "the gateway exited with {status}");
    assert!(exited_after < SHUTDOWN_GRACE, "exit took {exited_after:?}");

    let mut customers = traffic.finish().await;
    let metrics_b = rig.gateways[0].metrics().await;
    verify_delivery(b.public, &conversations, &mut customers, &mut agents).await;

    // Every customer was closed with "going away" and is now on B; the
    // closes were spread over the window, after the delay.
    let mut close_times = Vec::new();
    for customer in &customers {
        let (code, at) = customer.view.closes[0];
        assert_eq!(code, Some(1001), "closed without going away");
        assert_eq!(customer.gateway(), Some(b.public), "a customer is not on B");
        close_times.push(at.duration_since(signalled));
    }
    close_times.sort();
    let (first, last) = (close_times[0], close_times[close_times.len() - 1]);
    assert!(
        first >= DRAIN_DELAY - Duration::from_millis(50),
        "sockets closed before the drain delay was over: {close_times:?}"
    );
    assert!(
        last - first >= DRAIN_WINDOW / 2,
        "closes were not spread over the window: {close_times:?}"
    );
    assert!(
        last <= DRAIN_DELAY + DRAIN_WINDOW + Duration::from_secs(2),
        "closes went on past the window: {close_times:?}"
    );
    assert!(agents.iter().all(|a| a.view.closes.is_empty()));
    assert_eq!(
        metric_value(&metrics_b, "chat_gateway_sockets{role=\"customer\"}"),
        SESSIONS as f64,
        "{metrics_b}"
    );
    eprintln!(
        "gateway drain: unready after {unready_after:?}, closes {first:?}..{last:?}, exit after {exited_after:?}"
    );
    drop(gateway_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_worker_hands_its_partitions_over_before_the_leases_expire() {
    let mut rig = Rig::start(1, 2).await;
    rig.wait_for_balanced_leases().await;
    let gateway = rig.upstream(0);
    let conversations = conversations(gateway.public, "wk").await;
    let mut agents = Vec::new();
    let mut customers = Vec::new();
    for c in &conversations {
        agents
            .push(ChatClient::join(c.agent.clone(), c.session_id.clone(), vec![gateway], 0).await);
        customers.push(
            ChatClient::join(c.customer.clone(), c.session_id.clone(), vec![gateway], 0).await,
        );
    }
    let traffic = Traffic::start(customers);
    traffic.wait_for_acks(5 * SESSIONS).await;

    let mut leaving = rig.workers.remove(0);
    let staying = rig.workers[0].worker_id.clone().expect("worker id");
    let before = rig.lease_holders().await;
    let handed: Vec<usize> = before
        .iter()
        .enumerate()
        .filter(|(_, h)| h.as_deref() == leaving.worker_id.as_deref())
        .map(|(p, _)| p)
        .collect();
    assert!(
        !handed.is_empty(),
        "the leaving worker owned nothing: {before:?}"
    );

    let signalled = Instant::now();
    leaving.sigterm();
    eventually(
        LEASE_TTL,
        "partitions taken over before the leases expired",
        || async {
            let holders = rig.lease_holders().await;
            if holders
                .iter()
                .all(|h| h.as_deref() == Some(staying.as_str()))
            {
                Ok(())
            } else {
                Err(holders)
            }
        },
    )
    .await;
    let takeover = signalled.elapsed();
    assert!(
        takeover < Duration::from_secs(3),
        "takeover took {takeover:?} (lease TTL {LEASE_TTL:?})"
    );
    let status = leaving
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the worker exits");
    assert!(status.success(), "the worker exited with {status}");

    let mut customers = traffic.finish().await;
    verify_delivery(gateway.public, &conversations, &mut customers, &mut agents).await;
    assert!(customers.iter().all(|c| c.view.closes.is_empty()));

    // The worker counts a takeover after the lease is written, and
    // publishes what it owns only once its whole round of lease
    // maintenance is over: seeing every lease in Redis does not mean its
    // metrics say so yet.
    let survivor = &rig.workers[0];
    eventually(
        Duration::from_secs(10),
        "the surviving worker's metrics show the takeover",
        || async {
            let metrics = survivor.metrics().await;
            metric_value(&metrics, "chat_worker_partitions_owned") == f64::from(PARTITIONS)
                && metric_value(&metrics, "chat_worker_lease_takeovers_total")
                    >= f64::from(PARTITIONS)
        },
    )
    .await;
    eprintln!(
        "worker drain: {} partitions taken over in {takeover:?}",
        handed.len()
    );
    drop(leaving);
}
