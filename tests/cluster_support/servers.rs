//! Redis and PostgreSQL for the cluster tests.
//!
//! Tests that leave the servers alone share the ones at `REDIS_URL` and
//! `DATABASE_URL` (by default the local `redis://127.0.0.1:6379` and
//! `postgres://postgres@127.0.0.1:5432/postgres`): each run gets a key
//! prefix of its own, whose keys are deleted at the end, and a database of
//! its own, dropped at the end. Tests that crash a server get a throwaway
//! one, started from the installed binaries on a free port with its files
//! in a temporary directory, and stopped whatever happens.
//!
//! Clean-up runs in `Drop`, so it happens when a test fails too; it needs
//! no async runtime (the test's may be the one unwinding).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The Redis the tests share.
pub fn shared_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The PostgreSQL server the tests create their databases on.
pub fn shared_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

// ------------------------------------------------------------------ Redis

/// A reply of the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The text of a simple or bulk string.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

/// A blocking connection to Redis, enough for administration: reading a
/// key, deleting a prefix. `redis://[[user]:password@]host[:port][/db]`.
pub struct RedisAdmin {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RedisAdmin {
    pub fn connect(url: &str) -> std::io::Result<RedisAdmin> {
        let rest = url.strip_prefix("redis://").unwrap_or(url);
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (host_port, db) = match rest.split_once('/') {
            Some((host_port, db)) => (host_port, db.split('?').next().unwrap_or("")),
            None => (rest.split('?').next().unwrap_or(rest), ""),
        };
        let address = if host_port.contains(':') {
            host_port.to_owned()
        } else {
            format!("{host_port}:6379")
        };
        let stream = std::net::ToSocketAddrs::to_socket_addrs(&address)?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {address}")))
            .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut admin = RedisAdmin {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        if let Some(auth) = auth {
            let reply = match auth.split_once(':') {
                Some(("", password)) => admin.call(&["AUTH", password])?,
                Some((user, password)) => admin.call(&["AUTH", user, password])?,
                None => admin.call(&["AUTH", auth])?,
            };
            admin.expect_ok("AUTH", reply)?;
        }
        if !db.is_empty() {
            let reply = admin.call(&["SELECT", db])?;
            admin.expect_ok("SELECT", reply)?;
        }
        Ok(admin)
    }

    fn expect_ok(&self, what: &str, reply: Resp) -> std::io::Result<()> {
        match reply {
            Resp::Error(error) => Err(std::io::Error::other(format!("{what}: {error}"))),
            _ => Ok(()),
        }
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> std::io::Result<Resp> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&request)?;
        read_reply(&mut self.reader)
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(&mut self, prefix: &str) -> std::io::Result<usize> {
        let pattern = format!("{prefix}*");
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let reply = self.call(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?;
            let Resp::Array(Some(parts)) = reply else {
                return Err(std::io::Error::other(format!("SCAN: {reply:?}")));
            };
            let [next, Resp::Array(Some(keys))] = parts.as_slice() else {
                return Err(std::io::Error::other("SCAN: unexpected reply"));
            };
            let keys: Vec<String> = keys.iter().filter_map(Resp::text).collect();
            if !keys.is_empty() {
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                self.call(&args)?;
                deleted += keys.len();
            }
            cursor = next.text().unwrap_or_else(|| "0".to_owned());
            if cursor == "0" {
                return Ok(deleted);
            }
        }
    }
}

fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| std::io::Error::other(format!("bad reply line {line:?}")))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Resp::Bulk(None),
            Ok(length) => {
                let mut data = vec![0; length + 2];
                reader.read_exact(&mut data)?;
                data.truncate(length);
                Resp::Bulk(Some(data))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Resp::Array(None),
            Ok(count) => Resp::Array(Some(
                (0..count)
                    .map(|_| read_reply(reader))
                    .collect::<std::io::Result<_>>()?,
            )),
        },
        _ => return Err(std::io::Error::other(format!("bad reply line {line:?}"))),
    })
}

/// A key prefix of the test's own on a shared Redis; its keys are deleted
/// when this goes.
pub struct RedisNamespace {
    pub url: String,
    pub prefix: String,
}

impl RedisNamespace {
    /// A fresh prefix on `url`; panics when that Redis does not answer.
    pub fn new(url: &str) -> RedisNamespace {
        let mut admin = RedisAdmin::connect(url)
            .unwrap_or_else(|e| panic!("no Redis at {url} ({e}); set REDIS_URL"));
        assert_eq!(
            admin.call(&["PING"]).map(|r| r.text()).ok().flatten(),
            Some("PONG".to_owned()),
            "Redis at {url} does not answer PING"
        );
        RedisNamespace {
            url: url.to_owned(),
            prefix: unique_name("ct"),
        }
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        let deleted = RedisAdmin::connect(&self.url)
            .and_then(|mut admin| admin.delete_prefix(&format!("{}:", self.prefix)));
        if let Err(error) = deleted {
            eprintln!("could not delete the keys under {}: {error}", self.prefix);
        }
    }
}

// ------------------------------------------------------------------ PostgreSQL

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
