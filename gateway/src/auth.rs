//! Client authentication: JWTs signed with HS256 (development) or RS256
//! (production, keys from PEM files or a JWKS document).

use std::collections::HashMap;
use std::time::Duration;

use chatmesh_ids::{Clock as _, IdError, SystemClock, UserId};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;

/// The claims chatmesh reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user ID.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default)]
    pub iat: u64,
    /// Not before, seconds since the Unix epoch; checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer, checked when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, checked when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why a token was refused. The text goes to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the query or the Authorization header.
    #[error("missing token: pass ?token= or Authorization: Bearer")]
    Missing,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token does not verify, for the reason given.
    #[error("invalid token: {0}")]
    Invalid(TokenProblem),
}

/// What is wrong with a token that does not verify, in words meant for the
/// client. The JWT library's own wording names its internals, so it goes to
/// the debug log instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// Not three base64url parts holding a JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match the key.
    #[error("bad signature")]
    BadSignature,
    /// `nbf` is in the future (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// An algorithm this node does not verify, such as `none`.
    #[error("unsupported algorithm; this node accepts {accepted}")]
    UnsupportedAlgorithm {
        /// The algorithms configured, for the message.
        accepted: &'static str,
    },
    /// No configured key has the token's key ID.
    #[error("unknown key ID")]
    UnknownKey,
    /// A required claim is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// A claim of the wrong type, such as `exp` as a string.
    #[error("claim {0} has the wrong type")]
    BadClaim(&'static str),
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `sub` is not a user ID.
    #[error("claim sub is not a valid user ID: {0}")]
    BadSubject(IdError),
}

/// The registered claim names a refusal may name.
const CLAIMS: [&str; 6] = ["exp", "sub", "nbf", "iss", "aud", "iat"];

fn claim_name(name: &str) -> Option<&'static str> {
    CLAIMS.into_iter().find(|c| *c == name)
}

/// The refusal a JWT library error stands for.
fn refusal(err: &jsonwebtoken::errors::Error, accepted: &'static str) -> AuthError {
    use TokenProblem as P;
    use jsonwebtoken::errors::ErrorKind as K;
    let problem = match err.kind() {
        K::ExpiredSignature => return AuthError::Expired,
        K::ImmatureSignature => P::NotYetValid,
        K::InvalidSignature => P::BadSignature,
        K::InvalidAlgorithm | K::UnsupportedAlgorithm | K::InvalidAlgorithmName => {
            P::UnsupportedAlgorithm { accepted }
        }
        K::MissingRequiredClaim(c) => claim_name(c).map_or(P::Malformed, P::MissingClaim),
        K::InvalidClaimFormat(c) => claim_name(c).map_or(P::Malformed, P::BadClaim),
        K::InvalidIssuer => P::WrongIssuer,
        K::InvalidAudience => P::WrongAudience,
        _ => P::Malformed,
    };
    AuthError::Invalid(problem)
}

/// The `alg` a token's header names, read without the JWT library, which
/// refuses names it does not know (`none`) as if the header were malformed.
fn named_algorithm(token: &str) -> Option<String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    let mut parts = token.split('.');
    let header = parts.next()?;
    if parts.count() != 2 {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    serde_json::from_slice::<Alg>(&json).ok().map(|h| h.alg)
}

/// The token of an `Authorization` header value `Bearer <token>`. The
/// scheme is case-insensitive (RFC 9110, section 11.1); any other scheme,
/// or no token after it, is no token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Verifies client tokens and, in development, issues them.
pub struct Authenticator {
    hs256: Option<(EncodingKey, DecodingKey)>,
    rs256: HashMap<Option<String>, DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("rs256_keys", &self.rs256.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the keys named in `config`.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Self> {
        let hs256 = config.hs256_secret.as_deref().map(|s| {
            (
                EncodingKey::from_secret(s.as_bytes()),
                DecodingKey::from_secret(s.as_bytes()),
            )
        });
        let mut rs256 = HashMap::new();
        for path in &config.rs256_public_keys {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!(
                    "auth.rs256_public_keys: cannot read {}: {e}",
                    path.display()
                )
            })?;
            let key = DecodingKey::from_rsa_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "auth.rs256_public_keys: {} is not an RSA public key: {e}",
                    path.display()
                )
            })?;
            rs256.insert(None, key);
        }
        if let Some(path) = &config.jwks_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("auth.jwks_file: cannot read {}: {e}", path.display())
            })?;
            let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "auth.jwks_file: {} is not a JWKS document: {e}",
                    path.display()
                )
            })?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| anyhow::anyhow!("auth.jwks_file: {e}"))?;
                rs256.insert(jwk.common.key_id.clone(), key);
            }
        }
        Ok(Self {
            hs256,
            rs256,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
        })
    }

    /// The algorithms this node verifies, for refusals.
    fn accepted(&self) -> &'static str {
        match (self.hs256.is_some(), !self.rs256.is_empty()) {
            (true, true) => "HS256 and RS256",
            (true, false) => "HS256",
            (false, true) => "RS256",
            (false, false) => "no algorithm",
        }
    }

    /// Verifies `token` and returns its user.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let accepted = self.accepted();
        let refuse = |err: jsonwebtoken::errors::Error| {
            tracing::debug!(error = %err, "token refused");
            refusal(&err, accepted)
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|err| match named_algorithm(token) {
                Some(alg) if alg.parse::<Algorithm>().is_err() => {
                    tracing::debug!(error = %err, "token names an unknown algorithm");
                    AuthError::Invalid(TokenProblem::UnsupportedAlgorithm { accepted })
                }
                _ => refuse(err),
            })?;
        let unsupported = AuthError::Invalid(TokenProblem::UnsupportedAlgorithm { accepted });
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(_, d)| d).ok_or(unsupported)?,
            Algorithm::RS256 if self.rs256.is_empty() => return Err(unsupported),
            Algorithm::RS256 => self
                .rs256
                .get(&header.kid)
                .or_else(|| self.rs256.get(&None))
                .ok_or(AuthError::Invalid(TokenProblem::UnknownKey))?,
            _ => return Err(unsupported),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        // The library checks `iss` and `aud` only when the token has them,
        // so a configured one must also be required. `exp` and `sub` are
        // required below, where a mistyped one can be told from a missing one.
        let mut required = Vec::new();
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        // Claims are read as a map, so that a missing or mistyped claim is
        // reported by name rather than as a deserialisation failure.
        let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &validation,
        )
        .map_err(refuse)?
        .claims;
        let invalid = |problem| Err(AuthError::Invalid(problem));
        match claims.get("exp") {
            Some(exp) if exp.is_u64() => {}
            Some(_) => return invalid(TokenProblem::BadClaim("exp")),
            None => return invalid(TokenProblem::MissingClaim("exp")),
        }
        match claims.get("sub") {
            Some(serde_json::Value::String(sub)) => UserId::new(sub.as_str())
                .map_err(|e| AuthError::Invalid(TokenProblem::BadSubject(e))),
            Some(_) => invalid(TokenProblem::BadClaim("sub")),
            None => invalid(TokenProblem::MissingClaim("sub")),
        }
    }

    /// Issues an HS256 token for `user`, valid for `ttl`. Only possible with
    /// an HS256 secret configured; the gateway exposes it in dev mode only.
    pub fn issue(&self, user: &UserId, ttl: Duration) -> Option<String> {
        let (key, _) = self.hs256.as_ref()?;
        let now = SystemClock.now_ms() / 1000;
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp: now + ttl.as_secs(),
            iat: now,
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LEEWAY: u64 = 30;

    fn auth(secret: &str) -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            hs256_secret: Some(secret.into()),
            leeway: Duration::from_secs(LEEWAY),
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn now() -> u64 {
        SystemClock.now_ms() / 1000
    }

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    }

    fn problem(result: Result<UserId, AuthError>) -> TokenProblem {
        match result {
            Err(AuthError::Invalid(p)) => p,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let a = auth("s3cret");
        let user = UserId::new("alice").unwrap();
        let token = a.issue(&user, Duration::from_secs(60)).unwrap();
        assert_eq!(a.verify(&token), Ok(user));
    }

    #[test]
    fn wrong_secret_expired_and_garbage_are_refused() {
        let user = UserId::new("alice").unwrap();
        let token = auth("other").issue(&user, Duration::from_secs(60)).unwrap();
        assert_eq!(
            problem(auth("s3cret").verify(&token)),
            TokenProblem::BadSignature
        );

        let a = auth("s3cret");
        let expired = sign(json!({"sub": "alice", "exp": now() - 3600}));
        assert_eq!(a.verify(&expired), Err(AuthError::Expired));
        for garbage in ["not.a.jwt", "garbage", "", "a.b", "...", "e30.e30.e30.e30"] {
            assert_eq!(
                problem(a.verify(garbage)),
                TokenProblem::Malformed,
                "{garbage}"
            );
        }
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        // alg "none" must never pass.
        let token =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(
            problem(auth("s3cret").verify(token)),
            TokenProblem::UnsupportedAlgorithm { accepted: "HS256" }
        );
    }

    #[test]
    fn a_token_not_yet_valid_is_refused_beyond_the_leeway() {
        let a = auth("s3cret");
        let exp = now() + 7200;
        let later = sign(json!({"sub": "alice", "exp": exp, "nbf": now() + 3600}));
        assert_eq!(problem(a.verify(&later)), TokenProblem::NotYetValid);
        let skewed = sign(json!({"sub": "alice", "exp": exp, "nbf": now() + LEEWAY / 2}));
        assert_eq!(a.verify(&skewed).unwrap().as_str(), "alice");
        let past = sign(json!({"sub": "alice", "exp": exp, "nbf": now() - 60}));
        assert_eq!(a.verify(&past).unwrap().as_str(), "alice");
    }

    #[test]
    fn refusals_are_in_our_words_not_the_librarys() {
        let a = auth("s3cret");
        let exp = now() + 600;
        let cases = [
            (
                sign(json!({"exp": exp})),
                "invalid token: missing claim sub",
            ),
            (
                sign(json!({"sub": "alice"})),
                "invalid token: missing claim exp",
            ),
            (
                sign(json!({"sub": "alice", "exp": exp, "nbf": "soon"})),
                "invalid token: claim nbf has the wrong type",
            ),
            (
                sign(json!({"sub": "alice", "exp": "soon"})),
                "invalid token: claim exp has the wrong type",
            ),
            (
                sign(json!({"sub": 7, "exp": exp})),
                "invalid token: claim sub has the wrong type",
            ),
            (
                sign(json!({"sub": "a b", "exp": exp})),
                "invalid token: claim sub is not a valid user ID: user_id may only contain printable characters without spaces",
            ),
            ("e30.e30.sig".to_owned(), "invalid token: malformed token"),
        ];
        for (token, says) in cases {
            assert_eq!(a.verify(&token).unwrap_err().to_string(), says);
        }
        // A known algorithm in a header the library refuses for another
        // reason (a numeric `kid`) is a malformed token.
        let numeric_kid = "eyJhbGciOiJIUzI1NiIsImtpZCI6NX0.e30.c2ln";
        assert_eq!(problem(a.verify(numeric_kid)), TokenProblem::Malformed);
        let es256 = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln";
        assert_eq!(
            a.verify(es256).unwrap_err().to_string(),
            "invalid token: unsupported algorithm; this node accepts HS256"
        );
    }

    #[test]
    fn a_configured_issuer_and_audience_must_be_present() {
        let a = Authenticator::from_config(&AuthConfig {
            hs256_secret: Some("s3cret".into()),
            issuer: Some("https://id.example.com".into()),
            audience: Some("chatmesh".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        let (iss, aud, exp) = ("https://id.example.com", "chatmesh", now() + 600);
        let good = sign(json!({"sub": "alice", "exp": exp, "iss": iss, "aud": aud}));
        assert_eq!(a.verify(&good).unwrap().as_str(), "alice");
        let cases = [
            (
                json!({"sub": "alice", "exp": exp, "aud": aud}),
                TokenProblem::MissingClaim("iss"),
            ),
            (
                json!({"sub": "alice", "exp": exp, "iss": iss}),
                TokenProblem::MissingClaim("aud"),
            ),
            (
                json!({"sub": "alice", "exp": exp, "iss": "https://evil.example.com", "aud": aud}),
                TokenProblem::WrongIssuer,
            ),
            (
                json!({"sub": "alice", "exp": exp, "iss": iss, "aud": "elsewhere"}),
                TokenProblem::WrongAudience,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                problem(a.verify(&sign(claims.clone()))),
                expected,
                "{claims}"
            );
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k"] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k", ""] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }
}
