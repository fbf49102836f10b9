//! Client authentication: JWTs signed with HS256 (development) or RS256
//! (production, keys from PEM files or a JWKS document).

use std::collections::HashMap;
use std::time::Duration;

use chatmesh_ids::{Clock as _, SystemClock, UserId};
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
    /// Bad signature, wrong algorithm, unknown key, or malformed.
    #[error("invalid token: {0}")]
    Invalid(String),
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

    /// Verifies `token` and returns its user.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(_, d)| d),
            Algorithm::RS256 => self
                .rs256
                .get(&header.kid)
                .or_else(|| self.rs256.get(&None)),
            other => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {other:?} is not accepted"
                )));
            }
        }
        .ok_or_else(|| AuthError::Invalid("no key for this token's algorithm or key ID".into()))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        UserId::new(data.claims.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))
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
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &str) -> Authenticator {
        Authenticator::from_config(&AuthConfig {
            hs256_secret: Some(secret.into()),
            ..AuthConfig::default()
        })
        .unwrap()
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
        assert!(matches!(
            auth("s3cret").verify(&token),
            Err(AuthError::Invalid(_))
        ));

        let a = auth("s3cret");
        let claims = Claims {
            sub: "alice".into(),
            exp: (SystemClock.now_ms() / 1000) - 3600,
            iat: 0,
            iss: None,
            aud: None,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(a.verify(&expired), Err(AuthError::Expired));
        assert!(matches!(a.verify("not.a.jwt"), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        // alg "none" must never pass.
        let token =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(auth("s3cret").verify(token).is_err());
    }
}
