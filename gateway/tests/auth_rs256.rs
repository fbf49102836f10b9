//! RS256 tokens verify against PEM public keys and JWKS documents; tokens
//! signed by another key or for another audience are refused. The key
//! pair in tests/data exists only for these tests.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use chatmesh_gateway::AuthConfig;
use chatmesh_gateway::auth::{AuthError, Authenticator};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn sign(kid: Option<&str>, claims: serde_json::Value) -> String {
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(data("rs256-private.pem")).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

#[test]
fn pem_public_keys_verify_rs256() {
    let auth = Authenticator::from_config(&AuthConfig {
        rs256_public_keys: vec![data("rs256-public.pem")],
        audience: Some("chatmesh".into()),
        ..AuthConfig::default()
    })
    .unwrap();
    let good = sign(
        None,
        json!({"sub": "alice", "exp": exp(), "aud": "chatmesh"}),
    );
    assert_eq!(auth.verify(&good).unwrap().as_str(), "alice");

    let wrong_audience = sign(
        None,
        json!({"sub": "alice", "exp": exp(), "aud": "elsewhere"}),
    );
    assert!(matches!(
        auth.verify(&wrong_audience),
        Err(AuthError::Invalid(_))
    ));

    // An HS256 token is refused when no HS256 secret is configured, even if
    // it was "signed" with the public key (algorithm confusion).
    let public = std::fs::read(data("rs256-public.pem")).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "mallory", "exp": exp(), "aud": "chatmesh"}),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(auth.verify(&confused).is_err());
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let auth = Authenticator::from_config(&AuthConfig {
        jwks_file: Some(data("jwks.json")),
        ..AuthConfig::default()
    })
    .unwrap();
    let good = sign(Some("test-key-1"), json!({"sub": "bob", "exp": exp()}));
    assert_eq!(auth.verify(&good).unwrap().as_str(), "bob");
    let unknown_kid = sign(Some("rotated-away"), json!({"sub": "bob", "exp": exp()}));
    assert!(matches!(
        auth.verify(&unknown_kid),
        Err(AuthError::Invalid(_))
    ));
}
