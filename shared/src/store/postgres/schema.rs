//! How a PostgreSQL database records and applies the migrations of
//! `store::migrations` (the SQL itself is in `migrations/postgres/`).
//!
//! The database outlives every binary that uses it, and in a cluster many
//! pods start at the same moment, each wanting the schema up to date. So
//! `migrate` takes a transaction-scoped advisory lock (keyed by the schema
//! name) before it even looks: the first pod applies what is missing and
//! records each version in `schema_migrations`; the others wait on the
//! lock, then find nothing left to do. All steps run in that one
//! transaction (PostgreSQL's DDL is transactional), so a pod that dies
//! half-way leaves the schema as it was.
//!
//! The tables mirror the SQLite schema: the same columns and meanings,
//! timestamps as BIGINT milliseconds since the Unix epoch.

use deadpool_postgres::{Object, Transaction};

use crate::store::migrations::{self, Ledger, Migration};
use crate::store::sql::{self, Dialect};
use crate::store::StoreError;
use crate::Timestamp;

const POSTGRES: Dialect = Dialect::Postgres;

/// What `chat_commit_batch` raises when a batch lost a race (a stale
/// version, a row that exists already).
pub(super) const BATCH_CONFLICT_SQLSTATE: &str = "CH001";

/// First key of the advisory lock that guards migrations ("chat" in ASCII);
/// the second is a hash of the schema name, so separate schemas migrate
/// independently.
const LOCK_NAMESPACE: i32 = 0x6368_6174;

/// Brings the schema up to date, creating `schema` first if one is named
/// (the connection's search path already points at it).
pub(super) async fn migrate(client: &mut Object, schema: Option<&str>) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    match apply_missing(&tx, schema).await {
        Ok(()) => Ok(tx.commit().await?),
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

async fn apply_missing(tx: &Transaction<'_>, schema: Option<&str>) -> Result<(), StoreError> {
    // Held until the transaction ends; concurrent callers queue here.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(coalesce($2::text, current_schema()::text, '')))",
        &[&LOCK_NAMESPACE, &schema],
    )
    .await?;
    if let Some(schema) = schema {
        // The name was checked by the caller: it needs no quoting.
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
    }
    migrations::migrate(&mut LockedLedger { tx }, migrations::POSTGRES).await
}

/// `schema_migrations` inside the locked transaction: nobody else can
/// apply a step meanwhile, so each one found missing is applied.
struct LockedLedger<'t, 'c> {
    tx: &'t Transaction<'c>,
}

impl Ledger for LockedLedger<'_, '_> {
    async fn applied(&mut self) -> Result<Vec<i64>, StoreError> {
        self.tx
            .batch_execute(&sql::create_migrations_table(POSTGRES))
            .await?;
        let versions = self
            .tx
            .query(sql::APPLIED_MIGRATIONS, &[])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        Ok(versions)
    }

    async fn apply(&mut self, migration: &Migration) -> Result<(), StoreError> {
        self.tx.batch_execute(migration.sql).await?;
        self.tx
            .execute(
                &sql::record_migration(POSTGRES),
                &[&migration.version, &Timestamp::now().millis()],
            )
            .await?;
        tracing::info!(version = migration.version, "applied postgresql migration");
        Ok(())
    }
}
