//! Matrix-native defences: commands addressed by a mention or
//! `!gatekeeper`, `report`, and the homeserver's invite filter kept in
//! step with the owner's blocks.

use super::*;
use crate::commands::{Addressee, Command, parse_as};
use crate::native::{FilterSeen, InviteFilter, NativeEffect, NativeInput, ReportVia};

fn bot_named() -> Addressee<'static> {
    static BOT_ID: std::sync::OnceLock<OwnedUserId> = std::sync::OnceLock::new();
    Addressee { bot: Some(BOT_ID.get_or_init(|| uid(BOT))), name: Some("Gatekeeper"), any_user: false }
}

#[test]
fn commands_work_with_either_prefix_and_with_a_mention_of_the_bot() {
    let pending = Some(Command::Pending(crate::commands::Pending { page: None }));
    let to = bot_named();
    for text in [
        "pending",
        "!gk pending",
        "!gatekeeper pending",
        "!GATEKEEPER   pending",
        "@gatekeeper:example.org pending",
        "@gatekeeper:example.org: pending",
        "Gatekeeper: pending",
        "gatekeeper, pending",
        "Gatekeeper pending",
        "  Gatekeeper:   !gk pending",
    ] {
        assert_eq!(parse_as(text, &to), pending, "{text:?}");
    }
    // Only the prefix or the mention: not addressed, not answered.
    for text in ["!gatekeeper", "@gatekeeper:example.org", "Gatekeeper:", "!gk"] {
        assert_eq!(parse_as(text, &to), None, "{text:?}");
    }
    // Someone else's ID, or a word that merely starts like the name, is
    // not a mention: the owner's words are read as they are.
    assert!(matches!(parse_as("@other:example.org pending", &to), Some(Command::Unknown { .. })));
    assert!(matches!(parse_as("Gatekeepers: pending", &to), Some(Command::Unknown { .. })));
    // Without the bot's name (client mode), the name is just a word.
    let plain = Addressee { name: None, ..bot_named() };
    assert!(matches!(parse_as("Gatekeeper: pending", &plain), Some(Command::Unknown { .. })));
}

#[test]
fn a_command_mentioning_the_bot_runs_in_the_control_room() {
    let d = decide(&control(), &text(ALICE, CONTROL, "Gatekeeper: blocked"), NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    let d = decide(&control(), &text(ALICE, CONTROL, "@gatekeeper:example.org blocked"), NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
}

/// `set email` after a mention still reads the codes mailed before, so
/// that a mention cannot step around the limits on verification mail.
#[test]
fn a_mention_before_set_email_still_declares_the_codes_it_reads() {
    for body in ["Gatekeeper: set email a@example.org", "@gatekeeper:example.org set email a@example.org"] {
        let input = text(ALICE, CONTROL, body);
        assert_eq!(reads(&input).codes.len(), 2, "{body}");
    }
}

fn with_filter(mut s: Snapshot, hand: &[Subject]) -> Snapshot {
    let filter = InviteFilter { hand: hand.iter().cloned().collect(), blocks_all: false, stable: false };
    let before = s.owners.get(&uid(ALICE)).cloned().unwrap_or_else(owner);
    s.owners.insert(uid(ALICE), OwnerState { invite_filter: Some(filter), ..before });
    s
}

fn edits(d: &Decision) -> Vec<(Vec<Subject>, Vec<Subject>)> {
    d.effects
        .iter()
        .filter_map(|e| match e {
            Effect::Native(NativeEffect::EditInviteFilter { add, remove, .. }) => Some((add.clone(), remove.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn report_reports_the_sender_with_their_latest_message_then_blocks_them() {
    let snapshot = with_pending_stranger();
    let d = decide(&snapshot, &text(ALICE, CONTROL, "report 1 sent me  spam\nand more"), NOW, &config());
    let report = d.effects.iter().find_map(|e| match e {
        Effect::Native(NativeEffect::Report { owner, user, event, reason, .. }) => Some((owner, user, event, reason)),
        _ => None,
    });
    let latest = meta_n(STRANGER, HELD, 2).event_id;
    let (owner, user, event, reason) = report.expect("a report");
    assert_eq!((owner, user), (&uid(ALICE), &uid(STRANGER)));
    // Both captures have the same clock; the later event wins the tie by ts,
    // either way one of theirs, in their room.
    assert_eq!(event.as_ref().map(|(r, _)| r), Some(&rid(HELD)));
    assert!(event.as_ref().is_some_and(|(_, e)| *e == latest || *e == meta_n(STRANGER, HELD, 1).event_id));
    assert_eq!(reason, "sent me spam and more");
    // The block is the block command's own decision, with its undo.
    assert!(d.changes.iter().any(|c| matches!(c,
        StateChange::PutContact { subject, contact: Contact::Blocked { .. }, .. } if *subject == usr(STRANGER))));
    assert!(notice_body(&d).starts_with("Reporting @stranger:remote.org"));
    assert!(notice_body(&d).contains("Blocked @stranger:remote.org"));
    // The reason is bounded: the homeserver refuses long ones.
    let long = format!("report 1 {}", "x".repeat(2_000));
    let d = decide(&snapshot, &text(ALICE, CONTROL, &long), NOW, &config());
    assert!(d.effects.iter().any(|e| matches!(e,
        Effect::Native(NativeEffect::Report { reason, .. }) if reason.chars().count() == crate::native::MAX_REPORT_REASON)));
}

#[test]
fn report_is_about_one_user_and_not_the_owner() {
    for bad in ["report *:remote.org", "report @alice:example.org", "report 9"] {
        let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, bad), NOW, &config());
        assert_eq!(kinds(&d), ["notice"], "{bad}");
        assert!(d.changes.is_empty(), "{bad}");
    }
    assert!(matches!(crate::commands::parse("report"), Some(Command::Invalid { .. })));
}

#[test]
fn the_reports_outcome_is_said_in_the_control_room_once() {
    let input =
        |via| Input::Native(NativeInput::Reported { owner: uid(ALICE), user: uid(STRANGER), via, seed: "$c".into() });
    let d = decide(&control(), &input(ReportVia::User), NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    assert!(notice_body(&d).contains("a user report"));
    assert_eq!(d, decide(&control(), &input(ReportVia::User), NOW, &config()), "the same send when repeated");
    assert!(notice_body(&decide(&control(), &input(ReportVia::Nothing), NOW, &config())).contains("could not"));
}

#[test]
fn every_way_a_block_changes_reaches_the_invite_filter_but_never_the_owners_own_entries() {
    let mine = usr("@mine:remote.org");
    let snapshot = with_filter(with_pending_stranger(), std::slice::from_ref(&mine));
    // block
    let d = decide(&snapshot, &text(ALICE, CONTROL, "block 1 *:evil.org"), NOW, &config());
    assert_eq!(edits(&d), [(vec![usr(STRANGER), Subject::Server("evil.org".try_into().unwrap())], vec![])]);
    // block all
    let d = decide(&snapshot, &text(ALICE, CONTROL, "block all"), NOW, &config());
    assert_eq!(edits(&d).len(), 1);
    assert!(edits(&d)[0].0.contains(&usr(STRANGER)));
    // unblock: Gatekeeper's entry goes, the owner's own stays.
    let mut blocked = snapshot.clone();
    let overview = blocked.overview.as_mut().unwrap();
    for s in [usr(STRANGER), mine.clone()] {
        overview.contacts.insert(s, Contact::Blocked { since_ms: 1 });
    }
    let d = decide(&blocked, &text(ALICE, CONTROL, "unblock @stranger:remote.org @mine:remote.org"), NOW, &config());
    assert_eq!(edits(&d), [(vec![], vec![usr(STRANGER)])]);
    assert!(notice_body(&d).contains("@mine:remote.org is still blocked by your homeserver's invite filter"));
    // undo of a block
    let d = decide(&snapshot, &text(ALICE, CONTROL, "block 1"), NOW, &config());
    let mut after = blocked.clone();
    for change in &d.changes {
        if let StateChange::PutOwner(o) = change {
            after.owners.insert(o.user_id.clone(), o.clone());
        }
    }
    after.overview.as_mut().unwrap().contacts.remove(&mine);
    let d = decide(&after, &text(ALICE, CONTROL, "undo"), NOW + 1, &config());
    assert_eq!(edits(&d), [(vec![], vec![usr(STRANGER)])], "{d:?}");
    // an e-mailed block link
    let link = Input::LinkUsed {
        owner: uid(ALICE),
        action: links::LinkAction::Block,
        subject: Some(usr(STRANGER)),
        nonce: "n".into(),
    };
    assert_eq!(edits(&decide(&snapshot, &link, NOW, &config())), [(vec![usr(STRANGER)], vec![])]);
    // report
    let d = decide(&snapshot, &text(ALICE, CONTROL, "report 1"), NOW, &config());
    assert_eq!(edits(&d), [(vec![usr(STRANGER)], vec![])]);
    // Allowing is no block: nothing to write.
    assert!(edits(&decide(&snapshot, &text(ALICE, CONTROL, "allow 1"), NOW, &config())).is_empty());
    // Before the filter was first read, nothing is written: the read does it.
    let d = decide(&with_pending_stranger(), &text(ALICE, CONTROL, "block 1"), NOW, &config());
    assert!(edits(&d).is_empty());
}

#[test]
fn stop_takes_gatekeepers_entries_out_of_the_invite_filter_and_leaves_the_owners() {
    let mine = usr("@mine:remote.org");
    let mut snapshot = with_filter(control(), std::slice::from_ref(&mine));
    let overview = snapshot.overview.as_mut().unwrap();
    for s in [usr(STRANGER), mine.clone()] {
        overview.contacts.insert(s, Contact::Blocked { since_ms: 1 });
    }
    let d = decide(&snapshot, &text(ALICE, CONTROL, "stop"), NOW, &config());
    assert_eq!(edits(&d), [(vec![], vec![usr(STRANGER)])]);
}

#[test]
fn at_opt_in_the_filters_blocks_and_allows_become_gatekeepers_and_its_blocks_go_in() {
    let mut snapshot = control();
    snapshot.overview.as_mut().unwrap().contacts.insert(usr("@old:remote.org"), Contact::Blocked { since_ms: 1 });
    let seen = FilterSeen {
        blocked: vec![usr("@mine:remote.org"), Subject::Server("evil.org".try_into().unwrap()), usr(ALICE)],
        allowed: vec![usr("@friend:remote.org")],
        ..Default::default()
    };
    let input = Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen: seen.clone() });
    let d = decide(&snapshot, &input, NOW, &config());
    let blocked: Vec<&Subject> = d
        .changes
        .iter()
        .filter_map(|c| match c {
            StateChange::PutContact { subject, contact: Contact::Blocked { .. }, .. } => Some(subject),
            _ => None,
        })
        .collect();
    assert_eq!(blocked, [&usr("@mine:remote.org"), &Subject::Server("evil.org".try_into().unwrap())]);
    assert!(d.changes.iter().any(|c| matches!(c,
        StateChange::PutContact { subject, contact: Contact::Allowed { .. }, .. } if *subject == usr("@friend:remote.org"))));
    assert!(kinds(&d).contains(&"rule"), "an imported allow rings, as any allow");
    // Gatekeeper's own block from before goes in; the filter's are there.
    let added: Vec<Subject> = edits(&d).into_iter().flat_map(|(add, _)| add).collect();
    assert!(added.contains(&usr("@old:remote.org")));
    // The owner's entries are remembered as theirs.
    let filter = d.changes.iter().find_map(|c| match c {
        StateChange::PutOwner(o) => o.invite_filter.clone(),
        _ => None,
    });
    assert!(filter.is_some_and(|f| f.hand.contains(&usr("@mine:remote.org")) && !f.blocks_all));
    // Read again later (an echo of Gatekeeper's own edit): nothing imported,
    // Gatekeeper's entries not taken for the owner's.
    let after = snapshot.after(&d.changes);
    let mut after = Snapshot { overview: snapshot.overview.clone(), ..after };
    after.overview.as_mut().unwrap().contacts.insert(usr("@mine:remote.org"), Contact::Blocked { since_ms: 1 });
    let seen = FilterSeen { blocked: vec![usr("@mine:remote.org"), usr("@old:remote.org")], ..seen };
    let input = Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen });
    let d = decide(&after, &input, NOW, &config());
    assert!(d.changes.iter().all(|c| !matches!(c, StateChange::PutContact { .. })), "{d:?}");
    assert!(edits(&d).is_empty());
}

#[test]
fn a_stable_filter_that_hides_the_mirrored_blocks_is_told_once() {
    let seen = FilterSeen { stable_present: true, ..Default::default() };
    let input = Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen });
    let d = decide(&control(), &input, NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    assert!(notice_body(&d).contains("ignores the list I keep your blocks in"), "{}", notice_body(&d));
    let after = control().after(&d.changes);
    assert!(kinds(&decide(&after, &input, NOW, &config())).is_empty(), "said once");
    // Blocking every invite is told instead (it says more).
    let all = FilterSeen { stable_present: true, blocks_all: true, ..Default::default() };
    let d = decide(
        &control(),
        &Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen: all }),
        NOW,
        &config(),
    );
    assert!(notice_body(&d).contains("never reach me") && !notice_body(&d).contains("ignores the list"));
}

#[test]
fn a_filter_that_blocks_every_invite_is_told_once() {
    let seen = FilterSeen { blocks_all: true, ..Default::default() };
    let input = Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen });
    let d = decide(&control(), &input, NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    assert!(notice_body(&d).contains("never reach me"));
    let after = control().after(&d.changes);
    assert_eq!(kinds(&decide(&after, &input, NOW, &config())), Vec::<&str>::new());
}

#[test]
fn a_user_id_with_a_glob_character_is_never_written_into_the_filter() {
    let odd = usr("@a*b:remote.org");
    let snapshot = with_filter(control(), &[]);
    let d = decide(&snapshot, &text(ALICE, CONTROL, "block @a*b:remote.org"), NOW, &config());
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutContact { subject, .. } if *subject == odd)));
    assert!(edits(&d).is_empty());
}

#[test]
fn opt_in_and_every_start_publish_the_commands_and_read_the_filter() {
    let d = decide(&control(), &Input::Native(NativeInput::Refresh { owner: uid(ALICE) }), NOW, &config());
    assert_eq!(kinds(&d), ["rule", "put_state", "read_invite_filter"]);
    let Effect::PutPushRule { rule, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!(*rule, rules::control_room(CONTROL, &uid(BOT), Notify::Quiet));
    assert!(rule.conditions.contains(&Match::new("type", "m.room.message")), "no push for the state event");
    let Effect::Native(NativeEffect::PutState { as_user, grant_as, room_id, event_type, state_key, content }) =
        &d.effects[1]
    else {
        unreachable!()
    };
    assert_eq!((as_user, room_id, state_key.as_str()), (&uid(BOT), &rid(CONTROL), BOT));
    assert_eq!(grant_as.as_ref(), Some(&uid(ALICE)), "the owner lets the bot send it where it may not");
    assert_eq!(event_type, "org.matrix.msc4332.commands");
    let content: serde_json::Value = serde_json::from_str(content).unwrap();
    assert_eq!(content, crate::commands::discover::content());
    // In client mode the owner's own account sends it, keyed by itself.
    let d = decide(&control(), &Input::Native(NativeInput::Refresh { owner: uid(ALICE) }), NOW, &client_config());
    let Effect::Native(NativeEffect::PutState { as_user, grant_as, state_key, .. }) = &d.effects[0] else {
        unreachable!()
    };
    assert_eq!((as_user, grant_as, state_key.as_str()), (&uid(ALICE), &None, ALICE));
    // Nobody's: nothing.
    let nobody = Input::Native(NativeInput::Refresh { owner: uid("@bob:example.org") });
    assert_eq!(decide(&control(), &nobody, NOW, &config()), Decision::default());
}

/// The homeserver reads a server's block before Gatekeeper does, so a
/// server is in the filter only while none of its users is allowed: a
/// user-level allow keeps beating a server-level block.
#[test]
fn a_server_is_kept_out_of_the_filter_while_one_of_its_users_is_allowed() {
    let evil = Subject::Server("evil.org".try_into().unwrap());
    let friend = usr("@friend:evil.org");
    let mut snapshot = with_filter(control(), &[]);
    let allowed = Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None };
    snapshot.overview.as_mut().unwrap().contacts.insert(friend.clone(), allowed);
    let d = decide(&snapshot, &text(ALICE, CONTROL, "block *:evil.org"), NOW, &config());
    assert!(edits(&d).is_empty(), "{:?}", edits(&d));
    // Without the allow, the server goes in; allowing one of its users
    // takes it out again.
    let mut blocked = with_filter(control(), &[]);
    blocked.overview.as_mut().unwrap().contacts.insert(evil.clone(), Contact::Blocked { since_ms: 1 });
    let d = decide(&blocked, &text(ALICE, CONTROL, "allow @friend:evil.org"), NOW, &config());
    assert_eq!(edits(&d), [(vec![], vec![evil.clone()])]);
    // Unblocking the allowed user's own block would not bring it back
    // without the overview; a read of the filter puts everything right.
    let mut both = blocked.clone();
    both.overview.as_mut().unwrap().contacts.insert(friend, Contact::Blocked { since_ms: 1 });
    let seen = FilterSeen { blocked: vec![evil.clone()], ..Default::default() };
    let read = Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen });
    assert_eq!(edits(&decide(&both, &read, NOW, &config())), [(vec![usr("@friend:evil.org")], vec![])]);
    let mut allowed_there = blocked.clone();
    allowed_there.overview.as_mut().unwrap().contacts.insert(
        usr("@friend:evil.org"),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
    );
    let seen = FilterSeen { blocked: vec![evil.clone()], ..Default::default() };
    let read = Input::Native(NativeInput::InviteFilterRead { owner: uid(ALICE), seen });
    assert_eq!(edits(&decide(&allowed_there, &read, NOW, &config())), [(vec![], vec![evil])]);
}
