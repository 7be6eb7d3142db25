//! A room is held for each owner apart: a stranger may invite several
//! owners into one room, and each of them holds it, lists it, decides on it
//! and leaves it on their own.

use super::*;

const BOB: &str = "@bob:example.org";

fn bob() -> OwnerState {
    OwnerState { displayname: Some("Bob".into()), ..OwnerState::new(uid(BOB), rid("!bobctl:example.org"), 1) }
}

fn held_for(owner: &str) -> RoomState {
    RoomState::Held(HeldRoom::new(uid(owner), uid(STRANGER), false, NOW - 5000))
}

fn both(rooms: Vec<RoomState>) -> Snapshot {
    let mut s = with_owner(Snapshot { rooms, ..Default::default() });
    s.owners.insert(uid(BOB), bob());
    s
}

fn puts_room_for(d: &Decision, owner: &str) -> bool {
    d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(r, st) if *r == rid(HELD) && st.owner() == owner))
}

#[test]
fn a_second_owner_invited_into_a_room_held_for_another_is_held_too() {
    let snap = both(vec![held_for(ALICE)]);
    let d = decide(&snap, &member(STRANGER, HELD, BOB, Membership::Invite, false), NOW, &config());
    assert!(puts_room_for(&d, BOB), "{d:?}");
    assert!(!puts_room_for(&d, ALICE), "alice's record is hers: {d:?}");
    assert!(d.effects.contains(&Effect::PutPushRule { owner: uid(BOB), rule: rules::held_room(HELD) }));
    assert!(d.effects.contains(&Effect::Join { as_user: uid(BOB), room_id: rid(HELD) }));
    assert!(d.effects.iter().all(|e| e.acts_for() == Some(&uid(BOB))), "nothing for alice: {d:?}");

    // The same invite again (a replay) holds nothing twice.
    let again = both(vec![held_for(ALICE), held_for(BOB)]);
    let d = decide(&again, &member(STRANGER, HELD, BOB, Membership::Invite, false), NOW, &config());
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn a_strangers_message_in_a_room_held_for_two_owners_is_kept_for_each() {
    let snap = both(vec![held_for(ALICE), held_for(BOB)]);
    let d = decide(&snap, &text(STRANGER, HELD, "hello both"), NOW, &config());
    let kept_for: Vec<&OwnedUserId> = d
        .changes
        .iter()
        .filter_map(|c| match c {
            StateChange::PutDeferred(m) => Some(&m.owner),
            _ => None,
        })
        .collect();
    assert_eq!(kept_for, vec![&uid(ALICE), &uid(BOB)]);

    // The same event again (a backfill after the join): kept once each.
    let mut again = snap.clone();
    let event = meta(STRANGER, HELD).event_id;
    again.related = vec![
        Deferred { owner: uid(ALICE), ..captured(&event, "hello both") },
        Deferred { owner: uid(BOB), ..captured(&event, "hello both") },
    ];
    assert!(decide(&again, &text(STRANGER, HELD, "hello both"), NOW, &config()).is_empty());
}

#[test]
fn one_owner_answering_releases_the_room_for_them_alone() {
    let mut snap = both(vec![held_for(ALICE), held_for(BOB)]);
    snap.overview = Some(OwnerOverview {
        held: [(rid(HELD), HeldRoom::new(uid(ALICE), uid(STRANGER), false, NOW - 5000))].into(),
        ..Default::default()
    });
    let d = decide(&snap, &text(ALICE, HELD, "hi, what is it about?"), NOW, &config());
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }), "{d:?}");
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::RemoveRoom { owner, .. } if *owner == uid(BOB))));
    // To bob, alice is someone writing in a room held for him: kept for him.
    assert!(
        d.changes
            .iter()
            .any(|c| matches!(c, StateChange::PutDeferred(m) if m.owner == uid(BOB) && m.sender == uid(ALICE))),
        "{d:?}"
    );
}

#[test]
fn an_owner_leaving_stops_holding_for_them_alone() {
    let snap = both(vec![held_for(ALICE), held_for(BOB)]);
    let d = decide(&snap, &member(BOB, HELD, BOB, Membership::Leave, false), NOW, &config());
    assert_eq!(d.changes, vec![StateChange::RemoveRoom { room: rid(HELD), owner: uid(BOB) }]);
    assert!(d.effects.iter().all(|e| e.acts_for() == Some(&uid(BOB))), "{d:?}");
}

#[test]
fn a_failed_step_marks_its_own_owners_record() {
    let snap = both(vec![held_for(ALICE), held_for(BOB)]);
    let failed = |owner: Option<OwnedUserId>| Input::EffectFailed {
        room_id: rid(HELD),
        owner,
        step: FailedStep::Join,
        no_answer: false,
        reason: "refused".into(),
    };
    let d = decide(&snap, &failed(Some(uid(BOB))), NOW, &config());
    assert_eq!(d.changes.len(), 1, "{d:?}");
    assert!(puts_room_for(&d, BOB));
    // A report from before reports named an owner cannot say whose it was:
    // with two owners it marks nobody.
    let old = failed(None);
    assert!(decide(&snap, &old, NOW, &config()).is_empty());
}

#[test]
fn the_bot_invited_into_a_room_held_for_anyone_stays_out() {
    let snap = both(vec![held_for(BOB)]);
    let d = decide(&snap, &member(ALICE, HELD, BOT, Membership::Invite, true), NOW, &config());
    assert!(d.is_empty(), "{d:?}");
}
