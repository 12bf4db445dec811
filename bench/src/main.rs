//! `chat-bench`: the support chat's load generator and idle-connection
//! memory probe. It speaks the public protocol only (Socket.IO over
//! WebSocket on `/chat`, REST under `/api/chat`) and mints its own HS256
//! tokens with the server's secret.
//!
//! ```text
//! chat-bench load --url http://127.0.0.1:3001[,http://127.0.0.1:3002] --jwt-secret S \
//!     [--pairs 100] [--rate 1000] [--duration 20] [--warmup 3] [--grace 5] [--pool bench]
//! chat-bench sweep --url http://127.0.0.1:3001[,…] --jwt-secret S \
//!     [--sessions 200] [--from 1000] [--step 1000] [--to R | --rates R1,R2,…] [--step-seconds 15]
//! chat-bench idle --url http://127.0.0.1:3001 --jwt-secret S --connections 10000 --pid PID \
//!     [--role customer] [--concurrency 200] [--hold 5]
//! chat-bench hostile --url http://127.0.0.1:3001 --jwt-secret S --pid PID \
//!     [--phase 5] [--crowd 50] [--joins 20] [--sessions 4] [--messages 200]
//! chat-bench assign --url http://127.0.0.1:3001[,…] --jwt-secret S \
//!     [--agents 100] [--sessions 1000] [--rate 100] [--capacity 10] [--procs 'KIND=PID,…']
//! chat-bench scale --url http://127.0.0.1:3001[,…] --jwt-secret S --pid PID[,…] \
//!     [--connections 100000] [--agents 1000] [--per-process 15000] [--sources 8]
//! chat-bench --help
//! ```
//!
//! `load` sets up customer/agent pairs (a customer and its agent on
//! different gateways when several URLs are given), sends at a fixed
//! aggregate rate on an open-loop schedule, and reports ack and delivery
//! latency percentiles from each message's due time (and from its actual
//! write), the bench's own send lag, achieved rates, and lost, duplicated
//! or out-of-order messages; it exits with status 1 when any message went
//! wrong or the bench fell behind its schedule. `sweep` runs such steps at
//! rising rates on one set of pairs and reports the highest rate whose
//! open-loop delivery p99 stays under 100 ms with nothing lost. The server
//! must run with `RATE_LIMIT_PER_SEC=0`. `idle` opens many authenticated
//! sockets and reports the servers' memory growth per connection (VmRSS of
//! `--pid`). `scripts/bench-standalone.sh` runs `idle` and `load` (or, with
//! `SWEEP=1`, `sweep`) against a fresh standalone server. `hostile` floods one socket per event kind and opens sockets
//! that never read, and reports what that costs a control chat and the
//! server's memory (`scripts/bench-hostile.sh`). `scale` holds many idle sockets
//! over several gateways and helper processes (`hold`) while pool
//! broadcasts and a chat run through them (`scripts/bench-scale.sh`). `assign`
//! opens a burst of sessions in an automatic pool on an open-loop schedule
//! and reports how long each took to reach an agent, and how the load
//! spread (`scripts/bench-assign.sh`). Exit status 2 means bad arguments or a setup failure.
#![forbid(unsafe_code)]

mod args;
mod assign;
mod client;
mod control;
mod hostile;
mod idle;
mod load;
mod pacer;
mod report;
mod rest;
mod scale;
mod schedule;
mod sweep;

use std::future::Future;
use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv, std::env::var("JWT_SECRET").ok()) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("chat-bench: {error}");
            eprintln!("run `chat-bench --help` for usage");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", args::HELP);
            ExitCode::SUCCESS
        }
        Command::Load(load) => run(load::run(load)),
        Command::Sweep(sweep) => run(sweep::run(sweep)),
        Command::Idle(idle) => run(idle::run(idle)),
        Command::Hostile(hostile) => run(hostile::run(hostile)),
        Command::Assign(assign) => run(assign::run(assign)),
        Command::Scale(scale) => run(scale::run(scale)),
        Command::Hold(hold) => run(scale::hold::run(hold)),
    }
}

/// Runs one mode: status 0 when it passed, 1 when it ran but found
/// problems, 2 when it could not run. One thread does all the work: the
/// load generator shares the machine with what it measures, and threads
/// handing frames to each other would cost it more than it saves.
fn run(mode: impl Future<Output = anyhow::Result<bool>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("chat-bench: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(mode) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("chat-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}
