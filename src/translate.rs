//! Homeserver event JSON -> engine input. Shared by every connector, since
//! the appservice transaction and the client sync carry the same events.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::{EventMeta, Input, Membership};

/// Why an event could not be turned into an input: it is quarantined with
/// this text, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    event_id: Option<OwnedEventId>,
    room_id: Option<OwnedRoomId>,
    sender: Option<OwnedUserId>,
    state_key: Option<String>,
    #[serde(default)]
    origin_server_ts: u64,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MemberContent {
    membership: Option<String>,
    #[serde(default)]
    is_direct: Option<bool>,
}

#[derive(Deserialize)]
struct MessageContent {
    msgtype: Option<String>,
    body: Option<serde_json::Value>,
}

/// `Ok(None)` for events the engine has no rule for; `Err` for events that
/// are malformed in a way that must be looked at.
pub fn translate(raw: &[u8]) -> Result<Option<Input>, Unreadable> {
    let env: Envelope<'_> =
        serde_json::from_slice(raw).map_err(|e| Unreadable(format!("not a Matrix event: {e}")))?;
    if env.kind != "m.room.member" && env.kind != "m.room.message" {
        return Ok(None);
    }
    let (Some(event_id), Some(room_id), Some(sender)) = (env.event_id, env.room_id, env.sender)
    else {
        return Err(Unreadable(format!(
            "{} event without event_id, room_id or sender",
            env.kind
        )));
    };
    let meta = EventMeta {
        event_id,
        room_id,
        sender,
        ts_ms: env.origin_server_ts,
    };
    let content = env.content.map(RawValue::get).unwrap_or("{}");
    match env.kind.as_str() {
        "m.room.member" => {
            let target = env
                .state_key
                .ok_or_else(|| Unreadable("m.room.member without state_key".into()))?;
            let target = OwnedUserId::try_from(target).map_err(|e| {
                Unreadable(format!("m.room.member state_key is not a user ID: {e}"))
            })?;
            let c: MemberContent = serde_json::from_str(content)
                .map_err(|e| Unreadable(format!("m.room.member content: {e}")))?;
            let membership = c
                .membership
                .ok_or_else(|| Unreadable("m.room.member without membership".into()))?;
            Ok(Some(Input::Member {
                meta,
                target,
                membership: Membership::parse(&membership),
                is_direct: c.is_direct.unwrap_or(false),
            }))
        }
        _ => {
            let c: MessageContent = serde_json::from_str(content)
                .map_err(|e| Unreadable(format!("m.room.message content: {e}")))?;
            // A redacted message has empty content: nothing left to act on.
            let Some(msgtype) = c.msgtype else {
                return Ok(None);
            };
            let body = match c.body {
                Some(serde_json::Value::String(s)) => s,
                _ => String::new(),
            };
            Ok(Some(Input::Message {
                meta,
                msgtype,
                body,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_becomes_member_input() {
        let raw = br#"{"type":"m.room.member","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org",
            "state_key":"@gatekeeper:x.org","origin_server_ts":5,"content":{"membership":"invite","is_direct":true},
            "unsigned":{"age":3}}"#;
        let Some(Input::Member {
            meta,
            target,
            membership,
            is_direct,
        }) = translate(raw).unwrap()
        else {
            panic!()
        };
        assert_eq!(meta.sender, "@a:x.org");
        assert_eq!(meta.ts_ms, 5);
        assert_eq!(target, "@gatekeeper:x.org");
        assert_eq!(membership, Membership::Invite);
        assert!(is_direct);
    }

    #[test]
    fn message_becomes_message_input() {
        let raw =
            br#"{"type":"m.room.message","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org",
            "origin_server_ts":5,"content":{"msgtype":"m.text","body":"hi"}}"#;
        assert!(
            matches!(translate(raw).unwrap(), Some(Input::Message { body, .. }) if body == "hi")
        );
    }

    #[test]
    fn unrelated_and_redacted_events_are_ignored() {
        let typing = br#"{"type":"m.room.topic","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","state_key":"","content":{}}"#;
        assert_eq!(translate(typing).unwrap(), None);
        let redacted = br#"{"type":"m.room.message","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","content":{}}"#;
        assert_eq!(translate(redacted).unwrap(), None);
    }

    #[test]
    fn malformed_events_are_unreadable() {
        for raw in [
            &b"[1,2]"[..],
            br#"{"no":"type"}"#,
            br#"{"type":"m.room.member","room_id":"!r:x.org","sender":"@a:x.org","state_key":"@b:x.org","content":{"membership":"join"}}"#,
            br#"{"type":"m.room.member","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","state_key":"not a user","content":{"membership":"join"}}"#,
            br#"{"type":"m.room.member","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","state_key":"@b:x.org","content":{}}"#,
            br#"{"type":"m.room.message","event_id":"$e","room_id":"bad","sender":"@a:x.org","content":{"msgtype":"m.text","body":"x"}}"#,
        ] {
            assert!(translate(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }
}
