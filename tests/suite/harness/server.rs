//! The standalone chat in this process: gateway and worker on a free port
//! over a temporary data directory that outlives restarts, so that a test
//! can stop and start it and find its data again, plus the REST calls most
//! standalone tests make through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_shared::backplane::Backplane;
use chat_shared::config::Env;
use serde_json::{json, Value};
use support_chat::{RunningChat, StandaloneConfig};
use tokio::time::{timeout, Instant};

use super::http::{history, http, rest};
use super::metrics::metric_value;
use super::sio_client::SioClient;
use super::tokens::SECRET;

/// A standalone chat on 127.0.0.1 and a free port, over its own data
/// directory, which outlives restarts.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    running: Option<RunningChat>,
    env: Vec<(String, String)>,
    /// Removed with the server, not at a restart.
    _dir: tempfile::TempDir,
    /// The backplane restarts keep, when the test gave one.
    backplane: Option<Arc<dyn Backplane>>,
}

impl TestServer {
    /// Starts a server; `extra_env` adds to or overrides the defaults
    /// (`PORT=0`, `HOST=127.0.0.1`, `JWT_SECRET`, `RATE_LIMIT_PER_SEC=0`, a
    /// temporary `CHAT_DATA_DIR`, and a `WEB_DIR` that does not exist).
    pub async fn start(extra_env: &[(&str, &str)]) -> TestServer {
        TestServer::start_over(extra_env, None).await
    }

    /// `start` over the given in-process backplane instead of a new one.
    pub async fn start_over(
        extra_env: &[(&str, &str)],
        backplane: Option<Arc<dyn Backplane>>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let data = dir.path().to_string_lossy().into_owned();
        let web = dir.path().join("no-web-ui").to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = [
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("JWT_SECRET", SECRET),
            ("RATE_LIMIT_PER_SEC", "0"),
            ("CHAT_DATA_DIR", data.as_str()),
            ("WEB_DIR", web.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (key, value) in extra_env {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), (*value).to_owned()));
        }
        let running = launch(&env, backplane.clone()).await;
        TestServer {
            addr: running.addr,
            admin_addr: running.admin_addr,
            running: Some(running),
            env,
            _dir: dir,
            backplane,
        }
    }

    /// Stops the server (if running) and returns how long `stop()` took.
    pub async fn stop(&mut self) -> Duration {
        let Some(running) = self.running.take() else {
            return Duration::ZERO;
        };
        let started = Instant::now();
        timeout(Duration::from_secs(30), running.stop())
            .await
            .expect("the server stops within 30 s");
        started.elapsed()
    }

    /// Stops and starts again on the same data directory (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = launch(&self.env, self.backplane.clone()).await;
        self.addr = running.addr;
        self.admin_addr = running.admin_addr;
        self.running = Some(running);
    }

    /// A Socket.IO client connected to `/chat` with `token`.
    pub async fn connect(&self, token: &str) -> SioClient {
        SioClient::connect(self.addr, token).await
    }

    /// The data directory (the SQLite file, uploaded files), which
    /// outlives restarts.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// A REST call on the public port; see [`rest`].
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        rest(self.addr, method, path, token, body).await
    }

    /// `POST /api/chat/sessions` as a customer; panics unless it is 201.
    pub async fn create_session(&self, customer: &str, body: Value) -> Value {
        let (status, session) = self
            .rest("POST", "/api/chat/sessions", Some(customer), Some(body))
            .await;
        assert_eq!(status, 201, "create session: {session}");
        session
    }

    /// `POST /api/chat/sessions/{id}/assign` as an agent; panics unless 200.
    /// Posts `count` messages to the session over REST, the `n`th (from 1)
    /// with `content(n)`, each acknowledged with 201.
    pub async fn post_messages(
        &self,
        token: &str,
        session_id: &str,
        count: usize,
        content: impl Fn(usize) -> String,
    ) {
        let path = format!("/api/chat/sessions/{session_id}/messages");
        for n in 1..=count {
            let message = json!({ "content": content(n), "clientMsgId": format!("rest-{n}") });
            let (status, body) = self.rest("POST", &path, Some(token), Some(message)).await;
            assert_eq!(status, 201, "message {n}: {body}");
        }
    }

    pub async fn assign(&self, agent: &str, session_id: &str) -> Value {
        let path = format!("/api/chat/sessions/{session_id}/assign");
        let (status, session) = self.rest("POST", &path, Some(agent), Some(json!({}))).await;
        assert_eq!(status, 200, "assign: {session}");
        session
    }

    /// `GET /api/chat/sessions/{id}`; panics unless 200.
    pub async fn session(&self, token: &str, session_id: &str) -> Value {
        let (status, session) = self
            .rest(
                "GET",
                &format!("/api/chat/sessions/{session_id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "get session: {session}");
        session
    }

    /// A session's whole history, paged with `afterSeq`.
    pub async fn history(&self, token: &str, session_id: &str) -> Vec<Value> {
        history(self.addr, token, session_id).await
    }

    /// The server's Prometheus text, from the admin port if there is one.
    pub async fn metrics(&self) -> String {
        let addr = self.admin_addr.unwrap_or(self.addr);
        let response = http(addr, "GET", "/metrics", &[], &[]).await;
        assert_eq!(response.status, 200, "metrics");
        response.text()
    }

    /// One sample of the metrics, by its full name with labels.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }
}

async fn launch(env: &[(String, String)], backplane: Option<Arc<dyn Backplane>>) -> RunningChat {
    let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let config = StandaloneConfig::from_env(&env).expect("valid test configuration");
    let started = match backplane {
        Some(backplane) => support_chat::start_over(config, backplane).await,
        None => support_chat::start(config).await,
    };
    started.expect("the server starts")
}
