//! The gate: which invites are held, which are let through or declined, and how a held room is released by the owner.

use super::*;

#[test]
fn a_strangers_invite_is_held_silenced_before_the_join_and_tagged() {
    let d = decide(
        &with_owner(Snapshot::default()),
        &member(STRANGER, HELD, ALICE, Membership::Invite, true),
        NOW,
        &config(),
    );
    assert_eq!(kinds(&d), ["rule", "join", "tag", "backfill", "shared"]);
    assert_eq!(d.effects[0], Effect::PutPushRule { owner: uid(ALICE), rule: rules::held_room(HELD) });
    assert_eq!(d.effects[1], Effect::Join { as_user: uid(ALICE), room_id: rid(HELD) });
    // The room, then the invite noted for wave detection (the sender's
    // record and their server's).
    let [StateChange::PutRoom(r, RoomState::Held(h)), StateChange::PutWave(..), StateChange::PutWave(..)] =
        &d.changes[..]
    else {
        panic!("{d:?}")
    };
    assert_eq!(*r, rid(HELD));
    assert_eq!(h.wave, None);
    assert!(h.is_dm && !h.replied && h.inviter == STRANGER && h.owner == ALICE);
}

#[test]
fn group_invites_are_held_with_name_and_reason_for_the_digest() {
    let input = Input::Member {
        meta: meta(STRANGER, HELD),
        target: uid(ALICE),
        membership: Membership::Invite,
        is_direct: false,
        displayname: None,
        reason: Some("join us".into()),
        room_name: Some("Crypto gains".into()),
        sender_name: None,
    };
    let d = decide(&with_owner(Snapshot::default()), &input, NOW, &config());
    let Some(StateChange::PutRoom(_, RoomState::Held(h))) = d.changes.first() else { panic!("{d:?}") };
    assert!(!h.is_dm);
    assert_eq!((h.name.as_deref(), h.reason.as_deref()), (Some("Crypto gains"), Some("join us")));
    let info = Input::RoomInfo { owner: uid(ALICE), room_id: rid(HELD), name: None, members: 12 };
    let snap = with_owner(Snapshot { rooms: vec![RoomState::Held(h.clone())], ..Default::default() });
    let d = decide(&snap, &info, NOW, &config());
    assert_eq!(
        d.changes,
        vec![StateChange::PutRoom(rid(HELD), RoomState::Held(HeldRoom { members: Some(12), ..h.clone() }))]
    );
}

#[test]
fn allowed_senders_invites_are_left_alone_and_blocked_ones_rejected_silently() {
    let mut snapshot = with_owner(Snapshot::default());
    snapshot.contacts.insert(
        (uid(ALICE), usr(STRANGER)),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
    );
    check(&snapshot, &member(STRANGER, HELD, ALICE, Membership::Invite, true), Decision::default());
    snapshot.contacts.insert((uid(ALICE), usr(STRANGER)), Contact::Blocked { since_ms: 1 });
    check(
        &snapshot,
        &member(STRANGER, HELD, ALICE, Membership::Invite, true),
        Decision::default().effect(Effect::Leave { as_user: uid(ALICE), room_id: rid(HELD), reason: None }),
    );
}

#[test]
fn invites_to_users_who_did_not_opt_in_are_untouched() {
    // Only counted on the inviter, for their card (the appservice sees
    // every invite here); nothing is done to the invite.
    let invite = member(STRANGER, HELD, "@bob:example.org", Membership::Invite, true);
    let d = decide(&Snapshot::default(), &invite, NOW, &config());
    assert!(d.effects.is_empty() && d.outcomes.is_empty(), "{d:?}");
    assert!(d.changes.iter().all(|c| matches!(c, StateChange::PutWave(WaveKey::Sender(s), _) if *s == uid(STRANGER))));
    check(
        &Snapshot::default(),
        &member(STRANGER, HELD, "@bob:remote.org", Membership::Invite, true),
        Decision::default(),
    );
    let client = decide(&Snapshot::default(), &invite, NOW, &client_config());
    assert_eq!(client, Decision::default());
}

#[test]
fn a_repeated_invite_for_a_held_room_does_nothing_more() {
    check(&held(true), &member(STRANGER, HELD, ALICE, Membership::Invite, true), Decision::default());
}

#[test]
fn people_the_owner_invites_become_allowed() {
    let d = decide(
        &with_owner(Snapshot::default()),
        &member(ALICE, "!new:example.org", "@new:x.org", Membership::Invite, true),
        NOW,
        &config(),
    );
    assert_eq!(
        d.effects,
        vec![Effect::PutPushRule { owner: uid(ALICE), rule: rules::allow(&uid(ALICE), &usr("@new:x.org")) }]
    );
    let mut cfg = config();
    cfg.auto_allow_owner_started = false;
    let d = decide(
        &with_owner(Snapshot::default()),
        &member(ALICE, "!new:example.org", "@new:x.org", Membership::Invite, true),
        NOW,
        &cfg,
    );
    assert_eq!(d, Decision::default());
}

#[test]
fn the_owner_answering_in_a_held_room_allows_the_inviter_and_releases_the_room() {
    let mut snapshot = held(true);
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hi"));
    snapshot.overview = Some(overview);
    let d = decide(&snapshot, &text(ALICE, HELD, "Hi! Sure, let's talk."), NOW, &config());
    assert_eq!(kinds(&d), ["rule", "unrule", "untag", "notice"]);
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }));
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::RemoveDeferred { .. })));
    assert!(d.changes.contains(&StateChange::PutContact {
        owner: uid(ALICE),
        subject: usr(STRANGER),
        contact: Contact::Allowed { since_ms: NOW, source: AllowSource::OwnerStarted, until_ms: None },
    }));
    // Not when the owner turned that off, nor for a blocked inviter.
    let mut cfg = config();
    cfg.auto_allow_owner_started = false;
    assert_eq!(decide(&snapshot, &text(ALICE, HELD, "hi"), NOW, &cfg), Decision::default());
    snapshot.contacts.insert((uid(ALICE), usr(STRANGER)), Contact::Blocked { since_ms: 1 });
    assert_eq!(decide(&snapshot, &text(ALICE, HELD, "hi"), NOW, &config()), Decision::default());
}

#[test]
fn the_owner_leaving_a_held_room_stops_holding_it() {
    let d = decide(&held(true), &member(ALICE, HELD, ALICE, Membership::Leave, false), NOW, &config());
    assert_eq!(d.changes, vec![StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }]);
    assert_eq!(kinds(&d), ["unrule"]);
}
