//! The real `gateway` and `worker` binaries as child processes, each with
//! its logs in a directory of the test's own: a [`Cluster`] of them for the
//! fault tests, or single [`Process`]es that can be sent SIGTERM and whose
//! admin endpoints are known, for the operations tests.
//!
//! The binaries belong to other packages of the workspace, so cargo does
//! not hand their paths to these tests; they are found beside the test
//! executable (`target/<profile>/deps/..`), and refused with the command to
//! run when they are missing or older than the sources cargo last built
//! them from (their `.d` files list those), so that a test never judges
//! stale code. Each process is started with a clean environment (nothing
//! of the caller's `PORT`, `ADMIN_PORT`... leaks in) and is ready when its
//! first standard-output line says so. A test crashes a process with
//! SIGKILL, and stops the cluster with SIGTERM, as an orchestrator would,
//! expecting every process to exit cleanly. Standard error (the logs, at
//! `RUST_LOG=info` unless `CLUSTER_TEST_LOG` says otherwise) goes to
//! `<name>.log`; when a test fails, the end of every log is printed and the
//! directory is kept (always, with `CLUSTER_TEST_KEEP_LOGS=1`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::time::timeout;

use super::backing::Backing;
use super::eventually::try_eventually;
use super::http;
use super::tokens::SECRET;

/// How long a process may take to print its ready line.
const START_WAIT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// Lines of each log printed when a test fails.
const LOG_TAIL: usize = 80;

/// The settings every process of a test cluster gets.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub redis_url: String,
    pub database_url: String,
    pub key_prefix: String,
    pub jwt_secret: String,
    /// Additions to, or replacements of, the defaults of [`ClusterSpec::env`].
    pub overrides: Vec<(String, String)>,
}

impl ClusterSpec {
    /// The environment of every process: the spec's servers, prefix and
    /// secret, the rate limit off, short leases and timeouts (so that
    /// faults are noticed and repaired within a test's time), small
    /// connection pools (several clusters may share one PostgreSQL), no
    /// drain delay, then the overrides.
    fn env(&self, log_dir: &Path) -> Vec<(String, String)> {
        let log_filter = std::env::var("CLUSTER_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
        let no_web = log_dir.join("no-web-ui").to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = [
            ("REDIS_URL", self.redis_url.as_str()),
            ("DATABASE_URL", self.database_url.as_str()),
            ("KEY_PREFIX", self.key_prefix.as_str()),
            ("JWT_SECRET", self.jwt_secret.as_str()),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("PARTITIONS", "8"),
            ("REQUEST_TIMEOUT_MS", "1500"),
            ("RETRY_IDLE_MS", "3000"),
            ("RATE_LIMIT_PER_SEC", "0"),
            ("DATABASE_POOL_SIZE", "4"),
            // No load balancer to wait for: a stopping gateway closes its
            // sockets at once.
            ("DRAIN_DELAY_MS", "0"),
            ("DRAIN_WINDOW_MS", "0"),
            ("SHUTDOWN_GRACE_MS", "10000"),
            ("WEB_DIR", no_web.as_str()),
            ("RUST_LOG", log_filter.as_str()),
            ("RUST_BACKTRACE", "1"),
            ("NO_COLOR", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        if let Some(path) = std::env::var_os("PATH") {
            env.push(("PATH".to_owned(), path.to_string_lossy().into_owned()));
        }
        for (key, value) in &self.overrides {
            env.retain(|(k, _)| k != key);
            env.push((key.clone(), value.clone()));
        }
        env
    }

    /// The number of partitions the processes are given.
    pub fn partitions(&self) -> u32 {
        self.overrides
            .iter()
            .rev()
            .find(|(k, _)| k == "PARTITIONS")
            .map_or(8, |(_, v)| v.parse().expect("numeric PARTITIONS"))
    }
}

/// The spec of a cluster on `redis_url` and `database_url` under
/// `key_prefix`, with the given setting overrides.
pub fn spec(
    redis_url: &str,
    database_url: &str,
    key_prefix: &str,
    overrides: &[(&str, &str)],
) -> ClusterSpec {
    ClusterSpec {
        redis_url: redis_url.to_owned(),
        database_url: database_url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        jwt_secret: SECRET.to_owned(),
        overrides: overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// One running (or stopped) process of the cluster.
pub struct Node {
    pub name: String,
    /// A gateway's public address.
    pub addr: Option<SocketAddr>,
    /// A worker's id (the holder name of its leases).
    pub worker_id: Option<String>,
    child: Option<Child>,
}

impl Node {
    /// The gateway's address; panics for a worker.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a gateway")
    }

    /// Crashes the process: SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop (SIGTERM, sent with `kill`).
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
    }

    /// Waits until the process has exited, up to `deadline`: Ok with its
    /// exit status (None when it was not running), Err (after killing it)
    /// when it was still running then.
    pub async fn wait_exit(&mut self, deadline: Instant) -> Result<Option<ExitStatus>, String> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let within = deadline.saturating_duration_since(Instant::now());
        match try_eventually(within, || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await
        {
            Ok(status) => {
                self.child = None;
                Ok(Some(status))
            }
            Err(_) => {
                self.kill();
                Err(format!("{} still running after {STOP_WAIT:?}", self.name))
            }
        }
    }
}

/// Gateways and workers sharing one spec.
pub struct Cluster {
    pub spec: ClusterSpec,
    pub gateways: Vec<Node>,
    pub workers: Vec<Node>,
    logs: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `workers` workers, then `gateways` gateways, each once ready.
    pub async fn start(spec: ClusterSpec, gateways: usize, workers: usize) -> Cluster {
        let logs = tempfile::Builder::new()
            .prefix("chat-cluster-logs-")
            .tempdir()
            .expect("temp dir");
        let mut cluster = Cluster {
            spec,
            gateways: Vec::new(),
            workers: Vec::new(),
            logs: Some(logs),
        };
        for i in 0..workers {
            let node = cluster.launch(&format!("worker-{i}"), false).await;
            cluster.workers.push(node);
        }
        for i in 0..gateways {
            let node = cluster.launch(&format!("gateway-{i}"), true).await;
            cluster.gateways.push(node);
        }
        cluster
    }

    pub fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateways.iter().map(Node::addr).collect()
    }

    pub fn log_dir(&self) -> &Path {
        self.logs.as_ref().expect("log directory").path()
    }

    /// Stops every process the way an orchestrator does (SIGTERM to all,
    /// gateways and workers alike) and panics unless each exits by itself,
    /// successfully, within [`STOP_WAIT`].
    pub async fn stop(&mut self) {
        for node in self.gateways.iter().chain(&self.workers) {
            node.terminate();
        }
        let deadline = Instant::now() + STOP_WAIT;
        let mut problems = Vec::new();
        for node in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            match node.wait_exit(deadline).await {
                Ok(None) => {}
                Ok(Some(status)) if status.success() => {}
                Ok(Some(status)) => problems.push(format!("{} ended with {status}", node.name)),
                Err(problem) => problems.push(problem),
            }
        }
        assert!(
            problems.is_empty(),
            "the cluster did not stop cleanly on SIGTERM: {problems:?}"
        );
    }

    /// Panics if a process the test did not stop has exited.
    pub fn assert_none_exited(&mut self) {
        for node in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("{} exited by itself ({status})", node.name);
                }
            }
        }
    }

    async fn launch(&mut self, name: &str, gateway: bool) -> Node {
        let dir = self.log_dir().to_owned();
        let program = binary(if gateway { "gateway" } else { "worker" });
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let mut env = self.spec.env(&dir);
        if !gateway {
            // Workers serve their health and metrics on a port of their own.
            env.retain(|(k, _)| k != "ADMIN_PORT");
            env.push(("ADMIN_PORT".to_owned(), "0".to_owned()));
        }
        let mut child = Command::new(&program)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let lines = forward_stdout(&mut child, dir.join(format!("{name}.out")));
        let mut node = Node {
            name: name.to_owned(),
            addr: None,
            worker_id: None,
            child: Some(child),
        };
        let ready = wait_for_line(lines, |line| {
            if gateway {
                line.strip_prefix("gateway listening on http://")
                    .map(str::to_owned)
            } else {
                line.strip_prefix("worker ")
                    .and_then(|rest| rest.strip_suffix(" started"))
                    .map(str::to_owned)
            }
        })
        .await;
        match ready {
            Ok(value) if gateway => {
                node.addr = Some(value.parse().expect("a socket address"));
            }
            Ok(value) => node.worker_id = Some(value),
            Err(error) => {
                node.kill();
                panic!(
                    "{name} did not start: {error}\n{}",
                    tail(&dir.join(format!("{name}.log")), LOG_TAIL)
                );
            }
        }
        node
    }

    /// The last lines of every process's log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in self.workers.iter().chain(&self.gateways) {
            let path = self.log_dir().join(format!("{}.log", node.name));
            out.push_str(&format!("---- {} ({})\n", node.name, path.display()));
            out.push_str(&tail(&path, LOG_TAIL));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            node.kill();
        }
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.log_tails());
        }
        if panicking || std::env::var_os("CLUSTER_TEST_KEEP_LOGS").is_some() {
            if let Some(logs) = self.logs.take() {
                eprintln!("process logs kept in {}", logs.keep().display());
            }
        }
    }
}

/// Copies the child's standard output to `path` line by line, and hands the
/// lines on until the child closes it.
fn forward_stdout(child: &mut Child, path: PathBuf) -> mpsc::UnboundedReceiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(path).ok();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first line `pick` accepts, within [`START_WAIT`].
async fn wait_for_line(
    mut lines: mpsc::UnboundedReceiver<String>,
    pick: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + START_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => {
                if let Some(value) = pick(line.trim()) {
                    return Ok(value);
                }
            }
            Ok(None) => return Err("it exited before it was ready".to_owned()),
            Err(_) => return Err(format!("no ready line within {START_WAIT:?}")),
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}

/// The workspace executable `name` beside this test's executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`), refused
/// with the command to run when it is missing or stale.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    if let Err(problem) = check_current(&path) {
        panic!("{problem}; build the binaries with: cargo build --workspace --bins");
    }
    path
}

/// Ok when `bin` exists and is newer than every source file listed in its
/// dependency file (`<bin>.d`, written by cargo).
fn check_current(bin: &Path) -> Result<(), String> {
    let built = modified(bin).ok_or_else(|| format!("{} is missing", bin.display()))?;
    let Ok(deps) = std::fs::read_to_string(bin.with_extension("d")) else {
        return Ok(());
    };
    let Some((_, sources)) = deps.split_once(": ") else {
        return Ok(());
    };
    // Paths are separated by spaces; a space inside a path is escaped.
    let escaped = sources.replace("\\ ", "\u{0}");
    for source in escaped.split_whitespace() {
        let source = PathBuf::from(source.replace('\u{0}', " "));
        if modified(&source).is_some_and(|changed| changed > built) {
            return Err(format!(
                "{} is older than {}",
                bin.display(),
                source.display()
            ));
        }
    }
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

// ------------------------------------------------------------------ single processes

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
        let program = binary(match role {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
        });
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
        let mut lines = forward_stdout(&mut child, log_dir.join(format!("{name}.out")));
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
        let child = self.child.as_mut()?;
        let status = try_eventually(limit, || {
            std::future::ready(child.try_wait().ok().flatten())
        })
        .await
        .ok()?;
        self.child = None;
        Some(status)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// This process's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, body) = http::get(self.admin, "/metrics")
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

/// The environment of a test process: the backing services, a free port
/// for everything, short timeouts, then `overrides`.
pub fn process_env(backing: &Backing, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("REDIS_URL", backing.redis.url.as_str()),
        ("DATABASE_URL", backing.database.url.as_str()),
        ("KEY_PREFIX", backing.redis.prefix.as_str()),
        ("JWT_SECRET", SECRET),
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
