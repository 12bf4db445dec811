//! The cluster under test: the real `gateway` and `worker` binaries, each a
//! child process with its logs in a directory of the test's own.
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
            ("LEASE_TTL_MS", "2000"),
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
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("{} still running after {STOP_WAIT:?}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Gateways and workers sharing one spec.
pub struct Cluster {
    pub spec: ClusterSpec,
    pub gateways: Vec<Node>,
    pub workers: Vec<Node>,
    logs: Option<tempfile::TempDir>,
    binaries: Binaries,
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
            binaries: Binaries::locate(),
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
        let program = if gateway {
            &self.binaries.gateway
        } else {
            &self.binaries.worker
        };
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let mut env = self.spec.env(&dir);
        if !gateway {
            // Workers serve their health and metrics on a port of their own.
            env.retain(|(k, _)| k != "ADMIN_PORT");
            env.push(("ADMIN_PORT".to_owned(), "0".to_owned()));
        }
        let mut child = Command::new(program)
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

/// Where the `gateway` and `worker` executables are.
struct Binaries {
    gateway: PathBuf,
    worker: PathBuf,
}

impl Binaries {
    /// Beside this test's executable, checked to be present and current.
    fn locate() -> Binaries {
        let exe = std::env::current_exe().expect("the test executable's path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps");
        let binaries = Binaries {
            gateway: dir.join("gateway"),
            worker: dir.join("worker"),
        };
        for bin in [&binaries.gateway, &binaries.worker] {
            if let Err(problem) = check_current(bin) {
                panic!("{problem}; build the binaries with: cargo build --workspace --bins");
            }
        }
        binaries
    }
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
