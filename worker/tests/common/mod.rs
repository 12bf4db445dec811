//! What the worker's integration tests share: a real SQLite store in a
//! temporary directory and an in-process backplane under a key prefix of
//! their own, command envelopes as a gateway would append them, and a
//! listener that hears replies and events the way a gateway does.
//!
//! Each test binary uses only part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_shared::auth::Identity;
use chat_shared::backplane::memory::MemoryBackplane;
use chat_shared::backplane::{
    Backplane, CommandLog, PubSub, StreamEntry, Subscriber, SubscriptionEvent,
};
use chat_shared::envelope::{self, Command, CommandEnvelope, Delivery, Reply, ReplyBody, ReplyTo};
use chat_shared::names::{partition_of, Names};
use chat_shared::protocol::{Message, Role};
use chat_shared::store::sqlite::SqliteStore;
use chat_shared::store::Store;
use chat_shared::Timestamp;
use chat_worker::processor::Processor;
use chat_worker::stats::StatsTracker;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The gateway whose requests these tests make.
pub const GATEWAY: &str = "gw-test";

/// One test's world: its own database file, backplane and key prefix.
pub struct Rig {
    _dir: tempfile::TempDir,
    pub db_path: PathBuf,
    pub store: Arc<SqliteStore>,
    pub backplane: MemoryBackplane,
    pub names: Names,
}

impl Rig {
    pub fn new() -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("chat.db");
        let store = Arc::new(SqliteStore::open(&db_path).expect("open the store"));
        Rig {
            _dir: dir,
            db_path,
            store,
            backplane: MemoryBackplane::new(),
            names: Names::new(format!("t{}", uuid::Uuid::new_v4().simple())),
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn backplane(&self) -> Arc<dyn Backplane> {
        Arc::new(self.backplane.clone())
    }

    /// A processor over this rig, publishing on `backplane`.
    pub fn processor_on(&self, backplane: Arc<dyn Backplane>, max_deliveries: u32) -> Processor {
        Processor::new(
            self.store(),
            backplane,
            self.names.clone(),
            Arc::new(StatsTracker::default()),
            max_deliveries,
        )
    }

    pub fn processor(&self, max_deliveries: u32) -> Processor {
        self.processor_on(self.backplane(), max_deliveries)
    }

    pub async fn append(&self, partition: u32, envelope: &CommandEnvelope) {
        let bytes = envelope::encode(envelope).expect("encode the command");
        self.append_raw(partition, bytes).await;
    }

    pub async fn append_raw(&self, partition: u32, payload: Bytes) {
        self.backplane
            .append_command(partition, payload)
            .await
            .expect("append a command");
    }

    /// Appends to the partition a gateway would pick for the session.
    pub async fn append_routed(&self, partitions: u32, envelope: &CommandEnvelope) {
        let partition = partition_of(envelope.command.partition_key(), partitions);
        self.append(partition, envelope).await;
    }

    /// Reads what is new in `partition`, as a worker's consumer would.
    pub async fn read(&self, partition: u32) -> Vec<StreamEntry> {
        self.backplane
            .read_new(&[partition], "test-consumer", 100, Duration::ZERO)
            .await
            .expect("read the partition")
    }

    /// Entries of `partition` delivered and still not acknowledged.
    pub async fn unacked(&self, partition: u32) -> Vec<StreamEntry> {
        self.backplane
            .claim_pending(partition, "test-inspector", Duration::ZERO, 100)
            .await
            .expect("claim pending entries")
    }

    /// How many entries of `partition` are delivered and not yet
    /// acknowledged, read without claiming them.
    pub async fn pending(&self, partition: u32) -> u64 {
        self.backplane
            .stream_info(partition)
            .await
            .expect("read the stream's backlog")
            .pending
    }

    pub async fn messages(&self, session_id: &str) -> Vec<Message> {
        self.store
            .messages(session_id, chat_shared::store::MessageRange::After(0), 200)
            .await
            .expect("read messages")
            .items
    }

    pub async fn listen(&self, channels: &[String]) -> Listener {
        Listener::open(&self.backplane, &self.names, channels).await
    }
}

pub fn actor(id: &str, role: Role, pools: &[&str]) -> Identity {
    Identity {
        user_id: id.to_owned(),
        name: format!("Name of {id}"),
        role,
        pools: pools.iter().map(|p| (*p).to_owned()).collect(),
    }
}

pub fn customer(id: &str) -> Identity {
    actor(id, Role::Customer, &[])
}

pub fn agent(id: &str, pools: &[&str]) -> Identity {
    actor(id, Role::Agent, pools)
}

/// A command as the gateway `GATEWAY` sends it, awaiting reply `request_id`.
pub fn envelope(actor: &Identity, request_id: u64, command: Command) -> CommandEnvelope {
    CommandEnvelope {
        reply_to: Some(ReplyTo {
            gateway_id: GATEWAY.to_owned(),
            request_id,
            with_session_events: false,
        }),
        actor: actor.clone(),
        issued_at: Timestamp::now(),
        command,
    }
}

pub fn create(session_id: &str, pool: &str) -> Command {
    Command::CreateSession {
        session_id: session_id.to_owned(),
        pool: pool.to_owned(),
        subject: None,
        first_message: None,
    }
}

pub fn send(session_id: &str, content: &str, client_msg_id: &str) -> Command {
    Command::SendMessage {
        session_id: session_id.to_owned(),
        content: content.to_owned(),
        client_msg_id: Some(client_msg_id.to_owned()),
        attachment_ids: Vec::new(),
    }
}

/// Something a gateway hears on the backplane.
#[derive(Debug, Clone)]
pub enum Heard {
    /// On the gateway's reply channel.
    Reply(Reply),
    /// On any other channel.
    Event { channel: String, delivery: Delivery },
}

impl Heard {
    pub fn reply(self) -> Reply {
        match self {
            Heard::Reply(reply) => reply,
            other => panic!("expected a reply, heard {other:?}"),
        }
    }

    pub fn event(self) -> (String, Delivery) {
        match self {
            Heard::Event { channel, delivery } => (channel, delivery),
            other => panic!("expected an event, heard {other:?}"),
        }
    }
}

/// One pub/sub connection, subscribed to some channels.
pub struct Listener {
    _subscriber: Box<dyn Subscriber>,
    events: UnboundedReceiver<SubscriptionEvent>,
    reply_channel: String,
}

impl Listener {
    pub async fn open(backplane: &MemoryBackplane, names: &Names, channels: &[String]) -> Listener {
        let (subscriber, events) = backplane.subscriber().await.expect("open a subscriber");
        for channel in channels {
            subscriber.subscribe(channel).await.expect("subscribe");
        }
        Listener {
            _subscriber: subscriber,
            events,
            reply_channel: names.gateway_channel(GATEWAY),
        }
    }

    /// The next thing heard within `wait`, if any.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Heard> {
        loop {
            let event = tokio::time::timeout(wait, self.events.recv())
                .await
                .ok()??;
            let SubscriptionEvent::Message(message) = event else {
                continue;
            };
            let heard = if message.channel == self.reply_channel {
                Heard::Reply(envelope::decode(&message.payload).expect("a reply decodes"))
            } else {
                Heard::Event {
                    channel: message.channel,
                    delivery: envelope::decode(&message.payload).expect("a delivery decodes"),
                }
            };
            return Some(heard);
        }
    }

    pub async fn next(&mut self) -> Heard {
        self.next_within(PATIENCE)
            .await
            .expect("something should have been published")
    }

    /// Nothing more is heard for `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Some(heard) = self.next_within(wait).await {
            panic!("expected silence, heard {heard:?}");
        }
    }
}

/// The message of a successful send reply.
pub fn sent(reply: &Reply) -> (Message, bool) {
    match &reply.outcome {
        Ok(ReplyBody::Message { message, duplicate }) => (message.clone(), *duplicate),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The payload of a delivery's Socket.IO frame `42/chat,["<event>",payload]`.
pub fn frame_payload(delivery: &Delivery) -> Value {
    let body = delivery
        .frame
        .strip_prefix("42/chat,")
        .unwrap_or_else(|| panic!("not an event packet of /chat: {}", delivery.frame));
    let packet: Value = serde_json::from_str(body).expect("the frame carries JSON");
    assert_eq!(packet[0], Value::String(delivery.event.clone()));
    packet[1].clone()
}
