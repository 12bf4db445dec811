//! The processes a scale run reports on, by kind (gateway, helper, worker,
//! Redis, PostgreSQL, this one): their resident memory now, and their CPU
//! time between two snapshots, read from /proc by process id.

use std::time::Duration;

use tokio::time::Instant;

use crate::hostile::{cpu_ticks, TICKS_PER_SECOND};
use crate::idle::rss_kib;
use crate::report::bytes;

#[derive(Debug, Clone)]
pub struct Watched {
    pub kinds: Vec<(String, Vec<u32>)>,
}

/// CPU ticks of every watched process at one moment (None: it was gone).
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    ticks: Vec<Vec<Option<u64>>>,
    /// VmRSS in KiB at the same moment.
    rss: Vec<Vec<Option<u64>>>,
}

impl Watched {
    pub fn cpu(&self) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            ticks: self
                .kinds
                .iter()
                .map(|(_, pids)| {
                    pids.iter()
                        .map(|pid| cpu_ticks(&stat_path(*pid)).ok())
                        .collect()
                })
                .collect(),
            rss: self
                .kinds
                .iter()
                .map(|(_, pids)| {
                    pids.iter()
                        .map(|pid| rss_kib(&format!("/proc/{pid}/status")).ok())
                        .collect()
                })
                .collect(),
        }
    }

    /// Prints each kind's CPU between the snapshots, as a share of one core
    /// (the sum over its processes, and the busiest one), and its memory at
    /// the second snapshot.
    pub fn print(&self, from: &CpuSnapshot, to: &CpuSnapshot) {
        let wall = to.at.duration_since(from.at).max(Duration::from_millis(1));
        println!(
            "{:<16} {:>5} {:>10} {:>10} {:>12} {:>12}",
            "process", "count", "CPU %", "max 1 %", "RSS total", "RSS max 1"
        );
        let mut all_rss = 0u64;
        for (kind, (name, pids)) in self.kinds.iter().enumerate() {
            let mut cpu = 0.0f64;
            let mut busiest = 0.0f64;
            for (i, _) in pids.iter().enumerate() {
                if let (Some(a), Some(b)) = (from.ticks[kind][i], to.ticks[kind][i]) {
                    let share =
                        b.saturating_sub(a) as f64 / TICKS_PER_SECOND / wall.as_secs_f64() * 100.0;
                    cpu += share;
                    busiest = busiest.max(share);
                }
            }
            let rss: Vec<u64> = to.rss[kind].iter().flatten().copied().collect();
            let total: u64 = rss.iter().sum();
            all_rss += total;
            println!(
                "{name:<16} {:>5} {cpu:>10.1} {busiest:>10.1} {:>12} {:>12}",
                pids.len(),
                bytes(total as f64 * 1024.0),
                bytes(rss.iter().copied().max().unwrap_or(0) as f64 * 1024.0)
            );
        }
        println!(
            "all of them: RSS {} (CPU % is of one core over {:.1} s; the machine has {} cores)",
            bytes(all_rss as f64 * 1024.0),
            wall.as_secs_f64(),
            std::thread::available_parallelism().map_or(1, usize::from)
        );
    }
}

fn stat_path(pid: u32) -> String {
    format!("/proc/{pid}/stat")
}
