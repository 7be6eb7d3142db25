//! Waves: a sender who invites several owners within an hour, or many new
//! senders from one server, get no automatic reply and are grouped in the
//! digest; replies the hourly cap held back go out later, oldest first.

use std::collections::BTreeMap;

use super::*;
use crate::waves::{WAVE_MEMORY_MS, WINDOW_MS};

const BOB: &str = "@bob:example.org";
const CAROL: &str = "@carol:example.org";
const MINUTE: u64 = 60_000;

/// What the store would hold between decisions: the wave records.
type Records = BTreeMap<WaveKey, WaveRecord>;

fn owner_state(user: &str) -> OwnerState {
    let local = uid(user).localpart().to_owned();
    OwnerState::new(uid(user), rid(&format!("!control-{local}:example.org")), 1)
}

fn with_waves(mut snap: Snapshot, records: &Records, sender: &str) -> Snapshot {
    for key in crate::waves::keys(&uid(sender)) {
        if let Some(r) = records.get(&key) {
            snap.waves.insert(key, r.clone());
        }
    }
    snap
}

fn keep(records: &mut Records, d: &Decision) {
    for c in &d.changes {
        if let StateChange::PutWave(k, r) = c {
            records.insert(k.clone(), r.clone());
        }
    }
}

/// `sender` invites `owner` to a DM `room` at `at`, as the processor would
/// decide it (the sender's and their server's records read), and the
/// records are updated as the store would.
fn invite(records: &mut Records, sender: &str, owner: &str, room: &str, at: u64, cfg: &EngineConfig) -> Decision {
    let mut snap = Snapshot::default();
    snap.owners.insert(uid(owner), owner_state(owner));
    let snap = with_waves(snap, records, sender);
    let input = Input::Member {
        meta: EventMeta { ts_ms: at, ..meta(sender, room) },
        target: uid(owner),
        membership: Membership::Invite,
        is_direct: true,
        displayname: None,
        reason: None,
        room_name: None,
        sender_name: None,
    };
    assert_eq!(reads(&input).waves, Some(uid(sender)), "an invite declares the sender's wave records");
    let d = decide(&snap, &input, at, cfg);
    keep(records, &d);
    d
}

fn held_of(d: &Decision) -> HeldRoom {
    d.changes
        .iter()
        .find_map(|c| match c {
            StateChange::PutRoom(_, RoomState::Held(h)) => Some(h.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing held: {d:?}"))
}

/// The inviter of `held` writes in `room` at `at`.
fn writes(records: &Records, held: &HeldRoom, room: &str, at: u64, cfg: &EngineConfig) -> Decision {
    let mut snap = Snapshot { rooms: vec![RoomState::Held(held.clone())], ..Default::default() };
    snap.owners.insert(held.owner.clone(), owner_state(held.owner.as_str()));
    let snap = with_waves(snap, records, held.inviter.as_str());
    let input = text(held.inviter.as_str(), room, "hello, is this account live?");
    assert_eq!(reads(&input).waves, Some(held.inviter.clone()), "a message declares the sender's wave records");
    decide(&snap, &input, at, cfg)
}

fn replied(d: &Decision) -> bool {
    kinds(d).contains(&"notice")
}

#[test]
fn a_sender_inviting_three_owners_within_an_hour_gets_no_reply_from_the_third_on() {
    let cfg = config();
    let mut records = Records::new();
    let d1 = invite(&mut records, STRANGER, ALICE, "!a:remote.org", NOW, &cfg);
    let d2 = invite(&mut records, STRANGER, BOB, "!b:remote.org", NOW + MINUTE, &cfg);
    let (h1, h2) = (held_of(&d1), held_of(&d2));
    assert_eq!((h1.wave, h2.wave), (None, None), "two owners are not a wave");
    assert!(!d2.outcomes.contains(&Outcome::WaveInvite));
    // With two owners invited, the stranger is answered as always.
    assert!(replied(&writes(&records, &h1, "!a:remote.org", NOW + 2 * MINUTE, &cfg)));

    let d3 = invite(&mut records, STRANGER, CAROL, "!c:remote.org", NOW + 3 * MINUTE, &cfg);
    let h3 = held_of(&d3);
    assert_eq!(h3.wave, Some(WaveKind::Sender));
    assert!(d3.outcomes.contains(&Outcome::WaveInvite));
    // Held silently as ever: the same silence, join, tag and backfill.
    assert_eq!(kinds(&d3), ["rule", "join", "tag", "backfill"]);
    let d = writes(&records, &h3, "!c:remote.org", NOW + 4 * MINUTE, &cfg);
    assert!(!replied(&d), "{d:?}");
    assert!(d.outcomes.contains(&Outcome::ReplySuppressedWave));
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutDeferred(_))), "still captured");
    // Bob's room was held before the wave was seen: his stranger gets no
    // reply either, now, and the room is marked for the digest.
    let d = writes(&records, &h2, "!b:remote.org", NOW + 5 * MINUTE, &cfg);
    assert!(!replied(&d));
    assert!(d.changes.contains(&StateChange::PutRoom(
        rid("!b:remote.org"),
        RoomState::Held(HeldRoom { wave: Some(WaveKind::Sender), ..h2.clone() })
    )));
    // A fourth owner later in the window: a wave too.
    let d4 = invite(&mut records, STRANGER, "@dave:example.org", "!d:remote.org", NOW + 50 * MINUTE, &cfg);
    assert_eq!(held_of(&d4).wave, Some(WaveKind::Sender));
}

#[test]
fn twenty_new_senders_from_one_server_within_an_hour_are_a_wave() {
    let cfg = config();
    let mut records = Records::new();
    let mut held = Vec::new();
    for i in 0..19u64 {
        let d = invite(
            &mut records,
            &format!("@spam{i}:spam.example"),
            ALICE,
            &format!("!s{i}:spam.example"),
            NOW + i,
            &cfg,
        );
        assert_eq!(held_of(&d).wave, None, "sender {i} of 19 is not a wave yet");
        held.push(held_of(&d));
    }
    // 19 senders: the first still gets the reply.
    assert!(replied(&writes(&records, &held[0], "!s0:spam.example", NOW + 100, &cfg)));
    let d = invite(&mut records, "@spam19:spam.example", BOB, "!s19:spam.example", NOW + 200, &cfg);
    assert_eq!(held_of(&d).wave, Some(WaveKind::Server), "the 20th new sender, to another owner");
    // Now none of them is answered, those held before the 20th included.
    let d = writes(&records, &held[5], "!s5:spam.example", NOW + 300, &cfg);
    assert!(!replied(&d));
    assert!(d.outcomes.contains(&Outcome::ReplySuppressedWave));
    assert!(
        d.changes
            .iter()
            .any(|c| matches!(c, StateChange::PutRoom(_, RoomState::Held(h)) if h.wave == Some(WaveKind::Server)))
    );
    // A 21st sender from there is part of it from the start.
    let d = invite(&mut records, "@spam20:spam.example", ALICE, "!s20:spam.example", NOW + 400, &cfg);
    assert_eq!(held_of(&d).wave, Some(WaveKind::Server));
    // Someone from another server is not.
    let d = invite(&mut records, "@person:other.example", ALICE, "!p:other.example", NOW + 500, &cfg);
    assert_eq!(held_of(&d).wave, None);
}

#[test]
fn a_sender_the_owner_knows_is_not_new_and_does_not_count_for_the_server() {
    let cfg = EngineConfig { wave_senders_per_server: 2, ..config() };
    let mut records = Records::new();
    // Alice answered @known before: a stranger entry.
    let mut snap = Snapshot::default();
    snap.owners.insert(uid(ALICE), owner_state(ALICE));
    snap.strangers.insert(
        (uid(ALICE), uid("@known:spam.example")),
        StrangerState { last_reply_ms: Some(NOW - 1), ..Default::default() },
    );
    let input = member("@known:spam.example", "!k:spam.example", ALICE, Membership::Invite, true);
    let d = decide(&snap, &input, NOW, &cfg);
    keep(&mut records, &d);
    assert!(!records.contains_key(&WaveKey::Server("spam.example".try_into().unwrap())));
    let d = invite(&mut records, "@new1:spam.example", ALICE, "!n1:spam.example", NOW + 1, &cfg);
    assert_eq!(held_of(&d).wave, None, "one new sender of two");
    let d = invite(&mut records, "@new2:spam.example", ALICE, "!n2:spam.example", NOW + 2, &cfg);
    assert_eq!(held_of(&d).wave, Some(WaveKind::Server));
}

#[test]
fn the_owners_own_server_is_never_a_wave_server() {
    let cfg = config();
    let mut records = Records::new();
    for i in 0..50u64 {
        let d = invite(
            &mut records,
            &format!("@local{i}:example.org"),
            ALICE,
            &format!("!l{i}:example.org"),
            NOW + i,
            &cfg,
        );
        assert_eq!(held_of(&d).wave, None, "local sender {i}");
    }
    assert!(!records.contains_key(&WaveKey::Server("example.org".try_into().unwrap())));
    // A local sender who invites three owners is still a wave by the first rule.
    invite(&mut records, "@local0:example.org", BOB, "!x1:example.org", NOW + 100, &cfg);
    let d = invite(&mut records, "@local0:example.org", CAROL, "!x2:example.org", NOW + 101, &cfg);
    assert_eq!(held_of(&d).wave, Some(WaveKind::Sender));
}

#[test]
fn invites_spread_over_more_than_an_hour_are_no_wave_and_a_wave_is_forgotten_after_a_day() {
    let cfg = config();
    let mut records = Records::new();
    invite(&mut records, STRANGER, ALICE, "!a:remote.org", NOW, &cfg);
    invite(&mut records, STRANGER, BOB, "!b:remote.org", NOW + 30 * MINUTE, &cfg);
    let d = invite(&mut records, STRANGER, CAROL, "!c:remote.org", NOW + WINDOW_MS, &cfg);
    assert_eq!(held_of(&d).wave, None, "Alice's invite is past the window");
    let d = invite(&mut records, STRANGER, "@dave:example.org", "!d:remote.org", NOW + WINDOW_MS + 1, &cfg);
    let wave_at = NOW + WINDOW_MS + 1;
    let unmarked = HeldRoom::new(uid(ALICE), uid(STRANGER), true, NOW);
    assert_eq!(held_of(&d).wave, Some(WaveKind::Sender), "Bob, Carol, Dave within the hour");
    // Remembered for a day: an unmarked room of theirs gets no reply...
    assert!(!replied(&writes(&records, &unmarked, "!a:remote.org", wave_at + 2 * WINDOW_MS, &cfg)));
    // ... then it does.
    assert!(replied(&writes(&records, &unmarked, "!a:remote.org", wave_at + WAVE_MEMORY_MS, &cfg)));
    // The record says when it can go.
    let record = &records[&WaveKey::Sender(uid(STRANGER))];
    assert_eq!(record.expires_ms, wave_at + WAVE_MEMORY_MS);
}

#[test]
fn a_room_marked_at_invite_never_gets_a_reply_whatever_the_records_say() {
    let h = HeldRoom { wave: Some(WaveKind::Server), ..held_room(true) };
    let d = writes(&Records::new(), &h, HELD, NOW + 30 * WAVE_MEMORY_MS, &config());
    assert!(!replied(&d));
    assert_eq!(d.outcomes, [Outcome::MessageCaptured, Outcome::ReplySuppressedWave]);
    assert_eq!(d.changes.len(), 1, "nothing to mark again: {d:?}");
}

/// A flood of invites from many servers and senders, some senders inviting
/// every owner: each record keeps at most its threshold of entries, all
/// within the window, and says when it can go.
#[test]
fn records_stay_bounded_under_a_flood() {
    let cfg = config();
    let mut records = Records::new();
    let owners: Vec<String> = (0..40).map(|i| format!("@owner{i}:example.org")).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut now = NOW;
    for n in 0..5_000u64 {
        now += next() % 5_000;
        let sender = if n % 10 == 0 {
            format!("@relentless{}:srv{}.example", next() % 3, next() % 4)
        } else {
            format!("@u{n}:srv{}.example", next() % 50)
        };
        let owner = &owners[(next() % owners.len() as u64) as usize];
        invite(&mut records, &sender, owner, &format!("!r{n}:x.example"), now, &cfg);
        for (key, r) in &records {
            let cap = match key {
                WaveKey::Sender(_) => cfg.wave_owners_per_sender,
                WaveKey::Server(_) => cfg.wave_senders_per_server,
                WaveKey::CodesTo(_) | WaveKey::CodesBy(_) => unreachable!("invites keep no code records"),
            } as usize;
            assert!(r.seen.len() <= cap, "{key:?} keeps {} entries", r.seen.len());
            let mut users: Vec<_> = r.seen.iter().map(|(u, _)| u).collect();
            users.dedup();
            assert_eq!(users.len(), r.seen.len(), "{key:?}: distinct users");
            assert!(r.expires_ms <= now + WAVE_MEMORY_MS);
            assert!(r.day.len() <= crate::waves::DAY_CAP, "{key:?} keeps {} invitees", r.day.len());
        }
    }
    // Nothing touched is alive a day later (a sender's record counts a
    // day's invites for their card; a wave is remembered for a day): the
    // rest is what housekeeping prunes.
    assert!(records.values().all(|r| r.expires_ms <= now + crate::waves::DAY_MS));
    for r in records.values() {
        assert!(r.seen.iter().all(|(_, at)| *at <= now && r.expires_ms >= at + WINDOW_MS));
    }
}

// The hourly cap, and the replies it held back.

fn capped_owner() -> OwnerState {
    OwnerState { reply_window_start_ms: NOW - MINUTE, replies_in_window: config().max_replies_per_hour, ..owner() }
}

#[test]
fn a_reply_held_back_by_the_cap_is_owed_and_the_owner_marked() {
    let mut snap = held(true);
    snap.owners.insert(uid(ALICE), capped_owner());
    let d = decide(&snap, &text(STRANGER, HELD, "hi"), NOW, &config());
    assert!(!replied(&d));
    assert!(d.outcomes.contains(&Outcome::ReplySuppressed));
    assert!(d.changes.contains(&StateChange::PutRoom(
        rid(HELD),
        RoomState::Held(HeldRoom { reply_owed_ms: Some(NOW), ..held_room(true) })
    )));
    assert!(d.changes.contains(&StateChange::PutOwner(OwnerState { replies_owed: true, ..capped_owner() })));
    // Owed already: a second message changes nothing more.
    snap.rooms = vec![RoomState::Held(HeldRoom { reply_owed_ms: Some(NOW - 5), ..held_room(true) })];
    snap.owners.insert(uid(ALICE), OwnerState { replies_owed: true, ..capped_owner() });
    let d = decide(&snap, &msg_n(STRANGER, HELD, "m.text", "again", 2), NOW, &config());
    assert_eq!(d.changes.len(), 1, "only the capture: {d:?}");
    // Once the budget is back, the stranger's next message is answered and
    // the room owes nothing any more.
    let d = decide(&snap, &msg_n(STRANGER, HELD, "m.text", "again", 3), NOW + WINDOW_MS, &config());
    assert!(replied(&d));
    assert!(
        d.changes.iter().any(
            |c| matches!(c, StateChange::PutRoom(_, RoomState::Held(h)) if h.replied && h.reply_owed_ms.is_none())
        )
    );
}

#[test]
fn a_wave_sender_held_back_by_the_cap_is_not_owed() {
    let mut snap = held(true);
    snap.rooms = vec![RoomState::Held(HeldRoom { wave: Some(WaveKind::Sender), ..held_room(true) })];
    snap.owners.insert(uid(ALICE), capped_owner());
    let d = decide(&snap, &text(STRANGER, HELD, "hi"), NOW, &config());
    assert!(d.outcomes.contains(&Outcome::ReplySuppressedWave));
    assert!(!d.outcomes.contains(&Outcome::ReplySuppressed));
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutOwner(_))));
}

fn owed_room(n: u64, inviter: &str, owed_ms: u64) -> (OwnedRoomId, HeldRoom) {
    (
        rid(&format!("!owed{n}:remote.org")),
        HeldRoom { reply_owed_ms: Some(owed_ms), ..HeldRoom::new(uid(ALICE), uid(inviter), true, owed_ms - 1000) },
    )
}

fn due_replies(owner: OwnerState, overview: OwnerOverview) -> DueReplies {
    DueReplies { owner, overview, strangers: BTreeMap::new(), waves: BTreeMap::new() }
}

/// The owner's own time-driven input, with what it reads.
fn tick_with(replies: Vec<DueReplies>, at: u64) -> Decision {
    let owner = replies.first().map_or_else(|| uid(ALICE), |r| r.owner.user_id.clone());
    let snap = Snapshot { due: Some(Due { replies, ..Default::default() }), ..Default::default() };
    decide(&snap, &Input::OwnerDue { owner }, at, &config())
}

fn late_rooms(d: &Decision) -> Vec<OwnedRoomId> {
    d.effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendNotice { room_id, as_user, .. } if as_user == ALICE => Some(room_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn replies_held_back_go_out_when_the_budget_allows_oldest_first() {
    let cap = config().max_replies_per_hour as usize;
    let mut overview = OwnerOverview::default();
    // Five strangers owed, in a shuffled order of when they were held back.
    for (n, owed_at) in [(0, 50), (1, 10), (2, 40), (3, 20), (4, 30)] {
        let (room, h) = owed_room(n, &format!("@s{n}:remote.org"), NOW - 10_000 + owed_at);
        overview.held.insert(room, h);
    }
    let owes = OwnerState { replies_owed: true, ..capped_owner() };
    let at = NOW + WINDOW_MS;
    let d = tick_with(vec![due_replies(owes.clone(), overview.clone())], at);
    assert_eq!(late_rooms(&d), [rid("!owed1:remote.org"), rid("!owed3:remote.org"), rid("!owed4:remote.org")]);
    assert_eq!(late_rooms(&d).len(), cap);
    assert_eq!(d.outcomes.iter().filter(|o| **o == Outcome::ReplySentLate).count(), cap);
    let Some(StateChange::PutOwner(after)) = d.changes.last() else { panic!("{d:?}") };
    assert!(after.replies_owed, "two still owed");
    assert_eq!((after.reply_window_start_ms, after.replies_in_window as usize), (at, cap));
    for room in late_rooms(&d) {
        assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(r, RoomState::Held(h))
            if *r == room && h.replied && h.reply_owed_ms.is_none())));
    }
    // The same tick again (a replay) sends the same notices: same txn IDs.
    assert_eq!(tick_with(vec![due_replies(owes, overview.clone())], at).effects, d.effects);

    // The next hour: the remaining two, and nothing is owed any more.
    for c in &d.changes {
        if let StateChange::PutRoom(r, RoomState::Held(h)) = c {
            overview.held.insert(r.clone(), h.clone());
        }
    }
    let d2 = tick_with(vec![due_replies(after.clone(), overview)], at + WINDOW_MS);
    assert_eq!(late_rooms(&d2), [rid("!owed2:remote.org"), rid("!owed0:remote.org")]);
    let Some(StateChange::PutOwner(done)) = d2.changes.last() else { panic!("{d2:?}") };
    assert!(!done.replies_owed);
}

#[test]
fn strangers_decided_meanwhile_answered_elsewhere_or_in_a_wave_get_no_late_reply() {
    let mut overview = OwnerOverview::default();
    let rooms: Vec<(OwnedRoomId, HeldRoom)> = vec![
        owed_room(0, "@allowed:remote.org", NOW - 9000),
        owed_room(1, "@blocked:evil.org", NOW - 8000),
        owed_room(2, "@marked:remote.org", NOW - 7000),
        owed_room(3, "@answered:remote.org", NOW - 6000),
        owed_room(4, "@waving:spam.example", NOW - 5000),
        owed_room(5, "@fine:remote.org", NOW - 4000),
    ];
    for (r, h) in &rooms {
        overview.held.insert(r.clone(), h.clone());
    }
    overview.held.get_mut(&rid("!owed2:remote.org")).unwrap().wave = Some(WaveKind::Sender);
    overview.contacts.insert(
        usr("@allowed:remote.org"),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
    );
    overview.contacts.insert(Subject::Server("evil.org".try_into().unwrap()), Contact::Blocked { since_ms: 1 });
    let mut due = due_replies(OwnerState { replies_owed: true, ..capped_owner() }, overview);
    due.strangers
        .insert(uid("@answered:remote.org"), StrangerState { last_reply_ms: Some(NOW - 1000), ..Default::default() });
    due.waves.insert(
        WaveKey::Server("spam.example".try_into().unwrap()),
        WaveRecord { seen: vec![], wave_ms: Some(NOW - 1000), expires_ms: NOW + WAVE_MEMORY_MS, day: vec![] },
    );
    let d = tick_with(vec![due], NOW + WINDOW_MS);
    assert_eq!(late_rooms(&d), [rid("!owed5:remote.org")], "only the one still waiting");
    // Every other room owes nothing any more; the wave one is marked.
    for (room, _) in &rooms[..5] {
        assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(r, RoomState::Held(h))
            if r == room && h.reply_owed_ms.is_none() && !h.replied)));
    }
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(r, RoomState::Held(h))
        if *r == rid("!owed4:remote.org") && h.wave == Some(WaveKind::Server))));
    let Some(StateChange::PutOwner(after)) = d.changes.last() else { panic!("{d:?}") };
    assert!(!after.replies_owed);
    // A room that is gone (denied, released) is simply not in the overview.
}

#[test]
fn a_late_reply_and_a_digest_in_one_tick_do_not_undo_each_other() {
    let mut overview = OwnerOverview::default();
    let (room, h) = owed_room(0, STRANGER, NOW - 9000);
    overview.held.insert(room.clone(), h);
    overview.deferred.push(Deferred { room_id: room.clone(), ..captured(&meta_n(STRANGER, HELD, 1).event_id, "hi") });
    let owes = OwnerState { replies_owed: true, ..capped_owner() };
    let snap = Snapshot {
        due: Some(Due {
            digests: vec![DueDigest { owner: owes.clone(), overview: overview.clone(), slot_ms: NOW }],
            replies: vec![due_replies(owes, overview)],
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = decide(&snap, &Input::OwnerDue { owner: uid(ALICE) }, NOW + WINDOW_MS, &config());
    assert_eq!(late_rooms(&d), std::slice::from_ref(&room));
    // The last write of the owner keeps both the digest's slot and the budget used.
    let last_owner = d.changes.iter().rev().find_map(|c| match c {
        StateChange::PutOwner(o) => Some(o.clone()),
        _ => None,
    });
    let o = last_owner.unwrap();
    assert_eq!((o.digest_last_slot_ms, o.replies_in_window, o.replies_owed), (Some(NOW), 1, false));
    // And the last write of the room still says it was replied to.
    let last_room = d.changes.iter().rev().find_map(|c| match c {
        StateChange::PutRoom(r, RoomState::Held(h)) if *r == room => Some(h.clone()),
        _ => None,
    });
    assert!(last_room.unwrap().replied);
}

// The digest groups them.

#[test]
fn the_digest_groups_a_servers_wave_with_the_command_that_blocks_it() {
    let mut overview = OwnerOverview::default();
    for i in 0..37u64 {
        let (sender, room) = (uid(&format!("@spam{i:02}:spam.example")), rid(&format!("!w{i}:spam.example")));
        overview.held.insert(
            room.clone(),
            HeldRoom {
                wave: Some(WaveKind::Server),
                ..HeldRoom::new(uid(ALICE), sender.clone(), true, NOW - 5000 + i)
            },
        );
        if i < 4 {
            overview.deferred.push(Deferred {
                room_id: room,
                sender,
                ..captured(&format!("$spam{i}").try_into().unwrap(), "Amazing offer!")
            });
        }
    }
    // Two who invited several owners, and one ordinary stranger.
    for who in ["@multi1:remote.org", "@multi2:remote.org"] {
        overview.held.insert(
            rid(&format!("!{}:remote.org", &who[1..7])),
            HeldRoom { wave: Some(WaveKind::Sender), ..HeldRoom::new(uid(ALICE), uid(who), true, NOW - 4000) },
        );
    }
    overview.held.insert(rid(HELD), held_room(true));
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "Hi Alice, we met at the conference."));
    let d = crate::digest::render(&owner(), &overview).unwrap();
    assert_eq!(d.parts.len(), 1);
    let plain = &d.parts[0].plain;
    assert!(plain.starts_with("40 people wrote to you"), "{plain}");
    assert!(plain.contains("1. @stranger:remote.org — 1 message"), "{plain}");
    assert!(
        plain.contains("2. 37 accounts from spam.example invited you (4 messages) within an hour, as part of a wave"),
        "{plain}"
    );
    assert!(plain.contains("`block *:spam.example` blocks them all."), "{plain}");
    assert!(plain.contains("2 accounts invited several people within an hour"), "{plain}");
    assert!(plain.contains("@multi1:remote.org, @multi2:remote.org"), "{plain}");
    assert!(!plain.contains("Amazing offer"), "wave messages are counted, not quoted: {plain}");
    assert_eq!(plain.matches("@spam").count(), 0, "{plain}");
    assert!(d.parts[0].html.contains("<code>block *:spam.example</code>"));
    // `block 2` blocks the server.
    assert_eq!(d.list, [usr(STRANGER), Subject::Server("spam.example".try_into().unwrap())]);
    // Everything shown is carried, so it is marked digested with the notice.
    assert_eq!(d.messages().count(), 5);
    assert_eq!(d.invites().count(), 39, "every wave invitation, DMs included");
    // Digested, the wave is not listed again.
    for r in d.invites() {
        overview.held.get_mut(r).unwrap().digested = true;
    }
    for m in &mut overview.deferred {
        m.digested = true;
    }
    assert_eq!(crate::digest::render(&owner(), &overview), None);
}

#[test]
fn pending_says_who_is_part_of_a_wave() {
    let mut snapshot = control();
    let mut overview = OwnerOverview::default();
    overview.held.insert(rid(HELD), HeldRoom { wave: Some(WaveKind::Server), ..held_room(true) });
    overview.held.insert(rid("!other:remote.org"), HeldRoom::new(uid(ALICE), uid("@other:remote.org"), true, NOW));
    snapshot.overview = Some(overview);
    let body = notice_body(&decide(&snapshot, &text(ALICE, CONTROL, "pending"), NOW, &config()));
    assert_eq!(body.matches("part of a wave from their server: no automatic reply").count(), 1, "{body}");
    let wave_line = body.lines().position(|l| l.contains("part of a wave")).unwrap();
    let numbered_above = body.lines().take(wave_line).filter(|l| l.contains(". @")).last().unwrap();
    assert!(numbered_above.contains(STRANGER), "{body}");
}

/// A stranger held before a wave began on their (big, public) server is
/// not silenced by it after the fact: only invites from the hour that made
/// the wave, or after, are part of it.
#[test]
fn a_stranger_held_before_a_wave_on_their_server_still_gets_the_reply() {
    let cfg = config();
    let mut records = Records::new();
    let early = held_of(&invite(&mut records, "@real:big.example", ALICE, "!real:big.example", NOW, &cfg));
    let later = NOW + 3 * 60 * MINUTE;
    for i in 0..20u64 {
        invite(&mut records, &format!("@bot{i}:big.example"), BOB, &format!("!b{i}:big.example"), later + i, &cfg);
    }
    let d = writes(&records, &early, "!real:big.example", later + MINUTE, &cfg);
    assert!(replied(&d), "{d:?}");
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(_, RoomState::Held(h)) if h.wave.is_some())));
}
