//! What a client presents before its WebSocket is upgraded: the token, the
//! URL query and the Authorization header. Any input is verified, parsed or
//! refused without a panic, and never verifies unless it is a signed
//! three-part JWT; what the gateway writes itself (a query, a bearer
//! header, a development token) reads back as it was written.
//!
//! The input is up to four lines: a token, a URL query, an Authorization
//! header value and a user ID.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use chatmesh_gateway::auth::{Authenticator, bearer_token};
use chatmesh_gateway::{AuthConfig, ConnectRequest};
use chatmesh_ids::{ChannelId, UserId};
use libfuzzer_sys::fuzz_target;

/// The HS256 secret of the seed corpus's tokens.
const SECRET: &str = "fuzz-secret-0123456789";

/// HS256 only, as in development.
static DEV: LazyLock<Authenticator> = LazyLock::new(|| {
    Authenticator::from_config(&AuthConfig {
        hs256_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    })
    .expect("the HS256 config loads")
});

/// HS256 and the test JWKS, with an issuer and an audience to check.
static STRICT: LazyLock<Authenticator> = LazyLock::new(|| {
    let jwks = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gateway/tests/data/jwks.json"
    );
    Authenticator::from_config(&AuthConfig {
        hs256_secret: Some(SECRET.into()),
        jwks_file: Some(jwks.into()),
        issuer: Some("https://id.example.com".into()),
        audience: Some("chatmesh".into()),
        ..AuthConfig::default()
    })
    .expect("the JWKS config loads")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or_default();
    let (token, query, authorization, user) = (next(), next(), next(), next());

    for auth in [&*DEV, &*STRICT] {
        if let Ok(verified) = auth.verify(token) {
            assert_eq!(
                token.split('.').count(),
                3,
                "{token:?} verified as {verified}"
            );
        }
    }

    if let Some(found) = bearer_token(authorization) {
        assert!(
            !found.is_empty() && !found.starts_with(' '),
            "{authorization:?}"
        );
        assert!(authorization.ends_with(found), "{authorization:?}");
    }
    if !token.is_empty() && !token.starts_with(' ') {
        for scheme in ["Bearer", "bearer", "BeArEr"] {
            let header = format!("{scheme} {token}");
            assert_eq!(bearer_token(&header), Some(token), "{header:?}");
        }
    }

    let request = ConnectRequest::parse(query, Some(authorization));
    if let Some(token) = &request.token {
        let _ = DEV.verify(token);
    }
    if let Some(channel) = &request.channel
        && let Ok(id) = ChannelId::new(channel.as_str())
    {
        assert_eq!(id.as_str(), channel);
        assert!(channel != "." && channel != "..");
    }

    // A query written as a client library writes one reads back exactly.
    let written = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("channel", user)
        .append_pair("format", authorization)
        .finish();
    assert_eq!(
        ConnectRequest::parse(&written, Some(authorization)),
        ConnectRequest {
            token: Some(token.to_owned()),
            channel: Some(user.to_owned()),
            format: Some(authorization.to_owned()),
        },
        "{written}"
    );

    if let Ok(user) = UserId::new(user) {
        for auth in [&*DEV, &*STRICT] {
            let issued = auth
                .issue(&user, Duration::from_secs(60))
                .expect("an HS256 secret is configured");
            assert_eq!(auth.verify(&issued).as_ref(), Ok(&user));
        }
    }
});
