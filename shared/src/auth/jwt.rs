//! JWT verification and (for development) minting.
//!
//! `TokenVerifier` turns the token a client presents into an [`Identity`].
//! The algorithm comes from configuration alone: a token whose header names
//! any other algorithm (`none` included) is refused before any key is
//! touched, which closes the classic "HS256 signed with the RSA public key"
//! confusion. Keys are built once at start-up so that a bad PEM or JWKS stops
//! the process instead of failing every connection later.
//!
//! `TokenMinter` signs HS256 tokens with the shared secret; the development
//! token endpoint and the tests use it, production tokens come from the
//! identity provider.

use std::collections::HashMap;

use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{
    decode, decode_header, encode, get_current_timestamp, Algorithm, DecodingKey, EncodingKey,
    Header, Validation,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AuthError, Identity, JwtAlgorithm, JwtConfigError, JwtKeySource, JwtSettings};
use crate::protocol::{Role, DEFAULT_POOL};
use crate::validate;
use crate::Timestamp;

/// Clock skew tolerated on `exp` and `nbf` between the token issuer and us.
/// Kept small: it extends the life of every token by this much.
const LEEWAY_SECONDS: u64 = 5;

/// Tokens longer than this are refused unparsed. Real tokens are well under
/// 2 KiB; the cap bounds the work an anonymous caller can make us do.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verification keys: one fixed key, or RS256 keys chosen by the token's
/// `kid` (JWKS).
#[derive(Clone, Debug)]
enum Keys {
    Single(DecodingKey),
    ByKid(HashMap<String, DecodingKey>),
}

/// Checks tokens against the configured algorithm, key(s), issuer and
/// audience. Cheap to clone; build it once at start-up.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    algorithm: Algorithm,
    keys: Keys,
    validation: Validation,
}

impl TokenVerifier {
    /// Builds the keys and validation rules once; fails on a key that
    /// cannot work with the configured algorithm.
    pub fn new(settings: &JwtSettings) -> Result<Self, JwtConfigError> {
        let (algorithm, keys) = match (settings.algorithm, &settings.key) {
            (JwtAlgorithm::Hs256, JwtKeySource::Secret(secret)) => {
                if secret.is_empty() {
                    return Err(config_error("the HS256 secret is empty"));
                }
                (
                    Algorithm::HS256,
                    Keys::Single(DecodingKey::from_secret(secret.as_bytes())),
                )
            }
            (JwtAlgorithm::Rs256, JwtKeySource::PublicKeyPem(pem)) => {
                // The PEM parser accepts private keys too, and verification
                // would then fail for every token; say so at start-up.
                if pem.contains("PRIVATE KEY") {
                    return Err(config_error(
                        "an RS256 private key was given where the public key belongs",
                    ));
                }
                let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|err| config_error(format!("bad RS256 public key PEM: {err}")))?;
                (Algorithm::RS256, Keys::Single(key))
            }
            (JwtAlgorithm::Rs256, JwtKeySource::Jwks(document)) => {
                (Algorithm::RS256, Keys::ByKid(parse_jwks(document)?))
            }
            (JwtAlgorithm::Hs256, _) => {
                return Err(config_error("HS256 needs a shared secret"));
            }
            (JwtAlgorithm::Rs256, JwtKeySource::Secret(_)) => {
                return Err(config_error("RS256 needs a public key PEM or a JWKS"));
            }
        };

        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // The library only compares `iss`/`aud` when the token carries them,
        // so a configured value must also make the claim required.
        let mut required = vec!["exp"];
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience a token's `aud` is not ours to
            // judge; the library would otherwise refuse any token carrying it.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);

        Ok(TokenVerifier {
            algorithm,
            keys,
            validation,
        })
    }

    /// The caller's identity, defaults applied, or why the token is refused:
    /// `MissingToken` for an empty one, `TokenExpired` for a genuine token
    /// past its `exp`, `InvalidToken` for everything else.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.verify_token(token).map(|verified| verified.identity)
    }

    /// As [`verify`](Self::verify), with the token's expiry: a socket's
    /// rights last no longer than the token that granted them.
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("the token is too long"));
        }

        let header =
            decode_header(token).map_err(|err| invalid(format!("malformed header: {err}")))?;
        // Checked here as well as by `decode` so that a JWKS lookup never
        // happens for a token of the wrong algorithm.
        if header.alg != self.algorithm {
            return Err(invalid(format!(
                "signed with {:?}, expected {:?}",
                header.alg, self.algorithm
            )));
        }
        // No header extension is understood here, and RFC 7515 says a
        // token naming critical extensions we do not know must be refused.
        if header.crit.is_some() {
            return Err(invalid("unsupported critical header extensions"));
        }

        let key = match &self.keys {
            Keys::Single(key) => key,
            Keys::ByKid(keys) => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| invalid("the token names no key id (kid)"))?;
                keys.get(kid)
                    .ok_or_else(|| invalid(format!("unknown key id {kid:?}")))?
            }
        };

        let data = decode::<TokenClaims>(token, key, &self.validation).map_err(decode_error)?;
        let exp = data
            .claims
            .exp
            .ok_or_else(|| invalid("missing claim `exp`"))?;
        let expires_at = Timestamp::from_millis(exp.saturating_mul(1000));
        let identity = identity_from_claims(data.claims)?;
        Ok(VerifiedToken {
            identity,
            expires_at,
        })
    }
}

/// A token that passed verification: who it names and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub identity: Identity,
    pub expires_at: Timestamp,
}

/// The claims this system reads; anything else in the token is ignored.
/// Every field is optional at this level so that a missing one yields a
/// precise reason instead of a generic parse error.
#[derive(Deserialize)]
struct TokenClaims {
    exp: Option<i64>,
    sub: Option<String>,
    name: Option<String>,
    role: Option<String>,
    pools: Option<Vec<String>>,
}

fn identity_from_claims(claims: TokenClaims) -> Result<Identity, AuthError> {
    let user_id = claims
        .sub
        .filter(|sub| !sub.is_empty())
        .ok_or_else(|| invalid("missing claim `sub`"))?;
    validate::user_id(&user_id, "sub").map_err(|err| invalid(err.message))?;

    let role_text = claims.role.ok_or_else(|| invalid("missing claim `role`"))?;
    let role =
        Role::parse(&role_text).ok_or_else(|| invalid(format!("unknown role {role_text:?}")))?;

    let name = claims
        .name
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| user_id.clone());
    validate::display_name(&name).map_err(|err| invalid(err.message))?;

    let pools = match role {
        // Customers belong to no pool; whatever the token says is ignored.
        Role::Customer => Vec::new(),
        Role::Agent | Role::Admin => {
            let mut pools: Vec<String> = Vec::new();
            for pool in claims.pools.unwrap_or_default() {
                // Pool names end up in channel names, so they follow the
                // same rules as everywhere else.
                validate::pool(&pool).map_err(|err| invalid(err.message))?;
                if !pools.contains(&pool) {
                    pools.push(pool);
                }
            }
            if pools.is_empty() {
                pools.push(DEFAULT_POOL.to_owned());
            }
            pools
        }
    };

    Ok(Identity {
        user_id,
        name,
        role,
        pools,
    })
}

fn decode_error(err: JwtError) -> AuthError {
    let reason = match err.kind() {
        ErrorKind::ExpiredSignature => return AuthError::TokenExpired,
        ErrorKind::InvalidSignature => "the signature does not match".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "wrong signing algorithm".to_owned()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim `{claim}`"),
        ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
        ErrorKind::InvalidAudience => "wrong audience".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".to_owned(),
        ErrorKind::Json(_) => format!("malformed claims: {err}"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "malformed token".to_owned()
        }
        _ => format!("cannot verify: {err}"),
    };
    AuthError::InvalidToken(reason)
}

/// Reads the RS256 signing keys of a JWKS document. Keys of other types or
/// uses, or without a `kid`, are skipped: a provider's JWKS often lists
/// encryption or EC keys next to the ones that matter here.
fn parse_jwks(document: &str) -> Result<HashMap<String, DecodingKey>, JwtConfigError> {
    let parsed: Value = serde_json::from_str(document)
        .map_err(|err| config_error(format!("the JWKS is not JSON: {err}")))?;
    let entries = parsed
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| config_error("the JWKS has no `keys` array"))?;

    let mut keys = HashMap::new();
    for entry in entries {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        let usable = field("kty") == Some("RSA")
            && field("use").is_none_or(|usage| usage == "sig")
            && field("alg").is_none_or(|alg| alg == "RS256");
        let (Some(kid), Some(n), Some(e)) = (field("kid"), field("n"), field("e")) else {
            continue;
        };
        if !usable {
            continue;
        }
        let key = DecodingKey::from_rsa_components(n, e)
            .map_err(|err| config_error(format!("JWKS key {kid:?} is malformed: {err}")))?;
        // Two keys under one kid would make the choice arbitrary.
        if keys.insert(kid.to_owned(), key).is_some() {
            return Err(config_error(format!("the JWKS lists key id {kid:?} twice")));
        }
    }
    if keys.is_empty() {
        return Err(config_error(
            "the JWKS holds no RSA signing key with a key id",
        ));
    }
    Ok(keys)
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::InvalidToken(reason.into())
}

fn config_error(reason: impl Into<String>) -> JwtConfigError {
    JwtConfigError(reason.into())
}

/// The claims `TokenMinter` writes: the ones `TokenVerifier` reads, plus
/// `iat` and `exp`.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    name: &'a str,
    role: &'static str,
    pools: &'a [String],
    iat: i64,
    exp: i64,
}

/// Signs HS256 tokens with the shared secret.
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("TokenMinter").finish_non_exhaustive()
    }
}

impl TokenMinter {
    pub fn new(secret: &str) -> Self {
        TokenMinter {
            key: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// A token for `identity` valid for `ttl_seconds` from now (a negative
    /// value gives an already expired token, which tests use).
    pub fn mint(&self, identity: &Identity, ttl_seconds: i64) -> Result<String, JwtConfigError> {
        let now = i64::try_from(get_current_timestamp()).unwrap_or(i64::MAX);
        let claims = MintedClaims {
            sub: &identity.user_id,
            name: &identity.name,
            role: identity.role.as_str(),
            pools: &identity.pools,
            iat: now,
            exp: now.saturating_add(ttl_seconds),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|err| config_error(format!("cannot sign a token: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
    const RSA_PRIVATE: &str = include_str!("../../tests/fixtures/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/rsa_public.pem");
    const RSA_OTHER_PRIVATE: &str = include_str!("../../tests/fixtures/rsa_other_private.pem");
    const JWKS: &str = include_str!("../../tests/fixtures/jwks.json");

    fn now() -> i64 {
        i64::try_from(get_current_timestamp()).unwrap()
    }

    fn hs256_settings() -> JwtSettings {
        JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            key: JwtKeySource::Secret(SECRET.to_owned()),
            issuer: None,
            audience: None,
        }
    }

    fn hs256_verifier() -> TokenVerifier {
        TokenVerifier::new(&hs256_settings()).unwrap()
    }

    fn rs256_verifier(key: JwtKeySource) -> TokenVerifier {
        TokenVerifier::new(&JwtSettings {
            algorithm: JwtAlgorithm::Rs256,
            key,
            issuer: None,
            audience: None,
        })
        .unwrap()
    }

    /// Signs arbitrary JSON claims, so tests can build tokens the minter
    /// never would.
    fn sign_hs256(secret: &[u8], claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn sign_rs256(private_pem: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        encode(
            &header,
            claims,
            &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn agent_claims() -> Value {
        serde_json::json!({
            "sub": "agent-1",
            "name": "Alice",
            "role": "agent",
            "pools": ["billing", "sales"],
            "exp": now() + 300,
        })
    }

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    /// Asserts the token was refused as invalid and returns the reason.
    fn assert_invalid(result: Result<Identity, AuthError>) -> String {
        match result {
            Err(AuthError::InvalidToken(reason)) => reason,
            other => panic!("expected InvalidToken, got {other:?}"),
        }
    }

    fn assert_invalid_because(result: Result<Identity, AuthError>, expected: &str) {
        let reason = assert_invalid(result);
        assert!(
            reason.contains(expected),
            "reason {reason:?} does not mention {expected:?}"
        );
    }

    #[test]
    fn hs256_token_gives_identity() {
        let identity = hs256_verifier()
            .verify(&sign_hs256(SECRET.as_bytes(), &agent_claims()))
            .unwrap();
        assert_eq!(
            identity,
            Identity {
                user_id: "agent-1".into(),
                name: "Alice".into(),
                role: Role::Agent,
                pools: vec!["billing".into(), "sales".into()],
            }
        );
    }

    #[test]
    fn defaults_are_applied() {
        let verifier = hs256_verifier();
        let exp = now() + 300;

        let agent = verifier
            .verify(&sign_hs256(
                SECRET.as_bytes(),
                &serde_json::json!({ "sub": "a1", "role": "agent", "exp": exp }),
            ))
            .unwrap();
        assert_eq!(agent.name, "a1");
        assert_eq!(agent.pools, vec!["default".to_owned()]);

        let admin = verifier
            .verify(&sign_hs256(
                SECRET.as_bytes(),
                &serde_json::json!({ "sub": "root", "name": "", "role": "admin", "pools": [], "exp": exp }),
            ))
            .unwrap();
        assert_eq!(admin.name, "root");
        assert_eq!(admin.pools, vec!["default".to_owned()]);

        let customer = verifier
            .verify(&sign_hs256(
                SECRET.as_bytes(),
                &serde_json::json!({ "sub": "c1", "name": "Carol", "role": "customer", "pools": ["sales"], "exp": exp }),
            ))
            .unwrap();
        assert_eq!(customer.role, Role::Customer);
        assert_eq!(customer.name, "Carol");
        assert!(customer.pools.is_empty());
    }

    #[test]
    fn minted_token_round_trips() {
        let identity = Identity {
            user_id: "agent-7".into(),
            name: "Bob".into(),
            role: Role::Agent,
            pools: vec!["support".into()],
        };
        let token = TokenMinter::new(SECRET).mint(&identity, 60).unwrap();
        assert_eq!(hs256_verifier().verify(&token).unwrap(), identity);
    }

    #[test]
    fn missing_token() {
        let verifier = hs256_verifier();
        assert_eq!(verifier.verify(""), Err(AuthError::MissingToken));
        assert_eq!(verifier.verify("  \t"), Err(AuthError::MissingToken));
    }

    #[test]
    fn malformed_token() {
        let verifier = hs256_verifier();
        for token in [
            "garbage",
            "a.b.c",
            "a.b",
            "....",
            "eyJhbGciOiJIUzI1NiJ9.!!!.x",
        ] {
            assert_invalid(verifier.verify(token));
        }
    }

    #[test]
    fn wrong_secret() {
        let token = sign_hs256(b"another-secret", &agent_claims());
        assert_invalid_because(hs256_verifier().verify(&token), "signature");
    }

    #[test]
    fn expired_token() {
        let mut claims = agent_claims();
        claims["exp"] = (now() - 60).into();
        let token = sign_hs256(SECRET.as_bytes(), &claims);
        assert_eq!(
            hs256_verifier().verify(&token),
            Err(AuthError::TokenExpired)
        );

        let identity = Identity {
            user_id: "u".into(),
            name: "u".into(),
            role: Role::Customer,
            pools: vec![],
        };
        let minted = TokenMinter::new(SECRET).mint(&identity, -60).unwrap();
        assert_eq!(
            hs256_verifier().verify(&minted),
            Err(AuthError::TokenExpired)
        );
    }

    #[test]
    fn expired_token_with_bad_signature_is_invalid_not_expired() {
        let mut claims = agent_claims();
        claims["exp"] = (now() - 60).into();
        let token = sign_hs256(b"another-secret", &claims);
        assert_invalid(hs256_verifier().verify(&token));
    }

    #[test]
    fn missing_or_malformed_exp() {
        let mut claims = agent_claims();
        claims.as_object_mut().unwrap().remove("exp");
        assert_invalid_because(
            hs256_verifier().verify(&sign_hs256(SECRET.as_bytes(), &claims)),
            "`exp`",
        );

        claims["exp"] = "tomorrow".into();
        assert_invalid(hs256_verifier().verify(&sign_hs256(SECRET.as_bytes(), &claims)));
    }

    #[test]
    fn alg_none_rejected() {
        let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = base64url(agent_claims().to_string().as_bytes());
        let verifier = hs256_verifier();
        assert_invalid(verifier.verify(&format!("{header}.{payload}.")));
        assert_invalid(verifier.verify(&format!("{header}.{payload}")));
    }

    #[test]
    fn hs256_token_rejected_by_rs256_verifier() {
        // The algorithm-confusion attack: HMAC keyed with the public key.
        let token = sign_hs256(RSA_PUBLIC.as_bytes(), &agent_claims());
        let verifier = rs256_verifier(JwtKeySource::PublicKeyPem(RSA_PUBLIC.to_owned()));
        assert_invalid_because(verifier.verify(&token), "HS256");
    }

    #[test]
    fn rs256_token_rejected_by_hs256_verifier() {
        let token = sign_rs256(RSA_PRIVATE, None, &agent_claims());
        assert_invalid(hs256_verifier().verify(&token));
    }

    #[test]
    fn rs256_with_pem() {
        let verifier = rs256_verifier(JwtKeySource::PublicKeyPem(RSA_PUBLIC.to_owned()));
        let identity = verifier
            .verify(&sign_rs256(RSA_PRIVATE, None, &agent_claims()))
            .unwrap();
        assert_eq!(identity.user_id, "agent-1");

        // Signed by another key.
        assert_invalid_because(
            verifier.verify(&sign_rs256(RSA_OTHER_PRIVATE, None, &agent_claims())),
            "signature",
        );
    }

    #[test]
    fn rs256_with_jwks_picks_key_by_kid() {
        let verifier = rs256_verifier(JwtKeySource::Jwks(JWKS.to_owned()));
        let claims = agent_claims();

        let first = sign_rs256(RSA_PRIVATE, Some("test-key-1"), &claims);
        assert_eq!(verifier.verify(&first).unwrap().user_id, "agent-1");
        let second = sign_rs256(RSA_OTHER_PRIVATE, Some("test-key-2"), &claims);
        assert_eq!(verifier.verify(&second).unwrap().user_id, "agent-1");

        // Right key set, wrong key for the kid named.
        assert_invalid(verifier.verify(&sign_rs256(RSA_PRIVATE, Some("test-key-2"), &claims)));
        // Unknown or missing kid.
        assert_invalid_because(
            verifier.verify(&sign_rs256(RSA_PRIVATE, Some("nope"), &claims)),
            "unknown key id",
        );
        assert_invalid(verifier.verify(&sign_rs256(RSA_PRIVATE, None, &claims)));
    }

    #[test]
    fn jwks_configuration_errors() {
        let build = |doc: &str| {
            TokenVerifier::new(&JwtSettings {
                algorithm: JwtAlgorithm::Rs256,
                key: JwtKeySource::Jwks(doc.to_owned()),
                issuer: None,
                audience: None,
            })
        };
        assert!(build("not json").is_err());
        assert!(build(r#"{"nokeys": []}"#).is_err());
        assert!(build(r#"{"keys": []}"#).is_err());
        // Only unusable keys: EC, encryption use, no kid.
        assert!(build(
            r#"{"keys": [
                {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
                {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "n": "AQAB", "e": "AQAB"}
            ]}"#
        )
        .is_err());
        // Unusable keys next to a good one are skipped.
        let mut doc: Value = serde_json::from_str(JWKS).unwrap();
        doc["keys"].as_array_mut().unwrap().push(
            serde_json::json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"}),
        );
        assert!(build(&doc.to_string()).is_ok());
    }

    #[test]
    fn mismatched_key_configuration_is_refused() {
        let settings = |algorithm, key| JwtSettings {
            algorithm,
            key,
            issuer: None,
            audience: None,
        };
        assert!(TokenVerifier::new(&settings(
            JwtAlgorithm::Hs256,
            JwtKeySource::PublicKeyPem(RSA_PUBLIC.to_owned())
        ))
        .is_err());
        assert!(TokenVerifier::new(&settings(
            JwtAlgorithm::Rs256,
            JwtKeySource::Secret(SECRET.to_owned())
        ))
        .is_err());
        assert!(TokenVerifier::new(&settings(
            JwtAlgorithm::Rs256,
            JwtKeySource::PublicKeyPem("not a pem".to_owned())
        ))
        .is_err());
        assert!(TokenVerifier::new(&settings(
            JwtAlgorithm::Rs256,
            JwtKeySource::PublicKeyPem(RSA_PRIVATE.to_owned())
        ))
        .is_err());
        assert!(TokenVerifier::new(&settings(
            JwtAlgorithm::Hs256,
            JwtKeySource::Secret(String::new())
        ))
        .is_err());
    }

    #[test]
    fn issuer_and_audience_enforced_when_configured() {
        let verifier = TokenVerifier::new(&JwtSettings {
            issuer: Some("https://issuer.example".into()),
            audience: Some("support-chat".into()),
            ..hs256_settings()
        })
        .unwrap();
        let with = |iss: Option<&str>, aud: Option<&str>| {
            let mut claims = agent_claims();
            if let Some(iss) = iss {
                claims["iss"] = iss.into();
            }
            if let Some(aud) = aud {
                claims["aud"] = aud.into();
            }
            verifier.verify(&sign_hs256(SECRET.as_bytes(), &claims))
        };

        assert!(with(Some("https://issuer.example"), Some("support-chat")).is_ok());
        assert_invalid(with(Some("https://evil.example"), Some("support-chat")));
        assert_invalid(with(Some("https://issuer.example"), Some("other-app")));
        assert_invalid(with(None, Some("support-chat")));
        assert_invalid(with(Some("https://issuer.example"), None));

        // An audience array containing ours is accepted.
        let mut claims = agent_claims();
        claims["iss"] = "https://issuer.example".into();
        claims["aud"] = serde_json::json!(["other-app", "support-chat"]);
        assert!(verifier
            .verify(&sign_hs256(SECRET.as_bytes(), &claims))
            .is_ok());
    }

    #[test]
    fn issuer_and_audience_ignored_when_not_configured() {
        let mut claims = agent_claims();
        claims["iss"] = "anyone".into();
        claims["aud"] = "anything".into();
        assert!(hs256_verifier()
            .verify(&sign_hs256(SECRET.as_bytes(), &claims))
            .is_ok());
        claims["aud"] = serde_json::json!(["a", "b"]);
        assert!(hs256_verifier()
            .verify(&sign_hs256(SECRET.as_bytes(), &claims))
            .is_ok());
    }

    #[test]
    fn bad_claims_rejected() {
        let verifier = hs256_verifier();
        let check = |expected: &str, edit: &dyn Fn(&mut Value)| {
            let mut claims = agent_claims();
            edit(&mut claims);
            assert_invalid_because(
                verifier.verify(&sign_hs256(SECRET.as_bytes(), &claims)),
                expected,
            );
        };
        check("role", &|c| c["role"] = "superuser".into());
        check("role", &|c| c["role"] = "Agent".into());
        check("role", &|c| {
            c.as_object_mut().unwrap().remove("role");
        });
        check("sub", &|c| {
            c.as_object_mut().unwrap().remove("sub");
        });
        check("sub", &|c| c["sub"] = "".into());
        check("sub", &|c| c["sub"] = "x".repeat(500).into());
        check("malformed claims", &|c| c["sub"] = 42.into());
        check("malformed claims", &|c| c["name"] = 42.into());
        check("malformed claims", &|c| c["pools"] = "billing".into());
        check("malformed claims", &|c| {
            c["pools"] = serde_json::json!([1, 2])
        });
        check("pool", &|c| {
            c["pools"] = serde_json::json!(["bad pool name!"])
        });
    }

    #[test]
    fn not_yet_valid_token_rejected() {
        let mut claims = agent_claims();
        claims["nbf"] = (now() + 600).into();
        assert_invalid(hs256_verifier().verify(&sign_hs256(SECRET.as_bytes(), &claims)));
    }
}
