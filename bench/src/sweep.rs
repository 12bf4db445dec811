//! The sweep: one set of pairs, then load steps at rising rates until one
//! fails, to find the highest rate the server sustains with open-loop
//! delivery p99 under 100 ms and nothing lost. Each step is judged by the
//! same verdict as `load` plus that latency bar; the sweep stops at the
//! first failure because every higher rate would only fail worse, and it
//! tells a step the bench itself could not offer (send lag) apart from one
//! the server could not keep up with.

use std::time::Duration;

use tokio::time::sleep;

use crate::args::SweepArgs;
use crate::load::{Fleet, FleetPlan, StepPlan};
use crate::report::{self, ms, Limits, LoadTotals, Percentiles, Summary, LAG_P99_LIMIT};

/// The latency bar of a passing step: open-loop delivery p99 below this.
pub const DELIVERY_P99_LIMIT: Duration = Duration::from_millis(100);

const LIMITS: Limits = Limits {
    lag_p99: LAG_P99_LIMIT,
    delivery_p99: Some(DELIVERY_P99_LIMIT),
};

/// One step's line of the table.
#[derive(Debug, Clone)]
struct StepRow {
    offered: f64,
    /// Measured messages written per second of the window.
    sent_rate: f64,
    /// Agent deliveries per second of the window.
    delivered_rate: f64,
    ack: Option<Percentiles>,
    delivery: Option<Percentiles>,
    delivery_written: Option<Percentiles>,
    lag: Option<Percentiles>,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    /// Why it failed; empty when it passed.
    reasons: Vec<String>,
}

impl StepRow {
    fn new(offered: f64, window: Duration, totals: &mut LoadTotals) -> Self {
        let summary = Summary::of(totals);
        let reasons = report::verdict(totals, &summary, &LIMITS);
        let window = window.as_secs_f64().max(1e-9);
        StepRow {
            offered,
            sent_rate: totals.sent_measured as f64 / window,
            delivered_rate: totals.delivered_in_window as f64 / window,
            ack: summary.ack,
            delivery: summary.delivery,
            delivery_written: summary.delivery_written,
            lag: summary.lag,
            lost: totals.lost,
            duplicated: totals.duplicated,
            out_of_order: totals.out_of_order,
            reasons,
        }
    }

    fn passed(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The bench fell behind its own schedule: the rate was never offered,
    /// so the step says nothing about the server.
    fn bench_limited(&self) -> bool {
        self.lag
            .is_some_and(|lag| u128::from(lag.p99) > LAG_P99_LIMIT.as_micros())
    }
}

/// What the steps add up to.
#[derive(Debug, PartialEq)]
enum Finding {
    /// Every step passed: the limit lies above the last rate.
    AllPassed {
        highest: f64,
    },
    /// The highest rate passed before the first failing step, if any did.
    Failed {
        highest: Option<f64>,
        failed_at: f64,
        bench_limited: bool,
    },
    NoSteps,
}

fn finding(rows: &[StepRow]) -> Finding {
    let highest = rows
        .iter()
        .take_while(|row| row.passed())
        .last()
        .map(|row| row.offered);
    match rows.iter().find(|row| !row.passed()) {
        Some(failed) => Finding::Failed {
            highest,
            failed_at: failed.offered,
            bench_limited: failed.bench_limited(),
        },
        None => highest.map_or(Finding::NoSteps, |highest| Finding::AllPassed { highest }),
    }
}

pub async fn run(args: SweepArgs) -> anyhow::Result<bool> {
    let steps = u32::try_from(args.rates.count()).unwrap_or(u32::MAX);
    let per_step =
        args.warmup + args.step_duration + args.grace + args.settle + Duration::from_secs(1);
    let plan = FleetPlan {
        endpoints: &args.endpoints,
        jwt_secret: &args.jwt_secret,
        pool: &args.pool,
        pairs: args.sessions,
        concurrency: args.concurrency,
        lifetime: per_step.saturating_mul(steps),
    };
    let mut fleet = Fleet::set_up(&plan).await?;
    let mut rows: Vec<StepRow> = Vec::new();
    let mut result = Ok(());
    let mut index = 0;
    while let Some(rate) = args.rates.get(index) {
        if index > 0 {
            sleep(args.settle).await;
        }
        eprintln!();
        eprintln!("== step {}: {rate:.0} msg/s", index + 1);
        let step = StepPlan {
            index,
            rate,
            warmup: args.warmup,
            duration: args.step_duration,
            grace: args.grace,
            size: args.size,
        };
        let mut totals = match fleet.run_step(&step).await {
            Ok(totals) => totals,
            Err(error) => {
                result = Err(error);
                break;
            }
        };
        let row = StepRow::new(rate, args.step_duration, &mut totals);
        print_header();
        print_row(&row);
        let passed = row.passed();
        rows.push(row);
        if !passed {
            break;
        }
        index += 1;
    }
    fleet.close().await;
    result?;
    Ok(print_sweep(&args, &rows))
}

fn print_header() {
    println!(
        "{:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>5} {:>5} {:>5}  result",
        "offered",
        "sent/s",
        "deliv/s",
        "ack p50",
        "ack p99",
        "dlv p50",
        "dlv p99",
        "dlv p99w",
        "lag p99",
        "lost",
        "dup",
        "ooo"
    );
}

fn print_row(row: &StepRow) {
    let p50 = |p: Option<Percentiles>| p.map_or_else(|| "-".to_owned(), |p| ms(p.p50));
    let p99 = |p: Option<Percentiles>| p.map_or_else(|| "-".to_owned(), |p| ms(p.p99));
    println!(
        "{:>9.0} {:>9.1} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>5} {:>5} {:>5}  {}",
        row.offered,
        row.sent_rate,
        row.delivered_rate,
        p50(row.ack),
        p99(row.ack),
        p50(row.delivery),
        p99(row.delivery),
        p99(row.delivery_written),
        p99(row.lag),
        row.lost,
        row.duplicated,
        row.out_of_order,
        if row.passed() { "PASS" } else { "FAIL" }
    );
}

/// Prints the whole table and what it found; true when a step passed.
fn print_sweep(args: &SweepArgs, rows: &[StepRow]) -> bool {
    println!();
    println!(
        "== sweep: {} sessions over {} gateway(s), {:.1} s measured per step (after {:.1} s warm-up)",
        args.sessions,
        args.endpoints.len(),
        args.step_duration.as_secs_f64(),
        args.warmup.as_secs_f64()
    );
    print_header();
    for row in rows {
        print_row(row);
    }
    println!("(ms; ack and dlv (delivery to the agent) from each message's due time, open loop;");
    println!(" dlv p99w from its actual write; lag: written minus due. A step passes with dlv p99");
    println!(
        " < {} ms, lag p99 <= {} ms and every message acked and delivered once, in order)",
        DELIVERY_P99_LIMIT.as_millis(),
        LAG_P99_LIMIT.as_millis()
    );
    for row in rows.iter().filter(|row| !row.passed()) {
        println!(
            "step at {:.0} msg/s failed: {}",
            row.offered,
            row.reasons.join("; ")
        );
    }
    match finding(rows) {
        Finding::AllPassed { highest } => {
            println!(
                "highest passing rate: {highest:.0} msg/s (every step passed; the limit is higher)"
            );
            true
        }
        Finding::Failed {
            highest,
            failed_at,
            bench_limited,
        } => {
            match highest {
                Some(highest) => println!("highest passing rate: {highest:.0} msg/s"),
                None => println!(
                    "highest passing rate: none (the first step, {failed_at:.0} msg/s, failed)"
                ),
            }
            if bench_limited {
                println!(
                    "(the bench could not keep its schedule at {failed_at:.0} msg/s: that limit is the bench's on this machine, not the server's)"
                );
            }
            highest.is_some()
        }
        Finding::NoSteps => {
            println!("highest passing rate: none (no step ran)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(offered: f64, lag_p99_us: u32, delivery_p99_us: u32, lost: u64) -> StepRow {
        let mut totals = LoadTotals {
            sent_total: 100,
            sent_measured: 100,
            acked_ok: 100,
            delivered_in_window: 100,
            lost,
            lag_us: vec![lag_p99_us; 100],
            delivery_us: vec![delivery_p99_us; 100],
            ..Default::default()
        };
        StepRow::new(offered, Duration::from_secs(10), &mut totals)
    }

    #[test]
    fn a_row_passes_on_every_bar() {
        let good = row(1000.0, 500, 20_000, 0);
        assert!(good.passed(), "{:?}", good.reasons);
        assert!((good.sent_rate - 10.0).abs() < 1e-9);
        assert!(!row(1000.0, 500, 100_000, 0).passed());
        assert!(!row(1000.0, 500, 20_000, 1).passed());
        let lagging = row(1000.0, 12_000, 20_000, 0);
        assert!(!lagging.passed() && lagging.bench_limited());
        assert!(!row(1000.0, 500, 100_000, 0).bench_limited());
    }

    #[test]
    fn the_finding_is_the_last_pass_before_the_first_failure() {
        let rows = [
            row(1000.0, 500, 5_000, 0),
            row(2000.0, 500, 40_000, 0),
            row(3000.0, 500, 150_000, 0),
        ];
        assert_eq!(
            finding(&rows),
            Finding::Failed {
                highest: Some(2000.0),
                failed_at: 3000.0,
                bench_limited: false
            }
        );
        // A later pass (a confirming step) does not lift the finding.
        let rows = [
            row(1000.0, 500, 5_000, 0),
            row(2000.0, 500, 5_000, 3),
            row(3000.0, 500, 5_000, 0),
        ];
        assert_eq!(
            finding(&rows),
            Finding::Failed {
                highest: Some(1000.0),
                failed_at: 2000.0,
                bench_limited: false
            }
        );
        let rows = [row(1000.0, 15_000, 5_000, 0)];
        assert_eq!(
            finding(&rows),
            Finding::Failed {
                highest: None,
                failed_at: 1000.0,
                bench_limited: true
            }
        );
        let rows = [row(1000.0, 500, 5_000, 0), row(2000.0, 500, 5_000, 0)];
        assert_eq!(finding(&rows), Finding::AllPassed { highest: 2000.0 });
        assert_eq!(finding(&[]), Finding::NoSteps);
    }
}
