//! A cluster gateway refuses to start on settings that would expose it: a
//! JWT secret the project publishes (the development secret, the examples in
//! deploy/ and k8s/) and a token mint. It says why and exits with status 2
//! before connecting to anything.

use std::process::{Command, Stdio};

use chat_shared::config::PLACEHOLDER_JWT_SECRETS;

use crate::harness::processes::binary;

/// Runs the gateway with `env` (and nothing else) and returns its exit
/// status and standard error.
fn refused_start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(binary("gateway"))
        .env_clear()
        // Nothing listens there: a gateway that got past its configuration
        // would fail differently (and later).
        .envs([
            ("REDIS_URL", "redis://127.0.0.1:1"),
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("PORT", "0"),
        ])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the gateway");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn published_secrets_are_refused() {
    for secret in PLACEHOLDER_JWT_SECRETS {
        let (status, stderr) = refused_start(&[("JWT_SECRET", secret)]);
        assert_eq!(status, Some(2), "{secret}: {stderr}");
        assert!(stderr.contains("placeholder"), "{secret}: {stderr}");
    }
}

#[test]
fn a_cluster_never_mints_tokens() {
    let (status, stderr) = refused_start(&[
        ("JWT_SECRET", "a-random-secret-for-this-test-0123456789"),
        ("DEV_TOKENS", "true"),
    ]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("DEV_TOKENS"), "{stderr}");
}
