//! Decoding of the text frames a Socket.IO v5 client sends over an Engine.IO
//! v4 WebSocket, and encoding of the few control packets the server sends.
//! Event and ack frames that carry data are encoded in `chat_shared::envelope`
//! so that the worker can pre-encode them too.

use serde_json::Value;

/// An Engine.IO packet received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum EnginePacket {
    Close,
    Ping(String),
    Pong,
    Message(SocketPacket),
    Noop,
}

/// A Socket.IO packet inside an Engine.IO message.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketPacket {
    Connect {
        namespace: String,
        auth: Option<Value>,
    },
    /// A CONNECT whose auth is not valid JSON: answered `invalid_token`,
    /// never left without an answer.
    ConnectWithBadAuth {
        namespace: String,
    },
    Disconnect {
        namespace: String,
    },
    Event {
        namespace: String,
        ack_id: Option<u64>,
        name: String,
        args: Vec<Value>,
    },
    Ack {
        namespace: String,
        ack_id: u64,
        args: Vec<Value>,
    },
    /// Binary attachments are not part of this protocol.
    Binary {
        namespace: String,
        ack_id: Option<u64>,
    },
    /// An event whose data cannot be parsed (bad JSON, lone surrogates,
    /// numbers out of range, nesting too deep). Kept as a packet so that
    /// its ack id, when it has one, gets the error.
    Unparsable {
        namespace: String,
        ack_id: Option<u64>,
        reason: PacketError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty frame")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineType(char),
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSocketType(char),
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("packet data is not valid JSON")]
    BadJson,
}

pub fn decode(frame: &str) -> Result<EnginePacket, PacketError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let rest = chars.as_str();
    match kind {
        '1' => Ok(EnginePacket::Close),
        '2' => Ok(EnginePacket::Ping(rest.to_owned())),
        '3' => Ok(EnginePacket::Pong),
        '4' => decode_socket(rest).map(EnginePacket::Message),
        '6' => Ok(EnginePacket::Noop),
        other => Err(PacketError::UnknownEngineType(other)),
    }
}

fn decode_socket(text: &str) -> Result<SocketPacket, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let mut rest = chars.as_str();
    // Binary packets carry an attachment count before the namespace.
    if matches!(kind, '5' | '6') {
        let digits = rest.find('-').ok_or(PacketError::Malformed(
            "binary packet without attachment count",
        ))?;
        rest = &rest[digits + 1..];
    }
    let (namespace, rest) = split_namespace(rest);
    let (ack_id, data) = split_ack_id(rest)?;
    match kind {
        '0' => {
            if data.is_empty() {
                return Ok(SocketPacket::Connect {
                    namespace,
                    auth: None,
                });
            }
            Ok(match serde_json::from_str(data) {
                Ok(auth) => SocketPacket::Connect {
                    namespace,
                    auth: Some(auth),
                },
                Err(_) => SocketPacket::ConnectWithBadAuth { namespace },
            })
        }
        '1' => Ok(SocketPacket::Disconnect { namespace }),
        '2' => Ok(match event_name_and_args(data) {
            Ok((name, args)) => SocketPacket::Event {
                namespace,
                ack_id,
                name,
                args,
            },
            Err(reason) => SocketPacket::Unparsable {
                namespace,
                ack_id,
                reason,
            },
        }),
        '3' => {
            let ack_id = ack_id.ok_or(PacketError::Malformed("ack without id"))?;
            // A client's ack is never answered, so its data need not parse.
            Ok(SocketPacket::Ack {
                namespace,
                ack_id,
                args: json_array(data)?,
            })
        }
        '5' | '6' => Ok(SocketPacket::Binary { namespace, ack_id }),
        other => Err(PacketError::UnknownSocketType(other)),
    }
}

/// `/chat,rest` → ("/chat", "rest"); no leading `/` means the main namespace.
fn split_namespace(text: &str) -> (String, &str) {
    if !text.starts_with('/') {
        return ("/".to_owned(), text);
    }
    match text.find(',') {
        Some(comma) => (text[..comma].to_owned(), &text[comma + 1..]),
        None => (text.to_owned(), ""),
    }
}

fn split_ack_id(text: &str) -> Result<(Option<u64>, &str), PacketError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok((None, text));
    }
    let id = text[..digits]
        .parse::<u64>()
        .map_err(|_| PacketError::Malformed("ack id out of range"))?;
    Ok((Some(id), &text[digits..]))
}

fn event_name_and_args(data: &str) -> Result<(String, Vec<Value>), PacketError> {
    let mut args = json_array(data)?;
    if args.is_empty() {
        return Err(PacketError::Malformed("event without a name"));
    }
    match args.remove(0) {
        Value::String(name) => Ok((name, args)),
        _ => Err(PacketError::Malformed("event name is not a string")),
    }
}

fn json_array(data: &str) -> Result<Vec<Value>, PacketError> {
    match serde_json::from_str(data) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(PacketError::Malformed("packet data is not an array")),
        Err(_) => Err(PacketError::BadJson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_engine_control_packets() {
        assert_eq!(decode("3").unwrap(), EnginePacket::Pong);
        assert_eq!(
            decode("2probe").unwrap(),
            EnginePacket::Ping("probe".into())
        );
        assert_eq!(decode("1").unwrap(), EnginePacket::Close);
        assert_eq!(decode("").unwrap_err(), PacketError::Empty);
        assert!(matches!(
            decode("9"),
            Err(PacketError::UnknownEngineType('9'))
        ));
    }

    #[test]
    fn decodes_connect_with_auth() {
        assert_eq!(
            decode(r#"40/chat,{"token":"abc"}"#).unwrap(),
            EnginePacket::Message(SocketPacket::Connect {
                namespace: "/chat".into(),
                auth: Some(json!({"token": "abc"}))
            })
        );
        assert_eq!(
            decode("40").unwrap(),
            EnginePacket::Message(SocketPacket::Connect {
                namespace: "/".into(),
                auth: None
            })
        );
        assert_eq!(
            decode("40/chat,").unwrap(),
            EnginePacket::Message(SocketPacket::Connect {
                namespace: "/chat".into(),
                auth: None
            })
        );
    }

    #[test]
    fn decodes_events_with_and_without_ack() {
        assert_eq!(
            decode(r#"42/chat,["typing",{"sessionId":"s"}]"#).unwrap(),
            EnginePacket::Message(SocketPacket::Event {
                namespace: "/chat".into(),
                ack_id: None,
                name: "typing".into(),
                args: vec![json!({"sessionId": "s"})]
            })
        );
        assert_eq!(
            decode(r#"42/chat,17["send-message",{"a":1}]"#).unwrap(),
            EnginePacket::Message(SocketPacket::Event {
                namespace: "/chat".into(),
                ack_id: Some(17),
                name: "send-message".into(),
                args: vec![json!({"a": 1})]
            })
        );
    }

    #[test]
    fn decodes_client_acks_and_disconnect() {
        assert_eq!(
            decode(r#"43/chat,5["fine"]"#).unwrap(),
            EnginePacket::Message(SocketPacket::Ack {
                namespace: "/chat".into(),
                ack_id: 5,
                args: vec![json!("fine")]
            })
        );
        assert_eq!(
            decode("41/chat,").unwrap(),
            EnginePacket::Message(SocketPacket::Disconnect {
                namespace: "/chat".into()
            })
        );
    }

    #[test]
    fn rejects_malformed_events_without_panicking() {
        for bad in [
            "42/chat,99999999999999999999999[\"x\"]",
            "4",
            "4x",
            "43/chat,[1]",
            "45",
            "4é",
            "é",
        ] {
            assert!(decode(bad).is_err(), "{bad} should not decode");
        }
        assert!(matches!(
            decode("451-/chat,[\"x\",{\"_placeholder\":true,\"num\":0}]").unwrap(),
            EnginePacket::Message(SocketPacket::Binary { .. })
        ));
    }

    #[test]
    fn unparsable_event_data_keeps_its_ack_id() {
        let deep = format!(
            "42/chat,7[\"typing\",{}1{}]",
            "[".repeat(200),
            "]".repeat(200)
        );
        for (frame, ack_id) in [
            (r#"42/chat,3["x""#.to_owned(), Some(3)),
            (
                r#"42/chat,4["send-message",{"content":"\ud800"}]"#.to_owned(),
                Some(4),
            ),
            (
                r#"42/chat,5["mark-read",{"upToSeq":1e999}]"#.to_owned(),
                Some(5),
            ),
            (deep, Some(7)),
            (r#"42/chat,{"#.to_owned(), None),
            ("42/chat,".to_owned(), None),
            ("42/chat,8{}".to_owned(), Some(8)),
            ("42/chat,9[]".to_owned(), Some(9)),
            ("42/chat,[1,2]".to_owned(), None),
        ] {
            match decode(&frame) {
                Ok(EnginePacket::Message(SocketPacket::Unparsable {
                    namespace,
                    ack_id: got,
                    ..
                })) => {
                    assert_eq!(namespace, "/chat", "{frame}");
                    assert_eq!(got, ack_id, "{frame}");
                }
                other => panic!("{frame} decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn a_connect_with_auth_that_is_not_json_is_kept_apart() {
        assert_eq!(
            decode("40/chat,{not json").unwrap(),
            EnginePacket::Message(SocketPacket::ConnectWithBadAuth {
                namespace: "/chat".into()
            })
        );
    }
}
