//! Data-driven tests of `decide`, one file per concern: each case is a
//! snapshot, an input and the decision (or the parts of it) it must
//! produce. The fixtures they share are here.

mod attack;
mod bounds;
mod capture;
mod client_mode;
mod commands;
mod decisions;
mod digest;
mod fits;
mod gate;
mod mail;
mod native;
mod optin;
mod outcomes;
mod policy;
mod policy_holes;
mod reads;
mod replies;
mod screener;
mod security;
mod shared_rooms;
mod tidy;
mod undo;
mod unreadable;
mod urgent;
mod waves;

use super::*;
use ruma::OwnedEventId;

fn config() -> EngineConfig {
    tests_support::config()
}

const NOW: u64 = 1_700_000_000_000;

const BOT: &str = "@gatekeeper:example.org";

const ALICE: &str = "@alice:example.org";

const STRANGER: &str = "@stranger:remote.org";

const CONTROL: &str = "!control:example.org";

const HELD: &str = "!held:remote.org";

fn uid(s: &str) -> OwnedUserId {
    s.try_into().unwrap()
}

fn usr(s: &str) -> Subject {
    Subject::User(uid(s))
}

fn rid(s: &str) -> OwnedRoomId {
    s.try_into().unwrap()
}

fn meta_n(sender: &str, room: &str, n: u32) -> EventMeta {
    let id: String = format!("{sender}{room}{n}").chars().filter(char::is_ascii_alphanumeric).collect();
    EventMeta {
        event_id: format!("${id}").try_into().unwrap(),
        room_id: rid(room),
        sender: uid(sender),
        ts_ms: NOW - 1000,
    }
}

fn meta(sender: &str, room: &str) -> EventMeta {
    meta_n(sender, room, 0)
}

fn member(sender: &str, room: &str, target: &str, membership: Membership, is_direct: bool) -> Input {
    Input::Member {
        meta: meta(sender, room),
        target: uid(target),
        membership,
        is_direct,
        displayname: None,
        reason: None,
        room_name: None,
        sender_name: None,
    }
}

fn msg_n(sender: &str, room: &str, msgtype: &str, body: &str, n: u32) -> Input {
    Input::Message {
        meta: meta_n(sender, room, n),
        msgtype: msgtype.into(),
        body: body.into(),
        html: None,
        media: None,
        replaces: None,
    }
}

fn text(sender: &str, room: &str, body: &str) -> Input {
    msg_n(sender, room, "m.text", body, 0)
}

fn owner() -> OwnerState {
    OwnerState { displayname: Some("Alice".into()), ..OwnerState::new(uid(ALICE), rid(CONTROL), 1) }
}

fn with_owner(mut s: Snapshot) -> Snapshot {
    s.owners.insert(uid(ALICE), owner());
    s
}

fn control() -> Snapshot {
    with_owner(Snapshot {
        rooms: vec![RoomState::Control { owner: uid(ALICE) }],
        overview: Some(OwnerOverview::default()),
        ..Default::default()
    })
}

fn held_room(is_dm: bool) -> HeldRoom {
    HeldRoom::new(uid(ALICE), uid(STRANGER), is_dm, NOW - 5000)
}

fn held(is_dm: bool) -> Snapshot {
    with_owner(Snapshot { rooms: vec![RoomState::Held(held_room(is_dm))], ..Default::default() })
}

/// Compares what the decision does; what it counts (`outcomes`) has tests
/// of its own.
fn check(snapshot: &Snapshot, input: &Input, expected: Decision) {
    let got = decide(snapshot, input, NOW, &config());
    assert_eq!((got.changes, got.effects), (expected.changes, expected.effects), "input: {input:?}");
}

fn kinds(d: &Decision) -> Vec<&'static str> {
    d.effects
        .iter()
        .map(|e| match e {
            Effect::Join { .. } => "join",
            Effect::Leave { .. } => "leave",
            Effect::SendNotice { .. } => "notice",
            Effect::PutPushRule { .. } => "rule",
            Effect::DeletePushRule { .. } => "unrule",
            Effect::EnablePushRule { enabled: false, .. } => "disable",
            Effect::EnablePushRule { enabled: true, .. } => "enable",
            Effect::SetTag { present: true, .. } => "tag",
            Effect::SetTag { present: false, .. } => "untag",
            Effect::FetchProfile { .. } => "profile",
            Effect::SendEmail { .. } => "mail",
            Effect::ImportContacts { .. } => "import",
            Effect::Backfill { .. } => "backfill",
            Effect::LookUpShared { .. } => "shared",
            Effect::Native(native) => native.kind(),
            Effect::FollowList { .. } => "follow_list",
            Effect::CheckPending { .. } => "check_pending",
            Effect::CreateList { .. } => "create_list",
            Effect::PutPolicyRule { present: true, .. } => "publish",
            Effect::PutPolicyRule { present: false, .. } => "withdraw",
        })
        .collect()
}

fn notice_body(d: &Decision) -> String {
    d.effects
        .iter()
        .find_map(|e| match e {
            Effect::SendNotice { body, .. } => Some(body.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no notice in {d:?}"))
}

fn captured(event: &OwnedEventId, body: &str) -> Deferred {
    Deferred {
        owner: uid(ALICE),
        room_id: rid(HELD),
        event_id: event.clone(),
        sender: uid(STRANGER),
        ts_ms: 5,
        received_ms: 5,
        msgtype: "m.text".into(),
        body: body.into(),
        html: None,
        media: None,
        encrypted: false,
        edited: false,
        digested: false,
        redacted_by: None,
        denied_ms: None,
    }
}

fn with_pending_stranger() -> Snapshot {
    let mut snapshot = control();
    let mut overview = OwnerOverview::default();
    overview.held.insert(rid(HELD), held_room(true));
    overview.held.insert(rid("!other:remote.org"), HeldRoom { inviter: uid("@other:remote.org"), ..held_room(true) });
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hi"));
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 2).event_id, "hello?"));
    snapshot.overview = Some(overview);
    snapshot
        .owners
        .insert(uid(ALICE), OwnerState { last_list: vec![usr(STRANGER), usr("@other:remote.org")], ..owner() });
    snapshot
}

/// The input that asks whether Alice's scheduled digest is due.
fn alices_digest() -> Input {
    Input::OwnerDue { owner: uid(ALICE) }
}

fn due_digest(overview: OwnerOverview, slot: u64) -> Snapshot {
    Snapshot {
        due: Some(Due {
            expired: vec![],
            unpause: vec![],
            digests: vec![DueDigest { owner: owner(), overview, slot_ms: slot }],
            replies: vec![],
        }),
        ..Default::default()
    }
}

fn client_config() -> EngineConfig {
    EngineConfig { bot: uid(ALICE), client_mode: true, ..config() }
}
