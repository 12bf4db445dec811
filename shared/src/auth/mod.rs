//! Authentication: who a JWT says the caller is. Verification is pinned to
//! one configured algorithm (HS256 with a shared secret, or RS256 with a PEM
//! public key or a JWKS file); the token's own header never chooses it.

use serde::{Deserialize, Serialize};

use crate::protocol::Role;

mod jwt;

pub use jwt::{TokenMinter, TokenVerifier, VerifiedToken};

/// The caller as the rest of the system sees them, defaults applied: `name`
/// falls back to the user id, `pools` to `["default"]` for agents and admins
/// and is empty for customers. The same value travels in every command as
/// its actor; its serialized field names are part of that internal wire
/// format, which gateways and workers of neighbouring versions share during
/// a rolling update, so they do not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user_id: String,
    pub name: String,
    pub role: Role,
    pub pools: Vec<String>,
}

impl Identity {
    /// The actor of the commands the system issues itself (routing); no
    /// token ever carries this id's role and name together with a
    /// gateway-made command, and rules never consult it.
    pub fn system() -> Identity {
        Identity {
            user_id: "system".to_owned(),
            name: "system".to_owned(),
            role: Role::Admin,
            pools: Vec::new(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn is_agent_of(&self, pool: &str) -> bool {
        self.role == Role::Agent && self.pools.iter().any(|p| p == pool)
    }
}

/// Why a token was refused; `code()` is the CONNECT_ERROR `data.code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token was given")]
    MissingToken,
    #[error("the token is not valid: {0}")]
    InvalidToken(String),
    #[error("the token has expired")]
    TokenExpired,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::TokenExpired => "token_expired",
        }
    }
}

/// The algorithm every token must be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Rs256,
}

/// Where verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// HS256 shared secret.
    Secret(String),
    /// RS256 public key, PEM text.
    PublicKeyPem(String),
    /// RS256 keys as a JWKS document (JSON text); the token's `kid` picks one.
    Jwks(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    pub key: JwtKeySource,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// A key configuration that cannot work (bad PEM, bad JWKS, a key that
/// does not fit the algorithm).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JWT configuration: {0}")]
pub struct JwtConfigError(pub String);
