//! Counting and printing: latency samples kept as microseconds in a
//! `Vec<u32>` and sorted once at the end (exact percentiles; a few million
//! samples sort in well under a second), the load run's counters merged
//! over all pairs, the pass/fail verdict of a load step (shared by `load`
//! and every step of `sweep`, so both judge alike), and the printed report.

use std::collections::BTreeMap;
use std::time::Duration;

/// Exact percentiles of one set of samples, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub p999: u32,
    pub max: u32,
}

/// Sorts `samples` and reads the percentiles (nearest rank); None when empty.
pub fn percentiles(samples: &mut [u32]) -> Option<Percentiles> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank = |q: f64| {
        let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        samples[index]
    };
    Some(Percentiles {
        count: n,
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        p999: rank(0.999),
        max: samples[n - 1],
    })
}

/// A duration as whole microseconds, saturating (an hour is far beyond
/// anything measured here).
pub fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// Everything a load run counts; each pair fills one and they are merged.
#[derive(Debug, Default)]
pub struct LoadTotals {
    /// Due → ack ok:true (open loop), measured messages only.
    pub ack_us: Vec<u32>,
    /// Written → ack ok:true, the same messages.
    pub ack_written_us: Vec<u32>,
    /// Due → the agent's `new-message` (open loop), measured messages only.
    pub delivery_us: Vec<u32>,
    /// Written → the agent's `new-message`, the same messages.
    pub delivery_written_us: Vec<u32>,
    /// Due → the sender's own `new-message` echo, measured messages only.
    pub echo_us: Vec<u32>,
    /// How late the bench wrote each measured message against its schedule.
    pub lag_us: Vec<u32>,
    /// Scheduled but never written (a sender that stopped early).
    pub unsent: u64,
    pub sent_total: u64,
    /// Sent after the warm-up (the rate's numerator).
    pub sent_measured: u64,
    pub acked_ok: u64,
    /// ok:false acks by error code.
    pub failed: BTreeMap<String, u64>,
    /// Sent but never answered by the end.
    pub unanswered: u64,
    /// Acked ok but never delivered to the agent.
    pub lost: u64,
    /// Acked ok but never echoed to the sender's own socket.
    pub missing_echo: u64,
    /// A seq delivered twice to one socket.
    pub duplicated: u64,
    /// A seq not above the socket's previous one.
    pub out_of_order: u64,
    /// Agent deliveries of this run's messages, all of them.
    pub delivered_total: u64,
    /// Agent deliveries received during the measured window.
    pub delivered_in_window: u64,
    /// `new-message` events that are not this run's (another session or
    /// client id).
    pub foreign: u64,
    pub unparsable: u64,
    /// Sockets that closed before the end, with why.
    pub disconnects: Vec<String>,
}

impl LoadTotals {
    pub fn merge(&mut self, other: LoadTotals) {
        self.ack_us.extend(other.ack_us);
        self.ack_written_us.extend(other.ack_written_us);
        self.delivery_us.extend(other.delivery_us);
        self.delivery_written_us.extend(other.delivery_written_us);
        self.echo_us.extend(other.echo_us);
        self.lag_us.extend(other.lag_us);
        self.unsent += other.unsent;
        self.sent_total += other.sent_total;
        self.sent_measured += other.sent_measured;
        self.acked_ok += other.acked_ok;
        for (code, count) in other.failed {
            *self.failed.entry(code).or_default() += count;
        }
        self.unanswered += other.unanswered;
        self.lost += other.lost;
        self.missing_echo += other.missing_echo;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.delivered_total += other.delivered_total;
        self.delivered_in_window += other.delivered_in_window;
        self.foreign += other.foreign;
        self.unparsable += other.unparsable;
        self.disconnects.extend(other.disconnects);
    }

    pub fn failed_acks(&self) -> u64 {
        self.failed.values().sum()
    }

    /// What went wrong with the messages themselves: anything lost,
    /// repeated, reordered, refused or never written.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let counts = [
            ("lost", self.lost),
            ("missing echo", self.missing_echo),
            ("duplicated", self.duplicated),
            ("out of order", self.out_of_order),
            ("unanswered", self.unanswered),
            ("failed acks", self.failed_acks()),
            ("scheduled but never written", self.unsent),
        ];
        for (what, count) in counts {
            if count > 0 {
                problems.push(format!("{what} {count}"));
            }
        }
        if !self.disconnects.is_empty() {
            problems.push(format!("sockets closed early {}", self.disconnects.len()));
        }
        if self.sent_total == 0 {
            problems.push("nothing sent".to_owned());
        }
        problems
    }
}

/// The percentiles of one step, each set sorted once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub ack: Option<Percentiles>,
    pub ack_written: Option<Percentiles>,
    pub delivery: Option<Percentiles>,
    pub delivery_written: Option<Percentiles>,
    pub echo: Option<Percentiles>,
    pub lag: Option<Percentiles>,
}

impl Summary {
    pub fn of(totals: &mut LoadTotals) -> Self {
        Summary {
            ack: percentiles(&mut totals.ack_us),
            ack_written: percentiles(&mut totals.ack_written_us),
            delivery: percentiles(&mut totals.delivery_us),
            delivery_written: percentiles(&mut totals.delivery_written_us),
            echo: percentiles(&mut totals.echo_us),
            lag: percentiles(&mut totals.lag_us),
        }
    }
}

/// The send lag p99 above which a step is void: the bench did not offer
/// the rate it was asked for, so its figures say nothing about that rate.
pub const LAG_P99_LIMIT: Duration = Duration::from_millis(10);

/// The bars one step must clear besides correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub lag_p99: Duration,
    /// Open-loop delivery p99 must stay below this (the sweep's bar);
    /// None for a plain load run, which reports latency without judging it.
    pub delivery_p99: Option<Duration>,
}

impl Limits {
    pub const LOAD: Limits = Limits {
        lag_p99: LAG_P99_LIMIT,
        delivery_p99: None,
    };
}

/// Why a step failed; empty when it passed.
pub fn verdict(totals: &LoadTotals, summary: &Summary, limits: &Limits) -> Vec<String> {
    let mut reasons = totals.problems();
    if let Some(lag) = summary.lag {
        if u128::from(lag.p99) > limits.lag_p99.as_micros() {
            reasons.push(format!(
                "send lag p99 {} ms > {} ms: the bench fell behind its schedule",
                ms(lag.p99),
                limits.lag_p99.as_millis()
            ));
        }
    }
    if let Some(bar) = limits.delivery_p99 {
        match summary.delivery {
            Some(delivery) if u128::from(delivery.p99) >= bar.as_micros() => {
                reasons.push(format!(
                    "delivery p99 {} ms >= {} ms",
                    ms(delivery.p99),
                    bar.as_millis()
                ));
            }
            Some(_) => {}
            None => reasons.push("no delivery measured".to_owned()),
        }
    }
    reasons
}

/// What the load run was asked to do, for the report's heading.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub pairs: usize,
    pub gateways: usize,
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
}

/// Prints the load report to stdout; returns whether the run passed.
pub fn print_load(plan: &LoadPlan, totals: &mut LoadTotals) -> bool {
    let window = plan.duration.as_secs_f64().max(1e-9);
    let summary = Summary::of(totals);
    println!();
    println!(
        "== load: {} pairs over {} gateway(s), target {:.0} msg/s for {:.1} s (after {:.1} s warm-up)",
        plan.pairs,
        plan.gateways,
        plan.rate,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64()
    );
    println!(
        "sent       {:>9} total, {:>9} measured = {:>9.1} msg/s",
        totals.sent_total,
        totals.sent_measured,
        totals.sent_measured as f64 / window
    );
    println!(
        "delivered  {:>9} total, {:>9} in window = {:>9.1} msg/s (to agents)",
        totals.delivered_total,
        totals.delivered_in_window,
        totals.delivered_in_window as f64 / window
    );
    println!("acked ok   {:>9}", totals.acked_ok);
    println!();
    println!(
        "latency (ms)       {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "samples", "p50", "p90", "p99", "p99.9", "max"
    );
    print_row("ack", summary.ack);
    print_row("delivery", summary.delivery);
    print_row("echo", summary.echo);
    print_row("ack (written)", summary.ack_written);
    print_row("delivery (written)", summary.delivery_written);
    print_row("send lag", summary.lag);
    println!("(ack, delivery, echo: from when each message was due by the schedule (open");
    println!(" loop); (written): from when the bench actually wrote it; delivery: to the");
    println!(" agent; echo: back to the sender's socket; send lag: written minus due)");
    println!();
    println!(
        "correctness: lost {}, missing echo {}, duplicated {}, out-of-order {}, unanswered {}, failed acks {}, never written {}",
        totals.lost,
        totals.missing_echo,
        totals.duplicated,
        totals.out_of_order,
        totals.unanswered,
        totals.failed_acks(),
        totals.unsent
    );
    for (code, count) in &totals.failed {
        println!("  failed ack {code}: {count}");
    }
    if totals.failed.contains_key("rate_limited") {
        println!("  (rate_limited: start the server with RATE_LIMIT_PER_SEC=0)");
    }
    if totals.foreign > 0 || totals.unparsable > 0 {
        println!(
            "  foreign new-message events {}, unparsable frames {}",
            totals.foreign, totals.unparsable
        );
    }
    if !totals.disconnects.is_empty() {
        println!("  sockets closed early: {}", totals.disconnects.len());
        for reason in totals.disconnects.iter().take(5) {
            println!("    {reason}");
        }
    }
    let reasons = verdict(totals, &summary, &Limits::LOAD);
    if reasons.is_empty() {
        println!("result: PASS");
    } else {
        println!("result: FAIL ({})", reasons.join("; "));
    }
    reasons.is_empty()
}

fn print_row(label: &str, percentiles: Option<Percentiles>) {
    match percentiles {
        Some(p) => println!(
            "{label:<18} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.count,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.max)
        ),
        None => println!("{label:<18} {:>9}", 0),
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: u32) -> String {
    format!("{:.2}", f64::from(us) / 1000.0)
}

/// Bytes in a human unit.
pub fn bytes(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / (1024.0 * 1024.0))
    } else if magnitude >= 1024.0 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u32> = (1..=1000).rev().collect();
        let p = percentiles(&mut samples).unwrap();
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.p999, p.max),
            (1000, 500, 900, 990, 999, 1000)
        );
        let mut one = vec![7];
        let p = percentiles(&mut one).unwrap();
        assert_eq!((p.p50, p.p999, p.max), (7, 7, 7));
        assert!(percentiles(&mut []).is_none());
    }

    #[test]
    fn merge_adds_up_and_judges() {
        let mut total = LoadTotals::default();
        let mut a = LoadTotals {
            sent_total: 3,
            acked_ok: 3,
            ack_us: vec![1, 2],
            ..Default::default()
        };
        a.failed.insert("conflict".into(), 1);
        total.merge(a);
        total.merge(LoadTotals {
            sent_total: 2,
            lost: 1,
            ..Default::default()
        });
        assert_eq!(total.sent_total, 5);
        assert_eq!(total.failed_acks(), 1);
        assert_eq!(total.ack_us.len(), 2);
        assert_eq!(total.problems(), vec!["lost 1", "failed acks 1"]);
        let clean = LoadTotals {
            sent_total: 1,
            acked_ok: 1,
            ..Default::default()
        };
        assert!(clean.problems().is_empty());
        assert_eq!(LoadTotals::default().problems(), vec!["nothing sent"]);
    }

    fn step(lag_p99_us: u32, delivery_p99_us: u32) -> (LoadTotals, Summary) {
        let mut totals = LoadTotals {
            sent_total: 100,
            sent_measured: 100,
            acked_ok: 100,
            lag_us: vec![lag_p99_us; 100],
            delivery_us: vec![delivery_p99_us; 100],
            ..Default::default()
        };
        let summary = Summary::of(&mut totals);
        (totals, summary)
    }

    const SWEEP: Limits = Limits {
        lag_p99: LAG_P99_LIMIT,
        delivery_p99: Some(Duration::from_millis(100)),
    };

    #[test]
    fn a_step_fails_when_the_bench_fell_behind() {
        let (totals, summary) = step(10_000, 5_000);
        assert!(verdict(&totals, &summary, &Limits::LOAD).is_empty());
        let (totals, summary) = step(10_500, 5_000);
        let reasons = verdict(&totals, &summary, &Limits::LOAD);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("send lag p99 10.50 ms > 10 ms"));
        // Only the slowest percent: the p99 is what is judged.
        let mut totals = LoadTotals {
            sent_total: 100,
            sent_measured: 100,
            lag_us: vec![1_000; 99],
            ..Default::default()
        };
        totals.lag_us.push(500_000);
        let summary = Summary::of(&mut totals);
        assert!(verdict(&totals, &summary, &Limits::LOAD).is_empty());
    }

    #[test]
    fn the_sweep_bar_is_open_loop_delivery_below_100_ms() {
        let (totals, summary) = step(1_000, 99_999);
        assert!(verdict(&totals, &summary, &SWEEP).is_empty());
        let (totals, summary) = step(1_000, 100_000);
        assert_eq!(
            verdict(&totals, &summary, &SWEEP),
            vec!["delivery p99 100.00 ms >= 100 ms"]
        );
        // A plain load run reports latency without judging it.
        assert!(verdict(&totals, &summary, &Limits::LOAD).is_empty());
        let (mut totals, _) = step(1_000, 1_000);
        totals.delivery_us.clear();
        let summary = Summary::of(&mut totals);
        assert_eq!(
            verdict(&totals, &summary, &SWEEP),
            vec!["no delivery measured"]
        );
    }

    #[test]
    fn unwritten_messages_and_closed_sockets_fail_a_step() {
        let (mut totals, summary) = step(1_000, 1_000);
        totals.unsent = 3;
        totals.disconnects.push("pair 1 customer: closed".into());
        assert_eq!(
            verdict(&totals, &summary, &SWEEP),
            vec!["scheduled but never written 3", "sockets closed early 1"]
        );
    }

    #[test]
    fn formats_units() {
        assert_eq!(ms(1500), "1.50");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(2048.0), "2.0 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(micros(Duration::from_millis(2)), 2000);
    }
}
