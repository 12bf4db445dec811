//! A small Prometheus toolkit shared by the gateway and the worker: lock-free
//! counters, gauges and histograms, and the text exposition format they are
//! rendered in on `/metrics`.
//!
//! Hand-written rather than a client library because the whole need is a
//! few dozen series with fixed label sets: callers keep their labelled
//! series in arrays indexed by an enum, so recording on a hot path is one
//! atomic add and never allocates or looks a label up. Rendering, a few
//! times a minute, does the formatting.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed buckets. Each observation increments one
/// bucket; the cumulative counts Prometheus expects are summed when
/// rendering, so recording stays a couple of atomic operations.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending; the `+Inf` bucket is implicit.
    bounds: &'static [f64],
    /// One slot per bound plus one for values above the last bound.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum of observations, as the bits of an `f64`.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds`, which must ascend.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, value: f64) {
        // A NaN would poison the sum for good; it cannot come from the
        // callers here, but a bad clock must not break the endpoint.
        if value.is_nan() {
            return;
        }
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut current = self.sum.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match self.sum.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Observes a duration in seconds, the base unit.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of `name` (the
    /// family header is written by the caller, with [`family`]).
    pub fn render_samples(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cumulative = 0u64;
        for (bound, bucket) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = bound.to_string();
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            sample(out, &format!("{name}_bucket"), &with_le, cumulative);
        }
        // The total is read once, after the buckets: a concurrent
        // observation may make it slightly larger than the last bucket but
        // never smaller, so the series stays monotonic.
        let count = self.count();
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        sample(
            out,
            &format!("{name}_bucket"),
            &with_le,
            count.max(cumulative),
        );
        sample(out, &format!("{name}_sum"), labels, self.sum());
        sample(out, &format!("{name}_count"), labels, count.max(cumulative));
    }

    /// Writes a whole unlabelled histogram family.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, Kind::Histogram, help);
        self.render_samples(out, name, &[]);
    }
}

/// The type line of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family. Every family must
/// be written once per exposition, before its samples.
pub fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
}

/// Writes one sample line.
pub fn sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (index, (label, value)) in labels.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values are escaped as the exposition format requires; the values
/// used here are fixed words, but a version string must not break a scrape.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A family with one unlabelled sample.
pub fn single(out: &mut String, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    sample(out, name, &[], value);
}

/// `chat_build_info{component, version} 1` for each component this
/// process runs (the standalone process runs both).
pub fn build_info(out: &mut String, components: &[&str]) {
    family(
        out,
        "chat_build_info",
        Kind::Gauge,
        "Always 1; labels name the running component and its version.",
    );
    for component in components {
        sample(
            out,
            "chat_build_info",
            &[
                ("component", component),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1,
        );
    }
}

/// Something that adds families to another component's `/metrics`: the
/// standalone process serves the worker's series on the gateway's endpoint.
pub trait MetricsSource: Send + Sync {
    /// The component name used in `chat_build_info`.
    fn component(&self) -> &'static str;
    /// Appends this source's families (never `chat_build_info`).
    fn render(&self, out: &mut String);
}

/// Bucket bounds (seconds) for request-like latencies measured inside one
/// cluster: sub-millisecond in-process acks up to multi-second stalls.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        static BOUNDS: &[f64] = &[0.001, 0.01, 0.1];
        let histogram = Histogram::new(BOUNDS);
        histogram.observe(0.0005);
        histogram.observe(0.001); // on the bound: counts in that bucket
        histogram.observe(0.05);
        histogram.observe(3.0);
        let mut out = String::new();
        histogram.render(&mut out, "x_seconds", "A test.");
        let expected = "# HELP x_seconds A test.\n# TYPE x_seconds histogram\n\
            x_seconds_bucket{le=\"0.001\"} 2\n\
            x_seconds_bucket{le=\"0.01\"} 2\n\
            x_seconds_bucket{le=\"0.1\"} 3\n\
            x_seconds_bucket{le=\"+Inf\"} 4\n\
            x_seconds_sum 3.0515\n\
            x_seconds_count 4\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn nan_is_not_recorded() {
        let histogram = Histogram::new(LATENCY_BUCKETS);
        histogram.observe(f64::NAN);
        assert_eq!(histogram.count(), 0);
        assert_eq!(histogram.sum(), 0.0);
    }

    #[test]
    fn samples_escape_label_values() {
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "x\"y\\z"), ("b", "1")], 7);
        assert_eq!(out, "m{a=\"x\\\"y\\\\z\",b=\"1\"} 7\n");
    }

    #[test]
    fn build_info_has_one_header_for_every_component() {
        let mut out = String::new();
        build_info(&mut out, &["gateway", "worker"]);
        assert_eq!(out.matches("# TYPE chat_build_info gauge").count(), 1);
        assert!(out.contains("chat_build_info{component=\"gateway\",version=\""));
        assert!(out.contains("chat_build_info{component=\"worker\",version=\""));
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let histogram = std::sync::Arc::new(Histogram::new(LATENCY_BUCKETS));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let histogram = histogram.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        histogram.observe(0.5);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(histogram.count(), 4000);
        assert!((histogram.sum() - 2000.0).abs() < 1e-6);
    }
}
