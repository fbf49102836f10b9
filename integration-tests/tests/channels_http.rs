//! The channel directory over the gateway's HTTP API, against the real
//! services: creating, listing, joining public channels, an owner adding
//! and removing members, leaving with ownership handed on, and the rules
//! holding wherever membership is checked (subscribe, send, history).

use std::net::SocketAddr;

use chatmesh_integration_tests::Sandbox;
use chatmesh_integration_tests::client::{Client, HttpUser};
use chatmesh_integration_tests::fixtures::channel_id;
use chatmesh_integration_tests::sandbox::Options;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One user's calls to one gateway, with the directory reads the test
/// checks.
struct User(HttpUser);

impl std::ops::Deref for User {
    type Target = HttpUser;

    fn deref(&self) -> &HttpUser {
        &self.0
    }
}

impl User {
    async fn new(gateway: SocketAddr, name: &str) -> anyhow::Result<Self> {
        Ok(Self(HttpUser::new(gateway, name).await?))
    }

    /// The caller's channels as (ID, role).
    async fn channels(&self) -> anyhow::Result<Vec<(String, String)>> {
        let (status, body) = self.get("/v1/channels").await?;
        anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(body["channels"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c["channel_id"].as_str().unwrap_or_default().to_owned(),
                    c["role"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }

    /// The channel's members as (user, role), longest-standing first.
    async fn members(&self, channel: &str) -> anyhow::Result<Vec<(String, String)>> {
        let (status, body) = self.get(&format!("/v1/channels/{channel}/members")).await?;
        anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(body["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["user_id"].as_str().unwrap_or_default().to_owned(),
                    m["role"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect())
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_manage_private_channels_and_the_rules_hold_everywhere() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let (alice_name, bob_name) = (channel_id("alice"), channel_id("bob"));
    let alice = User::new(gw, &alice_name).await?;
    let bob = User::new(gw, &bob_name).await?;
    let room = channel_id("private");

    let (status, created) = alice
        .post(
            "/v1/channels",
            json!({ "channel_id": room, "name": "Plans", "visibility": "private" }),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let channel = &created["channel"];
    assert_eq!(
        (&channel["name"], &channel["visibility"], &channel["role"]),
        (&json!("Plans"), &json!("private"), &json!("owner"))
    );
    assert_eq!(channel["created_by"], json!(alice_name));
    assert_eq!(alice.channels().await?, vec![pair(&room, "owner")]);

    // The same ID again, a malformed one, an unknown visibility.
    let (status, body) = alice
        .post("/v1/channels", json!({ "channel_id": room }))
        .await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_exists")
    );
    let (status, body) = alice
        .post("/v1/channels", json!({ "channel_id": "no spaces" }))
        .await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_channel")
    );
    let (status, body) = alice
        .post(
            "/v1/channels",
            json!({ "channel_id": channel_id("x"), "visibility": "secret" }),
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // An outsider can neither see, join nor manage the private channel.
    let (status, body) = bob.get(&format!("/v1/channels/{room}")).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_member"));
    let (status, body) = bob
        .post(&format!("/v1/channels/{room}/join"), json!({}))
        .await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "private_channel")
    );
    let (status, body) = bob
        .post(
            &format!("/v1/channels/{room}/members"),
            json!({ "user_id": bob_name }),
        )
        .await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_owner"));
    let (status, body) = bob.get(&format!("/v1/channels/{room}/members")).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_member"));
    let (status, body) = bob
        .post(
            &format!("/v1/channels/{}/join", channel_id("missing")),
            json!({}),
        )
        .await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_channel")
    );

    // The owner adds bob, who then reads and writes it like any member.
    let (status, body) = alice
        .post(
            &format!("/v1/channels/{room}/members"),
            json!({ "user_id": bob_name }),
        )
        .await?;
    assert_eq!((status, &body["added"]), (StatusCode::OK, &json!(true)));
    let (_, again) = alice
        .post(
            &format!("/v1/channels/{room}/members"),
            json!({ "user_id": bob_name }),
        )
        .await?;
    assert_eq!(again["added"], json!(false));
    assert_eq!(bob.channels().await?, vec![pair(&room, "member")]);
    assert_eq!(
        alice.members(&room).await?,
        vec![pair(&alice_name, "owner"), pair(&bob_name, "member")]
    );
    let (status, seen) = bob.get(&format!("/v1/channels/{room}")).await?;
    assert_eq!(
        (status, &seen["channel"]["role"]),
        (StatusCode::OK, &json!("member"))
    );

    let mut bob_ws = Client::connect(gw, bob.token(), None).await?;
    bob_ws.subscribe(&room).await?;
    let mut alice_ws = Client::connect(gw, alice.token(), None).await?;
    alice_ws
        .send(json!({ "type": "send", "request_id": "1", "channel_id": room, "body": "welcome" }))
        .await?;
    alice_ws.expect("ack").await?;
    let delivered = bob_ws.expect("message").await?;
    assert_eq!(delivered["body"], json!("welcome"));

    // A member is not an owner.
    let (status, body) = bob
        .call(
            Method::DELETE,
            &format!("/v1/channels/{room}/members/{alice_name}"),
            None,
        )
        .await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_owner"));

    // Removed, bob loses the channel everywhere membership is checked.
    let (status, body) = alice
        .call(
            Method::DELETE,
            &format!("/v1/channels/{room}/members/{bob_name}"),
            None,
        )
        .await?;
    assert_eq!((status, &body["removed"]), (StatusCode::OK, &json!(true)));
    assert_eq!(bob.channels().await?, Vec::<(String, String)>::new());
    let (status, body) = bob.get(&format!("/v1/channels/{room}/messages")).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_member"));
    let mut bob_again = Client::connect(gw, bob.token(), None).await?;
    bob_again
        .send(json!({ "type": "subscribe", "request_id": "s", "channel_id": room }))
        .await?;
    assert_eq!(bob_again.expect_error().await?["code"], json!("not_member"));
    bob_again
        .send(
            json!({ "type": "send", "request_id": "2", "channel_id": room, "body": "still here?" }),
        )
        .await?;
    assert_eq!(bob_again.expect_error().await?["code"], json!("not_member"));
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_channels_are_listed_joined_and_handed_on_when_the_owner_leaves()
-> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let names = [channel_id("ann"), channel_id("ben"), channel_id("cat")];
    let [ann, ben, cat] = [
        User::new(gw, &names[0]).await?,
        User::new(gw, &names[1]).await?,
        User::new(gw, &names[2]).await?,
    ];
    // Three public channels sharing a prefix, so a page after the prefix
    // starts with them whatever other channels the directory holds.
    let prefix = channel_id("pub");
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("{prefix}-{s}"))
        .collect();
    for id in &ids {
        let (status, body) = ann
            .post(
                "/v1/channels",
                json!({ "channel_id": id, "visibility": "public" }),
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, page) = ben
        .get(&format!("/v1/public-channels?after={prefix}&limit=2"))
        .await?;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed: Vec<&str> = page["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(page["channels"][0]["role"], Value::Null, "ben is no member");
    assert_eq!(page["next_after"], json!(ids[1]));
    let (_, next) = ben
        .get(&format!("/v1/public-channels?after={}&limit=2", ids[1]))
        .await?;
    assert_eq!(next["channels"][0]["channel_id"], json!(ids[2]));
    let (status, body) = ben.get("/v1/public-channels?limit=0").await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // Anyone may look at and join a public channel.
    let room = &ids[0];
    let (status, seen) = cat.get(&format!("/v1/channels/{room}")).await?;
    assert_eq!(
        (status, &seen["channel"]["role"]),
        (StatusCode::OK, &Value::Null)
    );
    for user in [&ben, &cat] {
        let (status, body) = user
            .post(&format!("/v1/channels/{room}/join"), json!({}))
            .await?;
        assert_eq!((status, &body["joined"]), (StatusCode::OK, &json!(true)));
    }
    let (_, again) = cat
        .post(&format!("/v1/channels/{room}/join"), json!({}))
        .await?;
    assert_eq!(again["joined"], json!(false));
    let (_, page) = ben
        .get(&format!("/v1/public-channels?after={prefix}&limit=1"))
        .await?;
    assert_eq!(page["channels"][0]["role"], json!("member"));

    // The only owner leaves: the longest-standing member takes over.
    let (status, body) = ann
        .post(&format!("/v1/channels/{room}/leave"), json!({}))
        .await?;
    assert_eq!((status, &body["left"]), (StatusCode::OK, &json!(true)));
    assert_eq!(
        cat.members(room).await?,
        vec![pair(&names[1], "owner"), pair(&names[2], "member")]
    );
    let (_, again) = ann
        .post(&format!("/v1/channels/{room}/leave"), json!({}))
        .await?;
    assert_eq!(again["left"], json!(false));
    // The new owner can manage members; the old one no longer can.
    let (status, body) = ben
        .call(
            Method::DELETE,
            &format!("/v1/channels/{room}/members/{}", names[2]),
            None,
        )
        .await?;
    assert_eq!((status, &body["removed"]), (StatusCode::OK, &json!(true)));
    let (status, body) = ann
        .post(
            &format!("/v1/channels/{room}/members"),
            json!({ "user_id": names[0] }),
        )
        .await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "not_owner"));
    sb.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_is_served_and_errors_are_json() -> anyhow::Result<()> {
    let sb = Sandbox::start_ready(Options {
        gateways: 1,
        ..Options::default()
    })
    .await?;
    let gw = sb.gateways[0];
    let doc: Value = reqwest::get(format!("http://{gw}/v1/openapi.json"))
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(doc["openapi"], json!("3.1.0"));
    for path in [
        "/v1/channels",
        "/v1/channels/{channel}/members/{user}",
        "/v1/media/{media}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // No route, wrong method, no token: all in the same JSON shape.
    let user = User::new(gw, &channel_id("dora")).await?;
    let (status, body) = user.get("/v1/nothing-here").await?;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, body) = user.call(Method::DELETE, "/v1/channels", None).await?;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "invalid_request")
    );
    let anonymous = reqwest::get(format!("http://{gw}/v1/channels")).await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await?;
    assert_eq!(code(&body), "unauthorized");
    sb.stop().await
}
