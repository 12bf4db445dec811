//! The scale run's side of its helper processes (`chat-bench hold`):
//! starting one per share of the customer sockets, with the same binary,
//! collecting each one's `ready` report, and ending them by closing their
//! standard input. One process per share keeps every process under its
//! descriptor limit, whatever the hard limit of the machine.

use std::process::Stdio;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::scale::args::ScaleArgs;
use crate::scale::hold::{DROPPED, FAILURE, READY};

const NICE: &str = "/usr/bin/nice";

pub struct Holder {
    pub pid: u32,
    pub share: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

/// What one helper reported once its sockets were open.
#[derive(Debug, Default)]
pub struct Opened {
    pub opened: usize,
    pub failed: usize,
    /// Its own time to open them, in seconds.
    pub seconds: f64,
    pub failures: Vec<String>,
}

/// Starts helpers for `customers` sockets numbered from `offset`,
/// `args.per_process` each.
pub fn spawn_all(
    args: &ScaleArgs,
    run: &str,
    offset: usize,
    customers: usize,
) -> anyhow::Result<Vec<Holder>> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let urls: Vec<String> = args.endpoints.iter().map(ToString::to_string).collect();
    let urls = urls.join(",");
    let mut holders = Vec::new();
    let mut start = 0;
    while start < customers {
        let share = args.per_process.min(customers - start);
        // The helpers only answer pings, which may wait; at a lower priority
        // they never take the CPU from the chat's paced sends on a small
        // machine. `nice` execs the program, so the process id stays its.
        let mut command = if std::path::Path::new(NICE).exists() {
            let mut command = Command::new(NICE);
            command.args(["-n", "10"]).arg(&exe);
            command
        } else {
            Command::new(&exe)
        };
        let mut child = command
            .arg("hold")
            .args(["--url", &urls])
            .args(["--connections", &share.to_string()])
            .args(["--offset", &(offset + start).to_string()])
            .args(["--sources", &args.sources.len().to_string()])
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--run", run])
            // The secret travels in the environment, not on a command line
            // anyone on the machine can read.
            .env("JWT_SECRET", &args.jwt_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a `chat-bench hold` process")?;
        let pid = child.id().context("a helper exited at once")?;
        let stdout = child.stdout.take().context("no helper stdout")?;
        holders.push(Holder {
            pid,
            share,
            stdin: child.stdin.take(),
            child,
            lines: BufReader::new(stdout).lines(),
        });
        start += share;
    }
    Ok(holders)
}

impl Holder {
    /// Waits for the helper's `ready` line.
    pub async fn ready(&mut self) -> anyhow::Result<Opened> {
        let mut opened = Opened::default();
        while let Some(line) = self.lines.next_line().await? {
            let mut words = line.splitn(4, ' ');
            match words.next() {
                Some(FAILURE) => opened
                    .failures
                    .push(line[FAILURE.len()..].trim().to_owned()),
                Some(READY) => {
                    let mut number = || words.next().and_then(|w| w.parse::<u64>().ok());
                    let (Some(ok), Some(failed), Some(millis)) = (number(), number(), number())
                    else {
                        bail!("helper {}: malformed line {line:?}", self.pid);
                    };
                    opened.opened = usize::try_from(ok)?;
                    opened.failed = usize::try_from(failed)?;
                    opened.seconds = millis as f64 / 1000.0;
                    return Ok(opened);
                }
                _ => eprintln!("helper {}: {line}", self.pid),
            }
        }
        let status = self.child.wait().await?;
        bail!("helper {} ended before it was ready ({status})", self.pid)
    }

    /// Ends the helper: it reports how many of its sockets the server
    /// closed while they were held, closes the rest and exits.
    pub async fn stop(mut self) -> anyhow::Result<usize> {
        drop(self.stdin.take());
        let mut dropped = None;
        while let Some(line) = self.lines.next_line().await? {
            if let Some(count) = line.strip_prefix(DROPPED) {
                dropped = count.trim().parse::<usize>().ok();
            }
        }
        self.child.wait().await?;
        dropped.with_context(|| format!("helper {} did not report its sockets", self.pid))
    }
}
