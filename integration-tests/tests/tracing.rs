//! One trace per message, from the socket to the shard row: the mesh's
//! processes export their spans over OTLP/gRPC to a receiver in this test,
//! and a message sent over a real WebSocket shows up as one trace. The
//! gateway's send is its root (or continues the client's own trace), chat's
//! send is beneath it, storage's insert links it, and each gateway that
//! fans the message out delivers it in a child span of chat's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmesh_integration_tests::client::{Client, dev_token};
use chatmesh_integration_tests::fixtures::{channel_id, create_channel_at};
use chatmesh_integration_tests::mesh::{Mesh, MeshOptions};
use chatmesh_integration_tests::wait;
use chatmesh_proto::common::v1::ModerationPolicy;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A span as the receiver got it, with the resource it came from.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    instance: String,
    span: Span,
}

impl Exported {
    fn id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn trace(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn parent(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An integer attribute. `tracing-opentelemetry` exports unsigned
    /// fields as their decimal text, signed ones as integers.
    fn int(&self, key: &str) -> Option<i64> {
        match attribute(&self.span.attributes, key)? {
            any_value::Value::IntValue(v) => Some(*v),
            any_value::Value::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn links_to(&self, trace: &str, span: &str) -> bool {
        self.span
            .links
            .iter()
            .any(|l| hex(&l.trace_id) == trace && hex(&l.span_id) == span)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn string(attributes: &[KeyValue], key: &str) -> String {
    match attribute(attributes, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    }
}

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.unwrap_or_default().attributes;
            let (service, instance) = (
                string(&resource, "service.name"),
                string(&resource, "service.instance.id"),
            );
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Exported {
                    service: service.clone(),
                    instance: instance.clone(),
                    span,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on an ephemeral port until `shutdown`.
    async fn start(shutdown: CancellationToken) -> anyhow::Result<(Self, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver = Self::default();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown.cancelled_owned(),
            );
        tokio::spawn(server);
        Ok((receiver, addr))
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }
}

/// The spans of one message's path, as found among the exported ones.
#[derive(Debug)]
struct Path {
    send: Exported,
    chat: Exported,
    insert: Exported,
    deliveries: Vec<Exported>,
}

/// The path of the message acknowledged with `seq` on `channel`, once
/// every span of it is exported: the gateway's send, chat's send, a
/// storage insert linking chat's send, and a delivery by each gateway.
fn path_of(spans: &[Exported], channel: &str, seq: u64) -> Result<Path, String> {
    let seq = seq as i64;
    let send = spans
        .iter()
        .find(|s| {
            s.span.name == "gateway.send"
                && string(&s.span.attributes, "channel") == channel
                && s.int("seq") == Some(seq)
        })
        .ok_or("no gateway.send span yet")?;
    let trace = send.trace();
    let chat = spans
        .iter()
        .find(|s| s.span.name == "chat.send" && s.trace() == trace && s.int("seq") == Some(seq))
        .ok_or("no chat.send span in the trace yet")?;
    let insert = spans
        .iter()
        .find(|s| s.span.name == "storage.insert" && s.links_to(&trace, &chat.id()))
        .ok_or("no storage.insert span linking chat.send yet")?;
    let deliveries: Vec<Exported> = spans
        .iter()
        .filter(|s| s.span.name == "gateway.deliver" && s.trace() == trace)
        .cloned()
        .collect();
    if deliveries.len() < 2 {
        return Err(format!("{} of 2 gateway.deliver spans", deliveries.len()));
    }
    Ok(Path {
        send: send.clone(),
        chat: chat.clone(),
        insert: insert.clone(),
        deliveries,
    })
}

/// True if `ancestor` is `span` or one of its parents among `spans`.
fn descends_from(spans: &[Exported], span: &Exported, ancestor: &Exported) -> bool {
    let by_id: BTreeMap<String, &Exported> = spans
        .iter()
        .filter(|s| s.trace() == span.trace())
        .map(|s| (s.id(), s))
        .collect();
    let mut parent = span.parent();
    for _ in 0..16 {
        if parent == ancestor.id() {
            return true;
        }
        match by_id.get(&parent) {
            Some(up) => parent = up.parent(),
            None => return false,
        }
    }
    false
}

fn check(spans: &[Exported], path: &Path) {
    let trace = path.send.trace();
    assert_eq!(
        (path.send.service.as_str(), path.send.instance.as_str()),
        ("chatmesh-gateway", "gw-0"),
        "the send is the sender's gateway's"
    );
    assert_eq!(path.chat.service, "chatmesh-chat");
    assert!(
        descends_from(spans, &path.chat, &path.send),
        "chat.send {} is not beneath gateway.send {}",
        path.chat.id(),
        path.send.id()
    );
    assert_eq!(path.insert.service, "chatmesh-storage");
    assert!(path.insert.links_to(&trace, &path.chat.id()));
    let mut by_node: BTreeMap<&str, &Exported> = BTreeMap::new();
    for delivery in &path.deliveries {
        assert_eq!(delivery.service, "chatmesh-gateway");
        assert_eq!(
            delivery.parent(),
            path.chat.id(),
            "a delivery's parent is chat's send"
        );
        assert!(
            by_node.insert(&delivery.instance, delivery).is_none(),
            "{} delivered the message in more than one span",
            delivery.instance
        );
    }
    // Two sockets on gw-0, one on gw-1: one span per node, not per socket.
    let sessions = |node: &str| by_node.get(node).and_then(|d| d.int("sessions"));
    assert_eq!((sessions("gw-0"), sessions("gw-1")), (Some(2), Some(1)));
}

/// The spans of `path`'s trace as an indented tree, with the spans that
/// link into it, for the test's output.
fn tree(spans: &[Exported], path: &Path) -> String {
    let trace = path.send.trace();
    let mut members: Vec<&Exported> = spans.iter().filter(|s| s.trace() == trace).collect();
    members.sort_by_key(|s| s.span.start_time_unix_nano);
    fn walk(members: &[&Exported], parent: &str, depth: usize, out: &mut String) {
        for span in members.iter().filter(|s| s.parent() == parent) {
            out.push_str(&format!(
                "{}{} [{} {}] span {}\n",
                "  ".repeat(depth),
                span.span.name,
                span.service,
                span.instance,
                span.id()
            ));
            walk(members, &span.id(), depth + 1, out);
        }
    }
    let mut out = format!("trace {trace}\n");
    let root = members
        .iter()
        .find(|s| !members.iter().any(|p| p.id() == s.parent()))
        .map(|s| s.parent())
        .unwrap_or_default();
    if root.chars().any(|c| c != '0') && !root.is_empty() {
        out.push_str(&format!("(remote parent {root})\n"));
    }
    walk(&members, &root, 0, &mut out);
    if let Some(batch) = spans.iter().find(|s| s.id() == path.insert.parent()) {
        out.push_str(&format!(
            "{} [{} {}] span {} in trace {}\n  ",
            batch.span.name,
            batch.service,
            batch.instance,
            batch.id(),
            batch.trace()
        ));
    }
    out.push_str(&format!(
        "{} [{} {}] span {} in trace {}, links chat.send {}\n",
        path.insert.span.name,
        path.insert.service,
        path.insert.instance,
        path.insert.id(),
        path.insert.trace(),
        path.chat.id()
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_is_one_trace_from_the_socket_to_the_shard_row() -> anyhow::Result<()> {
    chatmesh_integration_tests::logs();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (receiver, addr) = Receiver::start(shutdown).await?;
    let mesh = Mesh::start(MeshOptions {
        pin_mode: "serve",
        otlp_endpoint: Some(format!("http://{addr}")),
        ..MeshOptions::default()
    })
    .await?;
    let (gw0, gw1) = (mesh.gateways[0], mesh.gateways[1]);
    let room = channel_id("traced");
    create_channel_at(
        mesh.chats[0],
        &room,
        ModerationPolicy::Reject,
        &["alice", "bob", "carol", "dave"],
    )
    .await?;
    let mut watchers = Vec::new();
    for (user, gw) in [("bob", gw0), ("carol", gw0), ("dave", gw1)] {
        let mut c = Client::connect(gw, &dev_token(gw, user).await?, None).await?;
        c.subscribe(&room).await?;
        watchers.push(c);
    }
    let mut alice = Client::connect(gw0, &dev_token(gw0, "alice").await?, None).await?;

    // One send starts a trace; the other continues the client's own.
    let client_trace = uuid::Uuid::new_v4().simple().to_string();
    let client_span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let client_traceparent = format!("00-{client_trace}-{client_span}-01");
    let mut seqs = Vec::new();
    for (i, traceparent) in [None, Some(&client_traceparent)].into_iter().enumerate() {
        let mut frame = json!({"type": "send", "request_id": i.to_string(), "channel_id": room, "body": format!("traced {i}")});
        if let Some(tp) = traceparent {
            frame["traceparent"] = json!(tp);
        }
        alice.send(frame).await?;
        let ack = alice.expect("ack").await?;
        seqs.push(ack["seq"].as_u64().expect("seq"));
    }
    for w in &mut watchers {
        for &seq in &seqs {
            assert_eq!(w.expect("message").await?["seq"], seq);
        }
    }

    let paths = wait::until("every span of both paths", Duration::from_secs(30), || {
        let spans = receiver.spans();
        let paths: Result<Vec<Path>, String> = seqs
            .iter()
            .map(|&seq| path_of(&spans, &room, seq))
            .collect();
        async move { paths }
    })
    .await
    .map_err(|e| {
        let names: Vec<String> = receiver
            .spans()
            .iter()
            .map(|s| format!("{} [{} {}]", s.span.name, s.service, s.instance))
            .collect();
        anyhow::anyhow!("{e}\nexported: {names:?}")
    })?;
    let spans = receiver.spans();
    for path in &paths {
        check(&spans, path);
        eprintln!("{}", tree(&spans, path));
    }
    let [plain, continued] = paths.as_slice() else {
        unreachable!("one path per send")
    };
    assert_eq!(
        hex(&plain.send.span.parent_span_id),
        "",
        "a send without client context is a root"
    );
    assert_eq!(continued.send.trace(), client_trace);
    assert_eq!(continued.send.parent(), client_span);
    Ok(())
}
