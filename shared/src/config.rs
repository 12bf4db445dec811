//! Reading settings from environment variables: typed parsing with clear
//! errors naming the variable, and the JWT settings every binary shares.

use std::collections::HashMap;
use std::time::Duration;

use crate::auth::{JwtAlgorithm, JwtKeySource, JwtSettings};

/// The secret used when standalone mode runs without `JWT_SECRET`. Anyone
/// can mint tokens with it: it is for a developer's machine only.
pub const DEVELOPMENT_JWT_SECRET: &str = "development-secret-do-not-use-in-production";

/// The longest duration any setting may have: one day, in milliseconds.
pub const MAX_MILLIS: u64 = 24 * 60 * 60 * 1000;

/// Secrets the project itself publishes (the development secret and the
/// examples of the deployment files): a cluster refuses to start with one,
/// since anyone can mint tokens with them.
pub const PLACEHOLDER_JWT_SECRETS: &[&str] = &[
    DEVELOPMENT_JWT_SECRET,
    "compose-local-secret-change-me-0123456789",
    "change-me-to-a-long-random-secret",
    "replace-me-with-at-least-32-random-characters",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// A snapshot of the environment (or of a map, in tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The variable's value; unset and blank are the same.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    pub fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| ConfigError(format!("{name}={text:?} is not a valid value"))),
        }
    }

    pub fn optional<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| ConfigError(format!("{name}={text:?} is not a valid value"))),
        }
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError(format!(
                "{name}={other:?} must be true or false"
            ))),
        }
    }

    /// A duration given in milliseconds, 1 ms to one day.
    pub fn millis(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let duration = self.millis_or_zero(name, default)?;
        if duration.is_zero() {
            return Err(ConfigError(format!("{name} must be greater than 0")));
        }
        Ok(duration)
    }

    /// A duration given in milliseconds, 0 to one day. The bound keeps
    /// every deadline computed from it (`Instant + duration`) far from
    /// overflowing, and no setting of this system needs more.
    pub fn millis_or_zero(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        let ms: u64 = self.parse(name, default_ms)?;
        if ms > MAX_MILLIS {
            return Err(ConfigError(format!(
                "{name}={ms} is more than one day ({MAX_MILLIS} ms)"
            )));
        }
        Ok(Duration::from_millis(ms))
    }
}

/// JWT settings from `JWT_ALGORITHM`, `JWT_SECRET`, `JWT_PUBLIC_KEY_FILE`,
/// `JWT_JWKS_FILE`, `JWT_ISSUER`, `JWT_AUDIENCE`. With `allow_development`
/// and no key configured, falls back to the development secret; the second
/// value says whether it did.
pub fn jwt_from_env(
    env: &Env,
    allow_development: bool,
) -> Result<(JwtSettings, bool), ConfigError> {
    let algorithm = match env
        .string("JWT_ALGORITHM", "")
        .to_ascii_uppercase()
        .as_str()
    {
        "" => None,
        "HS256" => Some(JwtAlgorithm::Hs256),
        "RS256" => Some(JwtAlgorithm::Rs256),
        other => {
            return Err(ConfigError(format!(
                "JWT_ALGORITHM={other:?}: use HS256 or RS256"
            )))
        }
    };
    let read = |name: &str| -> Result<Option<String>, ConfigError> {
        match env.get(name) {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(Some)
                .map_err(|e| ConfigError(format!("{name}={path:?} cannot be read: {e}"))),
        }
    };
    let secret = env.get("JWT_SECRET").map(str::to_owned);
    let pem = read("JWT_PUBLIC_KEY_FILE")?;
    let jwks = read("JWT_JWKS_FILE")?;
    let (algorithm, key, development) = match (algorithm, secret, pem, jwks) {
        (Some(JwtAlgorithm::Rs256) | None, None, Some(pem), None) => {
            (JwtAlgorithm::Rs256, JwtKeySource::PublicKeyPem(pem), false)
        }
        (Some(JwtAlgorithm::Rs256) | None, None, None, Some(jwks)) => {
            (JwtAlgorithm::Rs256, JwtKeySource::Jwks(jwks), false)
        }
        (Some(JwtAlgorithm::Hs256) | None, Some(secret), None, None) => {
            if secret.len() < 16 {
                return Err(ConfigError(
                    "JWT_SECRET must be at least 16 characters".to_owned(),
                ));
            }
            let published = PLACEHOLDER_JWT_SECRETS.contains(&secret.as_str());
            if published && !allow_development {
                return Err(ConfigError(
                    "JWT_SECRET is a placeholder published with this project: anyone could \
                     mint tokens; set a random one (for example `openssl rand -hex 32`)"
                        .to_owned(),
                ));
            }
            let development = secret == DEVELOPMENT_JWT_SECRET;
            (JwtAlgorithm::Hs256, JwtKeySource::Secret(secret), development)
        }
        (Some(JwtAlgorithm::Hs256) | None, None, None, None) if allow_development => (
            JwtAlgorithm::Hs256,
            JwtKeySource::Secret(DEVELOPMENT_JWT_SECRET.to_owned()),
            true,
        ),
        (_, None, None, None) => {
            return Err(ConfigError(
                "no JWT key: set JWT_SECRET (HS256), JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE (RS256)"
                    .to_owned(),
            ))
        }
        _ => {
            return Err(ConfigError(
                "set exactly one of JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE, matching JWT_ALGORITHM"
                    .to_owned(),
            ))
        }
    };
    let settings = JwtSettings {
        algorithm,
        key,
        issuer: env.get("JWT_ISSUER").map(str::to_owned),
        audience: env.get("JWT_AUDIENCE").map(str::to_owned),
    };
    Ok((settings, development))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_refuses_published_secrets_and_standalone_knows_the_development_one() {
        for secret in PLACEHOLDER_JWT_SECRETS {
            let env = Env::from_pairs([("JWT_SECRET", *secret)]);
            let error = jwt_from_env(&env, false).unwrap_err();
            assert!(error.0.contains("placeholder"), "{error}");
        }
        let env = Env::from_pairs([("JWT_SECRET", DEVELOPMENT_JWT_SECRET)]);
        assert!(
            jwt_from_env(&env, true).unwrap().1,
            "named the development one"
        );
        let env = Env::from_pairs([("JWT_SECRET", "a-real-secret-0123456789")]);
        assert!(!jwt_from_env(&env, false).unwrap().1);
    }

    #[test]
    fn parses_numbers_flags_and_reports_the_variable() {
        let env = Env::from_pairs([
            ("PORT", "8080"),
            ("BAD", "x"),
            ("ON", "true"),
            ("BLANK", " "),
        ]);
        assert_eq!(env.parse::<u16>("PORT", 1).unwrap(), 8080);
        assert_eq!(env.parse::<u16>("MISSING", 7).unwrap(), 7);
        assert_eq!(env.parse::<u16>("BLANK", 7).unwrap(), 7);
        let err = env.parse::<u16>("BAD", 1).unwrap_err();
        assert!(err.0.contains("BAD"), "{err}");
        assert!(env.flag("ON", false).unwrap());
        assert!(env.flag("BAD", false).is_err());
    }

    #[test]
    fn development_secret_only_when_allowed() {
        let env = Env::default();
        let (settings, dev) = jwt_from_env(&env, true).unwrap();
        assert!(dev);
        assert_eq!(settings.algorithm, JwtAlgorithm::Hs256);
        assert!(jwt_from_env(&env, false).is_err());
    }

    #[test]
    fn secret_must_be_long_and_alone() {
        let short = Env::from_pairs([("JWT_SECRET", "short")]);
        assert!(jwt_from_env(&short, true).is_err());
        let ok = Env::from_pairs([("JWT_SECRET", "a-long-enough-secret")]);
        let (settings, dev) = jwt_from_env(&ok, false).unwrap();
        assert!(!dev);
        assert_eq!(
            settings.key,
            JwtKeySource::Secret("a-long-enough-secret".into())
        );
        let wrong_alg = Env::from_pairs([
            ("JWT_SECRET", "a-long-enough-secret"),
            ("JWT_ALGORITHM", "RS256"),
        ]);
        assert!(jwt_from_env(&wrong_alg, true).is_err());
        let unknown_alg = Env::from_pairs([("JWT_ALGORITHM", "none")]);
        assert!(jwt_from_env(&unknown_alg, true).is_err());
    }
}

/// Where a cluster process finds Redis and PostgreSQL and how many
/// connections it keeps. Redis is one server (`REDIS_URL`) or a Redis
/// Cluster (`REDIS_CLUSTER_NODES`, or a `redis-cluster://` URL); PostgreSQL
/// is the primary (`DATABASE_URL`) and, optionally, a streaming replica
/// for reads (`DATABASE_READ_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConnections {
    /// `redis://`/`rediss://` for one server; `redis-cluster://` or
    /// `rediss-cluster://` (seed nodes after `?node=`) for a Redis Cluster.
    pub redis_url: String,
    pub database_url: String,
    /// `DATABASE_READ_URL`: a streaming replica of `database_url` that
    /// serves reads which may lag.
    pub database_read_url: Option<String>,
    /// `REDIS_POOL_SIZE`, default 1: one connection pipelines everything
    /// a process issues at once, so commands travel (and Redis answers
    /// them) in few large writes; more connections mean more, smaller ones.
    pub redis_pool_size: usize,
    /// `DATABASE_POOL_SIZE`, default 8.
    pub database_pool_size: usize,
    /// Whom a `rediss://` server's certificate must chain to:
    /// `REDIS_CA_FILE` (PEM), else the system's authorities.
    pub redis_roots: TrustedRoots,
    /// The same for PostgreSQL with `sslmode=require`: `DATABASE_CA_FILE`.
    pub database_roots: TrustedRoots,
}

/// The certificate authorities a TLS connection to a backend trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustedRoots {
    /// The operating system's store.
    #[default]
    System,
    /// Only the certificates in this PEM file (a private authority).
    File(std::path::PathBuf),
}

/// The `sslmode` a PostgreSQL URL asks for, if any.
fn database_ssl_mode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "sslmode")
        .map(|(_, value)| value)
}

/// `name` as a CA file to trust, checked to be readable now so that a
/// typo fails at start rather than at the first reconnect.
fn ca_file(env: &Env, name: &str) -> Result<TrustedRoots, ConfigError> {
    let Some(path) = env.get(name) else {
        return Ok(TrustedRoots::System);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError(format!("{name}: cannot read {path}: {err}")))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError(format!(
            "{name}: {path} holds no PEM certificate"
        )));
    }
    Ok(TrustedRoots::File(path.into()))
}

impl ClusterConnections {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let (Some(redis_url), Some(database_url)) =
            (redis_url_from_env(env)?, env.get("DATABASE_URL"))
        else {
            return Err(ConfigError(
                "cluster mode needs Redis (REDIS_URL or REDIS_CLUSTER_NODES) and DATABASE_URL; for a single process without them, run `support-chat`"
                    .into(),
            ));
        };
        let redis_tls =
            redis_url.starts_with("rediss://") || redis_url.starts_with("rediss-cluster://");
        if !(redis_tls
            || redis_url.starts_with("redis://")
            || redis_url.starts_with("redis-cluster://"))
        {
            return Err(ConfigError(
                "REDIS_URL must start with redis:// (rediss:// for TLS), or redis-cluster:// (rediss-cluster://) for a Redis Cluster".into(),
            ));
        }
        let is_postgres =
            |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !is_postgres(database_url) {
            return Err(ConfigError(
                "DATABASE_URL must start with postgres://".into(),
            ));
        }
        let database_read_url = env.get("DATABASE_READ_URL").map(str::to_owned);
        if let Some(read_url) = &database_read_url {
            if !is_postgres(read_url) {
                return Err(ConfigError(
                    "DATABASE_READ_URL must start with postgres://".into(),
                ));
            }
            if database_ssl_mode(read_url) != database_ssl_mode(database_url) {
                return Err(ConfigError(
                    "DATABASE_READ_URL must ask for the same sslmode as DATABASE_URL".into(),
                ));
            }
        }
        let database_tls = match database_ssl_mode(database_url) {
            None | Some("disable" | "prefer") => false,
            Some("require") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "DATABASE_URL: sslmode={other} is not supported; use require (the certificate \
                     and the host name are always verified, as verify-full does), prefer or disable"
                )))
            }
        };
        let redis_roots = ca_file(env, "REDIS_CA_FILE")?;
        if redis_roots != TrustedRoots::System && !redis_tls {
            return Err(ConfigError(
                "REDIS_CA_FILE is set but REDIS_URL is not rediss://".into(),
            ));
        }
        let database_roots = ca_file(env, "DATABASE_CA_FILE")?;
        if database_roots != TrustedRoots::System && !database_tls {
            return Err(ConfigError(
                "DATABASE_CA_FILE is set but DATABASE_URL does not say sslmode=require".into(),
            ));
        }
        let redis_pool_size: usize = env.parse("REDIS_POOL_SIZE", 1)?;
        let database_pool_size: usize = env.parse("DATABASE_POOL_SIZE", 8)?;
        if redis_pool_size == 0 || database_pool_size == 0 {
            return Err(ConfigError(
                "REDIS_POOL_SIZE and DATABASE_POOL_SIZE must be at least 1".into(),
            ));
        }
        Ok(ClusterConnections {
            redis_url,
            database_url: database_url.to_owned(),
            database_read_url,
            redis_pool_size,
            database_pool_size,
            redis_roots,
            database_roots,
        })
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;

    #[test]
    fn cluster_needs_both_urls() {
        assert!(
            ClusterConnections::from_env(&Env::from_pairs([("REDIS_URL", "redis://x")])).is_err()
        );
        let env = Env::from_pairs([
            ("REDIS_URL", "redis://h:1"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]);
        let connections = ClusterConnections::from_env(&env).unwrap();
        assert_eq!(connections.redis_pool_size, 1);
        let bad = Env::from_pairs([
            ("REDIS_URL", "http://h"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]);
        assert!(ClusterConnections::from_env(&bad).is_err());
    }

    #[test]
    fn tls_settings_are_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let ca = ca.to_str().unwrap();
        let tls = Env::from_pairs([
            ("REDIS_URL", "rediss://h:1"),
            ("DATABASE_URL", "postgres://u@h/db?sslmode=require"),
            ("REDIS_CA_FILE", ca),
            ("DATABASE_CA_FILE", ca),
        ]);
        let connections = ClusterConnections::from_env(&tls).unwrap();
        assert_eq!(connections.redis_roots, TrustedRoots::File(ca.into()));
        assert_eq!(connections.database_roots, TrustedRoots::File(ca.into()));

        let refused = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                ("REDIS_URL", "redis://h:1"),
                ("DATABASE_URL", "postgres://u@h/db"),
            ];
            all.extend_from_slice(pairs);
            let env = Env::from_pairs(all.iter().copied());
            ClusterConnections::from_env(&env).unwrap_err().0
        };
        assert!(refused(&[("REDIS_CA_FILE", ca)]).contains("rediss://"));
        assert!(refused(&[("DATABASE_CA_FILE", ca)]).contains("sslmode=require"));
        assert!(
            refused(&[("DATABASE_URL", "postgres://u@h/db?sslmode=verify-full")])
                .contains("verify-full")
        );
        assert!(refused(&[
            ("REDIS_URL", "rediss://h:1"),
            ("REDIS_CA_FILE", "/nonexistent.pem")
        ])
        .contains("/nonexistent.pem"));
    }

    #[test]
    fn redis_cluster_nodes_become_a_cluster_url() {
        let env = Env::from_pairs([
            (
                "REDIS_CLUSTER_NODES",
                "10.0.0.1:7000, 10.0.0.2:7001,10.0.0.3:7002",
            ),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]);
        let connections = ClusterConnections::from_env(&env).unwrap();
        assert_eq!(
            connections.redis_url,
            "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:7002"
        );
        let given_url = Env::from_pairs([
            ("REDIS_URL", "rediss-cluster://u:p@h1:7000?node=h2:7000"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]);
        assert!(ClusterConnections::from_env(&given_url).is_ok());

        let refused = |pairs: &[(&str, &str)]| {
            let mut all = vec![("DATABASE_URL", "postgres://u@h/db")];
            all.extend_from_slice(pairs);
            ClusterConnections::from_env(&Env::from_pairs(all.iter().copied()))
                .unwrap_err()
                .0
        };
        assert!(refused(&[
            ("REDIS_CLUSTER_NODES", "h1:7000"),
            ("REDIS_URL", "redis://h:1")
        ])
        .contains("not both"));
        assert!(refused(&[("REDIS_CLUSTER_NODES", "h1")]).contains("host:port"));
        assert!(refused(&[("REDIS_CLUSTER_NODES", " , ")]).contains("host:port"));
        assert!(refused(&[("REDIS_CLUSTER_NODES", "h1:port")]).contains("host:port"));
    }

    #[test]
    fn a_read_replica_is_checked_like_the_primary() {
        let with = |read: &str| {
            ClusterConnections::from_env(&Env::from_pairs([
                ("REDIS_URL", "redis://h:1"),
                ("DATABASE_URL", "postgres://u@h/db"),
                ("DATABASE_READ_URL", read),
            ]))
        };
        assert_eq!(
            with("postgres://u@r/db")
                .unwrap()
                .database_read_url
                .as_deref(),
            Some("postgres://u@r/db")
        );
        assert!(with("mysql://r/db").is_err());
        assert!(with("postgres://u@r/db?sslmode=require").is_err());
    }
}

/// The Redis URL of a cluster process: `REDIS_URL` as given, or the seed
/// nodes of `REDIS_CLUSTER_NODES` (`host:port,…`) in the cluster URL form
/// the client reads (`redis-cluster://first?node=second&node=…`). None
/// when neither is set.
pub fn redis_url_from_env(env: &Env) -> Result<Option<String>, ConfigError> {
    let Some(nodes) = env.get("REDIS_CLUSTER_NODES") else {
        return Ok(env.get("REDIS_URL").map(str::to_owned));
    };
    if env.get("REDIS_URL").is_some() {
        return Err(ConfigError(
            "set REDIS_URL or REDIS_CLUSTER_NODES, not both".into(),
        ));
    }
    let nodes: Vec<&str> = nodes
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .collect();
    let valid = |node: &str| {
        node.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    let (Some(first), rest) = (nodes.first(), nodes.get(1..).unwrap_or_default()) else {
        return Err(ConfigError(
            "REDIS_CLUSTER_NODES must list host:port of one or more cluster nodes".into(),
        ));
    };
    if let Some(bad) = nodes.iter().find(|node| !valid(node)) {
        return Err(ConfigError(format!(
            "REDIS_CLUSTER_NODES: {bad:?} is not host:port"
        )));
    }
    let mut url = format!("redis-cluster://{first}");
    for (i, node) in rest.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str("node=");
        url.push_str(node);
    }
    Ok(Some(url))
}
