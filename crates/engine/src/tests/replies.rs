//! The one etiquette reply a stranger gets, and the limits that keep it from looping or spamming.

use super::*;

#[test]
fn a_strangers_first_message_is_captured_and_answered_once_as_the_owner() {
    let d = decide(&held(true), &text(STRANGER, HELD, "Hi Alice!"), NOW, &config());
    let Some(StateChange::PutDeferred(m)) = d.changes.first() else { panic!("{d:?}") };
    assert_eq!((m.body.as_str(), m.sender.as_str(), m.owner.as_str()), ("Hi Alice!", STRANGER, ALICE));
    assert_eq!(kinds(&d), ["notice"]);
    let Effect::SendNotice { as_user, room_id, body, html, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!((as_user.as_str(), room_id.as_str()), (ALICE, HELD));
    assert!(body.contains("Alice will read it"), "{body}");
    assert!(html.starts_with("<p>"));
    assert!(
        d.changes
            .contains(&StateChange::PutRoom(rid(HELD), RoomState::Held(HeldRoom { replied: true, ..held_room(true) })))
    );
    assert!(d.changes.contains(&StateChange::PutStranger {
        owner: uid(ALICE),
        user: uid(STRANGER),
        state: StrangerState { last_reply_ms: Some(NOW), ..Default::default() }
    }));
}

#[test]
fn the_etiquette_reply_goes_once_per_invite_and_stranger_to_dms_only_never_to_notices_within_an_hourly_cap() {
    let cfg = config();
    // Once per invite.
    let mut replied = held(true);
    replied.rooms = vec![RoomState::Held(HeldRoom { replied: true, ..held_room(true) })];
    assert!(kinds(&decide(&replied, &text(STRANGER, HELD, "again"), NOW, &cfg)).is_empty());
    // Never in a group room.
    assert!(kinds(&decide(&held(false), &text(STRANGER, HELD, "hi all"), NOW, &cfg)).is_empty());
    // Never to a notice (bots announce themselves with notices).
    let d = decide(&held(true), &msg_n(STRANGER, HELD, "m.notice", "I am a bot", 0), NOW, &cfg);
    assert!(kinds(&d).is_empty());
    assert!(matches!(d.changes.first(), Some(StateChange::PutDeferred(_))), "still captured");
    // Once per stranger per period, across rooms.
    let mut recent = held(true);
    recent.strangers.insert(
        (uid(ALICE), uid(STRANGER)),
        StrangerState { last_reply_ms: Some(NOW - 3_600_000), ..Default::default() },
    );
    assert!(kinds(&decide(&recent, &text(STRANGER, HELD, "hi"), NOW, &cfg)).is_empty());
    recent.strangers.insert(
        (uid(ALICE), uid(STRANGER)),
        StrangerState { last_reply_ms: Some(NOW - cfg.reply_interval_ms), ..Default::default() },
    );
    assert_eq!(kinds(&decide(&recent, &text(STRANGER, HELD, "hi"), NOW, &cfg)), ["notice"]);
    // An hourly cap per owner.
    let mut capped = held(true);
    capped.owners.insert(
        uid(ALICE),
        OwnerState { reply_window_start_ms: NOW - 60_000, replies_in_window: cfg.max_replies_per_hour, ..owner() },
    );
    assert!(kinds(&decide(&capped, &text(STRANGER, HELD, "hi"), NOW, &cfg)).is_empty());
    // ... which resets after the hour.
    capped.owners.insert(
        uid(ALICE),
        OwnerState { reply_window_start_ms: NOW - 3_600_001, replies_in_window: cfg.max_replies_per_hour, ..owner() },
    );
    let d = decide(&capped, &text(STRANGER, HELD, "hi"), NOW, &cfg);
    assert_eq!(kinds(&d), ["notice"]);
    assert!(
        d.changes.iter().any(
            |c| matches!(c, StateChange::PutOwner(o) if o.replies_in_window == 1 && o.reply_window_start_ms == NOW)
        )
    );
}

#[test]
fn the_reply_uses_the_owners_template_and_name() {
    let mut snapshot = held(true);
    snapshot.owners.insert(
        uid(ALICE),
        OwnerState {
            reply_template: Some("{name} is away. <b>".into()),
            email: Some("a@example.org".into()),
            ..owner()
        },
    );
    let d = decide(&snapshot, &text(STRANGER, HELD, "hi"), NOW, &config());
    let Some(Effect::SendNotice { body, html, .. }) = d.effects.first() else { panic!() };
    assert_eq!(body, "Alice is away. <b>");
    assert_eq!(html, "<p>Alice is away. &lt;b&gt;</p>");
}

#[test]
fn the_reply_goes_only_where_the_owner_and_the_stranger_are_alone_and_a_crowded_dm_is_a_group() {
    let d = decide(&held(true), &text(STRANGER, HELD, "hello"), NOW, &config());
    let reply = d.effects.iter().find(|e| matches!(e, Effect::SendNotice { .. })).expect("a reply");
    let Effect::SendNotice { only_with, as_user, .. } = reply else { unreachable!() };
    assert_eq!((as_user, only_with.as_ref()), (&uid(ALICE), Some(&uid(STRANGER))));

    // The check found a third member: held as a group invitation from now on.
    let crowded = Input::NotTwoPeople { owner: uid(ALICE), room_id: rid(HELD), members: 5000 };
    let d = decide(&held(true), &crowded, NOW, &config());
    let [StateChange::PutRoom(room, RoomState::Held(h))] = d.changes.as_slice() else { panic!("{d:?}") };
    assert_eq!((room, h.is_dm, h.members), (&rid(HELD), false, Some(5000)));
    assert!(d.effects.is_empty());
    // Another owner's room, or one no longer held, is left alone.
    let other = Input::NotTwoPeople { owner: uid("@bob:example.org"), room_id: rid(HELD), members: 3 };
    assert!(decide(&held(true), &other, NOW, &config()).is_empty());
    assert!(decide(&with_owner(Snapshot::default()), &crowded, NOW, &config()).is_empty());
}

#[test]
fn the_reply_shows_the_contact_the_owner_chose_never_the_digest_address() {
    let mut s = held(true);
    s.owners.insert(uid(ALICE), OwnerState { email: Some("digests@alice.example".into()), ..owner() });
    let body = notice_body(&decide(&s, &text(STRANGER, HELD, "hello"), NOW, &config()));
    assert!(!body.contains("digests@alice.example"), "{body}");
    assert!(!body.contains("If it can't wait"), "{body}");
    s.owners.insert(
        uid(ALICE),
        OwnerState {
            email: Some("digests@alice.example".into()),
            contact: Some("office@alice.example".into()),
            ..owner()
        },
    );
    let body = notice_body(&decide(&s, &text(STRANGER, HELD, "hello"), NOW, &config()));
    assert!(body.contains("you can also reach Alice at office@alice.example"), "{body}");
    assert!(!body.contains("digests@alice.example"), "{body}");
    // An older template's `{email}` is the contact too.
    s.owners.insert(
        uid(ALICE),
        OwnerState {
            email: Some("digests@alice.example".into()),
            reply_template: Some("Write to {email} or {contact}".into()),
            ..owner()
        },
    );
    let body = notice_body(&decide(&s, &text(STRANGER, HELD, "hello"), NOW, &config()));
    assert!(!body.contains("digests@alice.example"), "{body}");
}
