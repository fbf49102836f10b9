//! The client protocol's two forms side by side: encoding and decoding
//! cost and size per frame for JSON text and Protobuf binary, on the frames
//! a busy channel sends most (messages) and receives most (sends). JSON is
//! the baseline; ratios below 1 favour Protobuf.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use chatmesh_bench::param;
use chatmesh_gateway::frames::{self, MessageBody, ServerFrame};
use chatmesh_ids::{ChannelId, ChatMessage, MessageId, UserId};
use chatmesh_proto::gateway::v1 as pb;
use prost::Message as _;

/// Nanoseconds per call of `f`, over `n` calls.
fn time(n: u64, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut bytes = 0;
    for _ in 0..n / 10 {
        bytes = black_box(f());
    }
    let started = Instant::now();
    for _ in 0..n {
        bytes = black_box(f());
    }
    (started.elapsed().as_nanos() as f64 / n as f64, bytes)
}

fn main() -> anyhow::Result<()> {
    let n = param("BENCH_FRAMES", 500_000);
    let message = ChatMessage {
        id: MessageId::from_raw(845_129_183_232_000_001),
        channel: ChannelId::new("team-engineering")?,
        sender: UserId::new("alice.liddell")?,
        seq: 123_456,
        body: "Deploy finished: 14 services rolled, 0 errors, p99 back under 40 ms.".into(),
        attachments: Vec::new(),
        created_at_ms: 1_795_614_208_253,
        idempotency_key: None,
        change: Default::default(),
        reply_to: None,
        state: Default::default(),
    };
    let frame = ServerFrame::Message(MessageBody::from(&message));
    let (json_ns, json_bytes) = time(n, || frame.to_json().len());
    let (proto_ns, proto_bytes) = time(n, || frames::encode_binary(&frame).len());

    let send_json =
        serde_json::json!({"type": "send", "request_id": "42", "channel_id": "team-engineering",
        "body": message.body, "idempotency_key": "c0ffee-42"})
        .to_string();
    let send_proto = pb::ClientFrame {
        request_id: "42".into(),
        frame: Some(pb::client_frame::Frame::Send(pb::Send {
            channel_id: "team-engineering".into(),
            body: message.body.clone(),
            attachments: Vec::new(),
            idempotency_key: "c0ffee-42".into(),
            traceparent: String::new(),
            reply_to: 0,
        })),
    }
    .encode_to_vec();
    let (parse_json_ns, _) = time(n, || {
        frames::parse(&send_json).map_or(0, |_| send_json.len())
    });
    let (parse_proto_ns, _) = time(n, || {
        frames::decode_binary(&send_proto).map_or(0, |_| send_proto.len())
    });

    println!("client protocol frames ({n} iterations each, one core)");
    println!("| frame | JSON | Protobuf | Protobuf / JSON |");
    println!("|---|---|---|---|");
    println!(
        "| message, encode | {json_ns:.0} ns, {json_bytes} B | {proto_ns:.0} ns, {proto_bytes} B | {:.2} time, {:.2} size |",
        proto_ns / json_ns,
        proto_bytes as f64 / json_bytes as f64
    );
    println!(
        "| send, decode | {parse_json_ns:.0} ns, {} B | {parse_proto_ns:.0} ns, {} B | {:.2} time, {:.2} size |",
        send_json.len(),
        send_proto.len(),
        parse_proto_ns / parse_json_ns,
        send_proto.len() as f64 / send_json.len() as f64
    );
    Ok(())
}
