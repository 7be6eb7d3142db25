//! The owner's decisions about strangers: `pending`, `show`, `allow`, `deny`, `block`, `unblock` and the lists.

use super::*;

#[test]
fn pending_lists_strangers_with_counts_and_previews() {
    let mut snapshot = control();
    let mut overview = OwnerOverview::default();
    overview.held.insert(rid(HELD), held_room(true));
    overview.held.insert(
        rid("!group:remote.org"),
        HeldRoom {
            inviter: uid("@promo:remote.org"),
            inviter_name: None,
            is_dm: false,
            name: Some("Deals".into()),
            members: Some(40),
            ..held_room(false)
        },
    );
    for (n, body) in ["first line\nsecond", "<script>latest</script>"].iter().enumerate() {
        let mut m = captured(&meta_n(STRANGER, HELD, n as u32).event_id, body);
        m.ts_ms = NOW - 10_000 + n as u64;
        overview.deferred.push(m);
    }
    snapshot.overview = Some(overview);
    let d = decide(&snapshot, &text(ALICE, CONTROL, "pending"), NOW, &config());
    let Effect::SendNotice { body, html, .. } = &d.effects[0] else { panic!() };
    assert!(body.contains("2 people are waiting"), "{body}");
    assert!(body.contains("@stranger:remote.org — 2 messages"), "{body}");
    assert!(body.contains("“<script>latest</script>”"), "{body}");
    assert!(body.contains("invited you to Deals (40 members)"), "{body}");
    assert!(!html.contains("<script>"), "{html}");
    let empty = decide(&control(), &text(ALICE, CONTROL, "pending"), NOW, &config());
    assert!(notice_body(&empty).contains("Nobody is waiting"));
}

#[test]
fn pending_remembers_the_numbering_for_later_commands() {
    let mut snapshot = with_pending_stranger();
    snapshot.owners.insert(uid(ALICE), owner());
    let d = decide(&snapshot, &text(ALICE, CONTROL, "pending"), NOW, &config());
    assert!(notice_body(&d).contains("1. @other:remote.org") || notice_body(&d).contains("1. @stranger:remote.org"));
    let Some(StateChange::PutOwner(o)) = d.changes.first() else { panic!("{d:?}") };
    assert_eq!(o.last_list.len(), 2);
}

#[test]
fn allow_by_number_releases_the_held_room_and_lets_invites_ring() {
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "allow 1"), NOW, &config());
    assert!(d.changes.contains(&StateChange::PutContact {
        owner: uid(ALICE),
        subject: usr(STRANGER),
        contact: Contact::Allowed { since_ms: NOW, source: AllowSource::Command, until_ms: None },
    }));
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }));
    assert_eq!(d.changes.iter().filter(|c| matches!(c, StateChange::RemoveDeferred { .. })).count(), 2);
    assert_eq!(kinds(&d), ["rule", "unrule", "untag", "notice"]);
    assert_eq!(
        d.effects[0],
        Effect::PutPushRule { owner: uid(ALICE), rule: rules::allow(&uid(ALICE), &usr(STRANGER)) }
    );
    assert_eq!(
        d.effects[1],
        Effect::DeletePushRule { owner: uid(ALICE), rule_id: rules::held_room_id(HELD), room: Some(rid(HELD)) }
    );
    assert!(notice_body(&d).contains("Allowed @stranger:remote.org; released 1 room."), "{}", notice_body(&d));
    // The other stranger's room is untouched.
    assert!(!d.changes.contains(&StateChange::RemoveRoom { room: rid("!other:remote.org"), owner: uid(ALICE) }));
}

#[test]
fn allow_can_notify_the_sender_when_configured() {
    let mut cfg = config();
    cfg.notify_allowed = true;
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "allow @stranger:remote.org"), NOW, &cfg);
    let to_stranger = d
        .effects
        .iter()
        .any(|e| matches!(e, Effect::SendNotice { as_user, room_id, .. } if *as_user == ALICE && *room_id == HELD));
    assert!(to_stranger, "{d:?}");
}

#[test]
fn a_temporary_allow_expires_on_the_next_tick() {
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "allow 1 for 2h"), NOW, &config());
    assert!(d.changes.contains(&StateChange::PutContact {
        owner: uid(ALICE),
        subject: usr(STRANGER),
        contact: Contact::Allowed { since_ms: NOW, source: AllowSource::Command, until_ms: Some(NOW + 7_200_000) },
    }));
    // Until then an invite is let through; after, it is held again.
    let mut s = with_owner(Snapshot::default());
    s.contacts.insert(
        (uid(ALICE), usr(STRANGER)),
        Contact::Allowed { since_ms: NOW, source: AllowSource::Command, until_ms: Some(NOW + 7_200_000) },
    );
    let invite = member(STRANGER, "!new:remote.org", ALICE, Membership::Invite, true);
    assert_eq!(decide(&s, &invite, NOW + 1000, &config()), Decision::default());
    assert_eq!(kinds(&decide(&s, &invite, NOW + 7_200_000, &config())), ["rule", "join", "tag", "backfill", "shared"]);
    let tick = Snapshot {
        due: Some(Due {
            expired: vec![(uid(ALICE), usr(STRANGER))],
            unpause: vec![],
            digests: vec![],
            replies: vec![],
        }),
        ..Default::default()
    };
    let d = decide(&tick, &Input::Tick, NOW, &config());
    assert_eq!(d.changes, vec![StateChange::RemoveContact { owner: uid(ALICE), subject: usr(STRANGER) }]);
    assert_eq!(
        d.effects,
        vec![Effect::DeletePushRule { owner: uid(ALICE), rule_id: rules::allow_id(&usr(STRANGER)), room: None }]
    );
}

#[test]
fn deny_leaves_quietly_drops_the_messages_and_says_how_many() {
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "deny 1"), NOW, &config());
    assert_eq!(kinds(&d), ["leave", "unrule", "notice"]);
    assert_eq!(d.effects[0], Effect::Leave { as_user: uid(ALICE), room_id: rid(HELD), reason: None });
    assert!(notice_body(&d).contains("left 1 room and dropped 2 messages"), "{}", notice_body(&d));
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutContact { .. })), "deny remembers nobody");
    let nothing = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "deny @nobody:x.org"), NOW, &config());
    assert!(notice_body(&nothing).contains("Nothing from @nobody:x.org is waiting"));
}

#[test]
fn block_a_whole_server_declines_every_room_from_it_now_and_later() {
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "block *:remote.org"), NOW, &config());
    assert_eq!(kinds(&d), ["leave", "unrule", "leave", "unrule", "notice"]);
    assert!(d.changes.contains(&StateChange::PutContact {
        owner: uid(ALICE),
        subject: Subject::Server("remote.org".try_into().unwrap()),
        contact: Contact::Blocked { since_ms: NOW },
    }));
    let mut later = with_owner(Snapshot::default());
    later
        .contacts
        .insert((uid(ALICE), Subject::Server("remote.org".try_into().unwrap())), Contact::Blocked { since_ms: NOW });
    let invite = member("@new:remote.org", "!x:remote.org", ALICE, Membership::Invite, true);
    assert_eq!(kinds(&decide(&later, &invite, NOW, &config())), ["leave"]);
    // A user-level allow beats a server-level block.
    later.contacts.insert(
        (uid(ALICE), usr("@new:remote.org")),
        Contact::Allowed { since_ms: NOW, source: AllowSource::Command, until_ms: None },
    );
    assert_eq!(decide(&later, &invite, NOW, &config()), Decision::default());
}

#[test]
fn blocking_an_allowed_sender_removes_their_ringing_rule_and_unblock_undoes_the_block() {
    let mut snapshot = with_pending_stranger();
    let mut overview = snapshot.overview.clone().unwrap();
    overview
        .contacts
        .insert(usr("@friend:x.org"), Contact::Allowed { since_ms: 1, source: AllowSource::Imported, until_ms: None });
    overview.contacts.insert(usr("@spam:x.org"), Contact::Blocked { since_ms: 1 });
    snapshot.overview = Some(overview);
    let d = decide(&snapshot, &text(ALICE, CONTROL, "block @friend:x.org"), NOW, &config());
    assert!(d.effects.contains(&Effect::DeletePushRule {
        owner: uid(ALICE),
        rule_id: rules::allow_id(&usr("@friend:x.org")),
        room: None
    }));
    let d = decide(&snapshot, &text(ALICE, CONTROL, "unblock @spam:x.org @friend:x.org"), NOW, &config());
    assert_eq!(d.changes, vec![StateChange::RemoveContact { owner: uid(ALICE), subject: usr("@spam:x.org") }]);
    assert!(notice_body(&d).contains("@friend:x.org was not blocked"));
    let listed = notice_body(&decide(&snapshot, &text(ALICE, CONTROL, "blocked"), NOW, &config()));
    assert!(listed.contains("@spam:x.org") && !listed.contains("@friend"), "{listed}");
    let listed = notice_body(&decide(&snapshot, &text(ALICE, CONTROL, "allowed"), NOW, &config()));
    assert!(listed.contains("@friend:x.org") && listed.contains("an existing chat"), "{listed}");
}

#[test]
fn targets_that_do_not_resolve_change_nothing() {
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "allow 7"), NOW, &config());
    assert!(d.changes.is_empty());
    assert!(notice_body(&d).contains("no number 7"));
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "block @bad"), NOW, &config());
    assert!(d.changes.is_empty());
    assert!(notice_body(&d).contains("Usage: block"));
}

#[test]
fn show_lists_every_held_message_of_one_sender() {
    let body = notice_body(&decide(&with_pending_stranger(), &text(ALICE, CONTROL, "show 1"), NOW, &config()));
    assert!(body.contains("2 messages from @stranger:remote.org") && body.contains("hello?"), "{body}");
}
