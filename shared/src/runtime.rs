//! What every binary does at its edge: set up logging and wait for the
//! signal to shut down (SIGTERM from Kubernetes, Ctrl-C by hand).

use tracing_subscriber::EnvFilter;

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// The binary's settings, or its exit with the reason (status 2): a bad
/// value stops a process before it serves anything.
pub fn settings_or_exit<T, E: std::fmt::Display>(component: &str, settings: Result<T, E>) -> T {
    match settings {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{component}: {error}");
            std::process::exit(2);
        }
    }
}

/// How long a readiness check waits for each dependency: one slower than
/// this is as good as down for new work, and a probe or scrape must not
/// hang on it.
const DEPENDENCY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// What `/readyz` reports, for every process kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub draining: bool,
    pub backplane: bool,
    pub store: bool,
}

impl Readiness {
    /// Checks both dependencies at once, each bounded.
    pub async fn check(
        draining: bool,
        backplane: &dyn crate::backplane::Backplane,
        store: &dyn crate::store::Store,
    ) -> Readiness {
        let (backplane, store) = tokio::join!(
            tokio::time::timeout(DEPENDENCY_CHECK, backplane.ping()),
            tokio::time::timeout(DEPENDENCY_CHECK, store.ping()),
        );
        Readiness {
            draining,
            backplane: matches!(backplane, Ok(Ok(()))),
            store: matches!(store, Ok(Ok(()))),
        }
    }

    pub fn ready(self) -> bool {
        !self.draining && self.backplane && self.store
    }

    /// The body of `/readyz`.
    pub fn body(self) -> serde_json::Value {
        serde_json::json!({
            "ready": self.ready(),
            "draining": self.draining,
            "backplane": self.backplane,
            "store": self.store,
        })
    }
}
