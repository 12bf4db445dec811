//! Reactions and delivery positions through the processor, over a real
//! SQLite store and the in-process backplane: batches decided on the
//! session the worker remembers still read the reactions and positions
//! stored by earlier batches, so each change builds on the last.

mod common;

use chat_shared::envelope::{Command, ReplyBody};
use chat_shared::protocol::Reaction;
use chat_worker::processor::Processor;
use common::{create, customer, envelope, send, Rig, GATEWAY};

fn react(emoji: &str, on: bool) -> Command {
    Command::React {
        session_id: "s1".into(),
        seq: 1,
        emoji: emoji.into(),
        on,
    }
}

/// Appends `command` from customer `c1`, processes it alone and returns
/// the reply body.
/// One processor throughout, so that it remembers the session.
async fn one_batch(
    rig: &Rig,
    processor: &Processor,
    listener: &mut common::Listener,
    request_id: u64,
    command: Command,
) -> ReplyBody {
    rig.append(1, &envelope(&customer("c1"), request_id, command))
        .await;
    let entries = rig.read(1).await;
    processor.process(entries).await.expect("process");
    loop {
        let heard = listener.next().await;
        if let common::Heard::Reply(reply) = heard {
            assert_eq!(reply.request_id, request_id);
            return reply.outcome.expect("accepted");
        }
    }
}

#[tokio::test]
async fn each_batch_builds_on_the_reactions_and_positions_stored_before() {
    let rig = Rig::new();
    let mut listener = rig.listen(&[rig.names.gateway_channel(GATEWAY)]).await;
    let processor = rig.processor(5);
    one_batch(&rig, &processor, &mut listener, 1, create("s1", "default")).await;
    one_batch(
        &rig,
        &processor,
        &mut listener,
        2,
        send("s1", "hello", "k-1"),
    )
    .await;

    // Emoji are listed by first use, then bytewise: "❤️" sorts before "👍"
    // either way, so two batches within one millisecond list them the same.
    one_batch(&rig, &processor, &mut listener, 3, react("❤️", true)).await;
    let second = one_batch(&rig, &processor, &mut listener, 4, react("👍", true)).await;
    let both = vec![
        Reaction {
            emoji: "❤️".into(),
            count: 1,
            user_ids: vec!["c1".into()],
        },
        Reaction {
            emoji: "👍".into(),
            count: 1,
            user_ids: vec!["c1".into()],
        },
    ];
    assert_eq!(
        second,
        ReplyBody::Reactions {
            seq: 1,
            reactions: both.clone()
        }
    );
    assert_eq!(rig.messages("s1").await[0].reactions, both);

    let delivered = Command::MarkDelivered {
        session_id: "s1".into(),
        up_to_seq: 1,
    };
    one_batch(&rig, &processor, &mut listener, 5, delivered).await;
    let back = Command::MarkDelivered {
        session_id: "s1".into(),
        up_to_seq: 0,
    };
    match one_batch(&rig, &processor, &mut listener, 6, back).await {
        ReplyBody::ReadPosition(position) => assert_eq!(position.up_to_seq, 1),
        other => panic!("expected a position, got {other:?}"),
    }
}
