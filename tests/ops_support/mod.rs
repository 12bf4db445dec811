//! What the operations tests share: a Redis key prefix and a PostgreSQL
//! database of the test's own (both removed afterwards), the real `gateway`
//! and `worker` binaries as child processes that can be sent SIGTERM, a
//! small HTTP GET that reports failures instead of panicking (a draining
//! process may refuse), and clients that behave like `socket.io-client`
//! across a drain: reconnect to a gateway that is ready, rejoin with
//! `lastSeq`, and resend what was not acknowledged with the same
//! `clientMsgId`.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use crate::support::{self, Frame, SioClient};

/// How long a process may take to say it is listening.
const START_WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ backing services

/// A key prefix and a database of this test's own on the shared Redis and
/// PostgreSQL (`REDIS_URL`, `DATABASE_URL`, or the local defaults).
pub struct Backing {
    pub redis_url: String,
    pub database_url: String,
    pub key_prefix: String,
    admin_url: String,
    database: String,
    cleaned: bool,
}

impl Backing {
    pub async fn create() -> Backing {
        let redis_url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("chat_test_{tag}");
        let client = admin_client(&admin_url).await;
        client
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {database}: {e}"));
        let database_url = with_database(&admin_url, &database);
        Backing {
            redis_url,
            database_url,
            key_prefix: format!("ops{}", &tag[..12]),
            admin_url,
            database,
            cleaned: false,
        }
    }

    /// Drops the database and deletes the prefix's keys.
    pub async fn cleanup(mut self) {
        self.cleaned = true;
        drop_database(&self.admin_url, &self.database).await;
        delete_keys(&self.redis_url, &self.key_prefix);
    }

    /// The value of a Redis key, through `redis-cli`.
    pub fn redis_get(&self, key: &str) -> Option<String> {
        let output = redis_cli(&self.redis_url, &["GET", key]);
        let text = output.trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// Who holds each partition's lease (the worker id), from Redis.
    pub fn lease_holders(&self, partitions: u32) -> Vec<Option<String>> {
        (0..partitions)
            .map(|p| {
                self.redis_get(&format!("{}:lease:{p}", self.key_prefix))
                    .and_then(|value| value.rsplit_once(':').map(|(h, _)| h.to_owned()))
            })
            .collect()
    }
}

impl Drop for Backing {
    /// A test that panicked still leaves nothing behind.
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (admin, database) = (self.admin_url.clone(), self.database.clone());
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_database(&admin, &database));
            }
        });
        let _ = cleanup.join();
        delete_keys(&self.redis_url, &self.key_prefix);
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn drop_database(admin_url: &str, database: &str) {
    let Ok((client, connection)) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await
    else {
        return;
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let _ = client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await;
}

/// `url` with its database path replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn redis_cli(url: &str, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .arg("--no-raw")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli (install redis-tools): {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // --no-raw quotes strings; (nil) means absent.
    if text.trim() == "(nil)" {
        return String::new();
    }
    text.trim().trim_matches('"').to_owned()
}

fn delete_keys(url: &str, prefix: &str) {
    const SCRIPT: &str = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                          redis.call('DEL', k) n = n + 1 end return n";
    let pattern = format!("{prefix}:*");
    let _ = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(["EVAL", SCRIPT, "0", &pattern])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// ------------------------------------------------------------------ processes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Worker,
}

/// A running `gateway` or `worker` binary, killed when dropped.
pub struct Process {
    pub name: String,
    /// A gateway's public address.
    pub addr: Option<SocketAddr>,
    /// The admin address (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// A worker's id, the holder name of its leases.
    pub worker_id: Option<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Starts `role` with exactly `env` (and `PATH`), its standard error in
    /// `log_dir/<name>.log`, and waits for the lines that say where it
    /// listens.
    pub async fn start(
        role: Role,
        name: &str,
        env: &[(String, String)],
        log_dir: &Path,
    ) -> Process {
        let program = binary(role);
        let log = log_dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(&program)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let mut lines = stdout_lines(&mut child);
        let mut process = Process {
            name: name.to_owned(),
            addr: None,
            admin: SocketAddr::from(([0, 0, 0, 0], 0)),
            worker_id: None,
            child: Some(child),
            log,
        };
        let mut admin = None;
        let deadline = Instant::now() + START_WAIT;
        loop {
            let ready = match role {
                Role::Gateway => process.addr.is_some() && admin.is_some(),
                Role::Worker => process.worker_id.is_some() && admin.is_some(),
            };
            if ready {
                break;
            }
            let line = match timeout(deadline - Instant::now(), lines.recv()).await {
                Ok(Some(line)) => line,
                outcome => panic!(
                    "{name} did not start ({outcome:?}):\n{}",
                    process.log_tail()
                ),
            };
            let line = line.trim();
            if let Some(addr) = line.strip_prefix("gateway listening on http://") {
                process.addr = Some(addr.parse().expect("an address"));
            } else if let Some(addr) = line
                .strip_prefix("gateway admin endpoints on http://")
                .or_else(|| line.strip_prefix("worker admin endpoints on http://"))
            {
                admin = Some(addr.parse::<SocketAddr>().expect("an address"));
            } else if let Some(id) = line
                .strip_prefix("worker ")
                .and_then(|rest| rest.strip_suffix(" started"))
            {
                process.worker_id = Some(id.to_owned());
            }
        }
        process.admin = admin.expect("an admin address");
        process
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a gateway")
    }

    /// Sends SIGTERM, as Kubernetes does.
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -TERM {}", child.id());
        }
    }

    /// Waits up to `limit` for the process to exit; its status, or None if
    /// it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// This process's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, body) = get(self.admin, "/metrics")
            .await
            .unwrap_or_else(|| panic!("{} does not serve /metrics", self.name));
        assert_eq!(status, 200, "{} /metrics: {body}", self.name);
        body
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log_tail());
        }
    }
}

/// Hands the child's standard output on line by line, from a thread that
/// keeps reading until the child closes it (so it never blocks on a full
/// pipe).
fn stdout_lines(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

/// The environment of a test process: the backing services, a free port
/// for everything, short timeouts, then `overrides`.
pub fn process_env(backing: &Backing, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("REDIS_URL", backing.redis_url.as_str()),
        ("DATABASE_URL", backing.database_url.as_str()),
        ("KEY_PREFIX", backing.key_prefix.as_str()),
        ("JWT_SECRET", support::SECRET),
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("ADMIN_PORT", "0"),
        ("PARTITIONS", "8"),
        ("RATE_LIMIT_PER_SEC", "0"),
        ("DATABASE_POOL_SIZE", "4"),
        ("WEB_DIR", "/nonexistent-web-ui"),
        ("RUST_LOG", "info"),
        ("NO_COLOR", "1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (key, value) in overrides {
        env.retain(|(k, _)| k != key);
        env.push(((*key).to_owned(), (*value).to_owned()));
    }
    env
}

/// The `gateway` or `worker` executable beside this test's
/// (`target/<profile>/deps/<test>` → `target/<profile>/<bin>`), refused
/// when missing or older than the sources it is built from.
fn binary(role: Role) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let (name, crate_dir) = match role {
        Role::Gateway => ("gateway", "gateway"),
        Role::Worker => ("worker", "worker"),
    };
    let path = dir.join(name);
    let built = modified(&path).unwrap_or_else(|| {
        panic!(
            "{} is missing; build it with: cargo build --workspace --bins",
            path.display()
        )
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sources in [root.join(crate_dir).join("src"), root.join("shared/src")] {
        if let Some(newer) = newest(&sources).filter(|(time, _)| *time > built) {
            panic!(
                "{} is older than {}; build it with: cargo build --workspace --bins",
                path.display(),
                newer.1.display()
            );
        }
    }
    path
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The most recently modified file under `dir`.
fn newest(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest(&path)
        } else {
            modified(&path).map(|time| (time, path))
        };
        if let Some(candidate) = candidate {
            if best.as_ref().is_none_or(|b| candidate.0 > b.0) {
                best = Some(candidate);
            }
        }
    }
    best
}

// ------------------------------------------------------------------ HTTP

/// `GET path` with `Connection: close`; None when the connection fails or
/// nothing comes back within two seconds (a draining or stopped process).
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Some((
            status,
            if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            },
        ))
    };
    timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Whether the admin endpoint at `admin` says ready.
pub async fn is_ready(admin: SocketAddr) -> bool {
    matches!(get(admin, "/readyz").await, Some((200, _)))
}

// ------------------------------------------------------------------ clients

/// A gateway as a load balancer sees it: where clients go, and the
/// readiness endpoint it checks.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

/// A load balancer without sticky sessions: the next ready gateway in
/// turn, the way a balancer stops sending clients to a pod whose readiness
/// fails.
pub async fn pick_ready(upstreams: &[Upstream], turn: usize) -> Option<Upstream> {
    for offset in 0..upstreams.len() {
        let upstream = upstreams[(turn + offset) % upstreams.len()];
        if is_ready(upstream.admin).await {
            return Some(upstream);
        }
    }
    None
}

/// What one client of a session saw.
#[derive(Debug, Default)]
pub struct View {
    /// The `seq` of every message received (join catch-ups and live
    /// `new-message` events), in arrival order.
    pub seqs: Vec<i64>,
    /// Close codes of the connections that ended, and when.
    pub closes: Vec<(Option<u16>, Instant)>,
    /// The gateway of each connection, in order.
    pub gateways: Vec<SocketAddr>,
    /// clientMsgId → seq of every acknowledged message this client sent.
    pub acked: Vec<(String, i64)>,
}

impl View {
    pub fn last_seq(&self) -> i64 {
        self.seqs.iter().copied().max().unwrap_or(0)
    }
}

/// A client of one session that reconnects like `socket.io-client` would.
pub struct ChatClient {
    pub token: String,
    pub session_id: String,
    client: Option<SioClient>,
    pub view: View,
    upstreams: Vec<Upstream>,
    turn: usize,
}

impl ChatClient {
    /// Connects through the "load balancer" and joins the session.
    pub async fn join(
        token: String,
        session_id: String,
        upstreams: Vec<Upstream>,
        turn: usize,
    ) -> ChatClient {
        let mut client = ChatClient {
            token,
            session_id,
            client: None,
            view: View::default(),
            upstreams,
            turn,
        };
        client.reconnect().await;
        client
    }

    /// The gateway of the current connection.
    pub fn gateway(&self) -> Option<SocketAddr> {
        self.view.gateways.last().copied()
    }

    /// Connects to a ready gateway (waiting up to 10 s for one) and joins
    /// with `lastSeq`, recording the messages the join returns.
    async fn reconnect(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let upstream = loop {
            if let Some(upstream) = pick_ready(&self.upstreams, self.turn).await {
                break upstream;
            }
            assert!(Instant::now() < deadline, "no gateway became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.turn += 1;
        let mut client = SioClient::connect(upstream.public, &self.token).await;
        self.view.gateways.push(upstream.public);
        let last_seq = self.view.last_seq();
        let ack = client
            .join_session(&self.session_id, (last_seq > 0).then_some(last_seq))
            .await;
        for message in ack["messages"].as_array().cloned().unwrap_or_default() {
            self.view.seqs.push(message["seq"].as_i64().expect("seq"));
        }
        assert_ne!(
            ack["hasMore"],
            json!(true),
            "a catch-up larger than one join; the test sends fewer"
        );
        self.client = Some(client);
    }

    /// Handles frames in the order they arrived: records the session's
    /// `new-message` events, and on the end of the connection records the
    /// close and reconnects. True when the connection had ended.
    async fn absorb(&mut self, frames: Vec<support::Received>) -> bool {
        let mut ended = None;
        for received in frames {
            match received.frame {
                Frame::Event { name, payload }
                    if ended.is_none()
                        && name == "new-message"
                        && payload["sessionId"] == json!(self.session_id) =>
                {
                    self.view.seqs.push(payload["seq"].as_i64().expect("seq"));
                }
                Frame::Closed(code) => ended = Some((code, received.at)),
                _ => {}
            }
        }
        match ended {
            Some(close) => {
                self.view.closes.push(close);
                self.client = None;
                self.reconnect().await;
                true
            }
            None => false,
        }
    }

    /// Handles everything received so far. True when the connection had
    /// ended (and was re-established).
    pub async fn pump(&mut self) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        let _ = client.has_closed();
        let frames = client.drain_backlog();
        self.absorb(frames).await
    }

    /// Waits up to `wait` for a frame `wanted` accepts (or the end of the
    /// connection), then handles it and everything before it, in order.
    /// Returns that frame.
    async fn wait_for(&mut self, wait: Duration, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let client = self.client.as_mut()?;
        let matched = client
            .try_next_matching(wait, |frame| {
                wanted(frame) || matches!(frame, Frame::Closed(_))
            })
            .await;
        let mut frames = client.drain_backlog();
        let frame = matched.as_ref().map(|r| r.frame.clone());
        frames.extend(matched);
        self.absorb(frames).await;
        frame
    }

    /// Sends one message and waits for its ack, across reconnections and
    /// `unavailable` answers, always with the same `clientMsgId`, as a
    /// client resending unacknowledged messages does.
    pub async fn send(&mut self, content: &str, client_msg_id: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "{client_msg_id} not acknowledged within 30 s"
            );
            self.pump().await;
            let client = self.client.as_mut().expect("connected");
            let id = client.emit_ack(
                "send-message",
                json!({ "sessionId": self.session_id, "content": content, "clientMsgId": client_msg_id }),
            );
            let answer = self
                .wait_for(
                    Duration::from_secs(15),
                    |frame| matches!(frame, Frame::Ack { id: got, .. } if *got == id),
                )
                .await;
            match answer {
                Some(Frame::Ack { payload, .. }) if payload["ok"] == json!(true) => {
                    let seq = payload["message"]["seq"].as_i64().expect("seq");
                    self.view.acked.push((client_msg_id.to_owned(), seq));
                    return seq;
                }
                Some(Frame::Ack { payload, .. }) => {
                    assert_eq!(
                        payload["error"]["code"],
                        json!("unavailable"),
                        "send-message refused: {payload}"
                    );
                }
                // The connection ended (already re-established by
                // `wait_for`): send again.
                Some(_) => {}
                // No answer at all: treat the connection as lost.
                None => {
                    self.client = None;
                    self.reconnect().await;
                }
            }
        }
    }

    /// Waits (up to `wait`) until this client has seen `seq`.
    pub async fn wait_for_seq(&mut self, seq: i64, wait: Duration) {
        let deadline = Instant::now() + wait;
        self.pump().await;
        while self.view.last_seq() < seq {
            assert!(
                Instant::now() < deadline,
                "message {seq} of {} never arrived; saw {:?}",
                self.session_id,
                self.view.seqs
            );
            let session = self.session_id.clone();
            self.wait_for(Duration::from_millis(200), |frame| {
                support::is_new_message(frame, &session)
            })
            .await;
        }
    }

    /// Closes the connection.
    pub fn close(&mut self) {
        if let Some(client) = self.client.take() {
            client.close();
        }
    }
}

/// Asserts that `view` holds every message 1..=`last` exactly once, in order.
pub fn assert_exactly_once_in_order(who: &str, view: &View, last: i64) {
    let expected: Vec<i64> = (1..=last).collect();
    assert_eq!(
        view.seqs, expected,
        "{who} did not receive every message exactly once in order"
    );
}
