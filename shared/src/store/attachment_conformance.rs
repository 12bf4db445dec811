//! Conformance checks of the attachments' rows, which every store must
//! pass as it passes `conformance`: rows come back as written, only files
//! no message refers to are listed for removal, oldest first, and removal
//! spares a file a message has come to refer to; messages carry the files
//! they reference, and a file is carried by one message only. Each check makes its own
//! sessions and ids, so checks may share a database.

use uuid::Uuid;

use crate::protocol::{Message, Role};
use crate::store::{
    AttachmentRecord, BatchKeys, MessageRange, Mutation, SessionRecord, Store, StoreError,
};
use crate::Timestamp;

pub async fn run_all(store: &dyn Store) {
    attachment_round_trip(store).await;
    unreferenced_attachments_oldest_first(store).await;
    deleting_spares_referenced_attachments(store).await;
    messages_carry_the_files_they_reference(store).await;
}

/// Declares, in the calling module, one test per check on a fresh store.
#[cfg(test)]
macro_rules! attachment_tests_per_check {
    ($open:path) => {
        mod attachment_conformance_checks {
            use super::*;

            $crate::store::attachment_conformance::attachment_tests_per_check!(
                @each $open;
                attachment_round_trip,
                unreferenced_attachments_oldest_first,
                deleting_spares_referenced_attachments,
                messages_carry_the_files_they_reference,
            );

            #[tokio::test]
            async fn attachment_checks_twice_on_one_database() {
                let (guard, store) = $open().await;
                $crate::store::attachment_conformance::run_all(&store).await;
                $crate::store::attachment_conformance::run_all(&store).await;
                drop(store);
                drop(guard);
            }
        }
    };
    (@each $open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (guard, store) = $open().await;
                $crate::store::attachment_conformance::$check(&store).await;
                drop(store);
                drop(guard);
            }
        )*
    };
}

#[cfg(test)]
pub(crate) use attachment_tests_per_check;

/// Every field comes back as written, `None`s included.
pub async fn attachment_round_trip(store: &dyn Store) {
    let session = new_session(store).await;
    let image = AttachmentRecord {
        width: Some(640),
        height: Some(480),
        content_type: "image/png".into(),
        name: "Screenshot «été» 📷.png".into(),
        ..attachment(&session, 1_000)
    };
    let text = AttachmentRecord {
        referenced_by_seq: Some(7),
        ..attachment(&session, 2_000)
    };
    for row in [&image, &text] {
        ok(store.insert_attachment(row).await, "insert_attachment");
        let found = ok(store.attachment(&row.id).await, "attachment");
        assert_eq!(found.as_ref(), Some(row));
    }
    let missing = ok(store.attachment(&unique("missing")).await, "attachment");
    assert_eq!(missing, None);
}

pub async fn unreferenced_attachments_oldest_first(store: &dyn Store) {
    let session = new_session(store).await;
    // Times of their own, older than any other check's, so that the
    // oldest rows of the store are these.
    let base = -1_000_000 - i64::from(Uuid::new_v4().as_fields().1);
    let newer = attachment(&session, base + 300);
    let older = attachment(&session, base + 100);
    let referenced = AttachmentRecord {
        referenced_by_seq: Some(1),
        ..attachment(&session, base)
    };
    let after_cutoff = attachment(&session, base + 500);
    for row in [&newer, &older, &referenced, &after_cutoff] {
        ok(store.insert_attachment(row).await, "insert_attachment");
    }
    let listed = ok(
        store
            .unreferenced_attachments_before(Timestamp(base + 400), 100)
            .await,
        "unreferenced_attachments_before",
    );
    let ours: Vec<&str> = listed
        .iter()
        .filter(|row| row.session_id == session.session.id)
        .map(|row| row.id.as_str())
        .collect();
    assert_eq!(ours, [older.id.as_str(), newer.id.as_str()]);
    let first = ok(
        store
            .unreferenced_attachments_before(Timestamp(base + 400), 1)
            .await,
        "unreferenced_attachments_before",
    );
    assert_eq!(first.len(), 1, "the limit holds");
    assert!(first[0].created_at <= older.created_at, "oldest first");
}

pub async fn deleting_spares_referenced_attachments(store: &dyn Store) {
    let session = new_session(store).await;
    let unused = attachment(&session, 1_000);
    let used = AttachmentRecord {
        referenced_by_seq: Some(2),
        ..attachment(&session, 1_000)
    };
    for row in [&unused, &used] {
        ok(store.insert_attachment(row).await, "insert_attachment");
    }
    assert!(ok(store.delete_attachment(&unused.id).await, "delete"));
    assert_eq!(ok(store.attachment(&unused.id).await, "attachment"), None);
    assert!(!ok(
        store.delete_attachment(&unused.id).await,
        "delete again"
    ));
    assert!(
        !ok(store.delete_attachment(&used.id).await, "delete a used one"),
        "a file a message refers to stays"
    );
    assert_eq!(
        ok(store.attachment(&used.id).await, "attachment"),
        Some(used)
    );
}

/// A message stored with `ReferenceAttachment`s carries its files in every
/// read (history pages, a batch's lookup by client id), a batch's snapshot
/// finds files by id, and a file of another session or one already carried
/// fails the whole batch.
pub async fn messages_carry_the_files_they_reference(store: &dyn Store) {
    let session = new_session(store).await;
    let other = new_session(store).await;
    let first = attachment(&session, 1_000);
    let second = attachment(&session, 2_000);
    let spare = attachment(&session, 3_000);
    let elsewhere = attachment(&other, 3_000);
    for row in [&first, &second, &spare, &elsewhere] {
        ok(store.insert_attachment(row).await, "insert_attachment");
    }
    let mut message = sent(&session, 1);
    message.attachments = vec![first.public(), second.public()];
    let mut batch = vec![
        advanced(&session, 1),
        Mutation::InsertMessage(message.clone()),
    ];
    for file in [&first, &second] {
        batch.push(Mutation::ReferenceAttachment {
            attachment_id: file.id.clone(),
            session_id: session.session.id.clone(),
            seq: 1,
        });
    }
    ok(store.commit(batch).await, "commit a message with files");

    let page = ok(
        store
            .messages(&session.session.id, MessageRange::Latest, 50)
            .await,
        "messages",
    );
    assert_eq!(page.items, vec![message.clone()], "files in upload order");
    let stored = ok(store.attachment(&first.id).await, "attachment");
    assert_eq!(stored.and_then(|row| row.referenced_by_seq), Some(1));

    let keys = BatchKeys {
        attachment_ids: vec![first.id.clone(), spare.id.clone(), unique("missing")],
        client_messages: vec![(
            session.session.id.clone(),
            message.sender_id.clone(),
            "with-files".into(),
        )],
        ..BatchKeys::default()
    };
    let snapshot = ok(store.load_batch(&keys).await, "load_batch");
    assert_eq!(snapshot.attachments.len(), 2, "unknown ids are absent");
    assert_eq!(
        snapshot
            .attachments
            .get(&first.id)
            .and_then(|row| row.referenced_by_seq),
        Some(1)
    );
    assert_eq!(snapshot.attachments.get(&spare.id), Some(&spare));
    let found = snapshot.messages_by_client_id.values().next();
    assert_eq!(found, Some(&message), "a retried send finds the files too");

    // Carried already, or of another session: nothing of the batch stays.
    for taken in [&first, &elsewhere] {
        let mut again = sent(&session, 2);
        again.client_msg_id = Some(unique("again"));
        let result = store
            .commit(vec![
                advanced(&session, 2),
                Mutation::InsertMessage(again),
                Mutation::ReferenceAttachment {
                    attachment_id: taken.id.clone(),
                    session_id: session.session.id.clone(),
                    seq: 2,
                },
            ])
            .await;
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        let page = ok(
            store
                .messages(&session.session.id, MessageRange::Latest, 50)
                .await,
            "messages",
        );
        assert_eq!(page.items.len(), 1, "the refused batch stored nothing");
    }
    let untouched = ok(store.attachment(&elsewhere.id).await, "attachment");
    assert_eq!(untouched.and_then(|row| row.referenced_by_seq), None);
}

/// Message `seq` of the session's customer, with client id `with-files`.
fn sent(session: &SessionRecord, seq: i64) -> Message {
    Message {
        id: unique("message"),
        session_id: session.session.id.clone(),
        seq,
        sender_id: session.session.customer_id.clone(),
        sender_name: "Carla".into(),
        sender_role: Role::Customer,
        content: String::new(),
        client_msg_id: Some("with-files".into()),
        created_at: Timestamp(10_000 + seq),
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    }
}

/// The session's row moved from its first version to holding `last_seq`
/// messages.
fn advanced(session: &SessionRecord, last_seq: i64) -> Mutation {
    let mut record = session.clone();
    record.session.last_seq = last_seq;
    record.session.last_message_at = Some(Timestamp(10_000 + last_seq));
    record.version = session.version + 1;
    Mutation::UpdateSession {
        record,
        expected_version: session.version,
    }
}

fn attachment(session: &SessionRecord, created_at: i64) -> AttachmentRecord {
    AttachmentRecord {
        id: crate::blob::new_id(),
        session_id: session.session.id.clone(),
        uploader_id: session.session.customer_id.clone(),
        name: "notes.txt".into(),
        size: 1_234,
        content_type: "text/plain".into(),
        sha256: crate::blob::sha256_hex(b"notes"),
        width: None,
        height: None,
        created_at: Timestamp(created_at),
        referenced_by_seq: None,
    }
}

/// A session for the rows to belong to (SQLite checks the reference).
async fn new_session(store: &dyn Store) -> SessionRecord {
    let record = SessionRecord::opened(
        unique("session"),
        unique("customer"),
        "Carla".into(),
        unique("pool"),
        None,
        Timestamp(1_000),
    );
    ok(
        store
            .commit(vec![Mutation::InsertSession(record.clone())])
            .await,
        "insert session",
    );
    record
}

fn unique(label: &str) -> String {
    format!("{label}-{}", Uuid::new_v4().simple())
}

fn ok<T>(result: Result<T, crate::store::StoreError>, what: &str) -> T {
    result.unwrap_or_else(|err| panic!("{what} failed: {err}"))
}
