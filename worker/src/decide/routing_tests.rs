//! The rules of automatic assignment as the decision applies them, one
//! rule per test: which agent a waiting session goes to, who is never
//! chosen, capacities, manual and automatic pools, queue order, the load
//! bound a commit carries, what asks for a pool's queue to be offered, the
//! return of an absent agent's chats, and the timeline entries of each
//! change. The view a batch decides on (agents' loads, presence, places in
//! the queue) is built by hand, as the router would read it.

use std::collections::BTreeMap;

use chat_shared::auth::Identity;
use chat_shared::config::Env;
use chat_shared::envelope::{Command, CommandEnvelope, ReplyBody};
use chat_shared::names::Names;
use chat_shared::protocol::{
    server_events, AgentStatus, ClosedBy, Role, Session, SessionEvent, SessionEventKind,
    SessionStatus,
};
use chat_shared::routing::{PoolAgents, RoutingConfig};
use chat_shared::store::{AgentRecord, BatchSnapshot, Mutation, RoutedAgent, SessionRecord};
use chat_shared::Timestamp;
use serde_json::{json, Value};

use super::{routing_keys_for, BatchState, Decision, RoutingView};

const NOW: Timestamp = Timestamp(1_700_000_000_000);
/// When the fixture sessions were opened; later ones add seconds to it.
const CREATED: Timestamp = Timestamp(1_699_999_000_000);
const ASSIGNED: Timestamp = Timestamp(1_699_999_500_000);
const LOADED_VERSION: i64 = 4;

fn names() -> Names {
    Names::new("t")
}

fn person(id: &str, role: Role, pools: &[&str]) -> Identity {
    Identity {
        user_id: id.to_owned(),
        name: format!("Name of {id}"),
        role,
        pools: pools.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn customer(id: &str) -> Identity {
    person(id, Role::Customer, &[])
}

/// Settings as the environment would give them: `ASSIGNMENT` and, when
/// not empty, `POOL_CAPACITY`.
fn config(assignment: &str, capacity: &str) -> RoutingConfig {
    let mut pairs = vec![("ASSIGNMENT", assignment)];
    if !capacity.is_empty() {
        pairs.push(("POOL_CAPACITY", capacity));
    }
    RoutingConfig::from_env(&Env::from_pairs(pairs)).expect("valid routing settings")
}

/// A waiting session of customer `c1`, opened `age_rank` seconds after
/// `CREATED` (so a lower rank waits longer).
fn pending(id: &str, pool: &str, age_rank: i64, last_seq: i64) -> SessionRecord {
    let mut record = SessionRecord::opened(
        id.to_owned(),
        "c1".to_owned(),
        "Name of c1".to_owned(),
        pool.to_owned(),
        None,
        Timestamp(CREATED.0 + age_rank * 1000),
    );
    record.session.last_seq = last_seq;
    record.version = LOADED_VERSION;
    record
}

fn active(id: &str, pool: &str, last_seq: i64, agent_id: &str) -> SessionRecord {
    let mut record = pending(id, pool, 0, last_seq);
    record.session.status = SessionStatus::Active;
    record.session.agent_id = Some(agent_id.to_owned());
    record.session.agent_name = Some(format!("Name of {agent_id}"));
    record.session.assigned_at = Some(ASSIGNED);
    record.first_assigned_at = Some(ASSIGNED);
    record
}

/// An agent of `pools` as the store lists them for routing.
fn routed(id: &str, pools: &[&str], status: AgentStatus, open: i64) -> RoutedAgent {
    RoutedAgent {
        agent: AgentRecord {
            id: id.to_owned(),
            name: format!("Name of {id}"),
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
            last_seen_at: CREATED,
        },
        status,
        capacity: None,
        open_chats: open,
        last_assigned_at: None,
    }
}

fn online(id: &str, open: i64) -> RoutedAgent {
    routed(id, &["default"], AgentStatus::Online, open)
}

fn last_assigned(mut agent: RoutedAgent, at: Option<i64>) -> RoutedAgent {
    agent.last_assigned_at = at.map(Timestamp);
    agent
}

fn own_capacity(mut agent: RoutedAgent, capacity: i64) -> RoutedAgent {
    agent.capacity = Some(capacity);
    agent
}

/// What the router reads for a batch: per pool its agents and who of them
/// is connected, and per session how many wait ahead of it.
#[derive(Default)]
struct View(RoutingView);

impl View {
    fn pool(mut self, pool: &str, agents: Vec<RoutedAgent>, present: &[&str]) -> Self {
        self.0.pools.insert(
            pool.to_owned(),
            PoolAgents {
                agents,
                present: present.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
        self
    }

    fn ahead(mut self, session_id: &str, waiting: i64) -> Self {
        self.0.waiting_ahead.insert(session_id.to_owned(), waiting);
        self
    }
}

/// A snapshot holding `records`, with `c1` and every agent of `view`
/// remembered and in the directory.
fn snapshot(records: impl IntoIterator<Item = SessionRecord>, view: &View) -> BatchSnapshot {
    let mut snapshot = BatchSnapshot::default();
    for record in records {
        snapshot.sessions.insert(record.session.id.clone(), record);
    }
    snapshot
        .user_names
        .insert("c1".to_owned(), "Name of c1".to_owned());
    for agents in view.0.pools.values() {
        for agent in &agents.agents {
            snapshot
                .user_names
                .insert(agent.agent.id.clone(), agent.agent.name.clone());
            snapshot
                .agents
                .insert(agent.agent.id.clone(), agent.agent.clone());
        }
    }
    snapshot
}

struct Batch {
    state: BatchState,
    issued: u32,
}

impl Batch {
    fn new(
        records: impl IntoIterator<Item = SessionRecord>,
        config: RoutingConfig,
        view: View,
    ) -> Self {
        let snapshot = snapshot(records, &view);
        Batch {
            state: BatchState::new(snapshot, names()).with_routing(config, view.0),
            issued: 0,
        }
    }

    fn apply(&mut self, actor: &Identity, command: Command) -> Decision {
        let envelope = CommandEnvelope {
            reply_to: None,
            actor: actor.clone(),
            issued_at: NOW,
            command,
        };
        let issued = &mut self.issued;
        let mut new_id = || {
            *issued += 1;
            format!("m-{issued}")
        };
        self.state.apply(&envelope, NOW, &mut new_id)
    }

    /// A command routing issues on its own, as the system.
    fn system(&mut self, command: Command) -> Decision {
        self.apply(&Identity::system(), command)
    }

    fn mutations(self) -> Vec<Mutation> {
        self.state.into_mutations()
    }
}

fn create(session_id: &str, pool: &str, first_message: Option<&str>) -> Command {
    Command::CreateSession {
        session_id: session_id.to_owned(),
        pool: pool.to_owned(),
        subject: None,
        first_message: first_message.map(str::to_owned),
    }
}

fn auto_assign(session_id: &str, pool: &str) -> Command {
    Command::AutoAssign {
        session_id: session_id.to_owned(),
        pool: pool.to_owned(),
    }
}

fn dispatch(pool: &str) -> Command {
    Command::Dispatch {
        pool: pool.to_owned(),
    }
}

fn return_to_queue(session_id: &str, agent_id: &str) -> Command {
    Command::ReturnToQueue {
        session_id: session_id.to_owned(),
        agent_id: agent_id.to_owned(),
    }
}

fn assign(session_id: &str, agent_id: Option<&str>) -> Command {
    Command::Assign {
        session_id: session_id.to_owned(),
        agent_id: agent_id.map(str::to_owned),
    }
}

fn transfer(session_id: &str, agent_id: Option<&str>, pool: Option<&str>) -> Command {
    Command::Transfer {
        session_id: session_id.to_owned(),
        agent_id: agent_id.map(str::to_owned),
        pool: pool.map(str::to_owned),
    }
}

fn close(session_id: &str) -> Command {
    Command::Close {
        session_id: session_id.to_owned(),
        reason: None,
    }
}

fn session_reply(decision: &Decision) -> Session {
    match &decision.reply {
        Ok(ReplyBody::Session(session)) => session.clone(),
        other => panic!("expected a session, got {other:?}"),
    }
}

fn assert_done(decision: &Decision) {
    assert_eq!(decision.reply, Ok(ReplyBody::Done), "{decision:?}");
}

/// The agent the decision gave its session to, `None` if it still waits.
fn given_to(decision: &Decision) -> Option<String> {
    match &decision.reply {
        Ok(ReplyBody::Session(session)) if session.status == SessionStatus::Active => {
            session.agent_id.clone()
        }
        Ok(ReplyBody::Session(_) | ReplyBody::Done) => None,
        other => panic!("expected a session or done, got {other:?}"),
    }
}

/// The final record of every session the batch writes.
fn written(mutations: &[Mutation]) -> BTreeMap<String, SessionRecord> {
    mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::InsertSession(record) | Mutation::UpdateSession { record, .. } => {
                Some((record.session.id.clone(), record.clone()))
            }
            _ => None,
        })
        .collect()
}

fn loads(mutations: &[Mutation]) -> Vec<Mutation> {
    mutations
        .iter()
        .filter(|m| matches!(m, Mutation::AdjustAgentLoad { .. }))
        .cloned()
        .collect()
}

/// Per agent, what the commit does to their count: the summed delta and
/// the tightest bound (the store applies a batch's changes so).
fn net_loads(mutations: &[Mutation]) -> BTreeMap<String, (i64, Option<i64>)> {
    let mut net: BTreeMap<String, (i64, Option<i64>)> = BTreeMap::new();
    for mutation in mutations {
        if let Mutation::AdjustAgentLoad {
            agent_id,
            delta,
            at_most,
            ..
        } = mutation
        {
            let entry = net.entry(agent_id.clone()).or_insert((0, None));
            entry.0 += delta;
            entry.1 = match (entry.1, *at_most) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    net
}

fn timeline(mutations: &[Mutation]) -> Vec<SessionEvent> {
    mutations
        .iter()
        .filter_map(|m| match m {
            Mutation::RecordSessionEvent(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn load(agent: &str, delta: i64, at_most: Option<i64>, assigned_at: Option<Timestamp>) -> Mutation {
    Mutation::AdjustAgentLoad {
        agent_id: agent.to_owned(),
        delta,
        at_most,
        assigned_at,
    }
}

fn by(actor: &Identity) -> Option<ClosedBy> {
    Some(ClosedBy {
        user_id: actor.user_id.clone(),
        role: actor.role,
    })
}

/// The payload of a delivery's Socket.IO frame `42/chat,["<event>",payload]`.
fn payload(event: &str, frame: &str) -> Value {
    let body = frame.strip_prefix("42/chat,").expect("an event of /chat");
    let packet: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(packet[0], json!(event));
    packet[1].clone()
}

fn events(decision: &Decision) -> Vec<&str> {
    decision
        .deliveries
        .iter()
        .map(|d| d.event.as_str())
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------
// 1. The choice of agent

#[test]
fn routing_goes_to_the_online_agent_with_the_fewest_open_chats_below_capacity() {
    let agents = || {
        vec![
            online("many", 3),
            last_assigned(online("two", 2), None),
            last_assigned(online("one", 1), Some(1)),
            online("four", 4),
        ]
    };
    let present = ["many", "two", "one", "four"];
    for command in [auto_assign("s1", "default"), create("s1", "default", None)] {
        let existing = if matches!(command, Command::AutoAssign { .. }) {
            vec![pending("s1", "default", 0, 0)]
        } else {
            Vec::new()
        };
        let view = View::default().pool("default", agents(), &present);
        let mut batch = Batch::new(existing, config("auto", ""), view);
        let decision = batch.apply(&customer("c1"), command);
        let session = session_reply(&decision);
        assert_eq!(session.status, SessionStatus::Active);
        assert_eq!(
            session.agent_id.as_deref(),
            Some("one"),
            "fewest open chats"
        );
        assert_eq!(session.agent_name.as_deref(), Some("Name of one"));
        assert_eq!(session.assigned_at, Some(NOW));
        let record = &written(&batch.mutations())["s1"];
        assert_eq!(record.session, session);
        assert_eq!(record.first_assigned_at, Some(NOW));
    }
}

#[test]
fn routing_ties_go_to_the_agent_idle_longest_never_assigned_first_then_by_id() {
    let cases: [(Vec<RoutedAgent>, &str); 4] = [
        (
            vec![
                last_assigned(online("recent", 1), Some(30)),
                last_assigned(online("idle", 1), Some(10)),
                last_assigned(online("middle", 1), Some(20)),
            ],
            "idle",
        ),
        (
            vec![
                last_assigned(online("idle", 1), Some(10)),
                last_assigned(online("never", 1), None),
            ],
            "never",
        ),
        (
            vec![
                last_assigned(online("b", 1), Some(10)),
                last_assigned(online("a", 1), Some(10)),
            ],
            "a",
        ),
        (
            // Idleness only breaks ties: fewer chats still win.
            vec![
                last_assigned(online("never", 2), None),
                last_assigned(online("recent", 1), Some(99)),
            ],
            "recent",
        ),
    ];
    for (agents, expected) in cases {
        let ids: Vec<String> = agents.iter().map(|a| a.agent.id.clone()).collect();
        let present: Vec<&str> = ids.iter().map(String::as_str).collect();
        let view = View::default().pool("default", agents, &present);
        let mut batch = Batch::new([pending("s1", "default", 0, 0)], config("auto", ""), view);
        let decision = batch.system(auto_assign("s1", "default"));
        assert_eq!(given_to(&decision).as_deref(), Some(expected), "{ids:?}");
    }
}

#[test]
fn routing_sessions_of_one_batch_see_the_loads_their_predecessors_left() {
    // `a` is chosen first (never assigned), then holds one chat more and
    // was just assigned: the next sessions go to `b`, then `c`.
    let view = View::default().pool(
        "default",
        vec![
            last_assigned(online("a", 0), None),
            last_assigned(online("b", 0), Some(1)),
            last_assigned(online("c", 0), Some(2)),
        ],
        &["a", "b", "c"],
    );
    let mut batch = Batch::new(Vec::new(), config("auto", ""), view);
    let carla = customer("c1");
    let given: Vec<Option<String>> = ["s1", "s2", "s3", "s4"]
        .iter()
        .map(|id| given_to(&batch.apply(&carla, create(id, "default", None))))
        .collect();
    assert_eq!(
        given,
        [Some("a"), Some("b"), Some("c"), Some("a")].map(|a| a.map(str::to_owned))
    );
    let net = net_loads(&batch.mutations());
    assert_eq!(net["a"].0, 2);
    assert_eq!(net["b"].0, 1);
    assert_eq!(net["c"].0, 1);
}

// ---------------------------------------------------------------------------
// 2. Who is never chosen

#[test]
fn routing_never_chooses_full_away_offline_or_other_pool_agents() {
    let ineligible = || {
        vec![
            online("full", 2),
            routed("away", &["default"], AgentStatus::Away, 0),
            online("offline", 0),
        ]
    };
    let other_pool = || vec![routed("seller", &["sales"], AgentStatus::Online, 0)];
    let present = ["full", "away", "seller"];

    // With one eligible agent among them, the session goes to them even
    // though the others hold fewer chats.
    let mut agents = ineligible();
    agents.push(online("eligible", 1));
    let mut here = present.to_vec();
    here.push("eligible");
    let view =
        View::default()
            .pool("default", agents, &here)
            .pool("sales", other_pool(), &["seller"]);
    let mut batch = Batch::new([pending("s1", "default", 0, 0)], config("auto", "2"), view);
    assert_eq!(
        given_to(&batch.system(auto_assign("s1", "default"))).as_deref(),
        Some("eligible")
    );

    // Without them, the session stays pending: nothing written, nobody's
    // load moved.
    for command in [auto_assign("s1", "default"), create("s2", "default", None)] {
        let view = View::default()
            .pool("default", ineligible(), &present)
            .pool("sales", other_pool(), &["seller"]);
        let mut batch = Batch::new([pending("s1", "default", 0, 0)], config("auto", "2"), view);
        let is_offer = matches!(command, Command::AutoAssign { .. });
        let who = if is_offer {
            Identity::system()
        } else {
            customer("c1")
        };
        let decision = batch.apply(&who, command.clone());
        assert_eq!(given_to(&decision), None, "{command:?}");
        assert!(decision.agents_changed.is_empty());
        let mutations = batch.mutations();
        assert!(loads(&mutations).is_empty(), "{mutations:?}");
        assert!(timeline(&mutations).is_empty(), "{mutations:?}");
        if is_offer {
            assert_done(&decision);
            assert!(mutations.is_empty(), "{mutations:?}");
        } else {
            assert_eq!(events(&decision), [server_events::NEW_PENDING_SESSION]);
            assert_eq!(
                written(&mutations)["s2"].session.status,
                SessionStatus::Pending
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Capacity

#[test]
fn routing_an_agents_own_capacity_beats_the_pool_capacity_and_zero_means_never() {
    // (POOL_CAPACITY, the agent, whether they are given the session)
    let cases = [
        ("1", own_capacity(online("a", 2), 3), Some(3)),
        ("5", own_capacity(online("a", 1), 1), None),
        ("5", own_capacity(online("a", 0), 0), None),
        ("0", online("a", 0), None),
        ("0", own_capacity(online("a", 0), 1), Some(1)),
        ("9,default=1", online("a", 1), None),
        ("1,default=3", online("a", 2), Some(3)),
    ];
    for (capacity, agent, bound) in cases {
        let label = format!("POOL_CAPACITY={capacity} own={:?}", agent.capacity);
        let view = View::default().pool("default", vec![agent], &["a"]);
        let mut batch = Batch::new(
            [pending("s1", "default", 0, 0)],
            config("auto", capacity),
            view,
        );
        let decision = batch.system(auto_assign("s1", "default"));
        let mutations = batch.mutations();
        match bound {
            Some(bound) => {
                assert_eq!(given_to(&decision).as_deref(), Some("a"), "{label}");
                assert_eq!(net_loads(&mutations)["a"], (1, Some(bound)), "{label}");
            }
            None => {
                assert_eq!(given_to(&decision), None, "{label}");
                assert!(mutations.is_empty(), "{label}: {mutations:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 4. Manual and automatic pools

#[test]
fn routing_manual_pools_the_default_never_auto_assign() {
    let eligible = || View::default().pool("default", vec![online("a", 0)], &["a"]);
    let manual = RoutingConfig::default();
    assert!(!manual.is_auto("default"));

    let mut batch = Batch::new(Vec::new(), manual.clone(), eligible());
    let decision = batch.apply(&customer("c1"), create("s1", "default", None));
    assert_eq!(given_to(&decision), None);
    assert!(decision.dispatch_pools.is_empty());
    assert!(loads(&batch.mutations()).is_empty());

    let mut batch = Batch::new([pending("s1", "default", 0, 0)], manual.clone(), eligible());
    assert_done(&batch.system(auto_assign("s1", "default")));
    let decision = batch.system(dispatch("default"));
    assert_done(&decision);
    assert!(
        decision.dispatch_pools.is_empty(),
        "a manual pool is never offered"
    );
    assert!(batch.mutations().is_empty());

    // A manual pool's batches read nothing for routing.
    let envelope = CommandEnvelope {
        reply_to: None,
        actor: customer("c1"),
        issued_at: NOW,
        command: create("s1", "default", None),
    };
    assert!(routing_keys_for(&[&envelope], &manual).is_empty());
}

#[test]
fn routing_honours_per_pool_modes() {
    let settings = config("auto,vip=manual", "");
    assert!(settings.is_auto("default"));
    assert!(settings.is_auto("sales"));
    assert!(!settings.is_auto("vip"));
    let agents = || vec![routed("a", &["default", "vip"], AgentStatus::Online, 0)];
    let view = || {
        View::default()
            .pool("default", agents(), &["a"])
            .pool("vip", agents(), &["a"])
    };
    let carla = customer("c1");

    let mut batch = Batch::new(Vec::new(), settings.clone(), view());
    assert_eq!(
        given_to(&batch.apply(&carla, create("s1", "default", None))).as_deref(),
        Some("a")
    );
    assert_eq!(
        given_to(&batch.apply(&carla, create("s2", "vip", None))),
        None
    );
    let mutations = batch.mutations();
    let records = written(&mutations);
    assert_eq!(records["s1"].session.status, SessionStatus::Active);
    assert_eq!(records["s2"].session.status, SessionStatus::Pending);
    assert_eq!(
        net_loads(&mutations)["a"].0,
        1,
        "only the auto pool's session"
    );

    let mut batch = Batch::new([pending("s3", "vip", 0, 0)], settings.clone(), view());
    assert_done(&batch.system(auto_assign("s3", "vip")));
    assert!(batch.system(dispatch("vip")).dispatch_pools.is_empty());
    assert_eq!(
        batch.system(dispatch("default")).dispatch_pools,
        ["default"]
    );
    assert!(batch.mutations().is_empty());

    let envelopes: Vec<CommandEnvelope> =
        [create("s1", "default", None), create("s2", "vip", None)]
            .into_iter()
            .map(|command| CommandEnvelope {
                reply_to: None,
                actor: carla.clone(),
                issued_at: NOW,
                command,
            })
            .collect();
    let keys = routing_keys_for(&envelopes.iter().collect::<Vec<_>>(), &settings);
    assert_eq!(keys.pools.into_iter().collect::<Vec<_>>(), ["default"]);
    assert_eq!(
        keys.places,
        [("default".to_owned(), "s1".to_owned())],
        "only the auto pool's sessions are placed"
    );
}

#[test]
fn routing_a_manual_take_still_works_in_an_auto_pool_and_is_not_bounded() {
    // `a` is full, yet takes the session by hand.
    let ann = person("a", Role::Agent, &["default"]);
    let view = View::default().pool("default", vec![online("a", 2)], &["a"]);
    let mut batch = Batch::new([pending("s1", "default", 0, 3)], config("auto", "2"), view);
    let decision = batch.apply(&ann, assign("s1", None));
    assert_eq!(given_to(&decision).as_deref(), Some("a"));
    let mutations = batch.mutations();
    assert_eq!(loads(&mutations), [load("a", 1, None, Some(NOW))]);
    assert_eq!(timeline(&mutations)[0].by, by(&ann));
}

// ---------------------------------------------------------------------------
// 5. Queue order

#[test]
fn routing_with_room_for_k_only_the_k_oldest_waiting_sessions_are_given() {
    // Two free places, three sessions waiting (s1 oldest). Each AutoAssign
    // is decided on the view read for its own batch: the same loads, and
    // the sessions waiting ahead of it.
    let queue = [("s1", 0), ("s2", 1), ("s3", 2)];
    let mut given = Vec::new();
    for (id, ahead) in queue {
        let view = View::default()
            .pool("default", vec![online("a", 0), online("b", 0)], &["a", "b"])
            .ahead(id, ahead);
        let records = queue.map(|(id, rank)| pending(id, "default", rank, 0));
        let mut batch = Batch::new(records, config("auto", "1"), view);
        given.push(given_to(&batch.system(auto_assign(id, "default"))).is_some());
    }
    assert_eq!(given, [true, true, false]);
}

#[test]
fn routing_a_new_session_is_not_assigned_ahead_of_older_waiting_ones() {
    // Three sessions already wait; with two places the newcomer waits too,
    // with four it is given.
    for (capacity, expected) in [("1", None), ("2", Some("a"))] {
        let view = View::default()
            .pool("default", vec![online("a", 0), online("b", 0)], &["a", "b"])
            .ahead("s4", 3);
        let mut batch = Batch::new(Vec::new(), config("auto", capacity), view);
        let decision = batch.apply(&customer("c1"), create("s4", "default", None));
        assert_eq!(
            given_to(&decision).as_deref(),
            expected,
            "capacity {capacity}"
        );
    }
}

#[test]
fn routing_a_session_left_waiting_earlier_in_the_batch_is_not_passed() {
    // s1 finds no room and waits; a close then frees a place in the same
    // batch; s2, created after s1, must not take it ahead of s1.
    let carla = customer("c1");
    let view = View::default().pool("default", vec![online("a", 1)], &["a"]);
    let mut batch = Batch::new([active("s0", "default", 1, "a")], config("auto", "1"), view);
    assert_eq!(
        given_to(&batch.apply(&carla, create("s1", "default", None))),
        None
    );
    let closed = batch.apply(&carla, close("s0"));
    assert_eq!(
        closed.dispatch_pools,
        ["default"],
        "the freed place is offered"
    );
    assert_eq!(
        given_to(&batch.apply(&carla, create("s2", "default", None))),
        None
    );
    let records = written(&batch.mutations());
    assert_eq!(records["s1"].session.status, SessionStatus::Pending);
    assert_eq!(records["s2"].session.status, SessionStatus::Pending);
}

#[test]
fn routing_offers_decided_in_one_batch_fill_every_free_place() {
    // Two free places, s1 and s2 waiting (s1 first), both offered in one
    // batch: s1 no longer waits ahead of s2 once it is given.
    let view = View::default()
        .pool("default", vec![online("a", 0), online("b", 0)], &["a", "b"])
        .ahead("s1", 0)
        .ahead("s2", 1);
    let records = [
        pending("s1", "default", 0, 0),
        pending("s2", "default", 1, 0),
    ];
    let mut batch = Batch::new(records, config("auto", "1"), view);
    let first = given_to(&batch.system(auto_assign("s1", "default")));
    let second = given_to(&batch.system(auto_assign("s2", "default")));
    assert!(first.is_some() && second.is_some(), "{first:?} {second:?}");
    assert_ne!(first, second, "one session per free place");
}

#[test]
fn routing_a_session_sent_back_in_the_batch_is_not_passed_by_a_newer_one() {
    // s1 (older) is the chat of an absent agent and goes back to the
    // queue; s2 (newer) was alone in the queue when the batch was read.
    // One place is free: it is s1's turn, not s2's.
    let view = View::default()
        .pool("default", vec![online("a", 0), online("g", 1)], &["a"])
        .ahead("s2", 0);
    let mut gone = active("s1", "default", 0, "g");
    gone.session.created_at = CREATED;
    let records = [gone, pending("s2", "default", 1, 0)];
    let mut batch = Batch::new(records, config("auto", "1"), view);
    let returned = batch.system(return_to_queue("s1", "g"));
    assert_eq!(returned.dispatch_pools, ["default"]);
    assert_eq!(
        given_to(&batch.system(auto_assign("s2", "default"))),
        None,
        "s2 waits behind s1"
    );
    let records = written(&batch.mutations());
    assert_eq!(records["s1"].session.status, SessionStatus::Pending);
    assert!(!records.contains_key("s2"), "s2 is left as it was");
}

// ---------------------------------------------------------------------------
// 6. The load an assignment carries

#[test]
fn routing_an_automatic_assignment_carries_its_load_bound() {
    let view = || View::default().pool("default", vec![online("a", 2)], &["a"]);
    let mut batch = Batch::new(
        [pending("s1", "default", 0, 0)],
        config("auto", "3"),
        view(),
    );
    let decision = batch.system(auto_assign("s1", "default"));
    assert_eq!(given_to(&decision).as_deref(), Some("a"));
    assert_eq!(decision.agents_changed, ["a"]);
    let mutations = batch.mutations();
    // One more chat, assigned now, in a commit that fails if the agent
    // would then hold more than their capacity of 3.
    assert_eq!(
        loads(&mutations),
        [load("a", 1, None, Some(NOW)), load("a", 0, Some(3), None)]
    );
    assert_eq!(net_loads(&mutations)["a"], (1, Some(3)));
    assert!(
        matches!(mutations.last(), Some(Mutation::AdjustAgentLoad { .. })),
        "load changes come after the session writes: {mutations:?}"
    );

    // Two partitions deciding from the same counts both choose `a`, each
    // bounded by 3: once the first has committed (3 chats), the second's
    // +1 breaks its bound and it is decided again.
    let mut other = Batch::new(
        [pending("s2", "default", 1, 0)],
        config("auto", "3"),
        view(),
    );
    assert_eq!(
        given_to(&other.system(auto_assign("s2", "default"))).as_deref(),
        Some("a")
    );
    let (delta, bound) = net_loads(&other.mutations())["a"];
    assert!(2 + 1 + delta > bound.expect("bounded"));
}

#[test]
fn routing_closing_and_transferring_away_free_one_place() {
    let admin = person("boss", Role::Admin, &[]);
    let cases = [
        ("close", close("s1")),
        ("back to the queue", transfer("s1", None, None)),
        ("to another pool", transfer("s1", None, Some("sales"))),
    ];
    for (label, command) in cases {
        let view = View::default().pool("default", vec![online("a", 1)], &["a"]);
        let mut batch = Batch::new([active("s1", "default", 2, "a")], config("auto", ""), view);
        let decision = batch.apply(&admin, command);
        assert!(decision.reply.is_ok(), "{label}: {decision:?}");
        assert_eq!(decision.agents_changed, ["a"], "{label}");
        assert_eq!(
            loads(&batch.mutations()),
            [load("a", -1, None, None)],
            "{label}"
        );
    }
}

#[test]
fn routing_a_transfer_to_another_agent_moves_the_load() {
    let admin = person("boss", Role::Admin, &[]);
    let view = View::default().pool("default", vec![online("a", 1), online("b", 0)], &["a", "b"]);
    let mut batch = Batch::new([active("s1", "default", 2, "a")], config("auto", ""), view);
    let decision = batch.apply(&admin, transfer("s1", Some("b"), None));
    assert_eq!(given_to(&decision).as_deref(), Some("b"));
    assert_eq!(decision.agents_changed, ["a", "b"]);
    assert_eq!(
        loads(&batch.mutations()),
        [load("a", -1, None, None), load("b", 1, None, Some(NOW))],
        "a manual move: no bound"
    );
}

// ---------------------------------------------------------------------------
// 7. What moves the queue

#[test]
fn routing_a_session_created_in_an_auto_pool_is_assigned_at_once() {
    let view = View::default().pool("default", vec![online("a", 0)], &["a"]);
    let mut batch = Batch::new(Vec::new(), config("auto", ""), view);
    let decision = batch.apply(&customer("c1"), create("s1", "default", Some("hello")));
    assert_eq!(given_to(&decision).as_deref(), Some("a"));
    // The pool hears of the new session, then of its assignment.
    assert_eq!(
        events(&decision),
        [
            server_events::NEW_PENDING_SESSION,
            server_events::SESSION_UPDATED,
            server_events::SESSION_EVENT
        ]
    );
    let mutations = batch.mutations();
    assert!(matches!(
        &mutations[0],
        Mutation::InsertSession(record) if record.session.status == SessionStatus::Active
    ));
}

#[test]
fn routing_dispatch_asks_for_an_auto_pools_queue_to_be_offered() {
    // What a gateway sends when an agent comes online or gets more room.
    let view = View::default().pool("default", vec![online("a", 0)], &["a"]);
    let mut batch = Batch::new([pending("s1", "default", 0, 0)], config("auto", ""), view);
    let decision = batch.system(dispatch("default"));
    assert_done(&decision);
    assert_eq!(decision.dispatch_pools, ["default"]);
    assert!(decision.deliveries.is_empty());
    assert!(
        batch.mutations().is_empty(),
        "the offer is made after commit"
    );
}

#[test]
fn routing_freed_room_dispatches_the_pool() {
    let ann = person("a", Role::Agent, &["default", "sales"]);
    let cases = [
        ("close", close("s1"), vec!["default"]),
        (
            "to another agent",
            transfer("s1", Some("b"), None),
            vec!["default"],
        ),
        (
            "to another pool",
            transfer("s1", None, Some("sales")),
            vec!["default", "sales"],
        ),
    ];
    for (label, command, expected) in cases {
        let view = View::default().pool(
            "default",
            vec![
                routed("a", &["default", "sales"], AgentStatus::Online, 1),
                online("b", 0),
            ],
            &["a", "b"],
        );
        let mut batch = Batch::new([active("s1", "default", 2, "a")], config("auto", ""), view);
        let decision = batch.apply(&ann, command.clone());
        assert!(decision.reply.is_ok(), "{label}: {decision:?}");
        assert_eq!(decision.dispatch_pools, strings(&expected), "{label}");

        // The same in a manual pool offers nothing.
        let view = View::default().pool(
            "default",
            vec![
                routed("a", &["default", "sales"], AgentStatus::Online, 1),
                online("b", 0),
            ],
            &["a", "b"],
        );
        let mut batch = Batch::new(
            [active("s1", "default", 2, "a")],
            RoutingConfig::default(),
            view,
        );
        let decision = batch.apply(&ann, command);
        assert!(decision.dispatch_pools.is_empty(), "{label}: {decision:?}");
    }
}

#[test]
fn routing_a_return_to_the_queue_dispatches_the_pool() {
    let ann = person("a", Role::Agent, &["default"]);
    for (who, command) in [
        (Identity::system(), return_to_queue("s1", "a")),
        (ann.clone(), transfer("s1", None, None)),
    ] {
        let view = View::default().pool("default", vec![online("a", 1)], &["a"]);
        let mut batch = Batch::new([active("s1", "default", 2, "a")], config("auto", ""), view);
        let decision = batch.apply(&who, command.clone());
        assert_eq!(
            session_reply(&decision).status,
            SessionStatus::Pending,
            "{command:?}"
        );
        assert_eq!(decision.dispatch_pools, ["default"], "{command:?}");
        assert_eq!(decision.queue_pools, ["default"], "{command:?}");
    }
}

#[test]
fn routing_auto_assign_leaves_a_session_that_moved_on_alone() {
    let mut moved = pending("s3", "sales", 0, 0);
    moved.session.pool = "sales".to_owned();
    let mut closed = active("s2", "default", 1, "b");
    closed.session.status = SessionStatus::Closed;
    let records = [active("s1", "default", 1, "b"), closed, moved];
    let view = View::default().pool("default", vec![online("a", 0)], &["a"]);
    let mut batch = Batch::new(records, config("auto", ""), view);
    for id in ["s1", "s2", "s3"] {
        let decision = batch.system(auto_assign(id, "default"));
        assert_done(&decision);
        assert!(decision.deliveries.is_empty(), "{id}");
    }
    assert!(batch.mutations().is_empty());
}

// ---------------------------------------------------------------------------
// 8. Absent and away agents

#[test]
fn routing_an_away_agent_keeps_their_chats() {
    // `a` is away but connected: routing neither gives them a session nor
    // takes theirs away.
    let away = || routed("a", &["default"], AgentStatus::Away, 1);
    let view = View::default().pool("default", vec![away()], &["a"]);
    let records = [
        active("s1", "default", 2, "a"),
        pending("s2", "default", 0, 0),
    ];
    let mut batch = Batch::new(records, config("auto", ""), view);
    assert!(batch.system(dispatch("default")).deliveries.is_empty());
    assert_done(&batch.system(auto_assign("s2", "default")));
    assert!(batch.mutations().is_empty(), "s1 stays with `a`, s2 waits");
}

#[test]
fn routing_a_return_to_the_queue_sends_the_chat_back_pending_keeping_its_place() {
    let view = View::default().pool("default", vec![online("a", 1)], &["a"]);
    let before = active("s1", "default", 2, "a");
    let mut batch = Batch::new([before.clone()], config("auto", ""), view);
    let decision = batch.system(return_to_queue("s1", "a"));
    let session = session_reply(&decision);
    assert_eq!(
        events(&decision),
        [
            server_events::SESSION_UPDATED,
            server_events::NEW_PENDING_SESSION,
            server_events::SESSION_EVENT
        ]
    );
    assert!(decision.deliveries[0]
        .audience
        .contains(&names().user_channel("a")));
    assert_eq!(decision.agents_changed, ["a"]);

    let mutations = batch.mutations();
    let record = &written(&mutations)["s1"];
    assert_eq!(record.session, session);
    assert_eq!(session.status, SessionStatus::Pending);
    assert_eq!(session.agent_id, None);
    assert_eq!(session.agent_name, None);
    assert_eq!(session.assigned_at, None);
    // Its place: the queue is in creation order, and that is unchanged.
    assert_eq!(session.created_at, before.session.created_at);
    assert_eq!(record.first_assigned_at, before.first_assigned_at);
    assert!(matches!(
        &mutations[0],
        Mutation::UpdateSession { expected_version, .. } if *expected_version == LOADED_VERSION
    ));
    assert_eq!(loads(&mutations), [load("a", -1, None, None)]);
}

#[test]
fn routing_a_return_to_the_queue_is_ignored_once_the_chat_is_not_the_agents() {
    let mut closed = active("s3", "default", 1, "a");
    closed.session.status = SessionStatus::Closed;
    let records = [
        active("s1", "default", 1, "b"),
        pending("s2", "default", 0, 0),
        closed,
    ];
    let view = View::default().pool("default", vec![online("a", 0)], &["a"]);
    let mut batch = Batch::new(records, config("auto", ""), view);
    for id in ["s1", "s2", "s3"] {
        let decision = batch.system(return_to_queue(id, "a"));
        assert_done(&decision);
        assert!(decision.dispatch_pools.is_empty(), "{id}");
    }
    assert!(batch.system(return_to_queue("nope", "a")).reply.is_err());
    assert!(batch.mutations().is_empty());
}

// ---------------------------------------------------------------------------
// 9. Timeline entries

#[test]
fn routing_timeline_entries_name_who_did_it_and_take_no_seq() {
    let ann = person("a", Role::Agent, &["default"]);
    let boss = person("boss", Role::Admin, &[]);
    let carla = customer("c1");
    let entry = |kind, by, agent: Option<&str>| SessionEvent {
        session_id: "s1".to_owned(),
        kind,
        at: NOW,
        by,
        agent_id: agent.map(str::to_owned),
        agent_name: agent.map(|a| format!("Name of {a}")),
        pool: "default".to_owned(),
        after_seq: 5,
    };
    let cases = [
        (
            Identity::system(),
            auto_assign("s1", "default"),
            pending("s1", "default", 0, 5),
            entry(SessionEventKind::Assigned, None, Some("a")),
        ),
        (
            ann.clone(),
            assign("s1", None),
            pending("s1", "default", 0, 5),
            entry(SessionEventKind::Assigned, by(&ann), Some("a")),
        ),
        (
            boss.clone(),
            transfer("s1", Some("b"), None),
            active("s1", "default", 5, "a"),
            entry(SessionEventKind::Transferred, by(&boss), Some("b")),
        ),
        (
            ann.clone(),
            transfer("s1", None, None),
            active("s1", "default", 5, "a"),
            entry(SessionEventKind::Returned, by(&ann), None),
        ),
        (
            Identity::system(),
            return_to_queue("s1", "a"),
            active("s1", "default", 5, "a"),
            entry(SessionEventKind::Returned, None, None),
        ),
        (
            carla.clone(),
            close("s1"),
            active("s1", "default", 5, "a"),
            entry(SessionEventKind::Closed, by(&carla), Some("a")),
        ),
    ];
    for (who, command, record, expected) in cases {
        let view =
            View::default().pool("default", vec![online("a", 0), online("b", 0)], &["a", "b"]);
        let mut batch = Batch::new([record], config("auto", ""), view);
        let decision = batch.apply(&who, command.clone());
        assert!(decision.reply.is_ok(), "{command:?}: {decision:?}");

        let live = decision.deliveries.last().expect("the live entry");
        assert_eq!(
            live.audience,
            [names().session_channel("s1")],
            "{command:?}"
        );
        assert_eq!(live.seq, None, "{command:?}");
        let sent = payload(server_events::SESSION_EVENT, &live.frame);
        let expected_by = expected.by.as_ref().map_or(
            Value::Null,
            |b| json!({"userId": b.user_id, "role": b.role}),
        );
        assert_eq!(sent["by"], expected_by, "{command:?}");
        assert_eq!(sent["afterSeq"], json!(5), "{command:?}");

        let mutations = batch.mutations();
        assert_eq!(timeline(&mutations), [expected], "{command:?}");
        assert_eq!(
            written(&mutations)["s1"].session.last_seq,
            5,
            "entries take no seq"
        );
        assert!(
            !mutations
                .iter()
                .any(|m| matches!(m, Mutation::InsertMessage(_))),
            "{command:?}"
        );
    }
}

#[test]
fn routing_an_automatic_assignments_entry_follows_the_first_message() {
    let view = View::default().pool("default", vec![online("a", 0)], &["a"]);
    let mut batch = Batch::new(Vec::new(), config("auto", ""), view);
    batch.apply(&customer("c1"), create("s1", "default", Some("hello")));
    let entries = timeline(&batch.mutations());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, SessionEventKind::Assigned);
    assert_eq!(entries[0].by, None, "the system assigned it");
    assert_eq!(entries[0].after_seq, 1, "after the first message");
}
