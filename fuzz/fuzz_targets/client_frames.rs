//! Client frames, as the gateway reads them off a WebSocket: any bytes, as
//! a JSON text frame and as a Protobuf binary frame, decode or fail without
//! a panic. A frame that decodes reads back the same from its JSON form and
//! from its binary form, and the replies built from its fields encode to
//! both forms and read back with those fields intact.

#![no_main]

use chatmesh_gateway::frames::{
    ChangeKind, ClientFrame, MessageBody, ServerFrame, decode_binary, encode_binary, parse,
};
use chatmesh_proto::gateway::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = decode_binary(data) {
        check(&frame);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(frame) = parse(text)
    {
        check(&frame);
    }
});

fn check(frame: &ClientFrame) {
    let text = to_json(frame).to_string();
    assert_eq!(parse(&text).as_ref(), Ok(frame), "{text}");
    let binary = to_proto(frame).encode_to_vec();
    assert_eq!(decode_binary(&binary), Ok(binary_form(frame)));
    check_replies(frame);
}

/// The JSON text form of `frame`; absent options are left out.
fn to_json(frame: &ClientFrame) -> Value {
    let mut v = match frame {
        ClientFrame::Subscribe {
            channel_id,
            last_seq,
            ..
        } => {
            let mut v = json!({"type": "subscribe", "channel_id": channel_id});
            if let Some(seq) = last_seq {
                v["last_seq"] = (*seq).into();
            }
            v
        }
        ClientFrame::Unsubscribe { channel_id, .. } => {
            json!({"type": "unsubscribe", "channel_id": channel_id})
        }
        ClientFrame::Send {
            channel_id,
            body,
            attachments,
            idempotency_key,
            traceparent,
            reply_to,
            ..
        } => {
            let mut v = json!({"type": "send", "channel_id": channel_id, "body": body, "attachments": attachments});
            if let Some(key) = idempotency_key {
                v["idempotency_key"] = key.as_str().into();
            }
            if let Some(tp) = traceparent {
                v["traceparent"] = tp.as_str().into();
            }
            if let Some(to) = reply_to {
                v["reply_to"] = (*to).into();
            }
            v
        }
        ClientFrame::Edit {
            channel_id,
            seq,
            body,
            idempotency_key,
            ..
        } => {
            let mut v = json!({"type": "edit", "channel_id": channel_id, "seq": seq, "body": body});
            if let Some(key) = idempotency_key {
                v["idempotency_key"] = key.as_str().into();
            }
            v
        }
        ClientFrame::Delete {
            channel_id,
            seq,
            idempotency_key,
            ..
        } => {
            let mut v = json!({"type": "delete", "channel_id": channel_id, "seq": seq});
            if let Some(key) = idempotency_key {
                v["idempotency_key"] = key.as_str().into();
            }
            v
        }
        ClientFrame::React {
            channel_id,
            seq,
            emoji,
            remove,
            idempotency_key,
            ..
        } => {
            let mut v = json!({"type": "react", "channel_id": channel_id, "seq": seq, "emoji": emoji, "remove": remove});
            if let Some(key) = idempotency_key {
                v["idempotency_key"] = key.as_str().into();
            }
            v
        }
        ClientFrame::Ack {
            channel_id, seq, ..
        } => {
            json!({"type": "ack", "channel_id": channel_id, "seq": seq})
        }
        ClientFrame::Unread { channel_ids, .. } => {
            json!({"type": "unread", "channel_ids": channel_ids})
        }
        ClientFrame::Ping { client_time_ms, .. } => {
            let mut v = json!({"type": "ping"});
            if let Some(t) = client_time_ms {
                v["client_time_ms"] = (*t).into();
            }
            v
        }
        ClientFrame::Typing {
            channel_id, stop, ..
        } => json!({"type": "typing", "channel_id": channel_id, "stop": stop}),
    };
    if let Some(id) = frame.request_id() {
        v["request_id"] = id.into();
    }
    v
}

/// The Protobuf binary form of `frame`.
fn to_proto(frame: &ClientFrame) -> pb::ClientFrame {
    use pb::client_frame::Frame;
    let kind = match frame.clone() {
        ClientFrame::Subscribe {
            channel_id,
            last_seq,
            ..
        } => Frame::Subscribe(pb::Subscribe {
            channel_id,
            last_seq,
        }),
        ClientFrame::Unsubscribe { channel_id, .. } => {
            Frame::Unsubscribe(pb::Unsubscribe { channel_id })
        }
        ClientFrame::Send {
            channel_id,
            body,
            attachments,
            idempotency_key,
            traceparent,
            reply_to,
            ..
        } => Frame::Send(pb::Send {
            channel_id,
            body,
            attachments,
            idempotency_key: idempotency_key.unwrap_or_default(),
            traceparent: traceparent.unwrap_or_default(),
            reply_to: reply_to.unwrap_or_default(),
        }),
        ClientFrame::Edit {
            channel_id,
            seq,
            body,
            idempotency_key,
            ..
        } => Frame::Edit(pb::Edit {
            channel_id,
            seq,
            body,
            idempotency_key: idempotency_key.unwrap_or_default(),
        }),
        ClientFrame::Delete {
            channel_id,
            seq,
            idempotency_key,
            ..
        } => Frame::Delete(pb::Delete {
            channel_id,
            seq,
            idempotency_key: idempotency_key.unwrap_or_default(),
        }),
        ClientFrame::React {
            channel_id,
            seq,
            emoji,
            remove,
            idempotency_key,
            ..
        } => Frame::React(pb::React {
            channel_id,
            seq,
            emoji,
            remove,
            idempotency_key: idempotency_key.unwrap_or_default(),
        }),
        ClientFrame::Ack {
            channel_id, seq, ..
        } => Frame::Ack(pb::Ack { channel_id, seq }),
        ClientFrame::Unread { channel_ids, .. } => Frame::Unread(pb::Unread { channel_ids }),
        ClientFrame::Ping { client_time_ms, .. } => Frame::Ping(pb::Ping {
            client_time_ms: client_time_ms.unwrap_or(0),
        }),
        ClientFrame::Typing {
            channel_id, stop, ..
        } => Frame::Typing(pb::Typing { channel_id, stop }),
    };
    pb::ClientFrame {
        request_id: frame.request_id().unwrap_or_default().to_owned(),
        frame: Some(kind),
    }
}

/// `frame` as its binary form can carry it: there an empty string or a
/// zero stands for an absent option.
fn binary_form(frame: &ClientFrame) -> ClientFrame {
    let present = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    match frame.clone() {
        ClientFrame::Subscribe {
            request_id,
            channel_id,
            last_seq,
        } => ClientFrame::Subscribe {
            request_id: present(&request_id),
            channel_id,
            last_seq,
        },
        ClientFrame::Unsubscribe {
            request_id,
            channel_id,
        } => ClientFrame::Unsubscribe {
            request_id: present(&request_id),
            channel_id,
        },
        ClientFrame::Send {
            request_id,
            channel_id,
            body,
            attachments,
            idempotency_key,
            traceparent,
            reply_to,
        } => ClientFrame::Send {
            request_id: present(&request_id),
            channel_id,
            body,
            attachments,
            idempotency_key: present(&idempotency_key),
            traceparent: present(&traceparent),
            reply_to,
        },
        ClientFrame::Edit {
            request_id,
            channel_id,
            seq,
            body,
            idempotency_key,
        } => ClientFrame::Edit {
            request_id: present(&request_id),
            channel_id,
            seq,
            body,
            idempotency_key: present(&idempotency_key),
        },
        ClientFrame::Delete {
            request_id,
            channel_id,
            seq,
            idempotency_key,
        } => ClientFrame::Delete {
            request_id: present(&request_id),
            channel_id,
            seq,
            idempotency_key: present(&idempotency_key),
        },
        ClientFrame::React {
            request_id,
            channel_id,
            seq,
            emoji,
            remove,
            idempotency_key,
        } => ClientFrame::React {
            request_id: present(&request_id),
            channel_id,
            seq,
            emoji,
            remove,
            idempotency_key: present(&idempotency_key),
        },
        ClientFrame::Ack {
            request_id,
            channel_id,
            seq,
        } => ClientFrame::Ack {
            request_id: present(&request_id),
            channel_id,
            seq,
        },
        ClientFrame::Unread {
            request_id,
            channel_ids,
        } => ClientFrame::Unread {
            request_id: present(&request_id),
            channel_ids,
        },
        ClientFrame::Ping {
            request_id,
            client_time_ms,
        } => ClientFrame::Ping {
            request_id: present(&request_id),
            client_time_ms: client_time_ms.filter(|t| *t != 0),
        },
        ClientFrame::Typing {
            request_id,
            channel_id,
            stop,
        } => ClientFrame::Typing {
            request_id: present(&request_id),
            channel_id,
            stop,
        },
    }
}

/// Replies carrying the frame's own strings, whatever they hold, read back
/// from both encodings.
fn check_replies(frame: &ClientFrame) {
    let request_id = frame.request_id().map(str::to_owned);
    let (channel_id, text, attachments) = match frame {
        ClientFrame::Send {
            channel_id,
            body,
            attachments,
            ..
        } => (channel_id.clone(), body.clone(), attachments.clone()),
        ClientFrame::Edit {
            channel_id, body, ..
        } => (channel_id.clone(), body.clone(), vec![]),
        ClientFrame::React {
            channel_id, emoji, ..
        } => (channel_id.clone(), emoji.clone(), vec![]),
        ClientFrame::Subscribe { channel_id, .. }
        | ClientFrame::Unsubscribe { channel_id, .. }
        | ClientFrame::Delete { channel_id, .. }
        | ClientFrame::Typing { channel_id, .. }
        | ClientFrame::Ack { channel_id, .. } => (channel_id.clone(), channel_id.clone(), vec![]),
        ClientFrame::Unread { channel_ids, .. } => {
            let first = channel_ids.first().cloned().unwrap_or_default();
            (first.clone(), first, channel_ids.clone())
        }
        ClientFrame::Ping { .. } => (String::new(), String::new(), vec![]),
    };

    let error = ServerFrame::Error {
        request_id: request_id.clone(),
        code: "invalid_frame",
        message: text.clone(),
        retryable: false,
    };
    let (json, binary) = both_forms(&error);
    assert_eq!(
        json.get("message").and_then(Value::as_str),
        Some(text.as_str())
    );
    assert_eq!(echoed(&json), request_id.as_deref());
    assert_eq!(binary.request_id, request_id.clone().unwrap_or_default());
    match binary.frame {
        Some(pb::server_frame::Frame::Error(e)) => assert_eq!(e.message, text),
        other => panic!("an error frame came back as {other:?}"),
    }

    let redirect = ServerFrame::Redirect {
        request_id: request_id.clone(),
        channel_id: channel_id.clone(),
        url: text.clone(),
    };
    let (json, binary) = both_forms(&redirect);
    assert_eq!(
        json.get("channel_id").and_then(Value::as_str),
        Some(channel_id.as_str())
    );
    assert_eq!(echoed(&json), request_id.as_deref());
    assert_eq!(binary.request_id, request_id.clone().unwrap_or_default());
    match binary.frame {
        Some(pb::server_frame::Frame::Redirect(r)) => {
            assert_eq!((r.channel_id, r.url), (channel_id.clone(), text.clone()))
        }
        other => panic!("a redirect frame came back as {other:?}"),
    }

    let read = ServerFrame::Read {
        request_id: request_id.clone(),
        channel_id: channel_id.clone(),
        user_id: text.clone(),
        seq: u64::MAX,
    };
    let (json, binary) = both_forms(&read);
    assert_eq!(
        json.get("user_id").and_then(Value::as_str),
        Some(text.as_str())
    );
    assert_eq!(echoed(&json), request_id.as_deref());
    match binary.frame {
        Some(pb::server_frame::Frame::ReadPosition(r)) => {
            assert_eq!(
                (r.channel_id, r.user_id, r.seq),
                (channel_id.clone(), text.clone(), u64::MAX)
            )
        }
        other => panic!("a read frame came back as {other:?}"),
    }

    let message = ServerFrame::Message(MessageBody {
        channel_id: channel_id.clone(),
        message_id: u64::MAX,
        seq: u64::MAX,
        sender_id: text.clone(),
        body: text.clone(),
        attachments: attachments.clone(),
        created_at_ms: i64::MIN,
        ..MessageBody::default()
    });
    let (json, binary) = both_forms(&message);
    assert_eq!(
        json.get("body").and_then(Value::as_str),
        Some(text.as_str())
    );
    assert_eq!(
        json.get("message_id").and_then(Value::as_str),
        Some(u64::MAX.to_string().as_str())
    );
    assert_eq!(json.get("seq").and_then(Value::as_u64), Some(u64::MAX));
    let listed: Vec<&str> = json
        .get("attachments")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(listed, attachments);
    match binary.frame {
        Some(pb::server_frame::Frame::Message(m)) => {
            assert_eq!(
                (m.channel_id, m.body, m.attachments),
                (channel_id.clone(), text.clone(), attachments)
            );
        }
        other => panic!("a message frame came back as {other:?}"),
    }
    check_change_event(&channel_id, &text);
}

/// A reaction event carrying the frame's text as its emoji, read back from
/// both encodings.
fn check_change_event(channel_id: &str, text: &str) {
    let event = ServerFrame::Message(MessageBody {
        channel_id: channel_id.to_owned(),
        seq: u64::MAX,
        sender_id: text.to_owned(),
        kind: Some(ChangeKind::ReactionAdd),
        target_seq: u64::MAX,
        emoji: text.to_owned(),
        ..MessageBody::default()
    });
    let (json, binary) = both_forms(&event);
    assert_eq!(
        json.get("kind").and_then(Value::as_str),
        Some("reaction_add")
    );
    assert_eq!(
        json.get("target_seq").and_then(Value::as_u64),
        Some(u64::MAX)
    );
    let emoji = json.get("emoji").and_then(Value::as_str);
    assert_eq!(emoji, Some(text).filter(|t| !t.is_empty()));
    match binary.frame {
        Some(pb::server_frame::Frame::Message(m)) => {
            assert_eq!((m.target_seq, m.emoji.as_str()), (u64::MAX, text));
            assert_eq!(
                ChangeKind::from_proto(m.kind),
                Some(ChangeKind::ReactionAdd)
            );
        }
        other => panic!("a message frame came back as {other:?}"),
    }
}

/// `frame`'s JSON form, parsed, and its binary form, decoded.
fn both_forms(frame: &ServerFrame) -> (Map<String, Value>, pb::ServerFrame) {
    let json = match serde_json::from_str(&frame.to_json()) {
        Ok(Value::Object(map)) => map,
        other => panic!("{frame:?} is not a JSON object: {other:?}"),
    };
    let binary = pb::ServerFrame::decode(encode_binary(frame).as_slice())
        .unwrap_or_else(|e| panic!("{frame:?} does not decode: {e}"));
    (json, binary)
}

fn echoed(json: &Map<String, Value>) -> Option<&str> {
    json.get("request_id").and_then(Value::as_str)
}
