//! The idle probe: how much server memory an idle authenticated socket
//! costs. Reads the servers' VmRSS, opens the connections with bounded
//! concurrency (each waits for `connected`), waits for the RSS to settle,
//! prints the growth per connection, holds them (a reader task per socket
//! answers pings), closes them, and reads the RSS once more.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_shared::auth::{Identity, TokenMinter};
use chat_shared::protocol::Role;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{sleep, Instant};

use crate::args::IdleArgs;
use crate::client::{self, SharedSink};
use crate::report::bytes;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Two samples this close (relative) mean the memory has settled.
const SETTLED: f64 = 0.01;

struct Open {
    sink: SharedSink,
    reader: JoinHandle<()>,
}

pub async fn run(args: IdleArgs) -> anyhow::Result<bool> {
    warn_about_fd_limit(args.connections);
    let before = read_all(&args.pids)?;
    let own_before = own_rss_kib();
    for (pid, kib) in args.pids.iter().zip(&before) {
        println!("pid {pid}: VmRSS before {}", bytes(*kib as f64 * 1024.0));
    }

    let started = Instant::now();
    let (open, failures, exhausted) = open_all(&args).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "opened {} of {} connections (role {}) in {:.1} s = {:.0} conn/s",
        open.len(),
        args.connections,
        args.role.as_str(),
        elapsed,
        open.len() as f64 / elapsed.max(1e-9)
    );
    for (error, count) in failures.iter().take(5) {
        println!("  failed x{count}: {error}");
    }
    if exhausted {
        println!(
            "  out of file descriptors or local ports: run `ulimit -n 65536` in this shell and the server's \
             (each connection is one descriptor on each side)"
        );
    }

    if !args.pids.is_empty() && !open.is_empty() {
        let (after, settled) = wait_until_settled(&args.pids).await?;
        let growth: i64 = after
            .iter()
            .zip(&before)
            .map(|(a, b)| *a as i64 - *b as i64)
            .sum();
        for ((pid, kib), was) in args.pids.iter().zip(&after).zip(&before) {
            println!(
                "pid {pid}: VmRSS after {} (+{})",
                bytes(*kib as f64 * 1024.0),
                bytes((*kib as f64 - *was as f64) * 1024.0)
            );
        }
        let per_connection = growth as f64 * 1024.0 / open.len() as f64;
        println!(
            "server RSS growth {} for {} connections = {:.0} bytes ({}) per idle connection{}",
            bytes(growth as f64 * 1024.0),
            open.len(),
            per_connection,
            bytes(per_connection),
            if settled {
                ""
            } else {
                " (memory had not settled)"
            }
        );
    }
    if let (Some(own_before), Some(own_after)) = (own_before, own_rss_kib()) {
        println!(
            "bench process RSS growth {} ({:.0} bytes per connection)",
            bytes((own_after as f64 - own_before as f64) * 1024.0),
            (own_after as f64 - own_before as f64) * 1024.0 / open.len().max(1) as f64
        );
    }

    if !args.hold.is_zero() {
        println!("holding them for {:.1} s...", args.hold.as_secs_f64());
        sleep(args.hold).await;
    }
    let dropped = open.iter().filter(|o| o.reader.is_finished()).count();
    println!("connections closed by the server while idle: {dropped}");
    close_all(open).await;
    if !args.pids.is_empty() {
        sleep(Duration::from_secs(1)).await;
        let closed = read_all(&args.pids)?;
        for (pid, kib) in args.pids.iter().zip(&closed) {
            println!(
                "pid {pid}: VmRSS 1 s after closing {}",
                bytes(*kib as f64 * 1024.0)
            );
        }
    }
    Ok(failures.is_empty() && dropped == 0)
}

/// Opens every connection, `concurrency` at a time. Returns the open ones,
/// failures grouped by message, and whether any failure was descriptor or
/// port exhaustion.
async fn open_all(args: &IdleArgs) -> anyhow::Result<(Vec<Open>, BTreeMap<String, usize>, bool)> {
    let minter = TokenMinter::new(&args.jwt_secret);
    let run = std::process::id();
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for index in 0..args.connections {
        let user_id = format!("idle-{run}-{index}");
        let pools = if args.role == Role::Agent {
            vec![args.pool.clone()]
        } else {
            Vec::new()
        };
        let token = holding_token(&minter, user_id, args.role, pools)?;
        let endpoint = args.endpoints[index % args.endpoints.len()].clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let socket = client::connect(&endpoint, &token, CONNECT_TIMEOUT).await?;
            let reader = client::spawn_reader(socket.stream, socket.sink.clone(), 0, None);
            Ok::<_, client::ClientError>(Open {
                sink: socket.sink,
                reader,
            })
        });
    }
    let mut open = Vec::with_capacity(args.connections);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut exhausted = false;
    let step = (args.connections / 10).max(1000);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(connection)) => {
                open.push(connection);
                if open.len() % step == 0 {
                    eprintln!("  {} open", open.len());
                }
            }
            Ok(Err(error)) => {
                exhausted |= error.is_resource_exhaustion();
                *failures.entry(error.to_string()).or_default() += 1;
            }
            Err(error) => *failures.entry(format!("task failed: {error}")).or_default() += 1,
        }
    }
    Ok((open, failures, exhausted))
}

/// Samples every 500 ms until two samples in a row are within 1 % of each
/// other (or 20 s pass). Returns the last sample and whether it settled.
pub(crate) async fn wait_until_settled(pids: &[u32]) -> anyhow::Result<(Vec<u64>, bool)> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut previous = read_all(pids)?;
    loop {
        sleep(SAMPLE_EVERY).await;
        let current = read_all(pids)?;
        let (a, b) = (
            previous.iter().sum::<u64>() as f64,
            current.iter().sum::<u64>() as f64,
        );
        if (b - a).abs() <= SETTLED * a.max(1.0) {
            return Ok((current, true));
        }
        if Instant::now() >= deadline {
            return Ok((current, false));
        }
        previous = current;
    }
}

async fn close_all(open: Vec<Open>) {
    let started = Instant::now();
    let count = open.len();
    for connection in &open {
        client::close(&connection.sink).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for connection in open {
        // A reader still running at the deadline ends with the process.
        let _ = tokio::time::timeout_at(deadline, connection.reader).await;
    }
    println!(
        "closed {count} connections in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

pub(crate) fn read_all(pids: &[u32]) -> anyhow::Result<Vec<u64>> {
    pids.iter()
        .map(|pid| {
            rss_kib(&format!("/proc/{pid}/status"))
                .with_context(|| format!("reading the memory of pid {pid}"))
        })
        .collect()
}

fn own_rss_kib() -> Option<u64> {
    rss_kib("/proc/self/status").ok()
}

/// VmRSS in KiB from a `/proc/*/status` file.
pub(crate) fn rss_kib(path: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(path)?;
    parse_vm_rss(&status).context("no VmRSS line")
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Warns when this process's open-file limit is below what the run needs.
fn warn_about_fd_limit(connections: usize) {
    let Some(soft) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| parse_open_files_limit(&limits))
    else {
        return;
    };
    let needed = connections as u64 + 64;
    if soft < needed {
        eprintln!(
            "warning: the open-file limit is {soft} but {connections} connections need about {needed}; \
             run `ulimit -n 65536` first (the server needs it too)"
        );
    }
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// A token for a socket held open for a whole run: valid a day, so that
/// no socket sees it expire however long the run.
pub fn holding_token(
    minter: &TokenMinter,
    user_id: String,
    role: Role,
    pools: Vec<String>,
) -> anyhow::Result<String> {
    let identity = Identity {
        name: user_id.clone(),
        user_id,
        role,
        pools,
    };
    minter.mint(&identity, 24 * 3600).context("minting a token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tsupport-chat\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(rss_kib("/proc/self/status").unwrap() > 0);
    }

    #[test]
    fn reads_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(
            parse_open_files_limit(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(u64::MAX)
        );
        assert_eq!(parse_open_files_limit("nothing"), None);
    }
}
