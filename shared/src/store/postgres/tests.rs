//! Tests against a real PostgreSQL: the one at `DATABASE_URL` (by default
//! the local `postgres://postgres@127.0.0.1:5432/test`), each test in a
//! schema of its own that is dropped when the test ends, pass or fail; and,
//! for the restart test, a throwaway server of the test's own.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::*;
use crate::protocol::{Message, SessionStatus};
use crate::store::test_records::{message, session};
use crate::store::{conformance, migrations};
use crate::testing::{free_port, TestCertificates, ThrowawayPostgres};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into())
}

/// A fresh schema name; the schema is created by the first `connect` and
/// dropped (with everything in it) when this guard goes. The test's
/// connections carry the schema name as their application name, so the
/// guard can end exactly those before dropping.
struct TestSchema {
    name: String,
}

impl TestSchema {
    fn new() -> Self {
        TestSchema {
            name: format!("test_{}", Uuid::new_v4().simple()),
        }
    }

    fn url(&self) -> String {
        let url = database_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}application_name={}", self.name)
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions {
            pool_size: 4,
            schema: Some(self.name.clone()),
            ..PostgresOptions::default()
        }
    }

    async fn store(&self) -> PostgresStore {
        match PostgresStore::connect(&self.url(), self.options()).await {
            Ok(store) => store,
            Err(err) => panic!("connect to {} failed: {err}", database_url()),
        }
    }
}

impl Drop for TestSchema {
    /// Runs on a thread and runtime of its own: the test's runtime may be
    /// unwinding, and cannot be relied on to close the test's connections
    /// (one may still hold locks in an open transaction), so the guard
    /// ends them itself.
    fn drop(&mut self) {
        let sql = format!(
            "SET lock_timeout = '10s';
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = '{name}' AND pid <> pg_backend_pid();
             DROP SCHEMA IF EXISTS {name} CASCADE;",
            name = self.name
        );
        let url = database_url();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls)
                    .await
                    .map_err(|err| err.to_string())?;
                let connection = tokio::spawn(connection);
                let result = client.batch_execute(&sql).await;
                drop(client);
                let _ = connection.await;
                result.map_err(|err| describe(&err))
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop schema {}: {err}", self.name),
            Err(_) => eprintln!("could not drop schema {}: the thread panicked", self.name),
        }
    }
}

/// A fresh schema for each conformance check; the guard drops it.
async fn open_for_check() -> (TestSchema, PostgresStore) {
    let schema = TestSchema::new();
    let store = schema.store().await;
    (schema, store)
}

conformance::tests_per_check!(open_for_check);

// ---------------------------------------------------------------------------
// Helpers

async fn applied_migrations(store: &PostgresStore) -> Vec<(i64, i64)> {
    let client = store.client().await.expect("client");
    client
        .query(
            "SELECT version, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("schema_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

// ---------------------------------------------------------------------------
// Schema and migrations

#[test]
fn migrations_are_numbered_from_one_without_gaps() {
    let versions: Vec<i64> = migrations::POSTGRES.iter().map(|m| m.version).collect();
    let expected: Vec<i64> = (1..).take(versions.len()).collect();
    assert_eq!(versions, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let schema = TestSchema::new();
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let options = schema.options();
            let url = schema.url();
            tokio::spawn(async move { PostgresStore::connect(&url, options).await })
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        match connect.await.expect("connect task") {
            Ok(store) => stores.push(store),
            Err(err) => panic!("a concurrent connect failed: {err}"),
        }
    }
    let applied = applied_migrations(&stores[0]).await;
    let versions: Vec<i64> = applied.iter().map(|(version, _)| *version).collect();
    let expected: Vec<i64> = migrations::POSTGRES.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected, "each migration recorded once");
    for store in &stores {
        conformance::ping_answers(store).await;
    }
}

#[tokio::test]
async fn reconnecting_applies_no_migration_twice() {
    let schema = TestSchema::new();
    let first = applied_migrations(&schema.store().await).await;
    assert_eq!(first.len(), migrations::POSTGRES.len());
    let second = applied_migrations(&schema.store().await).await;
    assert_eq!(second, first, "reconnecting records nothing new");
}

#[tokio::test]
async fn refuses_a_schema_newer_than_this_build() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    store
        .client()
        .await
        .expect("client")
        .batch_execute("INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)")
        .await
        .expect("insert future version");
    match PostgresStore::connect(&schema.url(), schema.options()).await {
        Err(StoreError::Internal(message)) => assert!(message.contains("9999"), "{message}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

#[tokio::test]
async fn tables_live_in_the_configured_schema() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let client = store.client().await.expect("client");
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 ORDER BY table_name",
            &[&schema.name],
        )
        .await
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "agents",
            "attachments",
            "blob_chunks",
            "blobs",
            "delivery_positions",
            "message_reactions",
            "messages",
            "pool_message_counts",
            "read_positions",
            "schema_migrations",
            "session_events",
            "session_notes",
            "sessions",
            "users"
        ]
    );
}

#[tokio::test]
async fn rejects_a_schema_name_that_would_need_quoting() {
    for name in ["", "Upper", "1st", "semi;colon", "with space", "dash-ed"] {
        let options = PostgresOptions {
            schema: Some(name.into()),
            ..PostgresOptions::default()
        };
        match PostgresStore::connect(&database_url(), options).await {
            Err(StoreError::Internal(message)) => {
                assert!(message.contains("schema name"), "{message}")
            }
            other => panic!("{name:?}: expected Internal, got {other:?}"),
        }
    }
}

#[test]
fn startup_options_keep_the_url_s_and_add_durability_and_the_schema() {
    assert_eq!(startup_options(None, None), "-c synchronous_commit=on");
    assert_eq!(
        startup_options(Some("  "), Some("test_x")),
        "-c synchronous_commit=on -c search_path=test_x"
    );
    assert_eq!(
        startup_options(Some("-c statement_timeout=5s"), Some("s1")),
        "-c statement_timeout=5s -c synchronous_commit=on -c search_path=s1"
    );
    assert_eq!(
        startup_options(Some("-c synchronous_commit=remote_apply"), None),
        "-c synchronous_commit=remote_apply",
        "an explicit choice in the URL is kept"
    );
}

#[tokio::test]
async fn commits_are_durable() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let client = store.client().await.expect("client");
    let setting: String = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(setting, "on", "an acknowledged commit must be on disk");
}

// ---------------------------------------------------------------------------
// Writes

#[tokio::test]
async fn a_batch_of_200_messages_is_one_commit_read_back_in_order() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let record = session("s-big");
    let messages: Vec<Message> = (1..=200)
        .map(|seq| message("s-big", seq, Some(&format!("k-{seq}"))))
        .collect();
    let mut updated = record.clone();
    updated.version = 2;
    updated.session.last_seq = 200;
    updated.session.last_message_at = Some(messages[199].created_at);
    let mut batch = vec![Mutation::InsertSession(record.clone())];
    batch.extend(messages.iter().cloned().map(Mutation::InsertMessage));
    batch.push(Mutation::UpdateSession {
        record: updated.clone(),
        expected_version: 1,
    });
    store.commit(batch).await.expect("commit 200 messages");

    let page = store
        .messages("s-big", MessageRange::After(0), 500)
        .await
        .expect("messages");
    assert!(!page.has_more);
    assert_eq!(
        page.items, messages,
        "all 200, in seq order, field for field"
    );
    let latest = store
        .messages("s-big", MessageRange::Latest, 50)
        .await
        .expect("latest");
    assert!(latest.has_more);
    assert_eq!(latest.items, messages[150..].to_vec());
    let stored = store.get_session("s-big").await.expect("get_session");
    assert_eq!(stored, Some(updated.session));

    // A replay of the same batch collides on every message and changes
    // nothing.
    let replay: Vec<Mutation> = messages
        .iter()
        .cloned()
        .map(Mutation::InsertMessage)
        .collect();
    match store.commit(replay).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_colliding_with_itself_conflicts() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    store
        .commit(vec![Mutation::InsertSession(session("s-1"))])
        .await
        .expect("session");
    let twice = vec![
        Mutation::InsertMessage(message("s-1", 1, Some("a"))),
        Mutation::InsertMessage(message("s-1", 1, Some("b"))),
    ];
    match store.commit(twice).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    let page = store
        .messages("s-1", MessageRange::Latest, 10)
        .await
        .expect("messages");
    assert!(page.items.is_empty(), "nothing of the batch is stored");
}

#[tokio::test]
async fn insert_then_updates_of_one_session_apply_in_order() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let v1 = session("s-1");
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.session.status = SessionStatus::Active;
    v2.session.agent_id = Some("a-1".into());
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.session.status = SessionStatus::Closed;
    v3.session.closed_at = Some(Timestamp(1_700_000_100_000));
    store
        .commit(vec![
            Mutation::InsertSession(v1),
            Mutation::UpdateSession {
                record: v2,
                expected_version: 1,
            },
            Mutation::UpdateSession {
                record: v3.clone(),
                expected_version: 2,
            },
        ])
        .await
        .expect("commit");
    assert_eq!(
        store.get_session("s-1").await.expect("get"),
        Some(v3.session)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_of_one_seq_have_one_winner() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let other = schema.store().await;
    store
        .commit(vec![Mutation::InsertSession(session("s-1"))])
        .await
        .expect("session");
    for seq in 1..=20 {
        let a = vec![Mutation::InsertMessage(message(
            "s-1",
            seq,
            Some(&format!("a-{seq}")),
        ))];
        let b = vec![Mutation::InsertMessage(message(
            "s-1",
            seq,
            Some(&format!("b-{seq}")),
        ))];
        let (a, b) = tokio::join!(store.commit(a), other.commit(b));
        match (&a, &b) {
            (Ok(()), Err(StoreError::Conflict(_))) | (Err(StoreError::Conflict(_)), Ok(())) => {}
            _ => panic!("seq {seq}: expected one winner and one Conflict, got {a:?} and {b:?}"),
        }
    }
    let page = store
        .messages("s-1", MessageRange::After(0), 100)
        .await
        .expect("messages");
    let seqs: Vec<i64> = page.items.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "gapless, each seq once");
}

#[tokio::test]
async fn a_message_for_an_unknown_session_is_not_a_conflict() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    match store
        .commit(vec![Mutation::InsertMessage(message(
            "no-such-session",
            1,
            None,
        ))])
        .await
    {
        Err(StoreError::Internal(message)) => assert!(
            message.contains("23503") && message.contains("do not exist"),
            "{message}"
        ),
        other => panic!("expected Internal (unknown session), got {other:?}"),
    }
}

/// PostgreSQL text cannot hold U+0000; such a message is refused as an
/// internal error (not a conflict, not a panic), and its batch with it.
#[tokio::test]
async fn a_nul_character_is_refused_not_a_panic() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    store
        .commit(vec![Mutation::InsertSession(session("s-1"))])
        .await
        .expect("session");
    let mut nul = message("s-1", 1, None);
    nul.content = "before\u{0}after".into();
    match store.commit(vec![Mutation::InsertMessage(nul)]).await {
        Err(StoreError::Internal(message)) => assert!(message.contains("22021"), "{message}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Reads

#[tokio::test]
async fn an_unknown_status_in_a_row_is_an_error_not_a_panic() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    store
        .commit(vec![Mutation::InsertSession(session("s-odd"))])
        .await
        .expect("commit");
    store
        .client()
        .await
        .expect("client")
        .batch_execute(
            "ALTER TABLE sessions DROP CONSTRAINT sessions_status_check;
             UPDATE sessions SET status = 'archived' WHERE id = 's-odd';",
        )
        .await
        .expect("corrupt the row");
    match store.get_session("s-odd").await {
        Err(StoreError::Internal(message)) => assert!(message.contains("archived"), "{message}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

#[tokio::test]
async fn ids_order_bytewise_whatever_the_locale() {
    let schema = TestSchema::new();
    let store = schema.store().await;
    let mut ids = vec!["b", "B", "a", "_z", "Z", "ä", "a-2", "a_1"];
    let batch = ids
        .iter()
        .map(|id| {
            let mut record = session(id);
            record.session.pool = schema.name.clone();
            Mutation::InsertSession(record)
        })
        .collect();
    store.commit(batch).await.expect("commit");
    let listed = store
        .list_sessions(&SessionQuery {
            scope: crate::store::SessionScope::All,
            status: None,
            pool: Some(schema.name.clone()),
            limit: 50,
            after: None,
        })
        .await
        .expect("list");
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let listed: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(listed, ids, "ties on created_at broken by id, bytewise");
}

// ---------------------------------------------------------------------------
// Errors and availability

#[test]
fn sqlstates_sort_into_conflict_unavailable_and_internal() {
    let cases = [
        ("23505", Class::Conflict),
        ("40001", Class::Conflict),
        ("40P01", Class::Conflict),
        ("08006", Class::Unavailable),
        ("57P01", Class::Unavailable),
        ("57P03", Class::Unavailable),
        ("53300", Class::Unavailable),
        ("25006", Class::Unavailable),
        ("23503", Class::Internal),
        ("42P01", Class::Internal),
        ("22021", Class::Internal),
    ];
    for (code, class) in cases {
        assert_eq!(classify(&SqlState::from_code(code)), class, "{code}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", free_port());
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    };
    let started = Instant::now();
    match tokio::time::timeout(
        Duration::from_secs(10),
        PostgresStore::connect(&url, options),
    )
    .await
    {
        Ok(Err(StoreError::Unavailable(_))) => {}
        Ok(other) => panic!("expected Unavailable, got {other:?}"),
        Err(_) => panic!("connect hung past 10 s"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_invalid_url_is_an_internal_error() {
    match PostgresStore::connect("postgres://[::1", PostgresOptions::default()).await {
        Err(StoreError::Internal(message)) => assert!(message.contains("URL"), "{message}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

/// Crash the server under a connected store: calls fail with
/// `Unavailable` within the connect timeout, and once the server is back
/// the store reconnects by itself and finds everything it committed.
#[tokio::test]
async fn survives_a_server_crash_and_restart() {
    let server = ThrowawayPostgres::create();
    server.start();
    let timeout = Duration::from_secs(2);
    let store = PostgresStore::connect(
        &server.url(),
        PostgresOptions {
            pool_size: 2,
            schema: None,
            connect_timeout: timeout,
            tls_roots: TrustedRoots::System,
        },
    )
    .await
    .expect("connect to the throwaway server");
    let record = session("s-1");
    let first = message("s-1", 1, Some("k-1"));
    store
        .commit(vec![
            Mutation::InsertSession(record.clone()),
            Mutation::InsertMessage(first.clone()),
        ])
        .await
        .expect("commit before the crash");
    // Both pooled connections in use once, so both are cut by the crash.
    let (a, b) = tokio::join!(store.ping(), store.ping());
    a.and(b).expect("ping");

    server.stop_immediately();
    let bound = timeout * 3;
    let started = Instant::now();
    let outcomes = [
        (
            "ping",
            tokio::time::timeout(bound, store.ping())
                .await
                .map(|r| r.map(|_| ())),
        ),
        (
            "get_session",
            tokio::time::timeout(bound, store.get_session("s-1"))
                .await
                .map(|r| r.map(|_| ())),
        ),
        (
            "messages",
            tokio::time::timeout(bound, store.messages("s-1", MessageRange::Latest, 10))
                .await
                .map(|r| r.map(|_| ())),
        ),
        (
            "commit",
            tokio::time::timeout(
                bound,
                store.commit(vec![Mutation::InsertMessage(message("s-1", 2, None))]),
            )
            .await,
        ),
    ];
    for (call, outcome) in outcomes {
        match outcome {
            Ok(Err(StoreError::Unavailable(_))) => {}
            Ok(other) => {
                panic!("{call} while the server is down: expected Unavailable, got {other:?}")
            }
            Err(_) => panic!("{call} while the server is down hung past {bound:?}"),
        }
    }
    assert!(
        started.elapsed() < bound,
        "failing took {:?}",
        started.elapsed()
    );

    server.start();
    let found = store
        .get_session("s-1")
        .await
        .expect("the first call after the restart reconnects");
    assert_eq!(found, Some(record.session));
    let page = store
        .messages("s-1", MessageRange::Latest, 10)
        .await
        .expect("messages after the restart");
    assert_eq!(page.items, vec![first], "the committed message survived");
    store
        .commit(vec![Mutation::InsertMessage(message("s-1", 2, None))])
        .await
        .expect("commit after the restart");
}

/// A database as earlier builds left it, every released migration applied
/// and recorded (their text is pinned in `store::migrations`), is seen as
/// up to date: nothing is applied or recorded again, and it serves.
#[tokio::test]
async fn a_database_migrated_by_an_earlier_build_is_up_to_date() {
    let schema = TestSchema::new();
    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {name}; SET search_path = {name};
             CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);",
            name = schema.name,
        ))
        .await
        .expect("the record of migrations");
    for migration in migrations::POSTGRES {
        client
            .batch_execute(migration.sql)
            .await
            .expect("a released migration");
        client
            .execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)",
                &[&migration.version],
            )
            .await
            .expect("record it");
    }
    let store = schema.store().await;
    let untouched: Vec<(i64, i64)> = migrations::POSTGRES
        .iter()
        .map(|m| (m.version, 0))
        .collect();
    assert_eq!(
        applied_migrations(&store).await,
        untouched,
        "nothing applied or recorded again"
    );
    conformance::session_round_trip(&store).await;
    conformance::agent_directory(&store).await;
}

/// A database made by the first schema version, with messages in it, is
/// brought forward without losing today's message count.
#[tokio::test]
async fn upgrading_from_version_1_keeps_the_message_count() {
    let schema = TestSchema::new();
    let (client, connection) = tokio_postgres::connect(&schema.url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let first = &migrations::POSTGRES[0];
    assert_eq!(first.version, 1);
    let day = 1_699_920_000_000_i64; // 2023-11-14T00:00:00Z
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {name}; SET search_path = {name};
             CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);
             {sql}
             INSERT INTO sessions (id, customer_id, customer_name, pool, status, created_at,
                 last_seq, version)
             VALUES ('s-1', 'c-1', 'Carla', 'default', 'active', {day}, 3, 4);
             INSERT INTO messages (id, session_id, seq, sender_id, sender_name, sender_role,
                 content, created_at)
             VALUES ('m-1', 's-1', 1, 'c-1', 'Carla', 'customer', 'yesterday', {day} - 1),
                    ('m-2', 's-1', 2, 'c-1', 'Carla', 'customer', 'today', {day}),
                    ('m-3', 's-1', 3, 'c-1', 'Carla', 'customer', 'today', {day} + 5);",
            name = schema.name,
            sql = first.sql,
        ))
        .await
        .expect("a version 1 database");
    let store = schema.store().await;
    let versions: Vec<i64> = applied_migrations(&store)
        .await
        .iter()
        .map(|(version, _)| *version)
        .collect();
    assert_eq!(
        versions,
        (1..=migrations::POSTGRES.len() as i64).collect::<Vec<_>>()
    );
    let figures = store
        .pool_figures("default", Timestamp(day))
        .await
        .expect("pool_figures");
    assert_eq!(figures.messages_today, 2);
    // And counting goes on from there.
    let mut next = message("s-1", 4, None);
    next.created_at = Timestamp(day + 10);
    let mut record = session("s-1");
    record.session.status = SessionStatus::Active;
    record.session.created_at = Timestamp(day);
    record.session.last_seq = 4;
    record.version = 5;
    store
        .commit(vec![
            Mutation::UpdateSession {
                record,
                expected_version: 4,
            },
            Mutation::InsertMessage(next),
        ])
        .await
        .expect("commit after the upgrade");
    let figures = store
        .pool_figures("default", Timestamp(day))
        .await
        .expect("pool_figures");
    assert_eq!(figures.messages_today, 3);
}

/// `sslmode=require` speaks TLS and checks the server: against a server
/// that refuses plain TCP, a store trusting the server's authority commits
/// and reads; one trusting another authority, and one in plain text, are
/// refused.
#[tokio::test]
async fn sslmode_require_verifies_the_server_against_the_trusted_authority() {
    let certificates = TestCertificates::create();
    let server = ThrowawayPostgres::create();
    server.require_tls(&certificates);
    server.start();
    let tls_url = format!("{}&sslmode=require", server.url());
    let trusting = |authority: std::path::PathBuf| PostgresOptions {
        connect_timeout: Duration::from_secs(3),
        tls_roots: TrustedRoots::File(authority),
        ..PostgresOptions::default()
    };

    let store = PostgresStore::connect(&tls_url, trusting(certificates.authority()))
        .await
        .expect("connect over TLS");
    store
        .commit(vec![Mutation::InsertSession(session("s-tls"))])
        .await
        .expect("commit over TLS");
    store.ping().await.expect("ping over TLS");

    let stranger = TestCertificates::create();
    let refused = PostgresStore::connect(&tls_url, trusting(stranger.authority())).await;
    assert!(
        refused.is_err(),
        "a server whose certificate chains to no trusted authority must be refused"
    );
    let plain = PostgresStore::connect(&server.url(), trusting(certificates.authority())).await;
    assert!(
        plain.is_err(),
        "this server takes TCP clients over TLS only"
    );
}

// ---------------------------------------------------------------------------
// The blob store on the same pool, a schema per check

mod blobs {
    use super::*;
    use crate::blob::postgres::PostgresBlobStore;

    async fn open_blobs_for_check() -> (TestSchema, PostgresBlobStore) {
        let schema = TestSchema::new();
        let store = schema.store().await;
        (schema, store.blobs())
    }

    crate::blob::conformance::blob_tests_per_check!(open_blobs_for_check);
}

/// A put dropped half way (its uploader gone) rolls back, and the pool's
/// connection it held serves the next put.
#[tokio::test]
async fn a_dropped_blob_put_leaves_nothing() {
    use crate::blob::{BlobError, BlobStore, ByteStream};
    let (_schema, store) = open_for_check().await;
    let blobs = store.blobs();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, BlobError>>(1);
    let body: ByteStream = Box::pin(futures_util::stream::unfold(receiver, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    let put = {
        let blobs = blobs.clone();
        tokio::spawn(async move { blobs.put(body, 1 << 20).await })
    };
    for piece in [vec![1u8; 300 * 1024], vec![2u8; 10]] {
        // The second send returns once the put has taken the first, so its
        // transaction is open by then.
        sender.send(Ok(piece.into())).await.expect("the put reads");
    }
    put.abort();
    assert!(put.await.expect_err("aborted").is_cancelled());
    let left = blobs
        .created_before(Timestamp(i64::MAX), None, 10)
        .await
        .expect("list");
    assert!(left.is_empty(), "{left:?}");
    let next = blobs
        .put(crate::blob::conformance::chunks_of(b"after", 2), 100)
        .await
        .expect("the next put");
    assert_eq!(next.size, 5);
}

crate::store::attachment_conformance::attachment_tests_per_check!(open_for_check);
