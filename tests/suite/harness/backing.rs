//! Redis and PostgreSQL for the tests that run the cluster binaries.
//!
//! Tests that leave the servers alone share the ones at `REDIS_URL` and
//! `DATABASE_URL` (by default the local `redis://127.0.0.1:6379` and
//! `postgres://postgres@127.0.0.1:5432/postgres`): each run gets a key
//! prefix of its own, whose keys are deleted at the end, and a database of
//! its own, dropped at the end. Tests that crash a server get a throwaway
//! one, started from the installed binaries on a free port with its files
//! in a temporary directory, and stopped whatever happens.
//!
//! Clean-up runs in `Drop`, so it happens when a test fails too, on a
//! thread and runtime of its own (the test's may be the one unwinding).

use std::time::Duration;

use super::redis_admin::RedisAdmin;

/// The Redis the tests share.
pub fn shared_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The PostgreSQL server the tests create their databases on.
pub fn shared_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A key prefix of the test's own on a shared Redis; its keys are deleted
/// when this goes.
pub struct RedisNamespace {
    pub url: String,
    pub prefix: String,
}

impl RedisNamespace {
    /// A fresh prefix on `url`; panics when that Redis does not answer.
    pub async fn new(url: &str) -> RedisNamespace {
        let admin = RedisAdmin::connect(url)
            .await
            .unwrap_or_else(|e| panic!("no Redis at {url} ({e}); set REDIS_URL"));
        assert_eq!(
            admin
                .call(&["PING"])
                .await
                .ok()
                .and_then(|reply| reply.into_string()),
            Some("PONG".to_owned()),
            "Redis at {url} does not answer PING"
        );
        admin.quit().await;
        RedisNamespace {
            url: url.to_owned(),
            prefix: unique_name("ct"),
        }
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), format!("{}:", self.prefix));
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = RedisAdmin::connect(&url).await?;
                let deleted = admin.delete_prefix(&prefix).await;
                admin.quit().await;
                deleted
            })
        })
        .join();
        match deleted {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => eprintln!("could not delete the keys under {}: {error}", self.prefix),
            Err(_) => eprintln!(
                "could not delete the keys under {}: the thread panicked",
                self.prefix
            ),
        }
    }
}

/// `url` with its database replaced by `database`, everything else kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database of the test's own, created on a server and dropped (with
/// whatever is connected to it) when this goes.
pub struct Database {
    admin_url: String,
    name: String,
    pub url: String,
}

impl Database {
    /// Creates `chat_test_<random>` on the server of `admin_url`.
    pub async fn create(admin_url: &str) -> Database {
        let name = unique_name("chat_test");
        let client = pg_connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("no PostgreSQL at {admin_url} ({e}); set DATABASE_URL"));
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE on {admin_url}: {e}"));
        Database {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let url = self.admin_url.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let client = pg_connect(&url).await?;
                client.batch_execute(&sql).await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop database {}: {error}", self.name),
            Err(_) => eprintln!("could not drop database {}: the thread panicked", self.name),
        }
    }
}

/// An administrative connection; its connection task runs on the current
/// runtime and ends with the client.
async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(client)
}

/// `<stem>_<32 hex digits>`: unique across parallel test processes.
pub fn unique_name(stem: &str) -> String {
    format!("{stem}_{}", uuid::Uuid::new_v4().simple())
}

/// A key prefix and a database of the test's own, both removed when this
/// goes.
pub struct Backing {
    pub redis: RedisNamespace,
    pub database: Database,
}

impl Backing {
    pub async fn create() -> Backing {
        Backing {
            redis: RedisNamespace::new(&shared_redis_url()).await,
            database: Database::create(&shared_database_url()).await,
        }
    }
}
