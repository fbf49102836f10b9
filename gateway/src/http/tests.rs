//! The message-change routes against the in-memory chat service: a whole
//! gateway router whose chat port is the fake, called without a network.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chatmesh_ids::{ChannelId, UserId};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::memory::{MemoryChat, MemoryFeed, MemoryGaps, MemoryLiveness};
use crate::ports::{ChatApi, SendCommand};
use crate::ring::nodes::Routes;
use crate::ws::hub::Hub;
use crate::ws::session::{Placement, SessionContext};
use crate::{Gateway, GatewayConfig, Reads};
use chatmesh_upstream::{balance, retry::Retries};

const CONFIG: &str = r#"
node_id = "gw-0"
http_addr = "127.0.0.1:0"
public_url = "ws://127.0.0.1:1"
[redis]
nodes = ["redis://127.0.0.1:1"]
[services]
chat = "http://127.0.0.1:1"
presence = "http://127.0.0.1:1"
storage = "http://127.0.0.1:1"
media = "http://127.0.0.1:1"
[auth]
hs256_secret = "0123456789abcdef0123456789abcdef"
"#;

struct Api {
    chat: Arc<MemoryChat>,
    gw: Arc<Gateway>,
}

/// A gateway whose chat port is an in-memory chat with `general` (Alice
/// owns it, Bob is a member); its other services are never reached.
fn api() -> Api {
    let chat = Arc::new(MemoryChat::default().with_channel("general", &["alice", "bob"]));
    let config: GatewayConfig = toml::from_str(CONFIG).expect("test config");
    let auth = crate::auth::Authenticator::from_config(&config.auth).expect("test auth");
    let nowhere = || {
        balance::single(
            tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
        )
    };
    let gaps = Arc::new(MemoryGaps::default());
    let hub = Hub::with_gaps(
        Arc::new(MemoryFeed::default()),
        gaps.clone(),
        Duration::from_millis(500),
    );
    let (_, routes) = watch::channel(Arc::new(Routes::default()));
    let sessions = Arc::new(SessionContext {
        chat: chat.clone(),
        hub,
        gaps,
        reads: Arc::new(crate::memory::MemoryReads::default()),
        liveness: Arc::new(MemoryLiveness::default()),
        limits: config.limits.clone(),
        placement: Placement {
            node_id: config.node_id.clone(),
            mode: config.routing.mode,
            routes,
        },
    });
    let up = &config.upstream;
    let gw = Arc::new(Gateway {
        auth,
        sessions,
        chat: nowhere(),
        storage: nowhere(),
        presence_api: nowhere(),
        media: nowhere(),
        reads: Reads {
            chat: Retries::new("chat", up),
            storage: Retries::new("storage", up),
            presence: Retries::new("presence", up),
            media: Retries::new("media", up),
        },
        connections: AtomicUsize::new(0),
        next_session: AtomicU64::new(1),
        shutdown: CancellationToken::new(),
        going_away: CancellationToken::new(),
        live: TaskTracker::new(),
        config,
    });
    Api { chat, gw }
}

impl Api {
    fn token(&self, user: &str) -> String {
        let user = UserId::new(user).expect("test user");
        self.gw
            .auth
            .issue(&user, Duration::from_secs(600))
            .expect("an HS256 secret is configured")
    }

    /// Posts to `general` as `user`: the post's `seq`.
    async fn post(&self, user: &str) -> u64 {
        let command = SendCommand {
            channel: ChannelId::new("general").expect("test channel"),
            sender: UserId::new(user).expect("test user"),
            body: "hello".into(),
            attachments: Vec::new(),
            idempotency_key: None,
            reply_to: None,
        };
        self.chat.send(command).await.expect("a post").seq
    }

    /// `method path` as `user` (none: no token), with `body` as JSON and
    /// `key` as the Idempotency-Key header.
    async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(user) = user {
            request = request.header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token(user)),
            );
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("a request");
        let response = crate::http::routes(self.gw.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {bytes:?}"));
        (status, value)
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
}

/// 👍, percent-encoded for a path.
const THUMBS: &str = "%F0%9F%91%8D";

#[tokio::test]
async fn each_route_answers_the_change_as_an_event() {
    let api = api();
    let seq = api.post("alice").await;
    let path = format!("/v1/channels/general/messages/{seq}");
    let reaction = format!("{path}/reactions/{THUMBS}");

    let (status, edited) = api
        .call(
            "PATCH",
            &path,
            Some("alice"),
            Some(json!({"body": "hello again"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(
        (&edited["masked"], &edited["duplicate"]),
        (&false.into(), &false.into())
    );
    let event = &edited["event"];
    assert_eq!(event["kind"], "edit", "{event}");
    assert_eq!(event["target_seq"], seq, "{event}");
    assert_eq!(event["seq"], seq + 1, "{event}");
    assert_eq!(event["body"], "hello again", "{event}");
    assert_eq!(event["sender_id"], "alice", "{event}");
    assert!(event["message_id"].is_string(), "{event}");

    let (status, added) = api.call("PUT", &reaction, Some("bob"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(added["event"]["kind"], "reaction_add");
    assert_eq!(added["event"]["emoji"], "👍");
    assert_eq!(added["event"]["sender_id"], "bob");
    let (status, removed) = api.call("DELETE", &reaction, Some("bob"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    assert_eq!(removed["event"]["kind"], "reaction_remove");
    assert_eq!(removed["event"]["seq"], seq + 3);

    let (status, deleted) = api.call("DELETE", &path, Some("alice"), None, None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["event"]["kind"], "delete");
    assert_eq!(deleted["event"]["target_seq"], seq);
}

#[tokio::test]
async fn a_key_in_the_header_or_the_body_makes_a_retry_a_duplicate() {
    let api = api();
    let seq = api.post("alice").await;
    let path = format!("/v1/channels/general/messages/{seq}");
    let reaction = format!("{path}/reactions/{THUMBS}");
    let (_, first) = api
        .call("PUT", &reaction, Some("bob"), None, Some("k1"))
        .await;
    let (status, again) = api
        .call("PUT", &reaction, Some("bob"), None, Some("k1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["event"]["seq"], first["event"]["seq"]);

    let edit = json!({"body": "v2", "idempotency_key": "e1"});
    let (_, first) = api
        .call("PATCH", &path, Some("alice"), Some(edit.clone()), None)
        .await;
    let (_, again) = api
        .call(
            "PATCH",
            &path,
            Some("alice"),
            Some(edit.clone()),
            Some("e1"),
        )
        .await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["event"]["seq"], first["event"]["seq"]);
    let (status, body) = api
        .call("PATCH", &path, Some("alice"), Some(edit), Some("other"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let keys: Vec<Option<String>> = api
        .chat
        .changes()
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [
            Some("k1".into()),
            Some("k1".into()),
            Some("e1".into()),
            Some("e1".into())
        ]
    );
}

#[tokio::test]
async fn without_a_valid_token_every_route_answers_401_json() {
    let api = api();
    let path = "/v1/channels/general/messages/1";
    let reaction = format!("{path}/reactions/{THUMBS}");
    for (method, path, body) in [
        ("PATCH", path, Some(json!({"body": "x"}))),
        ("PATCH", path, None),
        ("DELETE", path, None),
        ("PUT", &reaction, None),
        ("DELETE", &reaction, None),
        ("DELETE", "/v1/channels/no%20spaces/messages/zero", None),
    ] {
        let (status, body) = api.call(method, path, None, body, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(code(&body), "unauthorized");
    }
    assert!(api.chat.changes().is_empty());
}

#[tokio::test]
async fn malformed_requests_are_refused_before_chat() {
    let api = api();
    let alice = Some("alice");
    for (method, path, body, expected) in [
        (
            "DELETE",
            "/v1/channels/general/messages/0",
            None,
            "invalid_request",
        ),
        (
            "DELETE",
            "/v1/channels/general/messages/-1",
            None,
            "invalid_request",
        ),
        (
            "DELETE",
            "/v1/channels/general/messages/first",
            None,
            "invalid_request",
        ),
        (
            "PUT",
            "/v1/channels/general/messages/99999999999999999999/reactions/x",
            None,
            "invalid_request",
        ),
        (
            "DELETE",
            "/v1/channels/no%20spaces/messages/1",
            None,
            "invalid_channel",
        ),
        (
            "PATCH",
            "/v1/channels/general/messages/1",
            None,
            "invalid_request",
        ),
        (
            "PATCH",
            "/v1/channels/general/messages/1",
            Some(json!({"text": "x"})),
            "invalid_request",
        ),
        (
            "PATCH",
            "/v1/channels/general/messages/1",
            Some(json!({"body": "x", "extra": 1})),
            "invalid_request",
        ),
        (
            "PATCH",
            "/v1/channels/general/messages/1",
            Some(json!({"body": 5})),
            "invalid_request",
        ),
    ] {
        let (status, answer) = api.call(method, path, alice, body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
        assert_eq!(code(&answer), expected, "{method} {path}");
    }
    assert!(api.chat.changes().is_empty());
}

#[tokio::test]
async fn chat_refusals_keep_their_status_and_code() {
    let api = api();
    let seq = api.post("alice").await;
    let path = format!("/v1/channels/general/messages/{seq}");
    let (status, body) = api
        .call(
            "PATCH",
            &path,
            Some("bob"),
            Some(json!({"body": "mine"})),
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = api.call("DELETE", &path, Some("carol"), None, None).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_member"));
    let (status, body) = api
        .call(
            "DELETE",
            "/v1/channels/general/messages/77",
            Some("alice"),
            None,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = api
        .call(
            "DELETE",
            "/v1/channels/elsewhere/messages/1",
            Some("alice"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_channel")
    );
}
