//! What an attacker review found: each asserts the safe behaviour, and
//! each failed before its fix.

use super::*;

/// A stranger rescinds (kicks) the owner's invite before the queued join ran:
/// the engine forgets the room and removes its silence, but nothing undoes the
/// join that is still queued in the room's lane. In a public room the join
/// succeeds: the owner is in the stranger's room, untracked, unsilenced.
#[test]
fn a_rescinded_invite_does_not_leave_the_owner_joined_and_unsilenced() {
    let invite = decide(
        &with_owner(Snapshot::default()),
        &member(STRANGER, HELD, ALICE, Membership::Invite, true),
        NOW,
        &config(),
    );
    assert!(invite.effects.iter().any(|e| matches!(e, Effect::Join { .. })));
    // The kick is sent by the stranger (target = owner, sender = stranger).
    let kicked = decide(&held(true), &member(STRANGER, HELD, ALICE, Membership::Leave, false), NOW + 1, &config());
    assert!(
        kicked.effects.iter().any(|e| matches!(e, Effect::Leave { as_user, .. } if *as_user == uid(ALICE))),
        "the join queued before must be undone in the same lane: {kicked:?}"
    );
    // The leave comes before the silence is lifted, in the room's lane.
    assert_eq!(kinds(&kicked), ["leave", "unrule"]);
    assert!(kicked.effects.iter().all(|e| e.lane() == Lane::Room(rid(HELD))));
    // The owner leaving of their own accord needs no leave.
    let left = decide(&held(true), &member(ALICE, HELD, ALICE, Membership::Leave, false), NOW + 1, &config());
    assert_eq!(kinds(&left), ["unrule"]);
}

/// A local user who is in Alice's held room (a local stranger) invites the bot
/// there as a "DM": the held record is overwritten by PendingControl.
#[test]
fn inviting_the_bot_into_a_held_room_changes_nothing_of_the_owners() {
    let d = decide(&held(true), &member("@mallory:example.org", HELD, BOT, Membership::Invite, true), NOW, &config());
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(r, _) if *r == rid(HELD))), "{d:?}");
}
