//! Data-driven tests of `decide`: each case is a snapshot, an input and the
//! decision (or the parts of it) it must produce.

use super::*;
use ruma::{OwnedEventId, owned_room_id, owned_user_id};

fn config() -> EngineConfig {
    tests_support::config()
}

const NOW: u64 = 1_700_000_000_000;
const BOT: &str = "@gatekeeper:example.org";
const ALICE: &str = "@alice:example.org";
const STRANGER: &str = "@stranger:remote.org";
const CONTROL: &str = "!control:example.org";
const HELD: &str = "!held:remote.org";

fn uid(s: &str) -> OwnedUserId {
    s.try_into().unwrap()
}
fn usr(s: &str) -> Subject {
    Subject::User(uid(s))
}
fn rid(s: &str) -> OwnedRoomId {
    s.try_into().unwrap()
}

fn meta_n(sender: &str, room: &str, n: u32) -> EventMeta {
    let id: String = format!("{sender}{room}{n}").chars().filter(char::is_ascii_alphanumeric).collect();
    EventMeta {
        event_id: format!("${id}").try_into().unwrap(),
        room_id: rid(room),
        sender: uid(sender),
        ts_ms: NOW - 1000,
    }
}

fn meta(sender: &str, room: &str) -> EventMeta {
    meta_n(sender, room, 0)
}

fn member(sender: &str, room: &str, target: &str, membership: Membership, is_direct: bool) -> Input {
    Input::Member {
        meta: meta(sender, room),
        target: uid(target),
        membership,
        is_direct,
        displayname: None,
        reason: None,
        room_name: None,
        sender_name: None,
    }
}

fn msg_n(sender: &str, room: &str, msgtype: &str, body: &str, n: u32) -> Input {
    Input::Message {
        meta: meta_n(sender, room, n),
        msgtype: msgtype.into(),
        body: body.into(),
        html: None,
        media: None,
        replaces: None,
    }
}

fn text(sender: &str, room: &str, body: &str) -> Input {
    msg_n(sender, room, "m.text", body, 0)
}

fn owner() -> OwnerState {
    OwnerState { displayname: Some("Alice".into()), ..OwnerState::new(uid(ALICE), rid(CONTROL), 1) }
}

fn with_owner(mut s: Snapshot) -> Snapshot {
    s.owners.insert(uid(ALICE), owner());
    s
}

fn control() -> Snapshot {
    with_owner(Snapshot {
        room: Some(RoomState::Control { owner: uid(ALICE) }),
        overview: Some(OwnerOverview::default()),
        ..Default::default()
    })
}

fn held_room(is_dm: bool) -> HeldRoom {
    HeldRoom::new(uid(ALICE), uid(STRANGER), is_dm, NOW - 5000)
}

fn held(is_dm: bool) -> Snapshot {
    with_owner(Snapshot { room: Some(RoomState::Held(held_room(is_dm))), ..Default::default() })
}

/// Compares what the decision does; what it counts (`outcomes`) has tests
/// of its own.
fn check(snapshot: &Snapshot, input: &Input, expected: Decision) {
    let got = decide(snapshot, input, NOW, &config());
    assert_eq!((got.changes, got.effects), (expected.changes, expected.effects), "input: {input:?}");
}

fn kinds(d: &Decision) -> Vec<&'static str> {
    d.effects
        .iter()
        .map(|e| match e {
            Effect::Join { .. } => "join",
            Effect::Leave { .. } => "leave",
            Effect::SendNotice { .. } => "notice",
            Effect::PutPushRule { .. } => "rule",
            Effect::DeletePushRule { .. } => "unrule",
            Effect::EnablePushRule { enabled: false, .. } => "disable",
            Effect::EnablePushRule { enabled: true, .. } => "enable",
            Effect::SetTag { present: true, .. } => "tag",
            Effect::SetTag { present: false, .. } => "untag",
            Effect::FetchProfile { .. } => "profile",
            Effect::SendEmail { .. } => "mail",
            Effect::ImportContacts { .. } => "import",
            Effect::Backfill { .. } => "backfill",
        })
        .collect()
}

fn notice_body(d: &Decision) -> String {
    d.effects
        .iter()
        .find_map(|e| match e {
            Effect::SendNotice { body, .. } => Some(body.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no notice in {d:?}"))
}

// ---- opting in and out ----

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
        room: Some(RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }),
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
    assert_eq!(kinds(&d), ["rule", "rule", "import", "profile", "notice"]);
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
        room: Some(RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }),
        ..Default::default()
    };
    snapshot.owners.insert(uid(ALICE), owner());
    let input = member(BOT, "!new:example.org", BOT, Membership::Join, false);
    let d = decide(&snapshot, &input, NOW, &config());
    assert_eq!(kinds(&d), ["notice", "leave", "rule", "notice"]);
    assert!(d.changes.contains(&StateChange::RemoveRoom(rid(CONTROL))));
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
        StateChange::RemoveRoom(rid(HELD)),
        StateChange::RemoveRoom(rid(CONTROL)),
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
fn look_up_results_update_the_owner() {
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
    let d = decide(&snapshot, &Input::ContactsImported { owner: uid(ALICE), users }, NOW, &config());
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
        &Input::ContactsImported { owner: uid(ALICE), users: vec![uid("@f:x.org")] },
        NOW,
        &config(),
    );
    assert_eq!(d, Decision::default());
}

// ---- the gate ----

#[test]
fn a_strangers_invite_is_held_silenced_before_the_join_and_tagged() {
    let d = decide(
        &with_owner(Snapshot::default()),
        &member(STRANGER, HELD, ALICE, Membership::Invite, true),
        NOW,
        &config(),
    );
    assert_eq!(kinds(&d), ["rule", "join", "tag", "backfill"]);
    assert_eq!(d.effects[0], Effect::PutPushRule { owner: uid(ALICE), rule: rules::held_room(HELD) });
    assert_eq!(d.effects[1], Effect::Join { as_user: uid(ALICE), room_id: rid(HELD) });
    let [StateChange::PutRoom(r, RoomState::Held(h))] = &d.changes[..] else { panic!("{d:?}") };
    assert_eq!(*r, rid(HELD));
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
    let snap = with_owner(Snapshot { room: Some(RoomState::Held(h.clone())), ..Default::default() });
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
    check(
        &Snapshot::default(),
        &member(STRANGER, HELD, "@bob:example.org", Membership::Invite, true),
        Decision::default(),
    );
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
        state: StrangerState { last_reply_ms: Some(NOW) }
    }));
}

#[test]
fn loop_and_spam_rules_for_the_etiquette_reply() {
    let cfg = config();
    // Once per invite.
    let mut replied = held(true);
    replied.room = Some(RoomState::Held(HeldRoom { replied: true, ..held_room(true) }));
    assert!(kinds(&decide(&replied, &text(STRANGER, HELD, "again"), NOW, &cfg)).is_empty());
    // Never in a group room.
    assert!(kinds(&decide(&held(false), &text(STRANGER, HELD, "hi all"), NOW, &cfg)).is_empty());
    // Never to a notice (bots announce themselves with notices).
    let d = decide(&held(true), &msg_n(STRANGER, HELD, "m.notice", "I am a bot", 0), NOW, &cfg);
    assert!(kinds(&d).is_empty());
    assert!(matches!(d.changes.first(), Some(StateChange::PutDeferred(_))), "still captured");
    // Once per stranger per period, across rooms.
    let mut recent = held(true);
    recent.strangers.insert((uid(ALICE), uid(STRANGER)), StrangerState { last_reply_ms: Some(NOW - 3_600_000) });
    assert!(kinds(&decide(&recent, &text(STRANGER, HELD, "hi"), NOW, &cfg)).is_empty());
    recent
        .strangers
        .insert((uid(ALICE), uid(STRANGER)), StrangerState { last_reply_ms: Some(NOW - cfg.reply_interval_ms) });
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
fn the_bots_messages_in_a_held_room_are_not_captured() {
    check(&held(true), &text(BOT, HELD, "hello"), Decision::default());
}

#[test]
fn the_owner_answering_in_a_held_room_allows_the_inviter_and_releases_the_room() {
    let mut snapshot = held(true);
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hi"));
    snapshot.overview = Some(overview);
    let d = decide(&snapshot, &text(ALICE, HELD, "Hi! Sure, let's talk."), NOW, &config());
    assert_eq!(kinds(&d), ["rule", "unrule", "untag", "notice"]);
    assert!(d.changes.contains(&StateChange::RemoveRoom(rid(HELD))));
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
fn encrypted_messages_are_captured_as_a_fact() {
    let d = decide(&held(true), &Input::Encrypted { meta: meta(STRANGER, HELD) }, NOW, &config());
    let Some(StateChange::PutDeferred(m)) = d.changes.first() else { panic!() };
    assert!(m.encrypted && m.body.is_empty());
    assert!(notice_body(&d).contains("encrypted"));
}

fn captured(event: &OwnedEventId, body: &str) -> Deferred {
    Deferred {
        owner: uid(ALICE),
        room_id: rid(HELD),
        event_id: event.clone(),
        sender: uid(STRANGER),
        ts_ms: 5,
        msgtype: "m.text".into(),
        body: body.into(),
        html: None,
        media: None,
        encrypted: false,
        edited: false,
        digested: false,
    }
}

#[test]
fn edits_replace_the_captured_text_and_only_the_authors_count() {
    let original = meta_n(STRANGER, HELD, 1).event_id;
    let mut snapshot = held(true);
    snapshot.related = Some(captured(&original, "helo"));
    let edit = |sender: &str| Input::Message {
        meta: meta_n(sender, HELD, 2),
        msgtype: "m.text".into(),
        body: "* hello".into(),
        html: None,
        media: None,
        replaces: Some(Replacement { original: original.clone(), body: "hello".into(), html: None }),
    };
    check(
        &snapshot,
        &edit(STRANGER),
        Decision::default().change(StateChange::PutDeferred(Deferred {
            body: "hello".into(),
            edited: true,
            ..captured(&original, "")
        })),
    );
    check(&snapshot, &edit("@other:remote.org"), Decision::default());
    snapshot.related = None;
    check(&snapshot, &edit(STRANGER), Decision::default());
}

#[test]
fn redactions_remove_the_captured_message() {
    let original = meta_n(STRANGER, HELD, 1).event_id;
    let mut snapshot = held(true);
    snapshot.related = Some(captured(&original, "oops"));
    let redaction = Input::Redaction { meta: meta_n(STRANGER, HELD, 3), redacts: original.clone() };
    check(
        &snapshot,
        &redaction,
        Decision::default().change(StateChange::RemoveDeferred { owner: uid(ALICE), event_id: original }),
    );
    snapshot.related = None;
    check(&snapshot, &redaction, Decision::default());
}

#[test]
fn the_owner_leaving_a_held_room_stops_holding_it() {
    let d = decide(&held(true), &member(ALICE, HELD, ALICE, Membership::Leave, false), NOW, &config());
    assert_eq!(d.changes, vec![StateChange::RemoveRoom(rid(HELD))]);
    assert_eq!(kinds(&d), ["unrule"]);
}

// ---- commands ----

#[test]
fn owner_help_in_control_room_is_answered_with_a_notice_from_the_bot() {
    let d = decide(&control(), &text(ALICE, CONTROL, "help"), NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    let Effect::SendNotice { as_user, room_id, body, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!((as_user.as_str(), room_id.as_str()), (BOT, CONTROL));
    for cmd in ["pending", "reply", "stop", "help"] {
        assert!(body.contains(cmd), "{cmd} missing from help");
    }
}

#[test]
fn unknown_commands_and_bad_arguments_get_a_one_line_error() {
    for (input, needle) in [("frob", "frob"), ("pending now", "pending"), ("reply frob", "reply set")] {
        let body = notice_body(&decide(&control(), &text(ALICE, CONTROL, input), NOW, &config()));
        assert!(body.contains(needle), "{input}: {body}");
        assert_eq!(body.lines().count(), 1, "{input}: {body}");
    }
}

#[test]
fn commands_from_anyone_but_the_owner_or_outside_the_control_room_are_ignored() {
    check(&control(), &text("@mallory:example.org", CONTROL, "stop"), Decision::default());
    check(&with_owner(Snapshot::default()), &text(ALICE, "!other:example.org", "stop"), Decision::default());
    let mut someone_elses = control();
    someone_elses.room = Some(RoomState::Control { owner: uid("@bob:example.org") });
    check(&someone_elses, &text(ALICE, CONTROL, "stop"), Decision::default());
    // A control-room record that disagrees with the owner's (stale) is ignored.
    let mut stale = control();
    stale.owners.insert(uid(ALICE), OwnerState { control_room: rid("!elsewhere:example.org"), ..owner() });
    check(&stale, &text(ALICE, CONTROL, "stop"), Decision::default());
}

#[test]
fn notices_and_the_bots_own_messages_are_never_answered() {
    check(&control(), &msg_n(ALICE, CONTROL, "m.notice", "help", 0), Decision::default());
    check(&control(), &text(BOT, CONTROL, "help"), Decision::default());
}

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
fn reply_commands_show_set_and_reset_the_template() {
    let show = decide(&control(), &text(ALICE, CONTROL, "reply"), NOW, &config());
    assert!(notice_body(&show).contains("Alice will read it"));
    assert!(show.changes.is_empty());
    let set = decide(&control(), &text(ALICE, CONTROL, "reply set Away till May. — {name}"), NOW, &config());
    assert!(notice_body(&set).contains("Away till May. — Alice"));
    assert_eq!(
        set.changes,
        vec![StateChange::PutOwner(OwnerState { reply_template: Some("Away till May. — {name}".into()), ..owner() })]
    );
    let reset = decide(&control(), &text(ALICE, CONTROL, "reply reset"), NOW, &config());
    assert_eq!(reset.changes, vec![StateChange::PutOwner(owner())]);
}

#[test]
fn same_event_gives_same_txn_id_and_purposes_differ() {
    let m = meta(ALICE, CONTROL);
    assert_eq!(txn_id(&m, "greeting"), txn_id(&m, "greeting"));
    assert_ne!(txn_id(&m, "greeting"), txn_id(&m, "reply"));
    assert_ne!(txn_id(&m, "reply"), txn_id(&meta("@bob:example.org", CONTROL), "reply"));
}

#[test]
fn decide_is_deterministic() {
    let input = text(STRANGER, HELD, "hello");
    assert_eq!(decide(&held(true), &input, NOW, &config()), decide(&held(true), &input, NOW, &config()));
    let _ = owned_room_id!("!x:y");
    let _ = owned_user_id!("@x:y");
}

// ---- decisions (allow, deny, block, ...) ----

fn with_pending_stranger() -> Snapshot {
    let mut snapshot = control();
    let mut overview = OwnerOverview::default();
    overview.held.insert(rid(HELD), held_room(true));
    overview.held.insert(rid("!other:remote.org"), HeldRoom { inviter: uid("@other:remote.org"), ..held_room(true) });
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hi"));
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 2).event_id, "hello?"));
    snapshot.overview = Some(overview);
    snapshot
        .owners
        .insert(uid(ALICE), OwnerState { last_list: vec![usr(STRANGER), usr("@other:remote.org")], ..owner() });
    snapshot
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
    assert!(d.changes.contains(&StateChange::RemoveRoom(rid(HELD))));
    assert_eq!(d.changes.iter().filter(|c| matches!(c, StateChange::RemoveDeferred { .. })).count(), 2);
    assert_eq!(kinds(&d), ["rule", "unrule", "untag", "notice"]);
    assert_eq!(
        d.effects[0],
        Effect::PutPushRule { owner: uid(ALICE), rule: rules::allow(&uid(ALICE), &usr(STRANGER)) }
    );
    assert_eq!(d.effects[1], Effect::DeletePushRule { owner: uid(ALICE), rule_id: rules::held_room_id(HELD) });
    assert!(notice_body(&d).contains("Allowed @stranger:remote.org; released 1 room."), "{}", notice_body(&d));
    // The other stranger's room is untouched.
    assert!(!d.changes.contains(&StateChange::RemoveRoom(rid("!other:remote.org"))));
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
    assert_eq!(kinds(&decide(&s, &invite, NOW + 7_200_000, &config())), ["rule", "join", "tag", "backfill"]);
    let tick = Snapshot {
        due: Some(Due { expired: vec![(uid(ALICE), usr(STRANGER))], unpause: vec![], digests: vec![] }),
        ..Default::default()
    };
    let d = decide(&tick, &Input::Tick, NOW, &config());
    assert_eq!(d.changes, vec![StateChange::RemoveContact { owner: uid(ALICE), subject: usr(STRANGER) }]);
    assert_eq!(d.effects, vec![Effect::DeletePushRule { owner: uid(ALICE), rule_id: rules::allow_id(&usr(STRANGER)) }]);
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
    assert!(
        d.effects
            .contains(&Effect::DeletePushRule { owner: uid(ALICE), rule_id: rules::allow_id(&usr("@friend:x.org")) })
    );
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
    assert!(body.contains("2 message(s) from @stranger:remote.org") && body.contains("hello?"), "{body}");
}

#[test]
fn pause_disables_holding_and_resume_or_its_end_brings_it_back() {
    let d = decide(&control(), &text(ALICE, CONTROL, "pause 2h"), NOW, &config());
    assert_eq!(kinds(&d), ["disable", "notice"]);
    assert_eq!(
        d.changes,
        vec![StateChange::PutOwner(OwnerState { paused_until_ms: Some(NOW + 7_200_000), ..owner() })]
    );
    let mut paused = with_owner(Snapshot::default());
    paused.owners.insert(uid(ALICE), OwnerState { paused_until_ms: Some(NOW + 7_200_000), ..owner() });
    assert_eq!(
        decide(&paused, &member(STRANGER, HELD, ALICE, Membership::Invite, true), NOW, &config()),
        Decision::default()
    );
    let mut paused_control = control();
    paused_control.owners = paused.owners.clone();
    let d = decide(&paused_control, &text(ALICE, CONTROL, "resume"), NOW, &config());
    assert_eq!(kinds(&d), ["enable", "notice"]);
    let o = OwnerState { paused_until_ms: Some(NOW - 1), ..owner() };
    let tick = Snapshot { due: Some(Due { expired: vec![], unpause: vec![o], digests: vec![] }), ..Default::default() };
    let d = decide(&tick, &Input::Tick, NOW, &config());
    assert_eq!(kinds(&d), ["enable", "notice"]);
    assert_eq!(d.changes, vec![StateChange::PutOwner(owner())]);
}

#[test]
fn settings_are_validated_shown_and_used() {
    let d = decide(&control(), &text(ALICE, CONTROL, "set reply-interval 1d"), NOW, &config());
    let Some(StateChange::PutOwner(o)) = d.changes.first() else { panic!() };
    assert_eq!(o.reply_interval_ms, Some(86_400_000));
    let bad = decide(&control(), &text(ALICE, CONTROL, "set timezone Mars/Base"), NOW, &config());
    assert!(bad.changes.is_empty());
    let d = decide(&control(), &text(ALICE, CONTROL, "set email me@alice.example"), NOW, &config());
    assert!(
        d.changes
            .iter()
            .any(|c| matches!(c, StateChange::PutOwner(o) if o.email.as_deref() == Some("me@alice.example")))
    );
    let shown = notice_body(&decide(&control(), &text(ALICE, CONTROL, "settings"), NOW, &config()));
    for key in
        ["reply-interval: 1w", "email: off", "timezone: UTC", "digest-time: 08:00", "retention: 4w2d", "paused: no"]
    {
        assert!(shown.contains(key), "{key} missing in {shown}");
    }
    // The owner's interval is what the gate uses.
    let mut s = held(true);
    s.owners.insert(uid(ALICE), OwnerState { reply_interval_ms: Some(60_000), ..owner() });
    s.strangers.insert((uid(ALICE), uid(STRANGER)), StrangerState { last_reply_ms: Some(NOW - 120_000) });
    assert_eq!(kinds(&decide(&s, &text(STRANGER, HELD, "hi"), NOW, &config())), ["notice"]);
}

// ---- digests ----

fn due_digest(overview: OwnerOverview, slot: u64) -> Snapshot {
    Snapshot {
        due: Some(Due {
            expired: vec![],
            unpause: vec![],
            digests: vec![DueDigest { owner: owner(), overview, slot_ms: slot }],
        }),
        ..Default::default()
    }
}

#[test]
fn a_due_digest_is_sent_to_the_control_room_and_marks_everything_digested() {
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    let d = decide(&due_digest(overview.clone(), NOW - 5), &Input::Tick, NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    let Effect::SendNotice { as_user, room_id, body, txn_id: t, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!((as_user.as_str(), room_id.as_str()), (BOT, CONTROL));
    assert!(body.contains("1 person wrote to you") && body.contains("hello"), "{body}");
    assert_eq!(*t, txn_id_for(&format!("{ALICE}:{}", NOW - 5), "digest0"));
    assert!(d.changes.contains(&StateChange::PutDeferred(Deferred { digested: true, ..overview.deferred[0].clone() })));
    let Some(StateChange::PutOwner(o)) = d.changes.first() else { panic!() };
    assert_eq!((o.digest_last_slot_ms, o.digest_last_sent_ms), (Some(NOW - 5), Some(NOW)));
    assert_eq!(o.last_list, vec![usr(STRANGER)]);
}

#[test]
fn an_empty_scheduled_digest_sends_nothing_but_records_the_slot() {
    let d = decide(&due_digest(OwnerOverview::default(), NOW - 5), &Input::Tick, NOW, &config());
    assert!(d.effects.is_empty());
    assert_eq!(d.changes, vec![StateChange::PutOwner(OwnerState { digest_last_slot_ms: Some(NOW - 5), ..owner() })]);
}

#[test]
fn the_digest_command_sends_now_without_moving_the_schedule() {
    let mut snapshot = with_pending_stranger();
    snapshot.owners.insert(uid(ALICE), owner());
    let d = decide(&snapshot, &text(ALICE, CONTROL, "digest"), NOW, &config());
    let Some(StateChange::PutOwner(o)) = d.changes.first() else { panic!("{d:?}") };
    assert_eq!((o.digest_last_slot_ms, o.digest_last_sent_ms), (None, Some(NOW)));
    assert!(notice_body(&d).contains("hello?"));
    let nothing = decide(&control(), &text(ALICE, CONTROL, "digest"), NOW, &config());
    assert!(notice_body(&nothing).contains("Nothing new"));
    assert!(nothing.changes.is_empty());
}

// ---- e-mail ----

fn mail_config() -> EngineConfig {
    EngineConfig { mail_secret: Some(gatekeeper_common::Secret::new("k".repeat(40))), ..config() }
}

#[test]
fn an_address_is_verified_with_a_mailed_code_before_digests_go_there() {
    let cfg = mail_config();
    let set = decide(&control(), &text(ALICE, CONTROL, "set email me@alice.example"), NOW, &cfg);
    assert_eq!(kinds(&set), ["mail", "notice"]);
    let Effect::SendEmail { to, text: mail_text, .. } = &set.effects[0] else { unreachable!() };
    assert_eq!(to, "me@alice.example");
    let Some(StateChange::PutOwner(pending_owner)) = set.changes.first() else { panic!() };
    let pending = pending_owner.email_pending.clone().unwrap();
    assert_eq!(pending_owner.email, None, "not used before it is verified");
    assert!(mail_text.contains(&pending.code));

    let mut waiting = control();
    waiting.owners.insert(uid(ALICE), pending_owner.clone());
    let wrong = decide(&waiting, &text(ALICE, CONTROL, "verify 000000"), NOW, &cfg);
    assert!(notice_body(&wrong).contains("does not match"));
    let right = decide(&waiting, &text(ALICE, CONTROL, &format!("verify {}", pending.code)), NOW, &cfg);
    let Some(StateChange::PutOwner(verified)) = right.changes.first() else { panic!() };
    assert_eq!((verified.email.as_deref(), verified.email_pending.is_none()), (Some("me@alice.example"), true));
    let late = decide(&waiting, &text(ALICE, CONTROL, &format!("verify {}", pending.code)), pending.expires_ms, &cfg);
    assert!(notice_body(&late).contains("expired"));

    // Too many wrong codes: ask for a new one.
    let mut tired = control();
    tired.owners.insert(
        uid(ALICE),
        OwnerState { email_pending: Some(PendingEmail { attempts: 5, ..pending.clone() }), ..owner() },
    );
    let d = decide(&tired, &text(ALICE, CONTROL, &format!("verify {}", pending.code)), NOW, &cfg);
    assert!(notice_body(&d).contains("expired"));
}

#[test]
fn the_digest_is_also_mailed_to_a_verified_address_only() {
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "<b>hello</b>"));
    let mut snapshot = due_digest(overview.clone(), NOW - 5);
    let d = decide(&snapshot, &Input::Tick, NOW, &mail_config());
    assert_eq!(kinds(&d), ["notice"], "no verified address, no mail");
    snapshot.due.as_mut().unwrap().digests[0].owner.email = Some("me@alice.example".into());
    let d = decide(&snapshot, &Input::Tick, NOW, &mail_config());
    assert_eq!(kinds(&d), ["mail", "notice"]);
    let Effect::SendEmail { subject, html, text, message_id, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!(subject, "Gatekeeper digest: 1 person wrote to you");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("&lt;b&gt;hello"));
    assert!(text.contains("<b>hello</b>"));
    assert!(message_id.starts_with("<gk.digest."));
    // Without e-mail set up on the server, never.
    assert_eq!(kinds(&decide(&snapshot, &Input::Tick, NOW, &config())), ["notice"]);
}

#[test]
fn a_failed_mail_is_reported_in_the_control_room() {
    let d = decide(
        &with_owner(Snapshot::default()),
        &Input::MailFailed { owner: uid(ALICE), to: "me@alice.example".into(), reason: "550 no such user".into() },
        NOW,
        &config(),
    );
    assert!(notice_body(&d).contains("could not e-mail me@alice.example: 550 no such user"));
}

#[test]
fn a_confirmed_link_decides_like_the_command_and_says_so() {
    let snapshot = with_pending_stranger();
    let used = |action| Input::LinkUsed { owner: uid(ALICE), action, subject: Some(usr(STRANGER)), nonce: "n1".into() };
    let d = decide(&snapshot, &used(links::LinkAction::Allow), NOW, &config());
    assert!(d.changes.contains(&StateChange::RemoveRoom(rid(HELD))));
    assert!(notice_body(&d).starts_with("From your e-mail: Allowed @stranger:remote.org"), "{}", notice_body(&d));
    let d = decide(&snapshot, &used(links::LinkAction::BlockServer), NOW, &config());
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutContact { contact: Contact::Blocked { .. }, .. })));
    let d = decide(
        &snapshot,
        &Input::LinkUsed {
            owner: uid(ALICE),
            action: links::LinkAction::Unsubscribe,
            subject: None,
            nonce: "n2".into(),
        },
        NOW,
        &config(),
    );
    assert!(notice_body(&d).contains("no longer e-mailed"));
    // For someone who is no longer an owner: nothing.
    let gone = decide(&Snapshot::default(), &used(links::LinkAction::Allow), NOW, &config());
    assert_eq!(gone, Decision::default());
}

#[test]
fn digest_emails_carry_signed_one_click_links_and_an_unsubscribe_header() {
    let cfg = EngineConfig {
        mail_links: Some(MailLinks { public_url: "https://gk.example.org".into(), lifetime_ms: 7 * 86_400_000 }),
        ..mail_config()
    };
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    let mut snapshot = due_digest(overview, NOW - 5);
    snapshot.due.as_mut().unwrap().digests[0].owner.email = Some("me@alice.example".into());
    let d = decide(&snapshot, &Input::Tick, NOW, &cfg);
    let Effect::SendEmail { html, unsubscribe: Some(unsubscribe), .. } = &d.effects[0] else { panic!("{d:?}") };
    let secret = cfg.mail_secret.clone().unwrap();
    let token = unsubscribe.strip_prefix("https://gk.example.org/action/").unwrap();
    assert_eq!(links::verify(&secret, token, NOW).unwrap().action, links::LinkAction::Unsubscribe);
    for label in ["Allow", "Allow 30 days", "Deny", "Block", "Block server"] {
        assert!(html.contains(&format!(">{label}</a>")), "{label}");
    }
    let first = html.split("href=\"https://gk.example.org/action/").nth(1).unwrap().split('"').next().unwrap();
    let link = links::verify(&secret, first, NOW).unwrap();
    assert_eq!((link.owner.as_str(), link.subject.as_str(), link.action), (ALICE, STRANGER, links::LinkAction::Allow));
    assert!(links::verify(&secret, first, NOW + 7 * 86_400_000).is_err(), "links expire");
}

#[test]
fn how_digests_notify_is_the_owners_setting() {
    let d = decide(&control(), &text(ALICE, CONTROL, "set notify off"), NOW, &config());
    assert_eq!(
        d.effects[0],
        Effect::PutPushRule { owner: uid(ALICE), rule: rules::control_room(CONTROL, &uid(BOT), Notify::Off) }
    );
    assert!(d.changes.contains(&StateChange::PutOwner(OwnerState { notify: Some(Notify::Off), ..owner() })));
    assert!(
        notice_body(&decide(&control(), &text(ALICE, CONTROL, "settings"), NOW, &config())).contains("notify: quiet")
    );
}

#[test]
fn an_empty_digest_can_say_so_in_one_line() {
    let mut snapshot = due_digest(OwnerOverview::default(), NOW - 5);
    snapshot.due.as_mut().unwrap().digests[0].owner.digest_when_empty = true;
    let d = decide(&snapshot, &Input::Tick, NOW, &config());
    assert_eq!(notice_body(&d), "Nothing new since your last digest.");
    let set = decide(&control(), &text(ALICE, CONTROL, "set empty-digest on"), NOW, &config());
    assert!(set.changes.contains(&StateChange::PutOwner(OwnerState { digest_when_empty: true, ..owner() })));
}

// Client mode: Gatekeeper is a device of ALICE's own account.

fn client_config() -> EngineConfig {
    EngineConfig { bot: uid(ALICE), client_mode: true, ..config() }
}

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
    assert_eq!(kinds(&d), ["rule", "import", "profile", "notice"]);
    let Some(Effect::SendNotice { as_user, room_id, .. }) = d.effects.last() else { unreachable!() };
    assert_eq!((as_user, room_id), (&uid(ALICE), &rid(CONTROL)));
    // Told again at the next start: nothing happens.
    assert_eq!(decide(&control(), &ready, NOW, &cfg), Decision::default());
    // A new control room replaces a lost one, keeping the owner's settings.
    let moved = Input::ControlRoomReady { owner: uid(ALICE), room_id: rid("!new:example.org") };
    let d = decide(&control(), &moved, NOW, &cfg);
    assert!(d.changes.contains(&StateChange::RemoveRoom(rid(CONTROL))));
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

#[test]
fn a_late_decryption_fills_in_the_capture_without_a_second_reply() {
    let m = meta(STRANGER, HELD);
    let mut snapshot = held(true);
    snapshot.related = Some(Deferred {
        msgtype: "m.room.encrypted".into(),
        body: String::new(),
        encrypted: true,
        digested: true,
        ..captured(&m.event_id, "")
    });
    let late = Input::Message {
        meta: m.clone(),
        msgtype: "m.text".into(),
        body: "the real text".into(),
        html: None,
        media: None,
        replaces: Some(Replacement { original: m.event_id.clone(), body: "the real text".into(), html: None }),
    };
    let d = decide(&snapshot, &late, NOW, &client_config());
    let [StateChange::PutDeferred(filled)] = d.changes.as_slice() else { panic!("{d:?}") };
    assert_eq!(
        (filled.body.as_str(), filled.encrypted, filled.edited, filled.msgtype.as_str()),
        ("the real text", false, false, "m.text")
    );
    // What the digest already said stays said.
    assert!(filled.digested);
    assert!(d.effects.is_empty());
    // Without an earlier capture it is captured like any message.
    let d = decide(&held(true), &late, NOW, &client_config());
    assert!(matches!(d.changes.first(), Some(StateChange::PutDeferred(c)) if c.body == "the real text" && !c.edited));
}

#[test]
fn a_message_delivered_twice_is_captured_and_answered_once() {
    let input = text(STRANGER, HELD, "hello");
    let first = decide(&held(true), &input, NOW, &config());
    assert!(kinds(&first).contains(&"notice"));
    // The backfill brings the same event again: nothing more happens.
    let mut snapshot = held(true);
    snapshot.related = Some(captured(&meta(STRANGER, HELD).event_id, "hello"));
    assert_eq!(decide(&snapshot, &input, NOW, &config()), Decision::default());
    let encrypted = Input::Encrypted { meta: meta(STRANGER, HELD) };
    assert_eq!(decide(&snapshot, &encrypted, NOW, &config()), Decision::default());
}

/// Whose account an effect acts on or as (`None`: Gatekeeper's own reads, mail).
fn acting_user(e: &Effect) -> Option<&OwnedUserId> {
    match e {
        Effect::Join { as_user, .. } | Effect::Leave { as_user, .. } | Effect::SendNotice { as_user, .. } => {
            Some(as_user)
        }
        Effect::PutPushRule { owner, .. }
        | Effect::EnablePushRule { owner, .. }
        | Effect::DeletePushRule { owner, .. }
        | Effect::SetTag { owner, .. }
        | Effect::ImportContacts { owner }
        | Effect::Backfill { owner, .. } => Some(owner),
        Effect::FetchProfile { .. } | Effect::SendEmail { .. } => None,
    }
}

#[test]
fn gatekeeper_acts_only_as_the_bot_or_an_owner_who_opted_in_whatever_arrives() {
    let pending_control = Snapshot {
        room: Some(RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }),
        ..Default::default()
    };
    let snapshots = [
        Snapshot::default(),
        control(),
        held(true),
        held(false),
        with_owner(Snapshot::default()),
        with_pending_stranger(),
        pending_control,
    ];
    let users = [ALICE, STRANGER, BOT, "@bob:example.org", "@eve:evil.org"];
    let rooms = [CONTROL, HELD, "!other:example.org"];
    let mut inputs = Vec::new();
    for sender in users {
        for room in rooms {
            for target in users {
                for m in [Membership::Invite, Membership::Join, Membership::Leave, Membership::Ban] {
                    inputs.push(member(sender, room, target, m, true));
                }
            }
            for body in
                ["help", "pending", "allow 1", "deny 2", "block @eve:evil.org", "allow *:evil.org", "stop", "hi"]
            {
                inputs.push(text(sender, room, body));
            }
            inputs.push(Input::Encrypted { meta: meta(sender, room) });
        }
    }
    let mut checked = 0;
    let cfg = config();
    for snapshot in &snapshots {
        for input in &inputs {
            let d = decide(snapshot, input, NOW, &cfg);
            // An owner may be enrolled by this very decision (the bot's join
            // completing an opt-in the owner started themselves).
            let enrolled: Vec<&OwnedUserId> = d
                .changes
                .iter()
                .filter_map(|c| match c {
                    StateChange::PutOwner(o) => Some(&o.user_id),
                    _ => None,
                })
                .collect();
            for e in &d.effects {
                if let Some(actor) = acting_user(e) {
                    assert!(
                        *actor == uid(BOT) || snapshot.owners.contains_key(actor) || enrolled.contains(&actor),
                        "{input:?} made Gatekeeper act as {actor}: {e:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "the cases must exercise effects: {checked}");
}

#[test]
fn what_a_stranger_sees_never_reveals_who_is_allowed_or_blocked() {
    let mut snapshot = held(true);
    let mut overview = OwnerOverview::default();
    for (user, contact) in [
        ("@friend:example.org", Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None }),
        ("@ex:example.org", Contact::Blocked { since_ms: 1 }),
    ] {
        overview.contacts.insert(usr(user), contact);
    }
    snapshot.overview = Some(overview);
    for body in ["allowed", "blocked", "pending", "show @friend:example.org", "help"] {
        let d = decide(&snapshot, &text(STRANGER, HELD, body), NOW, &config());
        for e in &d.effects {
            if let Effect::SendNotice { body, html, .. } = e {
                for secret in ["@friend", "@ex:", "friend", "blocked"] {
                    assert!(!body.contains(secret) && !html.contains(secret), "{secret} leaked: {body}");
                }
            }
        }
    }
    // Commands typed in a held room, or by anyone else in the control room, get no answer at all.
    let d = decide(&snapshot, &text(STRANGER, HELD, "allowed"), NOW, &config());
    assert!(
        d.effects.iter().all(|e| matches!(e, Effect::SendNotice { txn_id, .. } if txn_id.starts_with("gk.etiquette.")))
    );
    assert_eq!(decide(&control(), &text(STRANGER, CONTROL, "allowed"), NOW, &config()), Decision::default());
}
