//! Property tests (a bounded fuzz run) of everything that reads untrusted
//! client bytes before any business logic does: the Engine.IO / Socket.IO
//! packet decoder (`chat_gateway::sio::packet::decode`) and the event payload
//! parsers of `chat_shared::protocol` (and the REST bodies that share their
//! `from_json`). They prove that:
//!
//! - `decode` never panics, neither on arbitrary text nor on frames built
//!   from a grammar of near-valid packets (engine and socket type digits,
//!   binary attachment counts, namespaces, ack ids up to and beyond `u64`,
//!   valid, truncated, deeply nested and otherwise broken JSON, lone
//!   surrogate escapes, out-of-range numbers, control characters), nor on
//!   random mutations of those frames;
//! - every malformed packet gets an answer as docs/protocol.md requires
//!   (PROTOCOL §3): an event frame is only ever refused outright when its ack
//!   id cannot be represented; one that carries an ack id keeps it even when
//!   its data cannot be parsed, so the error goes back as that ack; and the
//!   answer built for it is itself a well-formed frame (an ack
//!   `{ ok: false, error: { code: "invalid_payload" } }` or an `error` event);
//! - a valid event `42/chat,<id>["name",...args]` decodes back to exactly
//!   that name, ack id and arguments;
//! - every payload parser never panics on arbitrary JSON trees, refuses
//!   anything that is not an object with `invalid_payload`, fails only with
//!   `invalid_payload`, and what it accepts obeys the protocol's limits.
//!
//! Each property runs 2,000 cases by default (the whole file stays well under
//! 30 s in a debug build); set `PROPTEST_CASES` for a longer run. Failures
//! are not persisted, so a run writes no files into the checkout.

use chat_gateway::sio::packet::{decode, EnginePacket, PacketError, SocketPacket};
use chat_shared::protocol::{
    frames, AssignBody, CloseBody, CreateSessionBody, JoinSession, LeaveSession, MarkRead,
    PostMessageBody, SendMessage, TransferBody, Typing,
};
use chat_shared::{validate, ChatError, ErrorCode};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};

const DEFAULT_CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const FIELD_NAMES: &[&str] = &[
    "sessionId",
    "lastSeq",
    "content",
    "clientMsgId",
    "isTyping",
    "upToSeq",
    "subject",
    "pool",
    "message",
    "agentId",
    "reason",
];

const EVENT_NAMES: &[&str] = &[
    "join-session",
    "leave-session",
    "send-message",
    "typing",
    "mark-read",
];

// ---------------------------------------------------------------- strategies

/// Text biased towards what matters to a JSON and packet parser: printable
/// ASCII, JSON punctuation, control characters and any Unicode scalar.
fn text(max: usize) -> BoxedStrategy<String> {
    let ch = prop_oneof![
        3 => proptest::char::range(' ', '~'),
        2 => select(vec![
            '[', ']', '{', '}', '"', ',', ':', '\\', '/', '-', '+', '.', 'e', 'E', '0', '1', '9',
            'u', 'n', 't', 'f',
        ]),
        1 => proptest::char::range('\0', '\u{1f}'),
        1 => any::<char>(),
    ];
    vec(ch, 0..max).prop_map(String::from_iter).boxed()
}

/// Strings near the validators' edges: empty, blank, NUL, at and past the
/// length limits (in code points, with multi-byte characters).
fn edge_string() -> BoxedStrategy<String> {
    prop_oneof![
        text(24),
        select(FIELD_NAMES).prop_map(str::to_owned),
        select(vec![
            "",
            " ",
            "\t\n ",
            "s1",
            "\0",
            "a\0b",
            " x ",
            "billing-eu_1.x"
        ])
        .prop_map(str::to_owned),
        (
            select(vec!['a', 'é', '😀', ' ']),
            select(vec![
                63usize, 64, 65, 128, 129, 200, 201, 500, 501, 4000, 4001
            ])
        )
            .prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Any finite f64 when `exact` is false (NaN and infinities become null,
/// as `serde_json` does); otherwise only floats whose shortest decimal form
/// has at most 13 significant digits. Without its `float_roundtrip` feature
/// serde_json may parse a longer decimal 1 ULP off (907759.8232421875 comes
/// back as 907759.8232421876), which is no concern of the protocol (its
/// numbers are integers) but would make round trips compare unequal.
fn float(exact: bool) -> BoxedStrategy<Value> {
    if exact {
        (-(1i32 << 20)..(1i32 << 20), 0u32..7)
            .prop_map(|(m, e)| Value::from(f64::from(m) / f64::from(1u32 << e)))
            .boxed()
    } else {
        any::<f64>().prop_map(Value::from).boxed()
    }
}

fn leaf(exact: bool) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(vec![0i64, 1, -1, i64::MIN, i64::MAX]).prop_map(Value::from),
        float(exact),
        edge_string().prop_map(Value::from),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(FIELD_NAMES).prop_map(str::to_owned),
        1 => text(12),
    ]
    .boxed()
}

/// A JSON tree of bounded depth.
fn json(depth: u32, exact: bool) -> BoxedStrategy<Value> {
    leaf(exact)
        .prop_recursive(depth, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((key(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// An object whose keys are the protocol's field names, so the parsers get
/// past "not an object" and into their field checks (and sometimes succeed).
fn payload_object() -> BoxedStrategy<Value> {
    vec(
        (
            select(FIELD_NAMES),
            prop_oneof![3 => leaf(false), 1 => json(2, false)],
        ),
        0..6,
    )
    .prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
    .boxed()
}

/// A valid-looking payload of one of the events, then with a field or two
/// removed or replaced, so that the parsers' success paths and each of their
/// field checks get exercised.
fn near_valid_payload() -> BoxedStrategy<Value> {
    let seq = prop_oneof![
        select(vec![0i64, 1, 7, -1, i64::MAX, i64::MIN]).prop_map(Value::from),
        float(false),
        Just(Value::Null),
    ];
    let base = (
        edge_string(),
        edge_string(),
        edge_string(),
        seq,
        any::<bool>(),
        0usize..4,
    )
        .prop_map(|(session, content, client_id, seq, typing, which)| {
            let mut object = Map::new();
            object.insert("sessionId".into(), session.into());
            match which {
                0 => {
                    object.insert("lastSeq".into(), seq);
                }
                1 => {
                    object.insert("content".into(), content.into());
                    object.insert("clientMsgId".into(), client_id.into());
                }
                2 => {
                    object.insert("isTyping".into(), typing.into());
                }
                _ => {
                    object.insert("upToSeq".into(), seq);
                }
            }
            object
        });
    // Most cases keep the payload as built; some edit it.
    let edits = prop_oneof![
        2 => Just(Vec::new()),
        1 => vec((select(FIELD_NAMES), proptest::option::of(leaf(false))), 1..3),
    ];
    (base, edits)
        .prop_map(|(mut object, edits)| {
            for (field, value) in edits {
                match value {
                    Some(value) => object.insert(field.to_owned(), value),
                    None => object.remove(field),
                };
            }
            Value::Object(object)
        })
        .boxed()
}

fn payload() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => json(4, false),
        1 => payload_object(),
        2 => near_valid_payload(),
    ]
    .boxed()
}

/// `["name", payload, ...]` with a known or arbitrary event name.
fn event_json() -> BoxedStrategy<String> {
    (
        prop_oneof![3 => select(EVENT_NAMES).prop_map(str::to_owned), 1 => text(12)],
        vec(payload(), 0..3),
    )
        .prop_map(|(name, args)| {
            let mut items = vec![Value::from(name)];
            items.extend(args);
            Value::Array(items).to_string()
        })
        .boxed()
}

/// The data part of a frame: JSON-ish text, valid or broken in the ways
/// clients (and attackers) break it.
fn data() -> BoxedStrategy<String> {
    let valid = prop_oneof![event_json(), json(4, false).prop_map(|v| v.to_string())];
    let truncated = (valid.clone(), any::<Index>()).prop_map(|(s, at)| {
        let cut = at.index(s.chars().count() + 1);
        s.chars().take(cut).collect::<String>()
    });
    let deep = (
        1usize..1_500,
        select(vec!["[", "{\"a\":", "[{\"sessionId\":"]),
        any::<bool>(),
        text(4),
    )
        .prop_map(|(n, open, close, inner)| {
            let mut s = String::from("[\"typing\",");
            s.push_str(&open.repeat(n));
            s.push_str(&inner);
            if close {
                let closer = if open == "[" { "]" } else { "}" };
                s.push_str(&closer.repeat(n));
                s.push(']');
            }
            s
        });
    let surrogate = (
        select(vec![
            r"\ud800",
            r"\udc00",
            r"\udfff",
            r"\ud800\u0041",
            r"\ud800\ud800",
            r"\ud83d\ude00",
            r"\u00",
            r"\uZZZZ",
            r"\x41",
            "\\",
        ]),
        select(vec!["content", "sessionId", "clientMsgId"]),
        select(EVENT_NAMES),
    )
        .prop_map(|(escape, field, name)| {
            format!(r#"["{name}",{{"{field}":"a{escape}b","sessionId":"s"}}]"#)
        });
    let number = (
        select(vec![
            "1e999",
            "-1e999",
            "1e-999",
            "1E+400",
            "18446744073709551616",
            "-9223372036854775809",
            "9223372036854775808",
            "0.1e",
            "01",
            "-",
            "1.",
            ".5",
            "NaN",
            "Infinity",
            "-0",
            "4.5",
        ]),
        select(vec!["upToSeq", "lastSeq", "isTyping"]),
    )
        .prop_map(|(n, field)| format!(r#"["mark-read",{{"sessionId":"s","{field}":{n}}}]"#));
    let control = (
        select(EVENT_NAMES),
        vec(proptest::char::range('\0', '\u{1f}'), 1..4),
    )
        .prop_map(|(name, cs)| {
            let cs = String::from_iter(cs);
            format!(r#"["{name}",{{"sessionId":"s{cs}","content":"{cs}"}}]"#)
        });
    prop_oneof![
        4 => valid,
        3 => truncated,
        1 => deep,
        2 => surrogate,
        2 => number,
        1 => control,
        2 => text(64),
        1 => Just(String::new()),
    ]
    .boxed()
}

fn digit_string(len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    vec(proptest::char::range('0', '9'), len)
        .prop_map(String::from_iter)
        .boxed()
}

/// Ack ids: none, ordinary, with leading zeros, the largest `u64`, one past
/// it, and far past it.
fn ack_digits() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => any::<u64>().prop_map(|id| id.to_string()),
        2 => (0u32..1_000).prop_map(|id| id.to_string()),
        1 => (1usize..4, any::<u32>()).prop_map(|(zeros, id)| format!("{}{id}", "0".repeat(zeros))),
        1 => Just(u64::MAX.to_string()),
        1 => Just("18446744073709551616".to_owned()),
        1 => digit_string(20..60),
    ]
    .boxed()
}

fn namespace() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just("/chat,".to_owned()),
        1 => Just(String::new()),
        1 => select(vec!["/", "/chat", "/,", "/other,", "/chat/x,", "/chat,,"]).prop_map(str::to_owned),
        1 => text(8).prop_map(|name| format!("/{name},")),
    ]
    .boxed()
}

/// Frames from the packet grammar, with every part sometimes wrong.
fn near_valid_frame() -> BoxedStrategy<String> {
    let engine = prop_oneof![
        8 => Just("4".to_owned()),
        2 => proptest::char::range('0', '9').prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
        1 => Just(String::new()),
    ];
    let socket = prop_oneof![
        6 => select(vec!['0', '1', '2', '2', '2', '3', '4', '5', '6']).prop_map(String::from),
        1 => proptest::char::range('0', '9').prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
        1 => Just(String::new()),
    ];
    let binary = prop_oneof![
        4 => Just(String::new()),
        1 => (0u32..1_000).prop_map(|n| format!("{n}-")),
        1 => select(vec!["-", "1", "x-"]).prop_map(str::to_owned),
    ];
    (engine, socket, binary, namespace(), ack_digits(), data())
        .prop_map(|(e, s, b, ns, ack, data)| format!("{e}{s}{b}{ns}{ack}{data}"))
        .boxed()
}

/// A near-valid frame with a few characters inserted, removed or replaced.
fn mutated_frame() -> BoxedStrategy<String> {
    (
        near_valid_frame(),
        vec((any::<Index>(), 0u8..3, any::<char>()), 1..4),
    )
        .prop_map(|(frame, edits)| {
            let mut chars: Vec<char> = frame.chars().collect();
            for (at, op, c) in edits {
                match op {
                    0 => chars.insert(at.index(chars.len() + 1), c),
                    1 if !chars.is_empty() => {
                        chars.remove(at.index(chars.len()));
                    }
                    _ if !chars.is_empty() => {
                        let i = at.index(chars.len());
                        chars[i] = c;
                    }
                    _ => chars.push(c),
                }
            }
            String::from_iter(chars)
        })
        .boxed()
}

/// Data that does not start with a digit (a digit would extend the ack id).
fn data_after_ack() -> BoxedStrategy<String> {
    data()
        .prop_filter("data after an ack id starts with a non-digit", |d| {
            !d.starts_with(|c: char| c.is_ascii_digit())
        })
        .boxed()
}

// ------------------------------------------------------------------ checks

/// The answer the connection gives a malformed packet (`frames::failure`)
/// is a frame this decoder reads back: an ack on the packet's id, or an
/// `error` event when it has none, carrying `invalid_payload` either way.
fn check_answer(ack_id: Option<u64>, reason: &str) -> Result<(), TestCaseError> {
    let answer = frames::failure(
        ack_id,
        &ChatError::invalid(format!("malformed packet: {reason}")),
    );
    let error = match (decode(&answer), ack_id) {
        (
            Ok(EnginePacket::Message(SocketPacket::Ack {
                namespace,
                ack_id: got,
                args,
            })),
            Some(id),
        ) => {
            prop_assert_eq!(namespace, "/chat");
            prop_assert_eq!(got, id);
            prop_assert_eq!(args.len(), 1);
            prop_assert_eq!(&args[0]["ok"], &Value::Bool(false));
            args[0]["error"].clone()
        }
        (
            Ok(EnginePacket::Message(SocketPacket::Event {
                namespace,
                ack_id: None,
                name,
                args,
            })),
            None,
        ) => {
            prop_assert_eq!(namespace, "/chat");
            prop_assert_eq!(name, "error");
            prop_assert_eq!(args.len(), 1);
            args[0].clone()
        }
        (other, _) => {
            return Err(TestCaseError::fail(format!(
                "answer {answer:?} decodes as {other:?}"
            )))
        }
    };
    prop_assert_eq!(&error["code"], "invalid_payload");
    prop_assert!(error["message"].is_string());
    Ok(())
}

/// Whatever a frame decodes to, nothing panics, an event frame is refused
/// only for an unrepresentable ack id, and every malformed outcome has a
/// well-formed answer.
fn check_frame(frame: &str) -> Result<(), TestCaseError> {
    let decoded = decode(frame);
    if frame.starts_with("42") {
        match &decoded {
            Ok(EnginePacket::Message(
                SocketPacket::Event { .. } | SocketPacket::Unparsable { .. },
            ))
            | Err(PacketError::Malformed("ack id out of range")) => {}
            other => {
                return Err(TestCaseError::fail(format!(
                    "event frame {frame:?} decodes as {other:?}"
                )))
            }
        }
    }
    match decoded {
        Ok(EnginePacket::Ping(data)) => prop_assert_eq!(data.as_str(), &frame[1..]),
        Ok(EnginePacket::Message(SocketPacket::Unparsable { ack_id, reason, .. })) => {
            check_answer(ack_id, &reason.to_string())?
        }
        Ok(EnginePacket::Message(SocketPacket::Binary { ack_id, .. })) => {
            check_answer(ack_id, "binary attachments are not supported")?
        }
        Ok(EnginePacket::Message(SocketPacket::Event {
            namespace,
            ack_id,
            name,
            args,
        })) if namespace == "/chat" => {
            // What the connection then does with the first argument.
            let payload = args.into_iter().next().unwrap_or(Value::Null);
            if let Some(Err(error)) = parse_event(&name, payload) {
                prop_assert_eq!(error.code, ErrorCode::InvalidPayload);
                check_answer(ack_id, &error.message)?;
            }
        }
        Ok(_) => {}
        Err(error) => check_answer(None, &error.to_string())?,
    }
    Ok(())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= validate::MAX_ID_CHARS && !id.contains('\0')
}

/// Parses `payload` as event `name` and checks the accepted value against
/// the protocol's rules; `None` for an unknown event name.
fn parse_event(name: &str, payload: Value) -> Option<Result<(), ChatError>> {
    let result = match name {
        "join-session" => JoinSession::parse(payload).map(|join| {
            assert!(valid_id(&join.session_id), "{join:?}");
            assert!(join.last_seq.is_none_or(|seq| seq >= 0), "{join:?}");
        }),
        "leave-session" => LeaveSession::parse(payload).map(|leave| {
            assert!(valid_id(&leave.session_id), "{leave:?}");
        }),
        "send-message" => SendMessage::parse(payload).map(|send| {
            assert!(valid_id(&send.session_id), "{send:?}");
            let chars = send.content.chars().count();
            assert!(
                (1..=validate::MAX_CONTENT_CHARS).contains(&chars),
                "{send:?}"
            );
            assert_eq!(send.content, send.content.trim());
            assert!(!send.content.contains('\0'));
            let id_chars = send.client_msg_id.chars().count();
            assert!(
                (1..=validate::MAX_CLIENT_MSG_ID_CHARS).contains(&id_chars),
                "{send:?}"
            );
        }),
        "typing" => Typing::parse(payload).map(|typing| {
            assert!(valid_id(&typing.session_id), "{typing:?}");
        }),
        "mark-read" => MarkRead::parse(payload).map(|mark| {
            assert!(valid_id(&mark.session_id), "{mark:?}");
            assert!(mark.up_to_seq >= 0, "{mark:?}");
        }),
        _ => return None,
    };
    Some(result)
}

/// The REST bodies, parsed by the same `from_json` as the events.
fn parse_bodies(payload: &Value) -> Vec<(&'static str, Result<(), ChatError>)> {
    vec![
        (
            "create-session",
            CreateSessionBody::parse(payload.clone()).map(drop),
        ),
        (
            "post-message",
            PostMessageBody::parse(payload.clone()).map(drop),
        ),
        ("assign", AssignBody::parse(payload.clone()).map(drop)),
        ("transfer", TransferBody::parse(payload.clone()).map(drop)),
        ("close", CloseBody::parse(payload.clone()).map(drop)),
    ]
}

// -------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config())]

    /// Arbitrary text never panics the decoder.
    #[test]
    fn decode_never_panics_on_arbitrary_text(frame in text(300)) {
        check_frame(&frame)?;
    }

    /// Neither do frames of the packet grammar, valid or nearly so.
    #[test]
    fn decode_never_panics_on_near_valid_frames(frame in near_valid_frame()) {
        check_frame(&frame)?;
    }

    /// Nor those frames with a few characters changed.
    #[test]
    fn decode_never_panics_on_mutated_frames(frame in mutated_frame()) {
        check_frame(&frame)?;
    }

    /// PROTOCOL §3: an event that carries an ack id (one that fits a u64)
    /// decodes with that ack id whatever its data, so its error, if any, is
    /// answered as that ack.
    #[test]
    fn an_event_keeps_its_ack_id_whatever_its_data(
        (ns, expected_ns) in prop_oneof![
            3 => Just(("/chat,", "/chat")),
            1 => Just(("", "/")),
            1 => Just(("/other,", "/other")),
            1 => Just(("/,", "/")),
        ],
        digits in prop_oneof![
            3 => any::<u64>().prop_map(|id| id.to_string()),
            1 => (0u32..100).prop_map(|id| id.to_string()),
            1 => (1usize..4, any::<u64>()).prop_map(|(z, id)| format!("{}{id}", "0".repeat(z))),
            1 => Just(u64::MAX.to_string()),
        ],
        data in data_after_ack(),
    ) {
        let id: u64 = digits.parse().expect("the strategy makes u64 digits");
        let frame = format!("42{ns}{digits}{data}");
        match decode(&frame) {
            Ok(EnginePacket::Message(SocketPacket::Event { namespace, ack_id, .. })) => {
                prop_assert_eq!(namespace, expected_ns);
                prop_assert_eq!(ack_id, Some(id));
            }
            Ok(EnginePacket::Message(SocketPacket::Unparsable { namespace, ack_id, reason })) => {
                prop_assert_eq!(namespace, expected_ns);
                prop_assert_eq!(ack_id, Some(id));
                check_answer(ack_id, &reason.to_string())?;
            }
            other => prop_assert!(false, "{:?} decodes as {:?}", frame, other),
        }
    }

    /// An ack id too large for a u64 is a `Malformed` error (answered with an
    /// `error` event), never a panic and never a wrapped-around id.
    #[test]
    fn an_ack_id_beyond_u64_is_malformed(
        digits in digit_string(20..80).prop_filter("overflows u64", |d| d.parse::<u64>().is_err()),
        data in data_after_ack(),
    ) {
        let frame = format!("42/chat,{digits}{data}");
        prop_assert_eq!(
            decode(&frame),
            Err(PacketError::Malformed("ack id out of range"))
        );
        check_answer(None, "ack id out of range")?;
    }

    /// A valid event decodes back to its name, ack id and arguments.
    #[test]
    fn valid_events_round_trip(
        (ns, expected_ns) in prop_oneof![
            3 => Just(("/chat,", "/chat")),
            1 => Just(("", "/")),
        ],
        ack_id in proptest::option::of(any::<u64>()),
        name in prop_oneof![select(EVENT_NAMES).prop_map(str::to_owned), text(20)],
        args in vec(json(4, true), 0..4),
    ) {
        let mut items = vec![Value::from(name.clone())];
        items.extend(args.iter().cloned());
        let ack = ack_id.map(|id| id.to_string()).unwrap_or_default();
        let frame = format!("42{ns}{ack}{}", Value::Array(items));
        prop_assert_eq!(
            decode(&frame),
            Ok(EnginePacket::Message(SocketPacket::Event {
                namespace: expected_ns.to_owned(),
                ack_id,
                name,
                args,
            }))
        );
    }

    /// The payload parsers never panic on arbitrary JSON, refuse every
    /// non-object with `invalid_payload`, and fail only with it.
    #[test]
    fn payload_parsers_never_panic_and_refuse_non_objects(payload in payload()) {
        let mut results: Vec<(&str, Result<(), ChatError>)> = EVENT_NAMES
            .iter()
            .map(|&name| (name, parse_event(name, payload.clone()).expect("a known event")))
            .collect();
        results.extend(parse_bodies(&payload));
        for (name, result) in results {
            if !payload.is_object() {
                prop_assert!(result.is_err(), "{} accepted {}", name, payload);
            }
            if let Err(error) = result {
                prop_assert_eq!(error.code, ErrorCode::InvalidPayload, "{}: {}", name, payload);
                prop_assert!(!error.message.is_empty());
            }
        }
    }
}
