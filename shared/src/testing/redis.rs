//! A `redis-server` of a test's own, with an append-only file synced on
//! every write, so that it can be crashed (SIGKILL) and started again on
//! the same port with its data. Killed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{came_true_blocking, free_port, TestCertificates};

/// How long a start may take, loading the append-only file included.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct ThrowawayRedis {
    // Removed after the server is killed: fields drop after `Drop::drop`.
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// Certificate, key and authority when the server speaks only TLS.
    tls: Option<[PathBuf; 3]>,
}

impl ThrowawayRedis {
    /// Starts the server and returns once it answers PING. Panics with the
    /// reason (and how to install Redis) when it cannot be run.
    pub fn start() -> ThrowawayRedis {
        ThrowawayRedis::launched(None)
    }

    /// A server that accepts only TLS connections, presenting the server
    /// certificate of `certificates`; its URL is `rediss://`.
    pub fn start_tls(certificates: &TestCertificates) -> ThrowawayRedis {
        ThrowawayRedis::launched(Some([
            certificates.server_certificate(),
            certificates.server_key(),
            certificates.authority(),
        ]))
    }

    fn launched(tls: Option<[PathBuf; 3]>) -> ThrowawayRedis {
        let dir = tempfile::Builder::new()
            .prefix("chat-test-redis-")
            .tempdir()
            .expect("a temporary directory");
        let mut redis = ThrowawayRedis {
            dir,
            port: free_port(),
            child: None,
            tls,
        };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Crashes the server: SIGKILL, nothing flushed beyond what was synced.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again on the same port and files; returns
    /// once it has loaded its data and answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.launch();
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some([certificate, key, authority]) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(certificate)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(authority)
                .args(["--tls-auth-clients", "no"]),
        };
        command.args(["--bind", "127.0.0.1"]).args([
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]);
        self.child = Some(spawn_redis_server(
            &mut command,
            self.dir.path(),
            &self.log(),
        ));
        let ready = came_true_blocking(START_TIMEOUT, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server exited ({status}):\n{}", self.log_text());
            }
            self.answers_ping()
        });
        assert!(
            ready,
            "redis-server did not answer within {START_TIMEOUT:?}:\n{}",
            self.log_text()
        );
    }

    /// PONG, not LOADING: the data is back. A TLS server cannot be asked
    /// in plain text; it is ready once its log says so.
    fn answers_ping(&self) -> bool {
        if self.tls.is_some() {
            return self.log_text().contains("Ready to accept connections");
        }
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` (a `redis-server` with its settings) in the foreground
/// of a child process, in `dir`, logging to `log`. Panics with how to
/// install Redis when it cannot be run.
pub(super) fn spawn_redis_server(command: &mut Command, dir: &Path, log: &Path) -> Child {
    command
        .args(["--daemonize", "no", "--dir"])
        .arg(dir)
        .arg("--logfile")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}); install it with: apt-get install redis-server")
        })
}
