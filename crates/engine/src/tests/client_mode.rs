//! Client mode: Gatekeeper as a device of the owner's own account.

use super::*;

#[test]
fn client_mode_enrols_the_owner_when_the_control_room_is_ready_and_only_once() {
    let cfg = client_config();
    let ready = Input::ControlRoomReady { owner: uid(ALICE), room_id: rid(CONTROL) };
    let d = decide(&Snapshot::default(), &ready, NOW, &cfg);
    assert_eq!(
        d.changes,
        vec![
            StateChange::PutOwner(OwnerState::new(uid(ALICE), rid(CONTROL), NOW)),
            StateChange::PutRoom(rid(CONTROL), RoomState::Control { owner: uid(ALICE) }),
        ]
    );
    // No control-room rule: the owner's own messages never push to them.
    assert_eq!(kinds(&d), ["rule", "import", "profile", "put_state", "read_invite_filter", "notice"]);
    let Some(Effect::SendNotice { as_user, room_id, .. }) = d.effects.last() else { unreachable!() };
    assert_eq!((as_user, room_id), (&uid(ALICE), &rid(CONTROL)));
    // Told again at the next start: nothing changes, and what is kept in
    // step on the homeserver (the commands, the invite filter) is put right.
    let again = decide(&control(), &ready, NOW, &cfg);
    assert!(again.changes.is_empty());
    assert_eq!(kinds(&again), ["put_state", "read_invite_filter"]);
    // A new control room replaces a lost one, keeping the owner's settings.
    let moved = Input::ControlRoomReady { owner: uid(ALICE), room_id: rid("!new:example.org") };
    let d = decide(&control(), &moved, NOW, &cfg);
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(CONTROL), owner: uid(ALICE) }));
    assert!(matches!(&d.changes[1], StateChange::PutOwner(o) if o.control_room == rid("!new:example.org")
        && o.displayname.as_deref() == Some("Alice")));
    // Never in appservice mode, and never for anyone but the account's owner.
    assert_eq!(decide(&Snapshot::default(), &ready, NOW, &config()), Decision::default());
    let other = Input::ControlRoomReady { owner: uid("@bob:example.org"), room_id: rid(CONTROL) };
    assert_eq!(decide(&Snapshot::default(), &other, NOW, &cfg), Decision::default());
}

#[test]
fn client_mode_takes_the_owners_commands_but_not_its_own_notices() {
    let cfg = client_config();
    let d = decide(&control(), &text(ALICE, CONTROL, "help"), NOW, &cfg);
    assert_eq!(kinds(&d), ["notice"]);
    let Effect::SendNotice { as_user, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!(*as_user, uid(ALICE));
    // Gatekeeper's own notices come from the same account: never commands.
    let echo = msg_n(ALICE, CONTROL, "m.notice", "help", 1);
    assert_eq!(decide(&control(), &echo, NOW, &cfg), Decision::default());
}

#[test]
fn client_mode_holds_invites_to_the_owner_and_nobody_opts_in_by_inviting() {
    let cfg = client_config();
    let d =
        decide(&with_owner(Snapshot::default()), &member(STRANGER, HELD, ALICE, Membership::Invite, true), NOW, &cfg);
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(_, RoomState::Held(_)))));
    assert!(kinds(&d).contains(&"join"));
    // An invitation from the owner to someone is not an opt-in of that someone.
    let d = decide(
        &with_owner(Snapshot::default()),
        &member(ALICE, "!x:example.org", "@bob:example.org", Membership::Invite, true),
        NOW,
        &cfg,
    );
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(_, RoomState::PendingControl { .. }))));
    assert!(!cfg.may_opt_in(&uid("@bob:example.org")));
}
