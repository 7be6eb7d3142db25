//! Homeserver event JSON -> engine input. Shared by every connector, since
//! the appservice transaction and the client sync carry the same events.
//! Results of Gatekeeper's own look-ups come back through here too, but
//! only from the internal source: a homeserver event can never pose as one.

use ruma::html::{HtmlSanitizerMode, RemoveReplyFallback, sanitize_html};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::native::{FilterSeen, NativeInput, ReportVia};
use crate::engine::policy::{RuleEvent, RuleKind};
use crate::engine::{EventMeta, FailedStep, Input, Media, Membership, Replacement};

/// Why an event could not be turned into an input: it is quarantined with
/// this text, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Results of look-ups, as stored in the inbox (internal source only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Internal {
    Profile {
        user: OwnedUserId,
        displayname: Option<String>,
    },
    Contacts {
        owner: OwnedUserId,
        users: Vec<OwnedUserId>,
        /// Absent from results queued before strangers' rooms were told apart.
        #[serde(default)]
        strangers: Vec<(OwnedRoomId, OwnedUserId)>,
    },
    RoomInfo {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
        name: Option<String>,
        members: u32,
    },
    /// The rooms a held room's inviter shares with its owner.
    SharedRooms {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
        names: Vec<Option<String>>,
        count: u32,
        complete: bool,
    },
    /// A reply for a two-person room found other members there.
    NotTwoPeople {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
        members: u32,
    },
    /// Housekeeping found something due.
    Tick,
    /// Client mode: the owner's control room exists.
    ControlRoomReady {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
    },
    /// Client mode: an event first seen as undecryptable, decrypted once
    /// its key arrived (the event as the crypto layer gives it).
    Decrypted {
        event: serde_json::Value,
    },
    /// A one-click link was confirmed (signature, expiry, single use checked).
    LinkUsed {
        owner: OwnedUserId,
        action: crate::engine::links::LinkAction,
        subject: String,
        nonce: String,
    },
    /// An e-mail could not be delivered.
    MailFailed {
        owner: OwnedUserId,
        to: String,
        reason: String,
    },
    /// The executor set a step of holding a room aside (see
    /// `Effect::failure_report`): refused, or unanswered past the retry bound.
    EffectFailed {
        room_id: OwnedRoomId,
        /// Absent from reports queued before they named the owner.
        #[serde(default)]
        owner: Option<OwnedUserId>,
        step: Step,
        no_answer: bool,
        reason: String,
    },
    /// Housekeeping: this owner's scheduled digest may be due (one owner
    /// per input, so one decision holds one overview at most).
    OwnerDue {
        owner: OwnedUserId,
    },
    /// The executor set a digest part aside: what it carried goes back
    /// into the next digest.
    DigestPartFailed {
        owner: OwnedUserId,
        messages: Vec<OwnedEventId>,
        invites: Vec<OwnedRoomId>,
    },
    /// Gatekeeper started (appservice mode), or the owner's invite filter
    /// changed (client mode): what is kept in step on the homeserver for
    /// this owner is put right.
    Refresh {
        owner: OwnedUserId,
    },
    /// A report to the homeserver's admins was made (or could not be).
    Reported {
        owner: OwnedUserId,
        user: OwnedUserId,
        via: String,
        seed: String,
    },
    /// The owner's invite filter as read.
    InviteFilter {
        owner: OwnedUserId,
        seen: FilterSeenV1,
    },
    /// A ban list was joined and its rules read (or could not be).
    ListRead {
        owner: Option<OwnedUserId>,
        asked: String,
        room_id: Option<OwnedRoomId>,
        rules: Vec<RuleRead>,
        error: Option<String>,
        /// When the state was asked for (ms since the epoch): a rule event
        /// applied since is newer than what was read.
        #[serde(default)]
        read_ms: Option<u64>,
    },
    /// A list `owner` follows (or the operator's) gained a rule since their
    /// pending strangers were last checked. (Older versions also named the
    /// list and the rule: ignored, as every list is checked.)
    CheckPending {
        owner: OwnedUserId,
    },
    /// The operator's ban lists as configured now (at every start).
    OperatorLists {
        names: Vec<String>,
    },
    /// The policy room for an owner's blocks was made.
    ListCreated {
        owner: OwnedUserId,
        room_id: OwnedRoomId,
    },
}

/// [`crate::engine::native::FilterSeen`] as stored in the inbox: subjects
/// in their command form (`@user:server`, `*:server`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSeenV1 {
    #[serde(default)]
    pub blocks_all: bool,
    #[serde(default)]
    pub stable_present: bool,
    #[serde(default)]
    pub blocked: Vec<String>,
    #[serde(default)]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub truncated: bool,
}

impl From<FilterSeen> for FilterSeenV1 {
    fn from(s: FilterSeen) -> Self {
        let strings = |v: Vec<crate::engine::Subject>| v.iter().map(ToString::to_string).collect();
        FilterSeenV1 {
            blocks_all: s.blocks_all,
            stable_present: s.stable_present,
            blocked: strings(s.blocked),
            allowed: strings(s.allowed),
            truncated: s.truncated,
        }
    }
}

impl From<FilterSeenV1> for FilterSeen {
    fn from(s: FilterSeenV1) -> Self {
        let subjects = |v: Vec<String>| v.iter().filter_map(|e| e.parse().ok()).collect();
        FilterSeen {
            blocks_all: s.blocks_all,
            stable_present: s.stable_present,
            blocked: subjects(s.blocked),
            allowed: subjects(s.allowed),
            truncated: s.truncated,
        }
    }
}

/// A rule state event as read from a list's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRead {
    pub event_type: String,
    pub state_key: String,
    pub entity: Option<String>,
    pub recommendation: Option<String>,
    pub reason: Option<String>,
}

impl From<RuleRead> for RuleEvent {
    fn from(r: RuleRead) -> Self {
        RuleEvent {
            event_type: r.event_type,
            state_key: r.state_key,
            entity: r.entity,
            recommendation: r.recommendation,
            reason: r.reason,
        }
    }
}

/// [`crate::engine::FailedStep`] as stored in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Silence,
    Join,
}

impl From<FailedStep> for Step {
    fn from(s: FailedStep) -> Self {
        match s {
            FailedStep::Silence => Step::Silence,
            FailedStep::Join => Step::Join,
        }
    }
}

impl From<Step> for FailedStep {
    fn from(s: Step) -> Self {
        match s {
            Step::Silence => FailedStep::Silence,
            Step::Join => FailedStep::Join,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: String,
    event_id: Option<OwnedEventId>,
    room_id: Option<OwnedRoomId>,
    sender: Option<OwnedUserId>,
    // A sender's server controls these: a wrong type (a negative or float
    // timestamp, a number as `redacts`) must not make an invite unreadable,
    // which would drop it unheld.
    #[serde(default, deserialize_with = "lenient")]
    state_key: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    origin_server_ts: Option<u64>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    /// Before room version 11, redactions name their target here.
    #[serde(default, deserialize_with = "lenient")]
    redacts: Option<OwnedEventId>,
    #[serde(borrow)]
    unsigned: Option<&'a RawValue>,
}

// Optional content fields are read leniently: a field of the wrong type
// (`"info": {"size": 1.5}`, `"is_direct": "yes"`) reads as absent, so a
// real message is still captured instead of being set aside whole. Only
// what the engine cannot do without (membership, a redaction's target)
// makes an event unreadable.

/// An optional field: absent, or of the wrong type, is `None`.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(serde_json::Value::deserialize(d).ok().and_then(|v| serde_json::from_value(v).ok()))
}

#[derive(Deserialize)]
struct MemberContent {
    membership: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    is_direct: Option<bool>,
    displayname: Option<serde_json::Value>,
    reason: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct MessageContent {
    #[serde(default, deserialize_with = "lenient")]
    msgtype: Option<String>,
    body: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient")]
    format: Option<String>,
    formatted_body: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient")]
    url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    filename: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    info: Option<MediaInfo>,
    #[serde(rename = "m.relates_to", default, deserialize_with = "lenient")]
    relates_to: Option<RelatesTo>,
    #[serde(rename = "m.new_content", default, deserialize_with = "lenient")]
    new_content: Option<Box<MessageContent>>,
}

#[derive(Deserialize, Default)]
struct MediaInfo {
    #[serde(default, deserialize_with = "lenient")]
    mimetype: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct RelatesTo {
    #[serde(default, deserialize_with = "lenient")]
    rel_type: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    event_id: Option<OwnedEventId>,
}

#[derive(Deserialize)]
struct RedactionContent {
    redacts: Option<OwnedEventId>,
}

#[derive(Deserialize)]
struct Unsigned {
    #[serde(default)]
    invite_room_state: Vec<StrippedState>,
}

#[derive(Deserialize)]
struct StrippedState {
    #[serde(rename = "type")]
    kind: String,
    state_key: Option<String>,
    #[serde(default)]
    content: serde_json::Value,
}

/// Whether the content names `key` at all (whatever its type).
fn content_has(content: &str, key: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(content).is_ok_and(|m| m.contains_key(key))
}

fn text(v: Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Sender-controlled HTML reduced to what the spec allows (no scripts, no
/// event handlers, no foreign link schemes), reply fallbacks removed.
pub fn sanitize(html: &str) -> String {
    sanitize_html(html, HtmlSanitizerMode::Strict, RemoveReplyFallback::Yes)
}

fn html_of(c: &MessageContent) -> Option<String> {
    match (&c.format, &c.formatted_body) {
        (Some(f), Some(serde_json::Value::String(h))) if f == "org.matrix.custom.html" => Some(sanitize(h)),
        _ => None,
    }
}

/// A message decrypted late refers to itself, so that the engine fills in
/// the capture it made when the event could not be read.
fn late_decryption(input: Input) -> Input {
    match input {
        Input::Message { meta, msgtype, body, html, media, replaces: None } => {
            let replaces =
                Some(Replacement { original: meta.event_id.clone(), body: body.clone(), html: html.clone() });
            Input::Message { meta, msgtype, body, html, media, replaces }
        }
        other => other,
    }
}

/// A ban rule state event of a policy room. Read leniently: whoever has
/// power in a list writes what they like, and a rule that cannot be read
/// is no rule (the engine then forgets what its slot held). Without a
/// state key, an ID or a sender it is not a state event: nothing.
fn policy_rule(env: Envelope<'_>) -> Option<Input> {
    #[derive(Deserialize, Default)]
    struct RuleContent {
        #[serde(default, deserialize_with = "lenient")]
        entity: Option<String>,
        #[serde(default, deserialize_with = "lenient")]
        recommendation: Option<String>,
        #[serde(default, deserialize_with = "lenient")]
        reason: Option<String>,
    }
    let (Some(event_id), Some(room_id), Some(sender), Some(state_key)) =
        (env.event_id, env.room_id, env.sender, env.state_key)
    else {
        return None;
    };
    let c: RuleContent = env.content.and_then(|c| serde_json::from_str(c.get()).ok()).unwrap_or_default();
    let meta = EventMeta { event_id, room_id, sender, ts_ms: env.origin_server_ts.unwrap_or(0) };
    let rule = RuleEvent {
        event_type: env.kind,
        state_key,
        entity: c.entity,
        recommendation: c.recommendation,
        reason: c.reason,
    };
    Some(Input::PolicyRule { meta, rule })
}

/// `Ok(None)` for events the engine has no rule for; `Err` for events that
/// are malformed in a way that must be looked at.
pub fn translate(raw: &[u8], internal: bool) -> Result<Option<Input>, Unreadable> {
    if internal {
        let result: Internal =
            serde_json::from_slice(raw).map_err(|e| Unreadable(format!("not a look-up result: {e}")))?;
        return Ok(Some(match result {
            Internal::Profile { user, displayname } => Input::ProfileFetched { user, displayname },
            Internal::Contacts { owner, users, strangers } => Input::ContactsImported { owner, users, strangers },
            Internal::RoomInfo { owner, room_id, name, members } => Input::RoomInfo { owner, room_id, name, members },
            Internal::SharedRooms { owner, room_id, names, count, complete } => {
                Input::SharedRooms { owner, room_id, names, count, complete }
            }
            Internal::NotTwoPeople { owner, room_id, members } => Input::NotTwoPeople { owner, room_id, members },
            Internal::Tick => Input::Tick,
            Internal::OwnerDue { owner } => Input::OwnerDue { owner },
            Internal::ControlRoomReady { owner, room_id } => Input::ControlRoomReady { owner, room_id },
            Internal::Decrypted { event } => {
                let raw = serde_json::to_vec(&event).map_err(|e| Unreadable(e.to_string()))?;
                return Ok(translate(&raw, false)?.map(late_decryption));
            }
            Internal::MailFailed { owner, to, reason } => Input::MailFailed { owner, to, reason },
            Internal::EffectFailed { room_id, owner, step, no_answer, reason } => {
                Input::EffectFailed { room_id, owner, step: step.into(), no_answer, reason }
            }
            Internal::DigestPartFailed { owner, messages, invites } => {
                Input::DigestPartFailed { owner, messages, invites }
            }
            Internal::ListRead { owner, asked, room_id, rules, error, read_ms } => Input::ListRead {
                owner,
                asked,
                room_id,
                rules: rules.into_iter().map(RuleEvent::from).collect(),
                error,
                read_ms,
            },
            Internal::CheckPending { owner } => Input::CheckPending { owner },
            Internal::OperatorLists { names } => Input::OperatorLists { names },
            Internal::ListCreated { owner, room_id } => Input::ListCreated { owner, room_id },
            Internal::LinkUsed { owner, action, subject, nonce } => Input::LinkUsed {
                owner,
                action,
                subject: if subject.is_empty() { None } else { Some(subject.parse().map_err(Unreadable)?) },
                nonce,
            },
            Internal::Refresh { owner } => Input::Native(NativeInput::Refresh { owner }),
            Internal::Reported { owner, user, via, seed } => {
                let via = ReportVia::parse(&via).ok_or_else(|| Unreadable(format!("no such report: {via}")))?;
                Input::Native(NativeInput::Reported { owner, user, via, seed })
            }
            Internal::InviteFilter { owner, seen } => {
                Input::Native(NativeInput::InviteFilterRead { owner, seen: seen.into() })
            }
        }));
    }
    let env: Envelope<'_> = serde_json::from_slice(raw).map_err(|e| Unreadable(format!("not a Matrix event: {e}")))?;
    if RuleKind::of(&env.kind).is_some() {
        return Ok(policy_rule(env));
    }
    if !matches!(env.kind.as_str(), "m.room.member" | "m.room.message" | "m.room.encrypted" | "m.room.redaction") {
        return Ok(None);
    }
    let (Some(event_id), Some(room_id), Some(sender)) = (env.event_id, env.room_id, env.sender) else {
        return Err(Unreadable(format!("{} event without event_id, room_id or sender", env.kind)));
    };
    let meta = EventMeta { event_id, room_id, sender, ts_ms: env.origin_server_ts.unwrap_or(0) };
    let content = env.content.map(RawValue::get).unwrap_or("{}");
    match env.kind.as_str() {
        "m.room.member" => {
            let target = env.state_key.ok_or_else(|| Unreadable("m.room.member without state_key".into()))?;
            let target = OwnedUserId::try_from(target)
                .map_err(|e| Unreadable(format!("m.room.member state_key is not a user ID: {e}")))?;
            let c: MemberContent =
                serde_json::from_str(content).map_err(|e| Unreadable(format!("m.room.member content: {e}")))?;
            let membership = c.membership.ok_or_else(|| Unreadable("m.room.member without membership".into()))?;
            let stripped = env
                .unsigned
                .and_then(|u| serde_json::from_str::<Unsigned>(u.get()).ok())
                .map(|u| u.invite_room_state)
                .unwrap_or_default();
            let room_name = stripped
                .iter()
                .find(|s| s.kind == "m.room.name")
                .and_then(|s| s.content.get("name").and_then(|n| n.as_str()).map(str::to_owned));
            let sender_name = stripped
                .iter()
                .find(|s| s.kind == "m.room.member" && s.state_key.as_deref() == Some(meta.sender.as_str()))
                .and_then(|s| s.content.get("displayname").and_then(|n| n.as_str()).map(str::to_owned));
            Ok(Some(Input::Member {
                meta,
                target,
                membership: Membership::parse(&membership),
                is_direct: c.is_direct.unwrap_or(false),
                displayname: text(c.displayname),
                reason: text(c.reason),
                room_name,
                sender_name,
            }))
        }
        "m.room.encrypted" => Ok(Some(Input::Encrypted { meta })),
        "m.room.redaction" => {
            let from_content = serde_json::from_str::<RedactionContent>(content).ok().and_then(|c| c.redacts);
            match from_content.or(env.redacts) {
                Some(redacts) => Ok(Some(Input::Redaction { meta, redacts })),
                None => Err(Unreadable("m.room.redaction without redacts".into())),
            }
        }
        _ => {
            let c: MessageContent =
                serde_json::from_str(content).map_err(|e| Unreadable(format!("m.room.message content: {e}")))?;
            // A redacted message has empty content: nothing left to act on.
            // A body with a msgtype that is not a string is still a message.
            let msgtype = match (&c.msgtype, &c.body) {
                (Some(m), _) => m.clone(),
                (None, Some(serde_json::Value::String(_))) if !content_has(content, "msgtype") => return Ok(None),
                (None, Some(serde_json::Value::String(_))) => "m.text".to_owned(),
                (None, _) => return Ok(None),
            };
            let html = html_of(&c);
            let replaces = match (&c.relates_to, &c.new_content) {
                (Some(RelatesTo { rel_type: Some(rel), event_id: Some(original) }), Some(new))
                    if rel == "m.replace" =>
                {
                    Some(Replacement {
                        original: original.clone(),
                        body: text(new.body.clone()).unwrap_or_default(),
                        html: html_of(new),
                    })
                }
                _ => None,
            };
            let body = text(c.body).unwrap_or_default();
            let media = match c.url {
                Some(url) if url.starts_with("mxc://") => {
                    let info = c.info.unwrap_or_default();
                    Some(Media {
                        url,
                        name: c.filename.unwrap_or_else(|| body.clone()),
                        mimetype: info.mimetype,
                        size: info.size,
                    })
                }
                _ => None,
            };
            Ok(Some(Input::Message { meta, msgtype, body, html, media, replaces }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_becomes_member_input_with_room_name_and_reason() {
        let raw = br#"{"type":"m.room.member","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org",
            "state_key":"@gatekeeper:x.org","origin_server_ts":5,
            "content":{"membership":"invite","is_direct":true,"reason":"hi there","displayname":"G"},
            "unsigned":{"age":3,"invite_room_state":[{"type":"m.room.name","state_key":"","content":{"name":"Book club"}},
            {"type":"m.room.member","state_key":"@a:x.org","content":{"membership":"join","displayname":"Ann"}}]}}"#;
        let Some(Input::Member { meta, target, membership, is_direct, reason, room_name, displayname, sender_name }) =
            translate(raw, false).unwrap()
        else {
            panic!()
        };
        assert_eq!(meta.sender, "@a:x.org");
        assert_eq!(meta.ts_ms, 5);
        assert_eq!(target, "@gatekeeper:x.org");
        assert_eq!(membership, Membership::Invite);
        assert!(is_direct);
        assert_eq!(reason.as_deref(), Some("hi there"));
        assert_eq!(room_name.as_deref(), Some("Book club"));
        assert_eq!(displayname.as_deref(), Some("G"));
        assert_eq!(sender_name.as_deref(), Some("Ann"));
    }

    #[test]
    fn message_html_is_sanitized() {
        let raw = br#"{"type":"m.room.message","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org",
            "origin_server_ts":5,"content":{"msgtype":"m.text","body":"hi","format":"org.matrix.custom.html",
            "formatted_body":"<b>hi</b><script>alert(1)</script><img src=x onerror=alert(1)><a href=\"javascript:x\">l</a>"}}"#;
        let Some(Input::Message { body, html: Some(html), .. }) = translate(raw, false).unwrap() else { panic!() };
        assert_eq!(body, "hi");
        assert!(html.contains("<b>hi</b>"), "{html}");
        for bad in ["script", "onerror", "javascript"] {
            assert!(!html.contains(bad), "{html}");
        }
    }

    #[test]
    fn media_edits_encrypted_and_redactions() {
        let media = br#"{"type":"m.room.message","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org",
            "content":{"msgtype":"m.file","body":"cv.pdf","url":"mxc://x.org/abc","info":{"mimetype":"application/pdf","size":42}}}"#;
        let Some(Input::Message { media: Some(m), .. }) = translate(media, false).unwrap() else { panic!() };
        assert_eq!((m.url.as_str(), m.name.as_str(), m.size), ("mxc://x.org/abc", "cv.pdf", Some(42)));

        let edit = br#"{"type":"m.room.message","event_id":"$f","room_id":"!r:x.org","sender":"@a:x.org",
            "content":{"msgtype":"m.text","body":"* fixed","m.new_content":{"msgtype":"m.text","body":"fixed"},
            "m.relates_to":{"rel_type":"m.replace","event_id":"$e"}}}"#;
        let Some(Input::Message { replaces: Some(r), .. }) = translate(edit, false).unwrap() else { panic!() };
        assert_eq!((r.original.as_str(), r.body.as_str()), ("$e", "fixed"));

        let enc = br#"{"type":"m.room.encrypted","event_id":"$g","room_id":"!r:x.org","sender":"@a:x.org","content":{"algorithm":"m.megolm.v1.aes-sha2"}}"#;
        assert!(matches!(translate(enc, false).unwrap(), Some(Input::Encrypted { .. })));

        let v11 = br#"{"type":"m.room.redaction","event_id":"$h","room_id":"!r:x.org","sender":"@a:x.org","content":{"redacts":"$e"}}"#;
        let old = br#"{"type":"m.room.redaction","event_id":"$h","room_id":"!r:x.org","sender":"@a:x.org","redacts":"$e","content":{}}"#;
        for raw in [&v11[..], &old[..]] {
            let Some(Input::Redaction { redacts, .. }) = translate(raw, false).unwrap() else { panic!() };
            assert_eq!(redacts, "$e");
        }
    }

    #[test]
    fn look_up_results_are_only_read_from_the_internal_source() {
        let raw = br#"{"kind":"contacts","owner":"@o:x.org","users":["@f:x.org"]}"#;
        assert!(matches!(translate(raw, true).unwrap(), Some(Input::ContactsImported { .. })));
        // The same bytes from the homeserver are not a Matrix event.
        assert!(translate(raw, false).is_err());
        // A homeserver event dressed up as a result is ignored, never trusted.
        let spoof = br#"{"type":"org.gatekeeper.contacts","kind":"contacts","owner":"@o:x.org","users":["@evil:x.org"],
            "event_id":"$s","room_id":"!r:x.org","sender":"@evil:x.org","content":{}}"#;
        assert_eq!(translate(spoof, false).unwrap(), None);
    }

    #[test]
    fn unrelated_and_redacted_events_are_ignored() {
        let topic = br#"{"type":"m.room.topic","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","state_key":"","content":{}}"#;
        assert_eq!(translate(topic, false).unwrap(), None);
        let redacted =
            br#"{"type":"m.room.message","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","content":{}}"#;
        assert_eq!(translate(redacted, false).unwrap(), None);
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
            br#"{"type":"m.room.redaction","event_id":"$e","room_id":"!r:x.org","sender":"@a:x.org","content":{}}"#,
        ] {
            assert!(translate(raw, false).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }

    /// Optional fields of the wrong type read as absent: the message is
    /// captured, not set aside (issue 13: the quarantine caught real mail).
    #[test]
    fn optional_fields_of_the_wrong_type_are_read_leniently() {
        let raw = br#"{"type":"m.room.message","event_id":"$m","room_id":"!r:x.org","sender":"@s:y.org",
            "origin_server_ts":5,"content":{"msgtype":"m.image","body":"cat.png","url":"mxc://y.org/c",
            "info":{"size":1.5,"mimetype":7},"filename":["x"],"format":3,"formatted_body":"<b>x</b>",
            "m.relates_to":"nonsense","m.new_content":12}}"#;
        let Some(Input::Message { msgtype, body, html, media, replaces, .. }) = translate(raw, false).unwrap() else {
            panic!("not a message")
        };
        assert_eq!((msgtype.as_str(), body.as_str(), html, replaces), ("m.image", "cat.png", None, None));
        let media = media.expect("the media reference is kept");
        assert_eq!(
            (media.url.as_str(), media.name.as_str(), media.size, media.mimetype),
            ("mxc://y.org/c", "cat.png", None, None)
        );

        let numeric_type = br#"{"type":"m.room.message","event_id":"$n","room_id":"!r:x.org","sender":"@s:y.org",
            "content":{"msgtype":1,"body":"hello"}}"#;
        let Some(Input::Message { msgtype, body, .. }) = translate(numeric_type, false).unwrap() else { panic!() };
        assert_eq!((msgtype.as_str(), body.as_str()), ("m.text", "hello"));

        let direct = br#"{"type":"m.room.member","event_id":"$i","room_id":"!r:x.org","sender":"@s:y.org",
            "state_key":"@a:x.org","content":{"membership":"invite","is_direct":"yes"}}"#;
        let Some(Input::Member { is_direct, .. }) = translate(direct, false).unwrap() else { panic!() };
        assert!(!is_direct, "a claim of the wrong type is no claim");

        // The envelope's own optional fields, set by the sender's server.
        for hostile in
            [r#""origin_server_ts":-1"#, r#""origin_server_ts":1.5"#, r#""redacts":5"#, r#""origin_server_ts":"x""#]
        {
            let raw = format!(
                r#"{{"type":"m.room.member","event_id":"$h","room_id":"!r:x.org","sender":"@s:y.org",
                "state_key":"@a:x.org",{hostile},"content":{{"membership":"invite","is_direct":true}}}}"#
            );
            let input = translate(raw.as_bytes(), false).unwrap_or_else(|e| panic!("{hostile}: {e}"));
            assert!(matches!(input, Some(Input::Member { is_direct: true, .. })), "{hostile}: {input:?}");
        }
    }
}
