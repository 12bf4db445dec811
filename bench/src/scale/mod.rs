//! `chat-bench scale`: many authenticated idle sockets at once, with pool
//! broadcasts and a live chat running through them. Owns the run's order:
//! the agents (on a thread of their own, see [`side`]), then the customers
//! (in helper processes, see
//! [`holders`]), then the chat's pairs; the gateways' memory per
//! connection once it settles; then, all sockets still open, the
//! broadcasts ([`broadcast`]) and the chat ([`crate::load`]) side by side,
//! with every watched process's CPU over that time ([`procs`]); last, one
//! summary. The pieces that exist for other modes (the chat, the memory
//! readings) are reused, so a scale run judges them as those modes do.

mod agents;
pub mod args;
mod broadcast;
pub mod hold;
mod holders;
mod procs;
mod side;

use std::time::Duration;

use tokio::time::Instant;

use crate::idle::{read_all, wait_until_settled};
use crate::load::{self, Fleet, FleetPlan, StepPlan};
use crate::report::{self, bytes, ms, percentiles, LoadPlan, Percentiles};
use args::ScaleArgs;
use broadcast::BroadcastTotals;
use procs::Watched;

/// Time between planning the live phase and its first scheduled event.
const START_DELAY: Duration = Duration::from_millis(250);
const CHAT_SETUP_CONCURRENCY: usize = 50;

pub async fn run(args: ScaleArgs) -> anyhow::Result<bool> {
    let run = load::run_id();
    let customers = args.connections - args.agents;
    println!(
        "== scale: {} idle sockets ({} customers in {} helper process(es) of up to {}, {} agents of pool {}) \
         over {} gateway(s) from {} source addresses ({} to {}), {} opened at once per process",
        args.connections,
        customers,
        customers.div_ceil(args.per_process),
        args.per_process,
        args.agents,
        args.pool,
        args.endpoints.len(),
        args.sources.len(),
        args.sources[0],
        args.sources[args.sources.len() - 1],
        args.concurrency
    );
    let rss_before = read_all(&args.gateway_pids)?;

    let started = Instant::now();
    let mut side = side::start(args.clone(), run.clone(), customers)?;
    let (agent_count, agent_failures) = side.opened().await?;
    let agent_seconds = started.elapsed().as_secs_f64();
    eprintln!("{agent_count} agents open in {agent_seconds:.1} s");

    let customers_started = Instant::now();
    let mut holders = holders::spawn_all(&args, &run, 0, customers)?;
    let mut opened = 0;
    let mut failed = 0;
    let mut failures = Vec::new();
    for holder in &mut holders {
        let report = holder.ready().await?;
        eprintln!(
            "helper {}: {} of {} open in {:.1} s",
            holder.pid, report.opened, holder.share, report.seconds
        );
        opened += report.opened;
        failed += report.failed;
        failures.extend(report.failures);
    }
    let customer_seconds = customers_started.elapsed().as_secs_f64();
    let open_seconds = started.elapsed().as_secs_f64();
    let open_total = opened + agent_count;

    let chat_pool = format!("{}-chat", args.pool);
    let mut fleet = Fleet::set_up(&FleetPlan {
        endpoints: &args.endpoints,
        jwt_secret: &args.jwt_secret,
        pool: &chat_pool,
        pairs: args.chat_pairs,
        concurrency: CHAT_SETUP_CONCURRENCY,
        lifetime: args.warmup + args.duration + args.grace + Duration::from_secs(600),
    })
    .await?;
    let on_gateways = open_total + 2 * args.chat_pairs;
    let (rss_after, settled) = if args.gateway_pids.is_empty() {
        (Vec::new(), true)
    } else {
        wait_until_settled(&args.gateway_pids).await?
    };

    let mut kinds = vec![
        ("gateway".to_owned(), args.gateway_pids.clone()),
        (
            "chat-bench hold".to_owned(),
            holders.iter().map(|h| h.pid).collect(),
        ),
        ("chat-bench".to_owned(), vec![std::process::id()]),
    ];
    kinds.extend(args.procs.iter().cloned());
    let watched = Watched { kinds };
    let cpu_before = watched.cpu();
    let step = StepPlan {
        index: 0,
        rate: args.chat_rate,
        warmup: args.warmup,
        duration: args.duration,
        grace: args.grace,
        size: 0,
    };
    let broadcast_start = Instant::now() + START_DELAY + args.warmup;
    let broadcast_count = side::broadcast_count(&args);
    eprintln!(
        "live: {} broadcasts at {}/s to {} agents, chat of {} pairs at {} msg/s",
        broadcast_count, args.broadcast_rate, agent_count, args.chat_pairs, args.chat_rate
    );
    side.go(broadcast_start);
    let chat = fleet.run_step(&step).await;
    let broadcasts = side.finish().await;
    let cpu_after = watched.cpu();
    let rss_live = read_all(&args.gateway_pids).unwrap_or_default();

    let mut dropped = 0;
    for holder in holders {
        dropped += holder.stop().await?;
    }
    fleet.close().await;
    let mut chat = chat?;
    let broadcasts = broadcasts?;

    let chat_passed = report::print_load(
        &LoadPlan {
            pairs: args.chat_pairs,
            gateways: args.endpoints.len(),
            rate: args.chat_rate,
            duration: args.duration,
            warmup: args.warmup,
        },
        &mut chat,
    );
    let chat_summary = report::Summary::of(&mut chat);

    println!();
    println!("== scale summary");
    println!(
        "connect    {open_total} of {} idle sockets in {open_seconds:.1} s = {:.0} conn/s \
         (agents {} in {agent_seconds:.1} s, customers {opened} in {customer_seconds:.1} s = {:.0} conn/s); failed {}",
        args.connections,
        open_total as f64 / open_seconds.max(1e-9),
        agent_count,
        opened as f64 / customer_seconds.max(1e-9),
        failed + agent_failures.len()
    );
    for failure in failures.iter().chain(&agent_failures).take(5) {
        println!("  failed: {failure}");
    }
    if !args.gateway_pids.is_empty() {
        let growth: i64 = rss_after
            .iter()
            .zip(&rss_before)
            .map(|(a, b)| *a as i64 - *b as i64)
            .sum();
        let total: u64 = rss_after.iter().sum();
        println!(
            "memory     gateways' RSS {} -> {} (+{}) for {on_gateways} sockets = {:.0} bytes ({}) per connection{}; \
             after the live phase {}",
            bytes(rss_before.iter().sum::<u64>() as f64 * 1024.0),
            bytes(total as f64 * 1024.0),
            bytes(growth as f64 * 1024.0),
            growth as f64 * 1024.0 / on_gateways as f64,
            bytes(growth as f64 * 1024.0 / on_gateways as f64),
            if settled { "" } else { " (had not settled)" },
            bytes(rss_live.iter().sum::<u64>() as f64 * 1024.0)
        );
    }
    print_broadcasts(&broadcasts, agent_count);
    println!(
        "chat       {} pairs at {} msg/s: delivery (from due) p50 {} ms p99 {} ms, send lag p99 {} ms",
        args.chat_pairs,
        args.chat_rate,
        p(chat_summary.delivery, |p| p.p50),
        p(chat_summary.delivery, |p| p.p99),
        p(chat_summary.lag, |p| p.p99)
    );
    println!(
        "idle sockets closed by a server during the run: {dropped} customers, {} agents",
        broadcasts.closed.len()
    );
    println!();
    println!("during the live phase:");
    watched.print(&cpu_before, &cpu_after);

    let mut problems = Vec::new();
    if failed + agent_failures.len() > 0 {
        problems.push(format!(
            "{} sockets failed to open",
            failed + agent_failures.len()
        ));
    }
    if dropped + broadcasts.closed.len() > 0 {
        problems.push(format!(
            "{} idle sockets closed",
            dropped + broadcasts.closed.len()
        ));
    }
    if broadcasts.missing > 0 || broadcasts.duplicated > 0 {
        problems.push(format!(
            "broadcast receipts missing {}, duplicated {}",
            broadcasts.missing, broadcasts.duplicated
        ));
    }
    if !broadcasts.failed.is_empty() {
        problems.push("session creations failed".to_owned());
    }
    if !chat_passed {
        problems.push("the chat failed".to_owned());
    }
    if problems.is_empty() {
        println!("result: PASS");
    } else {
        println!("result: FAIL ({})", problems.join("; "));
    }
    Ok(problems.is_empty())
}

fn print_broadcasts(totals: &BroadcastTotals, agents: usize) {
    let mut receipts = totals.receipt_us.clone();
    let mut last = totals.last_us.clone();
    let mut lag = totals.lag_us.clone();
    let mut stats = totals.stats_us.clone();
    let mut stats_last = totals.stats_last_us.clone();
    let (receipts, last, lag) = (
        percentiles(&mut receipts),
        percentiles(&mut last),
        percentiles(&mut lag),
    );
    println!(
        "broadcast  {} new-pending-session to {agents} agents: each agent p50 {} ms p99 {} ms max {} ms ({} receipts); \
         the last agent p50 {} ms p99 {} ms max {} ms; incomplete {}, missing {}, duplicated {}",
        totals.sent,
        p(receipts, |p| p.p50),
        p(receipts, |p| p.p99),
        p(receipts, |p| p.max),
        receipts.map_or(0, |p| p.count),
        p(last, |p| p.p50),
        p(last, |p| p.p99),
        p(last, |p| p.max),
        totals.incomplete,
        totals.missing,
        totals.duplicated
    );
    println!(
        "           (from each session's due time; the generator's lag in creating them p50 {} ms p99 {} ms max {} ms)",
        p(lag, |p| p.p50),
        p(lag, |p| p.p99),
        p(lag, |p| p.max)
    );
    for (error, count) in &totals.failed {
        println!("  creation failed x{count}: {error}");
    }
    let (stats, stats_last) = (percentiles(&mut stats), percentiles(&mut stats_last));
    println!(
        "stats      {} stats-update pushes: each agent p50 {} ms p99 {} ms ({} receipts); the last agent p50 {} ms p99 {} ms max {} ms \
         ({} pushes reached every agent; from updatedAt, whole milliseconds)",
        totals.stats_pushes,
        p(stats, |p| p.p50),
        p(stats, |p| p.p99),
        stats.map_or(0, |p| p.count),
        p(stats_last, |p| p.p50),
        p(stats_last, |p| p.p99),
        p(stats_last, |p| p.max),
        totals.stats_last_us.len()
    );
    if totals.unparsable > 0 {
        println!("  unparsable broadcast frames: {}", totals.unparsable);
    }
}

fn p(percentiles: Option<Percentiles>, pick: impl Fn(&Percentiles) -> u32) -> String {
    percentiles.map_or_else(|| "-".to_owned(), |p| ms(pick(&p)))
}
