//! A blocking connection to Redis for administration only: reading a key,
//! deleting a prefix, cutting connections. It needs no async runtime, so
//! that clean-up in `Drop` works while a test's runtime is unwinding.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

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

/// Who holds each of `partitions` partitions' lease under `prefix` right
/// now (the worker id, without the fencing token).
pub async fn lease_holders(url: &str, prefix: &str, partitions: u32) -> Vec<Option<String>> {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut admin = RedisAdmin::connect(&url).expect("connect to Redis");
        (0..partitions)
            .map(|p| {
                let key = format!("{prefix}:lease:{p}");
                let value = admin.call(&["GET", &key]).expect("GET a lease").text()?;
                value.rsplit_once(':').map(|(holder, _)| holder.to_owned())
            })
            .collect()
    })
    .await
    .expect("lease reading task")
}
