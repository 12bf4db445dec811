//! Tokens as the identity provider would issue them: HS256 with the secret
//! every test server and cluster is started with.

use chat_shared::auth::{Identity, TokenMinter};
use chat_shared::protocol::Role;

/// The HS256 secret every test server and cluster verifies tokens with.
pub const SECRET: &str = "standalone-integration-secret-0123456789";

fn identity(user: &str, role: &str, pools: &[&str]) -> Identity {
    Identity {
        user_id: user.to_owned(),
        name: format!("{user} name"),
        role: Role::parse(role).expect("customer, agent or admin"),
        pools: pools.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// A token valid for an hour.
pub fn token(user: &str, role: &str, pools: &[&str]) -> String {
    token_with_ttl(user, role, pools, 3600)
}

/// A token expiring `ttl_seconds` from now (negative: already expired).
pub fn token_with_ttl(user: &str, role: &str, pools: &[&str], ttl_seconds: i64) -> String {
    token_signed_with(SECRET, user, role, pools, ttl_seconds)
}

pub fn token_signed_with(
    secret: &str,
    user: &str,
    role: &str,
    pools: &[&str],
    ttl_seconds: i64,
) -> String {
    TokenMinter::new(secret)
        .mint(&identity(user, role, pools), ttl_seconds)
        .expect("token minted")
}
