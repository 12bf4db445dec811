//! A PostgreSQL server of a test's own, to stop and restart at will.
//!
//! Tests that crash the server cannot use the shared one, so this makes a
//! cluster in a temporary directory (`initdb`), serves it on a free
//! loopback port with its socket in that directory, and stops it with
//! `pg_ctl stop -m immediate` (a crash, as far as clients can tell) when
//! asked and, whatever happens, when dropped. PostgreSQL refuses to run as
//! root, so under root every command runs as the `postgres` user, who then
//! owns the directory.
//!
//! A server can also be a streaming replica of another
//! (`create_replica_of`, a `pg_basebackup -R` copy), whose replay a test
//! pauses and resumes to make it fall behind at will.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::certificates::copy;
use super::{came_true_blocking, free_port, TestCertificates};

/// How long a new replica may take to stream, and a pause to take hold.
const REPLICA_READY_WITHIN: Duration = Duration::from_secs(60);

pub struct ThrowawayPostgres {
    // Removed after the server is stopped: fields drop after `Drop::drop`.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl ThrowawayPostgres {
    /// Creates the cluster (not yet started). Panics with the reason when
    /// the PostgreSQL server binaries cannot be found or run.
    pub fn create() -> ThrowawayPostgres {
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql; \
             install them with: apt-get install postgresql"
            )
        });
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("chat-pg-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let server = ThrowawayPostgres {
            dir,
            bin,
            port: free_port(),
            as_postgres,
        };
        let data = server.data_dir();
        server.run_tool("initdb", |cmd| {
            cmd.arg("-D").arg(&data).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ]);
        });
        server
    }

    /// A started streaming replica of the started server `primary`: a
    /// `pg_basebackup -R` copy of it (which writes `standby.signal` and
    /// how to reach the primary), served on a port of its own. Returns once
    /// the replica is in recovery and the primary reports it streaming.
    pub fn create_replica_of(primary: &ThrowawayPostgres) -> ThrowawayPostgres {
        let as_postgres = primary.as_postgres;
        let dir = tempfile::Builder::new()
            .prefix("chat-pg-replica-")
            .tempdir()
            .expect("temp dir");
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let replica = ThrowawayPostgres {
            dir,
            bin: primary.bin.clone(),
            port: free_port(),
            as_postgres,
        };
        let data = replica.data_dir();
        let primary_port = primary.port.to_string();
        replica.run_tool("pg_basebackup", |cmd| {
            cmd.arg("-D").arg(&data).args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]);
        });
        replica.start();
        let streaming = came_true_blocking(REPLICA_READY_WITHIN, || {
            replica.query("SELECT pg_is_in_recovery()") == "t"
                && primary
                    .query("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                    == "1"
        });
        assert!(
            streaming,
            "the replica did not start streaming within {REPLICA_READY_WITHIN:?}; its log:\n{}",
            replica.log()
        );
        replica
    }

    /// Runs `sql` through `psql` on this (started) server and returns its
    /// unaligned, header-less output, trimmed; an empty string when psql
    /// fails (a server still starting), so that callers can poll with it.
    pub fn query(&self, sql: &str) -> String {
        let mut cmd = self.command("psql");
        cmd.arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-A", "-t", "-q", "-c", sql]);
        let output = run(&mut cmd);
        if output.status.success() {
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        } else {
            String::new()
        }
    }

    /// Pauses WAL replay on this replica and returns once it has taken
    /// hold: from then on, what the primary commits is not seen here.
    pub fn pause_replay(&self) {
        self.query("SELECT pg_wal_replay_pause()");
        let paused = came_true_blocking(REPLICA_READY_WITHIN, || {
            self.query("SELECT pg_get_wal_replay_pause_state()") == "paused"
        });
        assert!(paused, "replay did not pause; the log:\n{}", self.log());
    }

    /// Resumes WAL replay on this replica.
    pub fn resume_replay(&self) {
        self.query("SELECT pg_wal_replay_resume()");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=5",
            self.port
        )
    }

    /// Makes the (not yet started) server present the server certificate
    /// of `certificates` and refuse TCP connections that are not TLS, so a
    /// client that gets in has spoken TLS.
    pub fn require_tls(&self, certificates: &TestCertificates) {
        let data = self.data_dir();
        let (certificate, key) = (data.join("server.crt"), data.join("server.key"));
        copy(&certificates.server_certificate(), &certificate);
        copy(&certificates.server_key(), &key);
        let settings = "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n";
        append(&data.join("postgresql.conf"), settings);
        let access = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";
        std::fs::write(data.join("pg_hba.conf"), access).expect("pg_hba.conf");
        // The server refuses a key others may read.
        run(Command::new("chmod").arg("600").arg(&key));
        if self.as_postgres {
            run(Command::new("chown")
                .arg("postgres:")
                .arg(&certificate)
                .arg(&key)
                .arg(data.join("pg_hba.conf")));
        }
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 \
             -c shared_buffers=16MB",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (self.data_dir(), self.dir.path().join("server.log"));
        self.run_tool("pg_ctl", |cmd| {
            cmd.arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"]);
        });
    }

    /// Kills the server the way a crash would: no checkpoint, connections
    /// cut. Committed data survives through the write-ahead log.
    pub fn stop_immediately(&self) {
        let data = self.data_dir();
        self.run_tool("pg_ctl", |cmd| {
            cmd.arg("-D")
                .arg(&data)
                .args(["-w", "-t", "60", "-m", "immediate", "stop"]);
        });
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let program = tool_path(&self.bin, tool);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        // The postgres user may not be allowed into the test's directory.
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn run_tool(&self, tool: &str, args: impl FnOnce(&mut Command)) {
        let mut cmd = self.command(tool);
        args(&mut cmd);
        let output = run(&mut cmd);
        if !output.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{tool} failed ({}):\n{}{}\nserver log:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        if !self.data_dir().join("postmaster.pid").exists() {
            return;
        }
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-m", "immediate", "stop"]);
        if let Err(err) = cmd.output() {
            eprintln!("could not stop the throwaway server: {err}");
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A directory holding both `initdb` and `pg_ctl`: the one `initdb` on the
/// PATH is in, else the newest under /usr/lib/postgresql.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.into_iter().find(|dir| has_tools(dir)) {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|dir| has_tools(dir))
        .collect();
    versions.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// `tool` beside `initdb`; where `initdb` is a link (a PATH directory
/// linking only the server tools), beside the file it links to, where the
/// client tools (`psql`, `pg_basebackup`) are installed too.
fn tool_path(bin: &Path, tool: &str) -> PathBuf {
    let program = bin.join(tool);
    if program.is_file() {
        return program;
    }
    std::fs::canonicalize(bin.join("initdb"))
        .ok()
        .and_then(|initdb| initdb.parent().map(|dir| dir.join(tool)))
        .filter(|program| program.is_file())
        .unwrap_or(program)
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {path:?}: {e}"));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {path:?}: {e}"));
}
