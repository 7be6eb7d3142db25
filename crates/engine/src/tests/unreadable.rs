//! Held rooms Gatekeeper gave up reading (their server never answered, the
//! join was refused, or the room could not be silenced): remembered, listed
//! in `pending`, and still the owner's to decide.

use super::*;

fn failed(step: FailedStep, no_answer: bool) -> Input {
    Input::EffectFailed {
        room_id: rid(HELD),
        owner: Some(uid(ALICE)),
        step,
        no_answer,
        reason: "502 failed to make_join".into(),
    }
}

fn unreadable_held(why: Unreadable) -> HeldRoom {
    HeldRoom { unreadable: Some(why), ..held_room(true) }
}

#[test]
fn a_join_given_up_marks_the_held_room_unreadable_and_nothing_else() {
    for (step, no_answer, why) in [
        (FailedStep::Join, true, Unreadable::NoAnswer),
        (FailedStep::Join, false, Unreadable::Refused),
        (FailedStep::Silence, true, Unreadable::NotSilenced),
        (FailedStep::Silence, false, Unreadable::NotSilenced),
    ] {
        let expected =
            Decision::default().change(StateChange::PutRoom(rid(HELD), RoomState::Held(unreadable_held(why))));
        check(&held(true), &failed(step, no_answer), expected);
    }
}

#[test]
fn the_first_reason_stays_and_other_rooms_are_not_touched() {
    // The join set aside because its silence failed stays "not silenced".
    let snapshot = with_owner(Snapshot {
        rooms: vec![RoomState::Held(unreadable_held(Unreadable::NotSilenced))],
        ..Default::default()
    });
    check(&snapshot, &failed(FailedStep::Join, false), Decision::default());
    // A control room, a room released meanwhile: nothing to record.
    check(&control(), &failed(FailedStep::Join, true), Decision::default());
    check(&with_owner(Snapshot::default()), &failed(FailedStep::Join, true), Decision::default());
}

fn with_unreadable_stranger() -> Snapshot {
    let mut snapshot = with_pending_stranger();
    let overview = snapshot.overview.as_mut().unwrap();
    overview.held.insert(rid(HELD), unreadable_held(Unreadable::NoAnswer));
    snapshot
}

#[test]
fn pending_lists_an_unreadable_room_and_says_why() {
    let d = decide(&with_unreadable_stranger(), &text(ALICE, CONTROL, "pending"), NOW, &config());
    let Effect::SendNotice { body, html, .. } = &d.effects[0] else { panic!("{d:?}") };
    assert!(body.contains("2 people are waiting"), "{body}");
    let stranger = body.split("\n").skip_while(|l| !l.contains(STRANGER)).take(5).collect::<Vec<_>>().join("\n");
    assert!(stranger.contains("could not be read: their server does not answer"), "{body}");
    assert_eq!(body.matches("could not be read").count(), 1, "only the stranger's room: {body}");
    assert!(html.contains("could not be read: their server does not answer"), "{html}");
}

#[test]
fn an_unreadable_room_stays_decidable() {
    let snapshot = with_unreadable_stranger();
    // allow: released like any held room.
    let d = decide(&snapshot, &text(ALICE, CONTROL, "allow 1"), NOW, &config());
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }), "{d:?}");
    assert!(d.effects.contains(&Effect::DeletePushRule {
        owner: uid(ALICE),
        rule_id: rules::held_room_id(HELD),
        room: Some(rid(HELD)),
    }));
    // deny and block: the invite is declined (a leave), in the room's lane.
    for command in ["deny @stranger:remote.org", "block @stranger:remote.org"] {
        let d = decide(&snapshot, &text(ALICE, CONTROL, command), NOW, &config());
        let leave = Effect::Leave { as_user: uid(ALICE), room_id: rid(HELD), reason: None };
        assert!(d.effects.contains(&leave), "{command}: {d:?}");
        assert_eq!(leave.lane(), Lane::Room(rid(HELD)));
        assert!(
            d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }),
            "{command}: {d:?}"
        );
    }
}

#[test]
fn the_engine_says_each_effects_lane() {
    let invite = decide(
        &with_owner(Snapshot::default()),
        &member(STRANGER, HELD, ALICE, Membership::Invite, true),
        NOW,
        &config(),
    );
    // A held invite's silence, join, tag, history and the look-up of rooms
    // shared with its inviter: one lane, the room's.
    assert!(invite.effects.iter().all(|e| e.lane() == Lane::Room(rid(HELD))), "{invite:?}");
    let room: Vec<&Effect> = invite.effects.iter().filter(|e| !matches!(e, Effect::LookUpShared { .. })).collect();
    assert_eq!(invite.effects[0].silenced_room(), Some(rid(HELD)));
    assert!(room[1..].iter().all(|e| e.needs_silence()));
    assert_eq!(invite.effects[1].failure_report(), Some((rid(HELD), uid(ALICE), FailedStep::Join)));
    // An allow rule is the owner's, whichever room the command came from.
    let allow = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "allow 1"), NOW, &config());
    let lanes: Vec<Lane> = allow.effects.iter().map(Effect::lane).collect();
    assert_eq!(
        lanes,
        [Lane::Owner(uid(ALICE)), Lane::Room(rid(HELD)), Lane::Room(rid(HELD)), Lane::Room(rid(CONTROL))]
    );
    assert_eq!(allow.effects[0].silenced_room(), None);
    assert_eq!(allow.effects[3].failure_report(), None);
}
