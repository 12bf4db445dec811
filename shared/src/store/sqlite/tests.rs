//! Tests on real files in temporary directories: the conformance suite,
//! then what only a file shows (migrations, pragmas, reopening, rows that
//! were tampered with).

use rusqlite::Connection;

use super::*;
use crate::store::test_records::{message, session};
use crate::store::{conformance, migrations};

fn open_temp() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("chat.db")).expect("open store");
    (dir, store)
}

/// (version, applied_at) of every migration the file records.
fn applied(store: &SqliteStore) -> Vec<(i64, i64)> {
    let conn = lock(&store.writer);
    let mut statement = conn
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .expect("prepare");
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

/// A fresh file for each conformance check, in a directory the guard
/// removes.
async fn open_for_check() -> (tempfile::TempDir, SqliteStore) {
    open_temp()
}

conformance::tests_per_check!(open_for_check);

/// A file as an earlier build left it: the released migrations up to
/// `last_version` applied and recorded (at time 0), by hand rather than by
/// the store.
fn migrated_by_an_earlier_build(path: &std::path::Path, last_version: i64) -> Connection {
    let conn = Connection::open(path).expect("raw open");
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .expect("the record of migrations");
    for migration in migrations::SQLITE
        .iter()
        .filter(|m| m.version <= last_version)
    {
        conn.execute_batch(migration.sql)
            .expect("a released migration");
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
            [migration.version],
        )
        .expect("record it");
    }
    conn
}

#[test]
fn migrations_are_numbered_from_one_without_gaps() {
    let versions: Vec<i64> = migrations::SQLITE.iter().map(|m| m.version).collect();
    let expected: Vec<i64> = (1..).take(versions.len()).collect();
    assert_eq!(versions, expected);
}

/// A file as earlier builds left it, every released migration applied and
/// recorded (their text is pinned in `store::migrations`), opens with
/// nothing applied again, and serves.
#[tokio::test]
async fn a_file_migrated_by_an_earlier_build_is_up_to_date() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    // Closed before the store opens it.
    drop(migrated_by_an_earlier_build(&path, i64::MAX));
    let store = SqliteStore::open(&path).expect("open");
    let untouched: Vec<(i64, i64)> = migrations::SQLITE.iter().map(|m| (m.version, 0)).collect();
    assert_eq!(
        applied(&store),
        untouched,
        "nothing applied or recorded again"
    );
    conformance::session_round_trip(&store).await;
    conformance::agent_directory(&store).await;
}

#[test]
fn creates_missing_directories() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("deeper").join("chat.db");
    SqliteStore::open(&path).expect("open store");
    assert!(path.exists());
}

#[test]
fn reopening_applies_no_migration_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    let first = applied(&SqliteStore::open(&path).expect("first open"));
    assert_eq!(first.len(), migrations::SQLITE.len());
    let second = applied(&SqliteStore::open(&path).expect("second open"));
    assert_eq!(second, first, "reopening records nothing new");
}

#[test]
fn refuses_a_schema_newer_than_this_build() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    drop(SqliteStore::open(&path).expect("first open"));
    let conn = Connection::open(&path).expect("raw open");
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)",
        [],
    )
    .expect("insert future version");
    drop(conn);
    match SqliteStore::open(&path) {
        Err(StoreError::Internal(message)) => assert!(message.contains("9999"), "{message}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

#[test]
fn connections_are_durable_and_checked() {
    let (_dir, store) = open_temp();
    let conn = lock(&store.writer);
    let pragma = |name: &str| -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(|value| format!("{value:?}"))
        .expect("pragma")
    };
    assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
    // 2 is FULL: every commit is synced before it returns.
    assert_eq!(pragma("synchronous"), "Integer(2)");
    assert_eq!(pragma("foreign_keys"), "Integer(1)");
    // Checkpoints are the background thread's; the writer's own threshold
    // is only the bound should it fall behind.
    assert_eq!(
        pragma("wal_autocheckpoint"),
        format!("Integer({})", super::checkpoint::WRITER_AUTOCHECKPOINT)
    );
}

#[tokio::test]
async fn data_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    let mut message = message("s-1", 1, Some("k-1"));
    message.content = "Is anyone there?".into();
    let mut record = session("s-1");
    record.session.last_seq = 1;
    record.session.last_message_at = Some(message.created_at);
    record.version = 2;
    {
        let store = SqliteStore::open(&path).expect("open");
        store
            .commit(vec![
                Mutation::InsertSession(record.clone()),
                Mutation::InsertMessage(message.clone()),
            ])
            .await
            .expect("commit");
    }
    let store = SqliteStore::open(&path).expect("reopen");
    let found = store.get_session("s-1").await.expect("get_session");
    assert_eq!(found, Some(record.session));
    let page = store
        .messages("s-1", MessageRange::Latest, 10)
        .await
        .expect("messages");
    assert_eq!(page.items, vec![message]);
}

#[tokio::test]
async fn an_unknown_status_in_a_row_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    let store = SqliteStore::open(&path).expect("open");
    let record = session("s-odd");
    store
        .commit(vec![Mutation::InsertSession(record)])
        .await
        .expect("commit");
    let conn = Connection::open(&path).expect("raw open");
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE sessions SET status = 'archived' WHERE id = 's-odd';",
    )
    .expect("corrupt the row");
    match store.get_session("s-odd").await {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("archived"), "{message}")
        }
        other => panic!("expected Internal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_message_for_an_unknown_session_is_not_a_conflict() {
    let (_dir, store) = open_temp();
    let orphan = message("no-such-session", 1, None);
    match store.commit(vec![Mutation::InsertMessage(orphan)]).await {
        Err(StoreError::Internal(_)) => {}
        other => panic!("expected Internal (foreign key), got {other:?}"),
    }
}

/// A file from before the daily counts (migration 3) keeps its messages of
/// the day in the stats: the migration counts what is stored.
#[tokio::test]
async fn the_daily_counts_start_from_the_stored_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chat.db");
    let conn = migrated_by_an_earlier_build(&path, 2);
    let day = 20_000 * 86_400_000_i64;
    conn.execute_batch(&format!(
        "INSERT INTO sessions (id, customer_id, customer_name, pool, status, created_at, \
         last_seq, version) VALUES ('s-1', 'c-1', 'Carla', 'billing', 'active', {day}, 3, 4);
         INSERT INTO messages (id, session_id, seq, sender_id, sender_name, sender_role, \
         content, created_at) VALUES \
         ('m-1', 's-1', 1, 'c-1', 'Carla', 'customer', 'yesterday', {day} - 1), \
         ('m-2', 's-1', 2, 'c-1', 'Carla', 'customer', 'today', {day}), \
         ('m-3', 's-1', 3, 'c-1', 'Carla', 'customer', 'later today', {day} + 5000);"
    ))
    .expect("a session with messages");
    drop(conn);
    let store = SqliteStore::open(&path).expect("open");
    let figures = store
        .pool_figures("billing", Timestamp(day))
        .await
        .expect("figures");
    assert_eq!(figures.messages_today, 2);
    let mut next = message("s-1", 4, None);
    next.created_at = Timestamp(day + 6_000);
    store
        .commit(vec![Mutation::InsertMessage(next)])
        .await
        .expect("a message of a session the batch does not write");
    let figures = store
        .pool_figures("billing", Timestamp(day))
        .await
        .expect("figures");
    assert_eq!(figures.messages_today, 3);
}

crate::store::attachment_conformance::attachment_tests_per_check!(open_for_check);
