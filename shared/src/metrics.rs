//! The metrics toolkit of the gateway and the worker: series recorded
//! through the `metrics` crate's handles into a `metrics-exporter-prometheus`
//! recorder, which also renders the text exposition served on `/metrics` by
//! the components' own routers (the exporter's listener is not built in).
//!
//! The recorder is held, never installed. Each component instance (a
//! gateway's `Metrics`, a worker's `WorkerMetrics`) owns a [`Registry`],
//! one `PrometheusRecorder`, registers every series on it once when it is
//! built and keeps the handles in arrays indexed by enums: recording on a
//! hot path is then an atomic operation on a handle, with no lookup and no
//! allocation, and label values are `'static`, so no session or user id can
//! become a label. The global recorder behind `metrics::counter!` and its
//! kin is not used: it can be installed once per process, while the tests
//! run many gateways and workers in one process and read each one's own
//! counts. The standalone process serves its gateway's and its worker's
//! series on one endpoint by rendering both registries in turn; their
//! families are disjoint, and the families of the process itself
//! (`chat_ready`, `chat_build_info`) are written once, by the endpoint.
//!
//! Values known only when a scrape comes in (readiness, pending requests,
//! the backlog of the partitions owned right now, the build info) go
//! through a [`Scrape`], a recorder that lives for one exposition: a
//! partition given up must vanish from the next scrape, and a long-lived
//! recorder never forgets a series.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often a registry's histogram observations are folded into their
/// buckets. The exporter queues observations until then (or until a
/// scrape); without this, a process nobody scrapes would grow for good.
/// Five seconds is the interval the exporter's own upkeep task uses.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The exporter ignores metadata; the `metrics` API asks for some.
const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// Bucket upper bounds of a histogram, checked when the constant holding
/// them is compiled: a histogram must have at least one bucket (or the
/// exporter would refuse it) and bounds must ascend.
#[derive(Debug, Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl Buckets {
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(!bounds.is_empty(), "a histogram needs at least one bucket");
        let mut index = 1;
        while index < bounds.len() {
            assert!(
                bounds[index - 1] < bounds[index],
                "bucket bounds must ascend"
            );
            index += 1;
        }
        Buckets(bounds)
    }

    pub fn bounds(self) -> &'static [f64] {
        self.0
    }
}

/// Bucket bounds (seconds) for request-like latencies measured inside one
/// cluster: sub-millisecond in-process acks up to multi-second stalls.
pub const LATENCY_BUCKETS: Buckets = Buckets::new(&[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
]);

/// A monotonically increasing count.
#[derive(Debug, Clone)]
pub struct Counter(::metrics::Counter);

impl Counter {
    pub fn inc(&self) {
        self.0.increment(1);
    }

    pub fn add(&self, n: u64) {
        self.0.increment(n);
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone)]
pub struct Gauge(::metrics::Gauge);

impl Gauge {
    pub fn inc(&self) {
        self.0.increment(1.0);
    }

    pub fn dec(&self) {
        self.0.decrement(1.0);
    }

    pub fn set(&self, value: f64) {
        self.0.set(value);
    }
}

/// A distribution over the buckets its registry was given for it.
#[derive(Debug, Clone)]
pub struct Histogram(::metrics::Histogram);

impl Histogram {
    pub fn observe(&self, value: f64) {
        // A NaN would poison the sum for good; it cannot come from the
        // callers here, but a bad clock must not break the endpoint.
        if !value.is_nan() {
            self.0.record(value);
        }
    }

    /// Observes a duration in seconds, the base unit.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }
}

/// The series of one component instance: a Prometheus recorder of its own
/// (see the module documentation for why it is not the global one).
#[derive(Debug)]
pub struct Registry {
    recorder: Arc<PrometheusRecorder>,
    /// The histograms given buckets; any other would render as a summary.
    histograms: Vec<&'static str>,
}

impl Registry {
    /// A registry whose histograms are `histograms`, each with its buckets.
    ///
    /// Inside a Tokio runtime this spawns the upkeep of the registry's
    /// histograms, which ends when the registry is dropped; outside one
    /// (unit tests), observations are folded in when rendering.
    pub fn new(histograms: &[(&'static str, Buckets)]) -> Self {
        let mut builder = PrometheusBuilder::new();
        for (name, buckets) in histograms {
            builder = builder
                .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets.bounds())
                // The one refusal is an empty set of bounds, which
                // `Buckets::new` already refused at compile time.
                .expect("bucket bounds are never empty");
        }
        let recorder = Arc::new(builder.build_recorder());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(upkeep(Arc::downgrade(&recorder)));
        }
        Registry {
            recorder,
            histograms: histograms.iter().map(|(name, _)| *name).collect(),
        }
    }

    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.recorder.describe_counter(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
        Counter(
            self.recorder
                .register_counter(&static_key(name, labels), &METADATA),
        )
    }

    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Gauge {
        self.recorder.describe_gauge(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
        Gauge(
            self.recorder
                .register_gauge(&static_key(name, labels), &METADATA),
        )
    }

    /// An unlabelled histogram; `name` must be one of those the registry
    /// was built with.
    pub fn histogram(&self, name: &'static str, help: &'static str) -> Histogram {
        debug_assert!(
            self.histograms.contains(&name),
            "{name} has no buckets: it would be exported as a summary"
        );
        self.recorder.describe_histogram(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        );
        Histogram(
            self.recorder
                .register_histogram(&Key::from_static_name(name), &METADATA),
        )
    }

    /// Appends every family of this registry, each with its `# HELP` and
    /// `# TYPE` lines.
    pub fn render(&self, out: &mut String) {
        out.push_str(&self.recorder.handle().render());
    }
}

fn static_key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|&(key, value)| Label::from_static_parts(key, value))
        .collect();
    Key::from_parts(name, labels)
}

/// Folds a registry's histogram observations into their buckets until the
/// registry is gone.
async fn upkeep(recorder: Weak<PrometheusRecorder>) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(recorder) = recorder.upgrade() else {
            return;
        };
        recorder.handle().run_upkeep();
    }
}

/// The type of a family whose value is read at scrape time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A number read at scrape time: the counts and flags the endpoints report.
pub trait Value: Copy {
    fn to_f64(self) -> f64;
}

macro_rules! value_as_f64 {
    ($($ty:ty),*) => {
        $(impl Value for $ty {
            // Lossy only past 2^53, far beyond any count reported here.
            fn to_f64(self) -> f64 {
                self as f64
            }
        })*
    };
}

value_as_f64!(u8, u16, u32, u64, usize, i32, i64, f64);

/// Families of values read when a scrape comes in, rendered once and then
/// dropped.
#[derive(Debug)]
pub struct Scrape(PrometheusRecorder);

impl Default for Scrape {
    fn default() -> Self {
        Scrape(PrometheusBuilder::new().build_recorder())
    }
}

impl Scrape {
    /// Adds a sample; every call for one `name` must pass the same `kind`
    /// and `help`.
    pub fn sample(
        &self,
        name: &'static str,
        kind: Kind,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: impl Value,
    ) {
        let labels: Vec<Label> = labels
            .iter()
            .map(|&(key, value)| Label::new(key, value.to_owned()))
            .collect();
        let key = Key::from_parts(name, labels);
        let help = SharedString::const_str(help);
        match kind {
            Kind::Counter => {
                self.0
                    .describe_counter(KeyName::from_const_str(name), None, help);
                // Saturating: a negative or fractional count is a bug, not
                // a reason to break the endpoint.
                let count = value.to_f64() as u64;
                self.0.register_counter(&key, &METADATA).absolute(count);
            }
            Kind::Gauge => {
                self.0
                    .describe_gauge(KeyName::from_const_str(name), None, help);
                self.0.register_gauge(&key, &METADATA).set(value.to_f64());
            }
        }
    }

    /// Appends the families added so far.
    pub fn render(&self, out: &mut String) {
        out.push_str(&self.0.handle().render());
    }
}

/// A family with one unlabelled sample read at scrape time.
pub fn single(
    out: &mut String,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: impl Value,
) {
    let scrape = Scrape::default();
    scrape.sample(name, kind, help, &[], value);
    scrape.render(out);
}

/// `chat_build_info{component, version} 1` for each component this
/// process runs (the standalone process runs both), in one family.
pub fn build_info(out: &mut String, components: &[&str]) {
    let scrape = Scrape::default();
    for component in components {
        scrape.sample(
            "chat_build_info",
            Kind::Gauge,
            "Always 1; labels name the running component and its version.",
            &[
                ("component", component),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            1u8,
        );
    }
    scrape.render(out);
}

/// Something that adds families to another component's `/metrics`: the
/// standalone process serves the worker's series on the gateway's endpoint.
pub trait MetricsSource: Send + Sync {
    /// The component name used in `chat_build_info`.
    fn component(&self) -> &'static str;
    /// Appends this source's families (never `chat_build_info`).
    fn render(&self, out: &mut String);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_BUCKETS: Buckets = Buckets::new(&[0.001, 0.01, 0.1]);

    fn rendered(registry: &Registry) -> String {
        let mut out = String::new();
        registry.render(&mut out);
        out
    }

    #[test]
    fn histogram_renders_cumulative_buckets_sum_and_count() {
        let registry = Registry::new(&[("x_seconds", TEST_BUCKETS)]);
        let histogram = registry.histogram("x_seconds", "A test.");
        histogram.observe(0.0005);
        histogram.observe(0.001); // on the bound: counts in that bucket
        histogram.observe(0.05);
        histogram.observe(3.0);
        let expected = "# HELP x_seconds A test.\n# TYPE x_seconds histogram\n\
            x_seconds_bucket{le=\"0.001\"} 2\n\
            x_seconds_bucket{le=\"0.01\"} 2\n\
            x_seconds_bucket{le=\"0.1\"} 3\n\
            x_seconds_bucket{le=\"+Inf\"} 4\n\
            x_seconds_sum 3.0515\n\
            x_seconds_count 4\n\n";
        assert_eq!(rendered(&registry), expected);
    }

    #[test]
    fn a_histogram_is_rendered_before_any_observation() {
        let registry = Registry::new(&[("x_seconds", LATENCY_BUCKETS)]);
        let _histogram = registry.histogram("x_seconds", "A test.");
        let text = rendered(&registry);
        assert!(text.contains("# TYPE x_seconds histogram"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.0005\"} 0"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"10\"} 0"), "{text}");
        assert!(text.contains("x_seconds_count 0"), "{text}");
    }

    #[test]
    fn nan_is_not_recorded() {
        let registry = Registry::new(&[("x_seconds", LATENCY_BUCKETS)]);
        let histogram = registry.histogram("x_seconds", "A test.");
        histogram.observe(f64::NAN);
        let text = rendered(&registry);
        assert!(text.contains("x_seconds_count 0"), "{text}");
        assert!(text.contains("x_seconds_sum 0\n"), "{text}");
    }

    #[test]
    fn registries_count_apart() {
        let one = Registry::new(&[]);
        let other = Registry::new(&[]);
        one.counter("c_total", "A test.", &[("k", "v")]).add(3);
        other.counter("c_total", "A test.", &[("k", "v")]).inc();
        assert!(rendered(&one).contains("c_total{k=\"v\"} 3"));
        assert!(rendered(&other).contains("c_total{k=\"v\"} 1"));
    }

    #[test]
    fn series_are_rendered_at_zero_with_their_labels_in_order() {
        let registry = Registry::new(&[]);
        let _counter = registry.counter("c_total", "Counts.", &[("b", "1"), ("a", "2")]);
        let gauge = registry.gauge("g", "Goes up and down.", &[]);
        gauge.inc();
        gauge.inc();
        gauge.dec();
        let text = rendered(&registry);
        assert!(text.contains("# HELP c_total Counts.\n# TYPE c_total counter\n"));
        assert!(text.contains("c_total{b=\"1\",a=\"2\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE g gauge\ng 1\n"), "{text}");
    }

    #[test]
    fn scrape_samples_escape_label_values() {
        let scrape = Scrape::default();
        scrape.sample(
            "m",
            Kind::Gauge,
            "A test.",
            &[("a", "x\"y\\z"), ("b", "1")],
            7u32,
        );
        let mut out = String::new();
        scrape.render(&mut out);
        assert!(out.contains("m{a=\"x\\\"y\\\\z\",b=\"1\"} 7\n"), "{out}");
    }

    #[test]
    fn single_writes_one_family() {
        let mut out = String::new();
        single(&mut out, "pending", Kind::Gauge, "A test.", 3usize);
        single(&mut out, "done_total", Kind::Counter, "A test.", 5u64);
        assert!(out.contains("# HELP pending A test.\n# TYPE pending gauge\npending 3\n"));
        assert!(out.contains("# TYPE done_total counter\ndone_total 5\n"));
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
        let registry = Registry::new(&[("x_seconds", LATENCY_BUCKETS)]);
        let histogram = registry.histogram("x_seconds", "A test.");
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
            thread.join().expect("an observing thread panicked");
        }
        let text = rendered(&registry);
        assert!(text.contains("x_seconds_count 4000\n"), "{text}");
        assert!(text.contains("x_seconds_sum 2000\n"), "{text}");
    }

    #[tokio::test]
    async fn the_upkeep_task_does_not_keep_its_registry_alive() {
        let registry = Registry::new(&[("x_seconds", LATENCY_BUCKETS)]);
        let weak = Arc::downgrade(&registry.recorder);
        drop(registry);
        assert!(weak.upgrade().is_none());
    }
}
