//! What one stranger, and all of them together, can make Gatekeeper keep
//! for an owner: past each bound, counted instead of kept.

use super::*;

fn invite_from(sender: &str, room: &str) -> Input {
    member(sender, room, ALICE, Membership::Invite, true)
}

fn tight() -> EngineConfig {
    EngineConfig {
        bounds: Bounds {
            held_rooms_per_stranger: 2,
            held_rooms_per_owner: 3,
            messages_per_stranger: 2,
            messages_per_owner: 3,
            message_bytes: 100,
        },
        ..config()
    }
}

fn kept(held_rooms: u64, messages: u64) -> Kept {
    Kept { held_rooms, messages }
}

fn counted(d: &Decision) -> StrangerState {
    d.changes
        .iter()
        .find_map(|c| match c {
            StateChange::PutStranger { state, .. } => Some(state.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing counted in {d:?}"))
}

#[test]
fn invitations_past_the_strangers_bound_stay_silent_unjoined_and_counted() {
    let mut s = with_owner(Snapshot::default());
    s.kept_with.insert((uid(ALICE), uid(STRANGER)), kept(1, 0));
    let d = decide(&s, &invite_from(STRANGER, "!r2:remote.org"), NOW, &tight());
    assert!(kinds(&d).contains(&"join"), "below the bound it is held: {d:?}");

    s.kept_with.insert((uid(ALICE), uid(STRANGER)), kept(2, 0));
    let d = decide(&s, &invite_from(STRANGER, "!r3:remote.org"), NOW, &tight());
    // No push rule, no join, no tag, no backfill: nothing but the count.
    assert!(d.effects.is_empty(), "{d:?}");
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(..))));
    assert_eq!(counted(&d).invites_not_held, Tally { total: 1, reported: 0 });
    assert_eq!(d.outcomes, vec![Outcome::InviteNotHeld]);

    // Another stranger is not held back by this one.
    let d = decide(&s, &invite_from("@other:remote.org", "!r4:remote.org"), NOW, &tight());
    assert!(kinds(&d).contains(&"join"));
}

#[test]
fn invitations_past_the_owners_bound_are_counted_on_the_owner() {
    let mut s = with_owner(Snapshot::default());
    s.kept.insert(uid(ALICE), kept(3, 0));
    let d = decide(&s, &invite_from(STRANGER, "!r:remote.org"), NOW, &tight());
    assert!(d.effects.is_empty(), "{d:?}");
    let [StateChange::PutOwner(o)] = d.changes.as_slice() else { panic!("{d:?}") };
    assert_eq!(o.invites_not_held.total, 1);
    assert_eq!(d.outcomes, vec![Outcome::InviteNotHeld]);
    // An allowed sender's invitation is never held, so no bound applies.
    s.contacts.insert(
        (uid(ALICE), usr(STRANGER)),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
    );
    assert!(decide(&s, &invite_from(STRANGER, "!r:remote.org"), NOW, &tight()).is_empty());
}

#[test]
fn messages_past_a_bound_are_counted_not_stored_and_the_first_still_gets_its_reply() {
    let mut s = held(true);
    s.kept_with.insert((uid(ALICE), uid(STRANGER)), kept(1, 2));
    let d = decide(&s, &text(STRANGER, HELD, "third"), NOW, &tight());
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutDeferred(_))), "{d:?}");
    assert_eq!(counted(&d).messages_not_kept.total, 1);
    assert!(d.outcomes.contains(&Outcome::MessageNotKept));
    // The DM was not answered yet: its reply is not a stored message, and
    // the count and the reply's time land in one stranger record.
    assert!(kinds(&d).contains(&"notice"));
    let states: Vec<_> = d.changes.iter().filter(|c| matches!(c, StateChange::PutStranger { .. })).collect();
    let StateChange::PutStranger { state, .. } = states.last().unwrap() else { unreachable!() };
    assert_eq!((state.messages_not_kept.total, state.last_reply_ms), (1, Some(NOW)));

    // All strangers together: the owner's bound.
    let mut s = held(true);
    s.kept.insert(uid(ALICE), kept(1, 3));
    let d = decide(&s, &text(STRANGER, HELD, "any"), NOW, &tight());
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutDeferred(_))), "{d:?}");

    // Encrypted messages count the same way.
    let mut s = held(false);
    s.kept_with.insert((uid(ALICE), uid(STRANGER)), kept(1, 2));
    let enc = Input::Encrypted { meta: meta(STRANGER, HELD) };
    let d = decide(&s, &enc, NOW, &tight());
    assert_eq!(d.outcomes, vec![Outcome::MessageNotKept]);
}

#[test]
fn a_long_message_is_trimmed_on_capture_with_a_note_and_its_html_dropped() {
    let body = "é".repeat(500);
    let input = Input::Message {
        meta: meta(STRANGER, HELD),
        msgtype: "m.text".into(),
        body: body.clone(),
        html: Some(format!("<b>{body}</b>")),
        media: None,
        replaces: None,
    };
    let d = decide(&held(false), &input, NOW, &tight());
    let Some(StateChange::PutDeferred(c)) = d.changes.first() else { panic!("{d:?}") };
    assert!(c.body.len() <= 100, "{}", c.body.len());
    assert!(c.body.starts_with('é') && c.body.ends_with("[trimmed: the message was 1000 bytes long]"), "{}", c.body);
    assert_eq!(c.html, None);
    // A short one is kept as it is, HTML and all.
    let d = decide(&held(false), &text(STRANGER, HELD, "short"), NOW, &tight());
    let Some(StateChange::PutDeferred(c)) = d.changes.first() else { panic!("{d:?}") };
    assert_eq!(c.body, "short");
}

#[test]
fn an_edit_is_trimmed_too_and_never_counts_as_a_new_message() {
    let mut s = held(false);
    let original = captured(&meta_n(STRANGER, HELD, 1).event_id, "short");
    s.related = vec![original.clone()];
    // At the bound: an edit replaces what is kept, it adds nothing.
    s.kept_with.insert((uid(ALICE), uid(STRANGER)), kept(1, 2));
    let edit = Input::Message {
        meta: meta_n(STRANGER, HELD, 2),
        msgtype: "m.text".into(),
        body: "* long".into(),
        html: None,
        media: None,
        replaces: Some(Replacement { original: original.event_id.clone(), body: "x".repeat(5000), html: None }),
    };
    let d = decide(&s, &edit, NOW, &tight());
    let [StateChange::PutDeferred(c)] = d.changes.as_slice() else { panic!("{d:?}") };
    assert!(c.edited && c.body.len() <= 100);
}

#[test]
fn pending_shows_what_was_counted_per_sender_and_for_the_owner() {
    let mut s = with_pending_stranger();
    let overview = s.overview.as_mut().unwrap();
    overview.strangers.insert(
        uid(STRANGER),
        StrangerState {
            invites_not_held: Tally { total: 4, reported: 4 },
            messages_not_kept: Tally { total: 57, reported: 0 },
            ..Default::default()
        },
    );
    s.owners.get_mut(&uid(ALICE)).unwrap().invites_not_held = Tally { total: 12, reported: 2 };
    let d = decide(&s, &text(ALICE, CONTROL, "pending"), NOW, &config());
    let body = notice_body(&d);
    assert!(body.contains("+4 more invitations not held, and 57 more messages not kept"), "{body}");
    assert!(body.contains("10 more invitations came while 2 held rooms were waiting"), "{body}");
}

#[test]
fn the_digest_reports_counts_once_and_deciding_on_a_sender_forgets_them() {
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hi"));
    // Only counted, nothing kept: still in the digest.
    overview.strangers.insert(
        uid("@flood:remote.org"),
        StrangerState { messages_not_kept: Tally { total: 30, reported: 10 }, ..Default::default() },
    );
    let mut s = with_owner(Snapshot { rooms: vec![RoomState::Control { owner: uid(ALICE) }], ..Default::default() });
    s.owners.get_mut(&uid(ALICE)).unwrap().invites_not_held = Tally { total: 3, reported: 0 };
    s.overview = Some(overview.clone());
    let d = decide(&s, &text(ALICE, CONTROL, "digest"), NOW, &config());
    let body = notice_body(&d);
    assert!(body.contains("@flood:remote.org") && body.contains("and 20 more messages not kept"), "{body}");
    assert!(body.contains("3 more invitations came while"), "{body}");
    let reported = d.changes.iter().find_map(|c| match c {
        StateChange::PutStranger { user, state, .. } if *user == uid("@flood:remote.org") => Some(state.clone()),
        _ => None,
    });
    assert_eq!(reported.unwrap().messages_not_kept, Tally { total: 30, reported: 30 });
    let owner_after = d.changes.iter().find_map(|c| match c {
        StateChange::PutOwner(o) => Some(o.clone()),
        _ => None,
    });
    assert_eq!(owner_after.unwrap().invites_not_held.unreported(), 0);

    // `deny` settles the counts: a returning sender starts from nothing.
    let mut s = with_pending_stranger();
    s.overview.as_mut().unwrap().strangers.insert(
        uid(STRANGER),
        StrangerState {
            last_reply_ms: Some(7),
            messages_not_kept: Tally { total: 5, reported: 0 },
            ..Default::default()
        },
    );
    let d = decide(&s, &text(ALICE, CONTROL, &format!("deny {STRANGER}")), NOW, &config());
    let reset = d.changes.iter().find_map(|c| match c {
        StateChange::PutStranger { state, .. } => Some(state.clone()),
        _ => None,
    });
    assert_eq!(reset, Some(StrangerState { last_reply_ms: Some(7), ..Default::default() }));
}

#[test]
fn made_up_senders_past_the_owners_bound_are_counted_on_the_owner_not_each_in_a_record() {
    // A group room: its puppets get no reply, so no record of their own.
    let mut s = held(false);
    s.kept.insert(uid(ALICE), kept(1, 3));
    let d = decide(&s, &text("@puppet7:remote.org", HELD, "buy"), NOW, &tight());
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutStranger { .. })), "{d:?}");
    let [StateChange::PutOwner(o)] = d.changes.as_slice() else { panic!("{d:?}") };
    assert_eq!(o.messages_not_kept.total, 1);
    assert_eq!(d.outcomes, vec![Outcome::MessageNotKept]);
    // A sender with something kept is counted on their own record.
    s.kept_with.insert((uid(ALICE), uid(STRANGER)), kept(1, 1));
    let d = decide(&s, &text(STRANGER, HELD, "more"), NOW, &tight());
    assert_eq!(counted(&d).messages_not_kept.total, 1);
    // The owner's count is said in pending, once per digest.
    let mut c = with_pending_stranger();
    c.owners.get_mut(&uid(ALICE)).unwrap().messages_not_kept = Tally { total: 9, reported: 4 };
    let body = notice_body(&decide(&c, &text(ALICE, CONTROL, "pending"), NOW, &config()));
    assert!(body.contains("5 more messages came from people with nothing else kept"), "{body}");
}

#[test]
fn the_owners_count_and_a_reply_in_one_decision_keep_each_other() {
    // A DM of a new stranger when the owner's bound is reached: the message
    // is counted on the owner and the reply still goes; neither write of
    // the owner's record loses the other's change.
    let mut s = held(true);
    s.kept.insert(uid(ALICE), kept(1, 3));
    let d = decide(&s, &text(STRANGER, HELD, "hello"), NOW, &tight());
    assert!(kinds(&d).contains(&"notice"), "{d:?}");
    let last_owner = d
        .changes
        .iter()
        .rev()
        .find_map(|c| match c {
            StateChange::PutOwner(o) => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((last_owner.messages_not_kept.total, last_owner.replies_in_window), (1, 1));
}
