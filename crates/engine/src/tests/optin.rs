//! Opting in (inviting the bot to a DM), opting out (`stop`, leaving), and what opt-in looks up.

use super::*;

fn overview_with_everything() -> OwnerOverview {
    let mut o = OwnerOverview::default();
    o.contacts.insert(
        usr("@friend:example.org"),
        Contact::Allowed { since_ms: 1, source: AllowSource::Imported, until_ms: None },
    );
    o.contacts.insert(usr("@spammer:evil.org"), Contact::Blocked { since_ms: 1 });
    o.held.insert(rid(HELD), held_room(true));
    o
}

#[test]
fn eligible_users_dm_invite_makes_a_pending_control_room_and_joins() {
    check(
        &Snapshot::default(),
        &member(ALICE, CONTROL, BOT, Membership::Invite, true),
        Decision {
            changes: vec![StateChange::PutRoom(
                rid(CONTROL),
                RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: NOW },
            )],
            effects: vec![Effect::Join { as_user: uid(BOT), room_id: rid(CONTROL) }],
            outcomes: vec![],
        },
    );
}

#[test]
fn bots_join_completes_the_opt_in_silences_invites_imports_contacts_and_greets() {
    let snapshot = Snapshot {
        rooms: vec![RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }],
        ..Default::default()
    };
    let input = member(BOT, CONTROL, BOT, Membership::Join, false);
    let d = decide(&snapshot, &input, NOW, &config());
    assert_eq!(
        d.changes,
        vec![
            StateChange::PutOwner(OwnerState::new(uid(ALICE), rid(CONTROL), NOW)),
            StateChange::PutRoom(rid(CONTROL), RoomState::Control { owner: uid(ALICE) }),
        ]
    );
    assert_eq!(kinds(&d), ["rule", "rule", "import", "profile", "put_state", "read_invite_filter", "notice"]);
    let Effect::PutPushRule { rule: quiet, .. } = &d.effects[1] else { unreachable!() };
    assert_eq!((quiet.rule_id.as_str(), quiet.actions), (rules::CONTROL, RuleActions::Quiet));
    let Effect::PutPushRule { rule, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!(*rule, rules::hold_invites(&uid(ALICE)));
    assert!(notice_body(&d).contains("help"));
    let Some(Effect::SendNotice { txn_id: t, .. }) = d.effects.last() else { unreachable!() };
    assert_eq!(*t, txn_id(input.meta().unwrap(), "greeting"));
}

#[test]
fn a_second_dm_with_the_bot_moves_the_control_room() {
    let mut snapshot = Snapshot {
        rooms: vec![RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }],
        ..Default::default()
    };
    snapshot.owners.insert(uid(ALICE), owner());
    let input = member(BOT, "!new:example.org", BOT, Membership::Join, false);
    let d = decide(&snapshot, &input, NOW, &config());
    assert_eq!(kinds(&d), ["notice", "leave", "rule", "put_state", "read_invite_filter", "notice"]);
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(CONTROL), owner: uid(ALICE) }));
    assert!(
        d.changes.contains(&StateChange::PutOwner(OwnerState { control_room: rid("!new:example.org"), ..owner() }))
    );
}

#[test]
fn bots_join_without_a_pending_opt_in_does_nothing() {
    check(&Snapshot::default(), &member(BOT, "!x:example.org", BOT, Membership::Join, false), Decision::default());
}

#[test]
fn users_outside_the_namespace_get_a_refusal_and_the_bot_leaves() {
    for sender in ["@mallory:evil.org", "@gatekeeper2:example.org.evil"] {
        let d = decide(
            &Snapshot::default(),
            &member(sender, "!dm:evil.org", BOT, Membership::Invite, true),
            NOW,
            &config(),
        );
        // Other servers' users: rejected with the explanation as the reason.
        assert_eq!(kinds(&d), ["leave"], "{sender}");
        let Effect::Leave { reason: Some(reason), .. } = &d.effects[0] else { panic!() };
        assert!(reason.contains("example.org"));
        assert!(d.changes.is_empty());
    }
    let mut cfg = config();
    cfg.users = regex::Regex::new("^(?:@(alice|bob):example\\.org)$").unwrap();
    let d =
        decide(&Snapshot::default(), &member("@carol:example.org", CONTROL, BOT, Membership::Invite, true), NOW, &cfg);
    assert_eq!(kinds(&d), ["join", "notice", "leave"]);
}

#[test]
fn group_room_invite_of_the_bot_is_rejected_with_a_reason() {
    let d = decide(
        &Snapshot::default(),
        &member(ALICE, "!group:example.org", BOT, Membership::Invite, false),
        NOW,
        &config(),
    );
    assert_eq!(kinds(&d), ["leave"]);
    assert!(d.changes.is_empty());
}

#[test]
fn stop_restores_every_rule_and_tag_and_says_goodbye() {
    let mut snapshot = control();
    snapshot.overview = Some(overview_with_everything());
    let d = decide(&snapshot, &text(ALICE, CONTROL, "stop"), NOW, &config());
    assert_eq!(kinds(&d), ["unrule", "unrule", "unrule", "unrule", "untag", "notice", "leave"]);
    let deleted: Vec<String> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeletePushRule { rule_id, .. } => Some(rule_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        deleted,
        [
            rules::HOLD_INVITES.to_owned(),
            rules::CONTROL.to_owned(),
            rules::allow_id(&usr("@friend:example.org")),
            rules::held_room_id(HELD)
        ]
    );
    assert!(notice_body(&d).contains("off"));
    for change in [
        StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) },
        StateChange::RemoveRoom { room: rid(CONTROL), owner: uid(ALICE) },
        StateChange::RemoveOwner(uid(ALICE)),
        StateChange::ForgetOwnerData(uid(ALICE)),
    ] {
        assert!(d.changes.contains(&change), "{change:?}");
    }
}

#[test]
fn owner_leaving_the_control_room_opts_out_the_same_way_without_a_notice() {
    let mut snapshot = control();
    snapshot.overview = Some(overview_with_everything());
    let d = decide(&snapshot, &member(ALICE, CONTROL, ALICE, Membership::Leave, false), NOW, &config());
    assert_eq!(kinds(&d), ["unrule", "unrule", "unrule", "unrule", "untag", "leave"]);
    assert!(d.changes.contains(&StateChange::RemoveOwner(uid(ALICE))));
    // Kicking the bot is an opt-out too.
    let d = decide(&snapshot, &member(ALICE, CONTROL, BOT, Membership::Leave, false), NOW, &config());
    assert!(d.changes.contains(&StateChange::RemoveOwner(uid(ALICE))));
}

#[test]
fn someone_else_leaving_a_control_room_changes_nothing() {
    check(
        &control(),
        &member("@bob:example.org", CONTROL, "@bob:example.org", Membership::Leave, false),
        Decision::default(),
    );
}

#[test]
fn look_up_results_update_the_owners_name_and_allow_their_existing_contacts_once() {
    let d = decide(
        &with_owner(Snapshot::default()),
        &Input::ProfileFetched { user: uid(ALICE), displayname: Some("Alice A.".into()) },
        NOW,
        &config(),
    );
    assert_eq!(d.changes, vec![StateChange::PutOwner(OwnerState { displayname: Some("Alice A.".into()), ..owner() })]);

    let mut snapshot = with_owner(Snapshot::default());
    snapshot.contacts.insert((uid(ALICE), usr("@blocked:x.org")), Contact::Blocked { since_ms: 1 });
    let users = vec![uid("@friend:x.org"), uid("@friend:x.org"), uid(ALICE), uid(BOT), uid("@blocked:x.org")];
    let d = decide(&snapshot, &Input::ContactsImported { owner: uid(ALICE), users, strangers: vec![] }, NOW, &config());
    assert_eq!(
        d.changes,
        vec![StateChange::PutContact {
            owner: uid(ALICE),
            subject: usr("@friend:x.org"),
            contact: Contact::Allowed { since_ms: NOW, source: AllowSource::Imported, until_ms: None },
        }]
    );
    assert_eq!(
        d.effects,
        vec![Effect::PutPushRule { owner: uid(ALICE), rule: rules::allow(&uid(ALICE), &usr("@friend:x.org")) }]
    );
    // Results for someone who is no longer an owner are dropped.
    let d = decide(
        &Snapshot::default(),
        &Input::ContactsImported { owner: uid(ALICE), users: vec![uid("@f:x.org")], strangers: vec![] },
        NOW,
        &config(),
    );
    assert_eq!(d, Decision::default());
}

/// A two-person room the owner never answered in is a stranger's room,
/// whoever is in it: after `stop` the owner is still in every room that
/// was held, and opting in again must not make those strangers contacts.
#[test]
fn at_opt_in_a_two_person_room_the_owner_never_answered_is_held_again() {
    let mut snapshot = with_owner(Snapshot { overview: Some(OwnerOverview::default()), ..Default::default() });
    snapshot.contacts.insert((uid(ALICE), usr("@blocked:x.org")), Contact::Blocked { since_ms: 1 });
    let input = Input::ContactsImported {
        owner: uid(ALICE),
        users: vec![uid("@friend:x.org")],
        strangers: vec![
            (rid(HELD), uid(STRANGER)),
            // The friend wrote back in another room: a contact, not held.
            (rid("!other:x.org"), uid("@friend:x.org")),
            (rid("!blocked:x.org"), uid("@blocked:x.org")),
        ],
    };
    let d = decide(&snapshot, &input, NOW, &config());
    let again = HeldRoom { replied: true, ..HeldRoom::new(uid(ALICE), uid(STRANGER), true, NOW) };
    assert!(d.changes.contains(&StateChange::PutRoom(rid(HELD), RoomState::Held(again))), "{d:?}");
    let held: Vec<&OwnedRoomId> = d
        .changes
        .iter()
        .filter_map(|c| match c {
            StateChange::PutRoom(r, _) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(held, vec![&rid(HELD)]);
    assert!(
        !d.changes.iter().any(|c| matches!(c, StateChange::PutContact { subject, .. } if *subject == usr(STRANGER)))
    );
    // Silenced, tagged and read back; no automatic reply for an old conversation.
    assert_eq!(kinds(&d), vec!["rule", "rule", "tag", "backfill"]);
    assert!(d.effects.contains(&Effect::PutPushRule { owner: uid(ALICE), rule: rules::held_room(HELD) }));

    // Held already (a repeated result after a crash): nothing again.
    snapshot.overview.as_mut().unwrap().held.insert(rid(HELD), held_room(true));
    let d = decide(&snapshot, &input, NOW, &config());
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(..))), "{d:?}");
}

#[test]
fn strangers_rooms_found_at_opt_in_stay_within_the_bounds() {
    let snapshot = with_owner(Snapshot { overview: Some(OwnerOverview::default()), ..Default::default() });
    let strangers: Vec<(OwnedRoomId, OwnedUserId)> =
        (0..20).map(|i| (rid(&format!("!r{i}:remote.org")), uid(STRANGER))).collect();
    let input = Input::ContactsImported { owner: uid(ALICE), users: vec![], strangers };
    let d = decide(&snapshot, &input, NOW, &config());
    let held = d.changes.iter().filter(|c| matches!(c, StateChange::PutRoom(..))).count();
    assert_eq!(held as u64, config().bounds.held_rooms_per_stranger);
}
