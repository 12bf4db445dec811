//! The schema of each store as numbered migrations, and the one runner that
//! applies them.
//!
//! A database outlives the binary that created it, so a schema only ever
//! moves forward: each migration is an SQL file under `migrations/<dialect>/`,
//! compiled into the binary, applied once and recorded in the database's
//! `schema_migrations` table. Opening a database applies only what it has
//! not recorded; a database that records a version this build does not
//! know was written by a newer build and is refused rather than misread.
//!
//! A released migration never changes, neither its number nor its text:
//! databases that applied it are not asked again, so an edit would leave
//! them and new databases with different schemas. The tests pin each one.
//!
//! The runner decides what to apply; each store's `Ledger` says how its
//! database applies and records one step (SQLite: one locked transaction
//! per step; PostgreSQL: all steps in one transaction under an advisory
//! lock).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::store::StoreError;

/// One forward step of a schema. Versions start at 1 and never change
/// once released; a new step gets the next number and a new file.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    /// The text of `migrations/<dialect>/NNNN_what.sql`, NNNN the version.
    pub sql: &'static str,
}

/// The migrations of one dialect, each file embedded by its name.
macro_rules! embedded {
    ($dialect:literal: $($version:literal => $file:literal),+ $(,)?) => {
        &[$(Migration {
            version: $version,
            sql: include_str!(concat!("migrations/", $dialect, "/", $file)),
        }),+]
    };
}

/// The standalone file's schema. 2: the agent directory, whose pools (a
/// handful per agent, read and written together) are one JSON array,
/// sorted and without repeats, rather than a table of their own; listing a
/// pool scans the directory, which is as large as the staff, not the
/// traffic.
///
/// 3: messages counted per pool and UTC day as they are written
/// (`pool_message_counts`, as the cluster's migration 2), so that stats
/// read a few rows instead of scanning the day's messages; the index on
/// messages' creation time, which only that scan used, goes.
pub(crate) const SQLITE: &[Migration] = embedded!("sqlite":
    1 => "0001_initial.sql",
    2 => "0002_agents.sql",
    3 => "0003_pool_message_counts.sql",
    4 => "0004_routing.sql",
    5 => "0005_session_events.sql",
    6 => "0006_attachments.sql",
    7 => "0007_message_reactions.sql",
    8 => "0008_delivery_positions.sql",
    9 => "0009_notes_participants.sql",
);

/// The cluster's schema: the tables of SQLite's, identifiers in the "C"
/// collation (ids are opaque, and lists that break ties by id must order
/// them bytewise whatever the database's locale).
///
/// 2: the write path as one server-side function, `chat_commit_batch`
/// (see `postgres::commit`), taking one array per column and raising
/// CH001 when fewer rows are written than asked. Messages are counted per
/// pool and UTC day as they are written (`pool_message_counts`), so stats
/// read a few rows; the index that counting needed goes, and so do the
/// messages' foreign key (it locked the session row for every message;
/// the function checks each named session once) and the index on message
/// ids, which nothing looks up.
///
/// 3: the agent directory, pools as an array with a GIN index for a
/// pool's list.
///
/// 4 (both dialects): routing, i.e. agents' status, capacity and open
/// chats, and the partial indexes of the queue and of agents' active
/// chats. 5 (both): the timeline's system entries (`session_events`);
/// PostgreSQL leaves out the foreign key, as for messages.
/// 6 (both): attachments' metadata; PostgreSQL also keeps the blob
/// store's chunks (`blob::postgres`), standalone keeps files on disk.
///
/// 7 (both): reactions to messages (`message_reactions`), one row per
/// message, emoji and user. 8 (both): delivery positions, shaped like the
/// read positions. PostgreSQL leaves out their foreign keys, as for
/// messages.
///
/// 9 (both): internal notes (`session_notes`, numbered apart from
/// messages), the invited colleagues of a session as a JSON column of its
/// row, and the timeline kinds `invited` and `left`.
///
/// Every step runs inside one transaction, so none may use
/// `CREATE INDEX CONCURRENTLY`.
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[Migration] = embedded!("postgres":
    1 => "0001_initial.sql",
    2 => "0002_commit_batch.sql",
    3 => "0003_agents.sql",
    4 => "0004_routing.sql",
    5 => "0005_session_events.sql",
    6 => "0006_attachments.sql",
    7 => "0007_message_reactions.sql",
    8 => "0008_delivery_positions.sql",
    9 => "0009_notes_participants.sql",
);

/// A database's record of applied migrations, and how it applies one.
pub(crate) trait Ledger {
    /// The versions recorded, creating the record first if there is none.
    async fn applied(&mut self) -> Result<Vec<i64>, StoreError>;

    /// Runs `migration` and records it, as one unit, unless the database
    /// turns out to have recorded it meanwhile.
    async fn apply(&mut self, migration: &Migration) -> Result<(), StoreError>;
}

/// Brings a database up to date with `migrations`, in order.
pub(crate) async fn migrate(
    ledger: &mut impl Ledger,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let applied = ledger.applied().await?;
    refuse_newer_schema(migrations, &applied)?;
    for migration in migrations {
        if !applied.contains(&migration.version) {
            ledger.apply(migration).await?;
        }
    }
    Ok(())
}

/// `migrate` with a ledger whose steps never wait (SQLite's run on the
/// calling thread), for callers outside any async runtime: its future is
/// done on the first poll.
pub(crate) fn migrate_now(
    ledger: &mut impl Ledger,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let mut work = pin!(migrate(ledger, migrations));
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(StoreError::Internal(
            "a synchronous migration waited for something".into(),
        )),
    }
}

fn refuse_newer_schema(migrations: &[Migration], applied: &[i64]) -> Result<(), StoreError> {
    let newest_known = migrations.last().map_or(0, |m| m.version);
    match applied.iter().max() {
        Some(&newest) if newest > newest_known => Err(StoreError::Internal(format!(
            "database schema version {newest} is newer than this build knows ({newest_known})"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger in memory, noting what the runner asks of it.
    #[derive(Default)]
    struct Recorded {
        versions: Vec<i64>,
        applied_now: Vec<i64>,
    }

    impl Ledger for Recorded {
        async fn applied(&mut self) -> Result<Vec<i64>, StoreError> {
            Ok(self.versions.clone())
        }

        async fn apply(&mut self, migration: &Migration) -> Result<(), StoreError> {
            self.versions.push(migration.version);
            self.applied_now.push(migration.version);
            Ok(())
        }
    }

    fn run(ledger: &mut Recorded) -> Result<(), StoreError> {
        migrate_now(ledger, SQLITE)
    }

    #[test]
    fn only_missing_migrations_are_applied_in_order() {
        let mut ledger = Recorded::default();
        run(&mut ledger).expect("fresh");
        let all: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(ledger.applied_now, all);
        let mut ledger = Recorded {
            versions: vec![1],
            ..Recorded::default()
        };
        run(&mut ledger).expect("behind");
        assert_eq!(ledger.applied_now, all[1..]);
        run(&mut ledger).expect("up to date");
        assert_eq!(ledger.applied_now, all[1..], "nothing applied twice");
    }

    #[test]
    fn a_newer_schema_is_refused_before_anything_is_applied() {
        let mut ledger = Recorded {
            versions: vec![1, 9999],
            ..Recorded::default()
        };
        match run(&mut ledger) {
            Err(StoreError::Internal(message)) => assert!(message.contains("9999"), "{message}"),
            other => panic!("expected Internal, got {other:?}"),
        }
        assert!(ledger.applied_now.is_empty());
    }

    /// FNV-1a, 64 bits: a fingerprint that stays the same across builds
    /// and toolchains.
    fn fingerprint(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// Checks `migrations` against the files of `migrations/<dialect>/`:
    /// one each, in order, each named after its version (numbered from 1
    /// without gaps) and embedded as it is on disk. Then checks the
    /// released ones against `released`, (version, file, fingerprint of the
    /// text without surrounding blank lines): a database that applied a
    /// migration is never asked again, so these must never change; a
    /// schema change is a new migration.
    fn assert_as_released(dialect: &str, migrations: &[Migration], released: &[(i64, &str, u64)]) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/store/migrations")
            .join(dialect);
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("the migrations folder")
            .map(|entry| {
                let path = entry.expect("an entry").path();
                let name = path.file_name().expect("a name").to_string_lossy().into();
                (name, std::fs::read_to_string(&path).expect("a text file"))
            })
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            migrations.len(),
            "every file in {} is listed",
            dir.display()
        );
        let mut found = Vec::new();
        for (at, (migration, (name, text))) in migrations.iter().zip(&files).enumerate() {
            assert_eq!(migration.version, at as i64 + 1, "{name}");
            assert!(
                name.starts_with(&format!("{:04}_", migration.version)),
                "{name} is named after version {}",
                migration.version
            );
            assert_eq!(migration.sql, text, "{name} is embedded as it is");
            found.push((migration.version, name.as_str(), fingerprint(text.trim())));
        }
        assert_eq!(&found[..released.len()], released);
    }

    #[test]
    fn sqlite_migrations_are_as_released() {
        assert_as_released(
            "sqlite",
            SQLITE,
            &[
                (1, "0001_initial.sql", 0x5d74_8f94_a884_1d18),
                (2, "0002_agents.sql", 0x938d_5ae0_195e_cad4),
            ],
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_migrations_are_as_released() {
        assert_as_released(
            "postgres",
            POSTGRES,
            &[
                (1, "0001_initial.sql", 0xaf6f_012c_f0eb_cf55),
                (2, "0002_commit_batch.sql", 0xfdb8_0bdf_f629_8feb),
                (3, "0003_agents.sql", 0xe146_d2ce_2d69_565a),
            ],
        );
    }
}
