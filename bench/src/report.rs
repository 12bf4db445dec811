//! Counting and printing: latency samples kept as microseconds in a
//! `Vec<u32>` and sorted once at the end (exact percentiles; a few million
//! samples sort in well under a second), the load run's counters merged
//! over all pairs, and the printed report with its pass/fail verdict.

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
    /// Send → ack ok:true, measured messages only.
    pub ack_us: Vec<u32>,
    /// Send → the agent's `new-message`, measured messages only.
    pub delivery_us: Vec<u32>,
    /// Send → the sender's own `new-message` echo, measured messages only.
    pub echo_us: Vec<u32>,
    /// How late the bench wrote each message against its schedule.
    pub lag_us: Vec<u32>,
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
        self.delivery_us.extend(other.delivery_us);
        self.echo_us.extend(other.echo_us);
        self.lag_us.extend(other.lag_us);
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

    /// True when nothing went wrong: the run passes.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.missing_echo == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.unanswered == 0
            && self.failed_acks() == 0
            && self.sent_total > 0
    }
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
        "latency (ms)   {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "samples", "p50", "p90", "p99", "p99.9", "max"
    );
    print_row("ack", &mut totals.ack_us);
    print_row("delivery", &mut totals.delivery_us);
    print_row("echo", &mut totals.echo_us);
    print_row("send lag", &mut totals.lag_us);
    println!("(delivery: to the agent; echo: back to the sender's socket; send lag: how late");
    println!(" the bench itself wrote messages against the schedule)");
    println!();
    println!(
        "correctness: lost {}, missing echo {}, duplicated {}, out-of-order {}, unanswered {}, failed acks {}",
        totals.lost,
        totals.missing_echo,
        totals.duplicated,
        totals.out_of_order,
        totals.unanswered,
        totals.failed_acks()
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
    let clean = totals.is_clean();
    println!("result: {}", if clean { "PASS" } else { "FAIL" });
    clean
}

fn print_row(label: &str, samples: &mut [u32]) {
    match percentiles(samples) {
        Some(p) => println!(
            "{label:<14} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            p.count,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.max)
        ),
        None => println!("{label:<14} {:>9}", 0),
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
        assert!(!total.is_clean());
        let clean = LoadTotals {
            sent_total: 1,
            acked_ok: 1,
            ..Default::default()
        };
        assert!(clean.is_clean());
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
