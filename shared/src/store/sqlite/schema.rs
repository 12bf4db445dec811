//! How a SQLite file records and applies the migrations of
//! `store::migrations` (the SQL itself is in `migrations/sqlite/`).
//!
//! Each step checks and records its version inside its own IMMEDIATE
//! transaction, so two processes opening the same file at once cannot
//! both apply it: the second waits for the write lock, then finds the
//! version recorded. Timestamps are INTEGER milliseconds since the Unix
//! epoch, as in `crate::Timestamp`.

use rusqlite::{params, Connection, TransactionBehavior};

use crate::store::migrations::{self, Ledger, Migration};
use crate::store::sql::{self, Dialect};
use crate::store::StoreError;
use crate::Timestamp;

const SQLITE: Dialect = Dialect::Sqlite;

/// Brings the file's schema up to date.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrations::migrate_now(&mut FileLedger { conn }, migrations::SQLITE)
}

/// The file's `schema_migrations`. Its steps run on the calling thread and
/// never wait on anything async, as `migrate_now` needs.
struct FileLedger<'c> {
    conn: &'c mut Connection,
}

impl Ledger for FileLedger<'_> {
    async fn applied(&mut self) -> Result<Vec<i64>, StoreError> {
        self.conn
            .execute_batch(&sql::create_migrations_table(SQLITE))?;
        let mut statement = self.conn.prepare(sql::APPLIED_MIGRATIONS)?;
        let versions = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        Ok(versions)
    }

    async fn apply(&mut self, migration: &Migration) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [migration.version],
            |row| row.get(0),
        )?;
        if !applied {
            tx.execute_batch(migration.sql)?;
            tx.execute(
                &sql::record_migration(SQLITE),
                params![migration.version, Timestamp::now().millis()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
