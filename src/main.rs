//! `support-chat`: the standalone chat server (gateway + worker, in-process
//! backplane, SQLite). Configuration comes from environment variables; see
//! README.md.
#![forbid(unsafe_code)]

use anyhow::Context;
use chat_shared::config::Env;
use support_chat::{start, StandaloneConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_shared::runtime::init_logging();
    let config = chat_shared::runtime::settings_or_exit(
        "support-chat",
        StandaloneConfig::from_env(&Env::from_process()),
    );
    if config.gateway.development_secret {
        tracing::warn!(
            "JWT_SECRET is not set: using the built-in DEVELOPMENT secret. Anyone can mint tokens. \
             Never expose this server; set JWT_SECRET (or JWT_PUBLIC_KEY_FILE / JWT_JWKS_FILE) for real use."
        );
    }
    if config.gateway.dev_tokens {
        tracing::warn!("POST /api/dev/token is enabled: it mints tokens for any user and role");
    }
    let running = start(config).await.context("starting the chat server")?;
    let shown_host = if running.addr.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        running.addr.ip()
    };
    println!(
        "support-chat listening on http://{}:{}",
        shown_host,
        running.addr.port()
    );
    if let Some(admin) = running.admin_addr {
        println!(
            "support-chat admin endpoints on http://{}:{}",
            shown_host,
            admin.port()
        );
    }
    chat_shared::runtime::shutdown_signal().await;
    tracing::info!("signal received; draining");
    running.stop().await;
    Ok(())
}
