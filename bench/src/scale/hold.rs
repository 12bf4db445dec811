//! `chat-bench hold`: one helper process's share of a scale run's idle
//! customer sockets. A process may hold only as many sockets as its
//! descriptor limit allows, so the scale run starts several of these and
//! talks to each over its standard streams: it prints a `ready` line once
//! its sockets are open, keeps them open (answering pings) until its
//! standard input ends, then prints how many the server closed meanwhile
//! and closes the rest. Anything else it has to say goes to stderr.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_shared::auth::TokenMinter;
use chat_shared::protocol::Role;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::client::{self, SharedSink};
use crate::idle::holding_token;
use crate::scale::args::HoldArgs;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The line that ends the opening: `ready OPENED FAILED MILLIS`.
pub const READY: &str = "ready";
/// One kind of failure while opening: `failure COUNT MESSAGE`.
pub const FAILURE: &str = "failure";
/// After standard input ended: `dropped COUNT`.
pub const DROPPED: &str = "dropped";

struct Open {
    sink: SharedSink,
    reader: JoinHandle<()>,
}

pub async fn run(args: HoldArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let (open, failures) = open_all(&args).await?;
    let failed: usize = failures.values().sum();
    for (error, count) in &failures {
        println!("{FAILURE} {count} {}", error.replace('\n', " "));
    }
    println!(
        "{READY} {} {failed} {}",
        open.len(),
        started.elapsed().as_millis()
    );

    // Held until the run is over: the end of standard input (also when the
    // scale run dies) is the signal.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 256];
    while stdin.read(&mut sink).await.context("reading stdin")? > 0 {}

    let dropped = open.iter().filter(|o| o.reader.is_finished()).count();
    println!("{DROPPED} {dropped}");
    for connection in &open {
        client::close(&connection.sink).await;
    }
    for connection in open {
        connection.reader.abort();
    }
    Ok(failed == 0 && dropped == 0)
}

/// Socket `index` (global over the run) goes to gateway `index % G` from
/// source `index % S`.
async fn open_all(args: &HoldArgs) -> anyhow::Result<(Vec<Open>, BTreeMap<String, usize>)> {
    let minter = TokenMinter::new(&args.jwt_secret);
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = JoinSet::new();
    for index in args.offset..args.offset + args.connections {
        let user_id = format!("scale-{}-c{index}", args.run);
        let token = holding_token(&minter, user_id, Role::Customer, Vec::new())?;
        let endpoint = args.endpoints[index % args.endpoints.len()].clone();
        let source = args.sources[index % args.sources.len()];
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let socket = client::connect_from(&endpoint, &token, CONNECT_TIMEOUT, source).await?;
            let reader = client::spawn_reader(socket.stream, socket.sink.clone(), 0, None);
            Ok::<_, client::ClientError>(Open {
                sink: socket.sink,
                reader,
            })
        });
    }
    let mut open = Vec::with_capacity(args.connections);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(connection)) => open.push(connection),
            Ok(Err(error)) => *failures.entry(error.to_string()).or_default() += 1,
            Err(error) => *failures.entry(format!("task failed: {error}")).or_default() += 1,
        }
    }
    Ok((open, failures))
}
