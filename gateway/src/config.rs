//! The gateway's settings, from environment variables, checked at start.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use chat_shared::auth::JwtSettings;
use chat_shared::config::{jwt_from_env, ConfigError, Env};
use chat_shared::routing::RoutingConfig;

/// The largest Engine.IO frame accepted; a bigger one closes that
/// connection (REST bodies over it get 413).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// The most a `join-session` reply's messages may weigh as JSON; past it
/// the reply says `hasMore` and the client pages the rest over REST. The
/// reply goes out twice (event and ack), so a join costs at most twice this.
pub const JOIN_REPLY_MAX_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Address to bind (`HOST`, default 0.0.0.0).
    pub host: IpAddr,
    /// Public port (`PORT`, default 3001; 0 picks a free one).
    pub port: u16,
    /// Port for /healthz, /readyz and /metrics alone (`ADMIN_PORT`).
    pub admin_port: Option<u16>,
    pub jwt: JwtSettings,
    /// True when running on the built-in development secret.
    pub development_secret: bool,
    /// Whether `POST /api/dev/token` mints tokens (`DEV_TOKENS`).
    pub dev_tokens: bool,
    /// `send-message` token bucket (`RATE_LIMIT_PER_SEC`, `RATE_LIMIT_BURST`).
    pub rate_limit_per_sec: u32,
    pub rate_limit_burst: u32,
    /// Command partitions (`PARTITIONS`); must match the workers.
    pub partitions: u32,
    /// Backplane key prefix (`KEY_PREFIX`, default `chat`).
    pub key_prefix: String,
    /// How long an event or REST call waits for the worker (`REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Frames queued per socket before it is cut off (`OUTBOUND_QUEUE`).
    /// One worker batch (up to `BATCH_MAX`, 256, messages) can put two
    /// frames per message in a sender's queue at once (its ack and its
    /// echo), so the default leaves room for two such bursts: a client is
    /// cut off for not reading, never for a busy moment. Queued frames are
    /// shared, and an idle socket holds none.
    pub outbound_queue: usize,
    /// Bytes of frames a socket may have queued and unwritten before it is
    /// cut off (`OUTBOUND_QUEUE_BYTES`, default 2 MiB): acks, join
    /// replies, events and pings all count. At least two join replies and
    /// a frame must fit, so a well-behaved join is never refused.
    pub outbound_queue_bytes: usize,
    /// How long a client may take to send a request's head
    /// (`REQUEST_HEAD_TIMEOUT_MS`, default 10 s); slower ones are cut off.
    pub head_timeout: Duration,
    /// How long one write to a socket may take before the socket counts as
    /// not reading and is closed (`WRITE_TIMEOUT_MS`, default 10 s).
    pub write_timeout: Duration,
    /// Whether the Socket.IO WebSocket negotiates permessage-deflate with
    /// clients that offer it (`WS_COMPRESSION`, `on` or `off`, default on).
    pub ws_compression: bool,
    /// Outgoing frames with a payload smaller than this go uncompressed
    /// (`WS_COMPRESSION_MIN_BYTES`, 1 to 65536, default 1024): deflating a
    /// small frame costs more CPU than the bytes it saves are worth.
    pub ws_compression_min_bytes: usize,
    /// Built web UI to serve at `/` (`WEB_DIR`), if it exists.
    pub web_dir: PathBuf,
    /// Sockets one user may have open on this gateway
    /// (`MAX_SOCKETS_PER_USER`, default 20); past it, CONNECT_ERROR
    /// `rate_limited`.
    pub max_sockets_per_user: usize,
    /// Pending and active sessions one customer may have at once
    /// (`MAX_OPEN_SESSIONS_PER_CUSTOMER`, default 5); past it, 429.
    pub max_open_sessions: usize,
    /// The pools customers may open sessions in (`POOLS`, comma-separated).
    /// Unset: `default` and any pool a known agent serves.
    pub pools: Option<Vec<String>>,
    /// Who may frame the web UI (`FRAME_ANCESTORS`, the CSP directive's
    /// sources, default `'self'`; `'none'` forbids framing).
    pub frame_ancestors: String,
    /// Presence heartbeat expiry of connected agents.
    pub presence_ttl: Duration,
    /// How the gateway drains on SIGTERM; see [`DrainConfig`].
    pub drain: DrainConfig,
    /// Assignment modes and capacities (`ASSIGNMENT`, `POOL_CAPACITY`,
    /// `REASSIGN_AFTER_SECS`), as the workers read them: the directory
    /// shows capacities, and agents coming online offer the queue.
    pub routing: RoutingConfig,
    /// File uploads (`ATTACHMENT_*`); see [`AttachmentConfig`].
    pub attachments: AttachmentConfig,
}

/// The timing of a drain (on SIGTERM): unready at once, keep serving for
/// `delay` while load balancers notice, stop accepting, close the sockets
/// in batches spread over `window` (so their reconnections do not all hit
/// the other gateways at once), wait for in-flight commands, and be done
/// within `grace` of the signal whatever happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainConfig {
    /// `DRAIN_DELAY_MS`: default 5000 in a cluster, 0 standalone (no load
    /// balancer to wait for).
    pub delay: Duration,
    /// `DRAIN_WINDOW_MS`: default 10000 in a cluster, 0 standalone (no
    /// other gateway to spare).
    pub window: Duration,
    /// `SHUTDOWN_GRACE_MS`: default 30000 in a cluster, 15000 standalone;
    /// must exceed delay plus window. Keep it below the orchestrator's own
    /// grace period (Kubernetes' `terminationGracePeriodSeconds` minus any
    /// preStop time).
    pub grace: Duration,
}

impl DrainConfig {
    pub fn from_env(env: &Env, standalone: bool) -> Result<Self, ConfigError> {
        let (delay, window, grace) = if standalone {
            (0, 0, 15_000)
        } else {
            (5_000, 10_000, 30_000)
        };
        let config = DrainConfig {
            delay: env.millis_or_zero("DRAIN_DELAY_MS", Duration::from_millis(delay))?,
            window: env.millis_or_zero("DRAIN_WINDOW_MS", Duration::from_millis(window))?,
            grace: env.millis("SHUTDOWN_GRACE_MS", Duration::from_millis(grace))?,
        };
        if config.delay + config.window >= config.grace {
            return Err(ConfigError(
                "SHUTDOWN_GRACE_MS must exceed DRAIN_DELAY_MS + DRAIN_WINDOW_MS, leaving time for in-flight commands"
                    .into(),
            ));
        }
        Ok(config)
    }
}

/// With the published development secret anyone can mint tokens, so the
/// server then listens on loopback unless `HOST` says otherwise.
fn default_host(development_secret: bool) -> IpAddr {
    if development_secret {
        IpAddr::from([127, 0, 0, 1])
    } else {
        IpAddr::from([0, 0, 0, 0])
    }
}

/// `DEV_TOKENS`: on by default where it may be on at all, which is only a
/// standalone server signing with the development secret.
fn dev_tokens(env: &Env, may_mint: bool) -> Result<bool, ConfigError> {
    let wanted = env.flag("DEV_TOKENS", may_mint)?;
    if wanted && !may_mint {
        return Err(ConfigError(
            "DEV_TOKENS=true needs standalone mode with the development secret (no JWT_SECRET); \
             a server with a real key never mints tokens"
                .into(),
        ));
    }
    Ok(wanted)
}

fn bounded(
    env: &Env,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let value: usize = env.parse(name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{name} must be between {} and {}",
            range.start(),
            range.end()
        )))
    }
}

/// `WS_COMPRESSION`: `on` or `off`.
fn ws_compression(env: &Env) -> Result<bool, ConfigError> {
    match env.get("WS_COMPRESSION").map(str::trim) {
        None => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("on") => Ok(true),
        Some(value) if value.eq_ignore_ascii_case("off") => Ok(false),
        Some(value) => Err(ConfigError(format!(
            "WS_COMPRESSION={value:?} must be on or off"
        ))),
    }
}

/// `POOLS`: pool names separated by commas, each a valid pool name.
fn allowed_pools(env: &Env) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(text) = env.get("POOLS") else {
        return Ok(None);
    };
    let mut pools = Vec::new();
    for pool in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        chat_shared::validate::pool(pool)
            .map_err(|error| ConfigError(format!("POOLS: {pool:?}: {}", error.message)))?;
        pools.push(pool.to_owned());
    }
    if pools.is_empty() {
        return Err(ConfigError("POOLS names no pool".into()));
    }
    Ok(Some(pools))
}

/// `FRAME_ANCESTORS`: CSP source expressions separated by spaces; nothing
/// that could end the directive or the header.
fn frame_ancestors(env: &Env) -> Result<String, ConfigError> {
    let value = env.string("FRAME_ANCESTORS", "'self'");
    let allowed = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',') || c == ' ';
    if !value.chars().all(allowed) {
        return Err(ConfigError(format!(
            "FRAME_ANCESTORS={value:?} must be CSP sources separated by spaces (no ';' or ',')"
        )));
    }
    Ok(value)
}

/// What uploads into a session may be, and how long an unused one stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentConfig {
    /// The largest file accepted (`ATTACHMENT_MAX_BYTES`, default 10 MiB).
    pub max_bytes: u64,
    /// The media types accepted (`ATTACHMENT_TYPES`, comma-separated,
    /// lower case), compared with the upload's `Content-Type` without its
    /// parameters.
    pub types: Vec<String>,
    /// How long an upload no message refers to is kept
    /// (`ATTACHMENT_UNREFERENCED_SECS`, default a day).
    pub unreferenced_after: Duration,
    /// How long an upload's body may pause before the upload is given up
    /// (`ATTACHMENT_IDLE_TIMEOUT_MS`, default 30 s). An upload is not under
    /// the whole-request deadline of other REST calls, however long it
    /// takes while bytes keep coming.
    pub idle_timeout: Duration,
}

/// The default of `ATTACHMENT_TYPES`.
pub const DEFAULT_ATTACHMENT_TYPES: &str =
    "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain";

impl AttachmentConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_bytes: u64 = env.parse("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)?;
        if !(1..=1 << 30).contains(&max_bytes) {
            return Err(ConfigError(
                "ATTACHMENT_MAX_BYTES must be between 1 and 1073741824".into(),
            ));
        }
        let unreferenced: u64 = env.parse("ATTACHMENT_UNREFERENCED_SECS", 86_400)?;
        if !(1..=365 * 86_400).contains(&unreferenced) {
            return Err(ConfigError(
                "ATTACHMENT_UNREFERENCED_SECS must be between 1 and 31536000".into(),
            ));
        }
        Ok(AttachmentConfig {
            max_bytes,
            types: attachment_types(env)?,
            unreferenced_after: Duration::from_secs(unreferenced),
            idle_timeout: env.millis("ATTACHMENT_IDLE_TIMEOUT_MS", Duration::from_secs(30))?,
        })
    }

    /// Whether a file of `media_type` (lower case, no parameters) may be
    /// uploaded.
    pub fn accepts(&self, media_type: &str) -> bool {
        self.types.iter().any(|t| t == media_type)
    }
}

/// `ATTACHMENT_TYPES`: `type/subtype` names separated by commas, each of
/// the characters a media type token may have.
fn attachment_types(env: &Env) -> Result<Vec<String>, ConfigError> {
    let text = env.string("ATTACHMENT_TYPES", DEFAULT_ATTACHMENT_TYPES);
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let mut types = Vec::new();
    for name in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let name = name.to_ascii_lowercase();
        match name.split_once('/') {
            Some((kind, sub)) if token(kind) && token(sub) => types.push(name),
            _ => {
                return Err(ConfigError(format!(
                    "ATTACHMENT_TYPES: {name:?} is not a media type (type/subtype)"
                )))
            }
        }
    }
    if types.is_empty() {
        return Err(ConfigError("ATTACHMENT_TYPES names no media type".into()));
    }
    Ok(types)
}

impl GatewayConfig {
    /// Reads the configuration; `standalone` allows the development secret.
    pub fn from_env(env: &Env, standalone: bool) -> Result<Self, ConfigError> {
        let (jwt, development_secret) = jwt_from_env(env, standalone)?;
        let partitions: u32 = env.parse("PARTITIONS", 16)?;
        if partitions == 0 || partitions > 1024 {
            return Err(ConfigError("PARTITIONS must be between 1 and 1024".into()));
        }
        let outbound_queue: usize = env.parse("OUTBOUND_QUEUE", 1024)?;
        if !(8..=1_000_000).contains(&outbound_queue) {
            return Err(ConfigError(
                "OUTBOUND_QUEUE must be between 8 and 1000000".into(),
            ));
        }
        let outbound_queue_bytes: usize = env.parse("OUTBOUND_QUEUE_BYTES", 2 * 1024 * 1024)?;
        let least = 2 * JOIN_REPLY_MAX_BYTES + MAX_PAYLOAD_BYTES;
        if !(least..=1 << 30).contains(&outbound_queue_bytes) {
            return Err(ConfigError(format!(
                "OUTBOUND_QUEUE_BYTES must be between {least} (two join replies and a frame) and 1073741824"
            )));
        }
        let config = GatewayConfig {
            host: env.parse("HOST", default_host(development_secret))?,
            port: env.parse("PORT", 3001)?,
            admin_port: env.optional("ADMIN_PORT")?,
            jwt,
            development_secret,
            dev_tokens: dev_tokens(env, standalone && development_secret)?,
            rate_limit_per_sec: env.parse("RATE_LIMIT_PER_SEC", 20)?,
            rate_limit_burst: env.parse("RATE_LIMIT_BURST", 40)?,
            partitions,
            key_prefix: env.string("KEY_PREFIX", "chat"),
            request_timeout: env.millis("REQUEST_TIMEOUT_MS", Duration::from_secs(10))?,
            ping_interval: env.millis("PING_INTERVAL_MS", Duration::from_secs(25))?,
            ping_timeout: env.millis("PING_TIMEOUT_MS", Duration::from_secs(20))?,
            outbound_queue,
            outbound_queue_bytes,
            write_timeout: env.millis("WRITE_TIMEOUT_MS", Duration::from_secs(10))?,
            head_timeout: env.millis("REQUEST_HEAD_TIMEOUT_MS", Duration::from_secs(10))?,
            ws_compression: ws_compression(env)?,
            ws_compression_min_bytes: bounded(env, "WS_COMPRESSION_MIN_BYTES", 1024, 1..=65_536)?,
            web_dir: PathBuf::from(env.string("WEB_DIR", "web/dist")),
            frame_ancestors: frame_ancestors(env)?,
            max_sockets_per_user: bounded(env, "MAX_SOCKETS_PER_USER", 20, 1..=10_000)?,
            max_open_sessions: bounded(env, "MAX_OPEN_SESSIONS_PER_CUSTOMER", 5, 1..=1_000)?,
            pools: allowed_pools(env)?,
            presence_ttl: Duration::from_secs(30),
            drain: DrainConfig::from_env(env, standalone)?,
            routing: RoutingConfig::from_env(env)?,
            attachments: AttachmentConfig::from_env(env)?,
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_defaults() {
        let config = GatewayConfig::from_env(&Env::default(), true).unwrap();
        assert_eq!(config.port, 3001);
        assert!(config.development_secret);
        assert!(config.dev_tokens);
        assert_eq!(config.rate_limit_per_sec, 20);
        assert_eq!(config.rate_limit_burst, 40);
        assert_eq!(config.admin_port, None);
    }

    #[test]
    fn compression_is_on_by_default_and_can_be_turned_off() {
        let config = GatewayConfig::from_env(&Env::default(), true).unwrap();
        assert!(config.ws_compression);
        assert_eq!(config.ws_compression_min_bytes, 1024);
        let env = Env::from_pairs([
            ("WS_COMPRESSION", "off"),
            ("WS_COMPRESSION_MIN_BYTES", "65536"),
        ]);
        let config = GatewayConfig::from_env(&env, true).unwrap();
        assert!(!config.ws_compression);
        assert_eq!(config.ws_compression_min_bytes, 65_536);
        let on = Env::from_pairs([("WS_COMPRESSION", "ON")]);
        assert!(GatewayConfig::from_env(&on, true).unwrap().ws_compression);
        for (name, value) in [
            ("WS_COMPRESSION", "yes"),
            ("WS_COMPRESSION_MIN_BYTES", "0"),
            ("WS_COMPRESSION_MIN_BYTES", "65537"),
            ("WS_COMPRESSION_MIN_BYTES", "1k"),
        ] {
            let env = Env::from_pairs([(name, value)]);
            let err = GatewayConfig::from_env(&env, true).unwrap_err();
            assert!(err.0.contains(name), "{err}");
        }
    }

    #[test]
    fn dev_tokens_are_only_ever_on_with_the_development_secret() {
        let env = Env::from_pairs([("JWT_SECRET", "0123456789abcdef0123")]);
        let config = GatewayConfig::from_env(&env, true).unwrap();
        assert!(!config.dev_tokens);
        assert_eq!(config.host, IpAddr::from([0, 0, 0, 0]));
        let env = Env::from_pairs([
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("DEV_TOKENS", "true"),
        ]);
        let error = GatewayConfig::from_env(&env, true).unwrap_err();
        assert!(error.0.contains("DEV_TOKENS"), "{error}");
        let off = Env::from_pairs([("DEV_TOKENS", "false")]);
        assert!(!GatewayConfig::from_env(&off, true).unwrap().dev_tokens);
    }

    #[test]
    fn the_development_secret_listens_on_loopback_unless_told_otherwise() {
        let config = GatewayConfig::from_env(&Env::default(), true).unwrap();
        assert_eq!(config.host, IpAddr::from([127, 0, 0, 1]));
        let everywhere = Env::from_pairs([("HOST", "0.0.0.0")]);
        let config = GatewayConfig::from_env(&everywhere, true).unwrap();
        assert_eq!(config.host, IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn drain_defaults_differ_by_mode_and_must_fit_the_grace() {
        let env = Env::from_pairs([("JWT_SECRET", "0123456789abcdef0123")]);
        let cluster = GatewayConfig::from_env(&env, false).unwrap().drain;
        assert_eq!(cluster.delay, Duration::from_secs(5));
        assert_eq!(cluster.window, Duration::from_secs(10));
        assert_eq!(cluster.grace, Duration::from_secs(30));
        let standalone = GatewayConfig::from_env(&Env::default(), true)
            .unwrap()
            .drain;
        assert_eq!(standalone.delay, Duration::ZERO);
        assert_eq!(standalone.window, Duration::ZERO);

        let too_long = Env::from_pairs([("DRAIN_DELAY_MS", "10000"), ("DRAIN_WINDOW_MS", "6000")]);
        let err = GatewayConfig::from_env(&too_long, true).unwrap_err();
        assert!(err.0.contains("SHUTDOWN_GRACE_MS"), "{err}");
        let zero_grace = Env::from_pairs([("SHUTDOWN_GRACE_MS", "0")]);
        assert!(GatewayConfig::from_env(&zero_grace, true).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        for (name, value) in [
            ("PORT", "x"),
            ("PARTITIONS", "0"),
            ("RATE_LIMIT_PER_SEC", "-1"),
            ("ADMIN_PORT", "99999"),
            ("DRAIN_WINDOW_MS", "-5"),
            ("PING_INTERVAL_MS", "18446744073709551615"),
            ("PING_TIMEOUT_MS", "86400001"),
            ("REQUEST_TIMEOUT_MS", "0"),
            ("DRAIN_DELAY_MS", "99999999999"),
            ("OUTBOUND_QUEUE", "100000000"),
            ("OUTBOUND_QUEUE_BYTES", "1000"),
            ("WRITE_TIMEOUT_MS", "0"),
            ("FRAME_ANCESTORS", "'self'; script-src *"),
            ("MAX_SOCKETS_PER_USER", "0"),
            ("MAX_OPEN_SESSIONS_PER_CUSTOMER", "100000"),
            ("POOLS", "sales,bad pool"),
            ("ATTACHMENT_MAX_BYTES", "0"),
            ("ATTACHMENT_TYPES", "image/png,pdf"),
            ("ATTACHMENT_TYPES", " , "),
            ("ATTACHMENT_UNREFERENCED_SECS", "0"),
            ("ATTACHMENT_IDLE_TIMEOUT_MS", "0"),
        ] {
            let env = Env::from_pairs([(name, value)]);
            let err = GatewayConfig::from_env(&env, true).unwrap_err();
            assert!(err.0.contains(name), "{err}");
        }
    }

    #[test]
    fn attachment_defaults_and_types() {
        let config = GatewayConfig::from_env(&Env::default(), true)
            .unwrap()
            .attachments;
        assert_eq!(config.max_bytes, 10 * 1024 * 1024);
        assert_eq!(config.unreferenced_after, Duration::from_secs(86_400));
        assert_eq!(config.idle_timeout, Duration::from_secs(30));
        assert!(config.accepts("image/webp") && config.accepts("text/plain"));
        assert!(!config.accepts("text/html"));
        let env = Env::from_pairs([("ATTACHMENT_TYPES", "Image/PNG, application/zip")]);
        let config = AttachmentConfig::from_env(&env).unwrap();
        assert_eq!(config.types, ["image/png", "application/zip"]);
    }
}
