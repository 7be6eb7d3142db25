//! Urgent messages: off by default, `urgent:` at the very start, once per
//! stranger per period, a few per owner per day, never for a wave, the
//! stranger told either way (once), the message kept regardless.

use super::*;
use crate::urgent::{DAY_MS, marked};

fn urgent_owner() -> OwnerState {
    OwnerState { urgent: true, ..owner() }
}

/// A held DM of the stranger's, with Alice's urgent messages on (or not).
fn held_with(owner: OwnerState) -> Snapshot {
    let mut s = held(true);
    s.owners.insert(uid(ALICE), owner);
    s
}

fn urgent_text(body: &str) -> Input {
    text(STRANGER, HELD, body)
}

/// The notice in Alice's control room, if any.
fn to_owner(d: &Decision) -> Option<(&str, bool)> {
    d.effects.iter().find_map(|e| match e {
        Effect::SendNotice { room_id, body, urgent, .. } if room_id.as_str() == CONTROL => {
            Some((body.as_str(), *urgent))
        }
        _ => None,
    })
}

/// What the stranger is told about their urgent message, if anything.
fn told(d: &Decision) -> Option<&str> {
    d.effects.iter().find_map(|e| match e {
        Effect::SendNotice { room_id, txn_id, body, only_with, .. }
            if room_id.as_str() == HELD && txn_id.starts_with("gk.urgent.") =>
        {
            assert_eq!(only_with.as_ref(), Some(&uid(STRANGER)), "only where it is the two of them");
            Some(body.as_str())
        }
        _ => None,
    })
}

fn captures(d: &Decision) -> usize {
    d.changes.iter().filter(|c| matches!(c, StateChange::PutDeferred(_))).count()
}

#[test]
fn urgent_is_matched_at_the_very_start_in_any_case_after_spaces() {
    for yes in ["urgent: hi", "URGENT:hi", "  \n\tUrGeNt: x", "urgent:"] {
        assert!(marked(yes).is_some(), "{yes:?}");
    }
    for no in ["not urgent: hi", "urgent hi", "urgent :x", "\u{200b}urgent: x", "„urgent: x", "urgen", ""] {
        assert_eq!(marked(no), None, "{no:?}");
    }
    assert_eq!(marked("Urgent: rest"), Some(" rest"));
}

#[test]
fn urgent_is_off_by_default_and_the_message_waits_like_any_other() {
    let d = decide(&held(true), &urgent_text("urgent: the server is down"), NOW, &config());
    assert_eq!(to_owner(&d), None);
    assert_eq!(told(&d), None);
    assert_eq!(captures(&d), 1);
    assert!(!notice_body(&d).contains("urgent:"), "the reply says nothing of urgent while it is off");
}

#[test]
fn an_urgent_message_reaches_the_owner_at_once_with_sound_and_the_room_stays_held() {
    let d = decide(
        &held_with(urgent_owner()),
        &urgent_text("Urgent: Server down\nThe <b>prod</b> database\nis on fire"),
        NOW,
        &config(),
    );
    let (body, ring) = to_owner(&d).expect("a notice to the owner");
    assert!(ring, "marked for the urgent push rule");
    assert!(body.contains(STRANGER), "{body}");
    assert!(body.contains("Subject: Server down"), "{body}");
    assert!(body.contains("The <b>prod</b> database\nis on fire"), "{body}");
    let html = d
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::SendNotice { room_id, html, .. } if room_id.as_str() == CONTROL => Some(html.clone()),
            _ => None,
        })
        .unwrap();
    assert!(!html.contains("<b>prod"), "the sender's words are escaped: {html}");
    assert!(told(&d).unwrap().contains("passed on"), "{d:?}");
    assert_eq!(captures(&d), 1, "still kept for the digest");
    assert!(!d.changes.iter().any(|c| matches!(c, StateChange::RemoveRoom { .. })), "the room stays held");
    assert!(d.outcomes.contains(&Outcome::UrgentSent));
    // Counted on the stranger and the owner, in the same decision; the
    // etiquette reply's own writes keep those counts.
    let stranger = d.changes.iter().rev().find_map(|c| match c {
        StateChange::PutStranger { state, .. } => Some(state.clone()),
        _ => None,
    });
    assert_eq!(stranger.as_ref().and_then(|s| s.urgent_ms), Some(NOW));
    assert_eq!(stranger.and_then(|s| s.last_reply_ms), Some(NOW));
    let owner = d.changes.iter().rev().find_map(|c| match c {
        StateChange::PutOwner(o) => Some(o.clone()),
        _ => None,
    });
    assert_eq!(owner.map(|o| o.urgent_sent), Some(vec![NOW]));
    // The reply tells of the one way through.
    let reply = d
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::SendNotice { txn_id, body, .. } if txn_id.starts_with("gk.etiquette.") => Some(body.clone()),
            _ => None,
        })
        .unwrap();
    assert!(reply.contains("\"urgent:\""), "{reply}");
}

#[test]
fn a_second_urgent_message_from_the_same_stranger_within_the_period_is_kept_not_passed_on() {
    let mut s = held_with(urgent_owner());
    s.strangers.insert(
        (uid(ALICE), uid(STRANGER)),
        StrangerState { urgent_ms: Some(NOW - 29 * DAY_MS), last_reply_ms: Some(NOW - DAY_MS), ..Default::default() },
    );
    let d = decide(&s, &urgent_text("urgent: again"), NOW, &config());
    assert_eq!(to_owner(&d), None);
    assert_eq!(captures(&d), 1);
    assert!(told(&d).unwrap().contains("could not be passed on"));
    assert!(!d.outcomes.contains(&Outcome::UrgentSent));
    // Told once: trying again says nothing more.
    s.strangers.insert(
        (uid(ALICE), uid(STRANGER)),
        StrangerState { urgent_ms: Some(NOW - 29 * DAY_MS), urgent_refused_ms: Some(NOW - 1), ..Default::default() },
    );
    let d = decide(&s, &urgent_text("urgent: and again"), NOW, &config());
    assert_eq!((to_owner(&d), told(&d)), (None, None));
    assert_eq!(captures(&d), 1);
    // After the period, it goes through again.
    s.strangers.insert(
        (uid(ALICE), uid(STRANGER)),
        StrangerState { urgent_ms: Some(NOW - 30 * DAY_MS), ..Default::default() },
    );
    assert!(to_owner(&decide(&s, &urgent_text("urgent: a month on"), NOW, &config())).is_some());
}

#[test]
fn the_owner_gets_at_most_their_daily_number() {
    let full = OwnerState { urgent_sent: vec![NOW - 3, NOW - 2, NOW - 1], ..urgent_owner() };
    let d = decide(&held_with(full), &urgent_text("urgent: fourth today"), NOW, &config());
    assert_eq!(to_owner(&d), None);
    assert!(told(&d).unwrap().contains("could not be passed on"));
    // A day on, the old ones no longer count (and are forgotten).
    let yesterday = OwnerState { urgent_sent: vec![NOW - DAY_MS, NOW - DAY_MS, NOW - DAY_MS], ..urgent_owner() };
    let d = decide(&held_with(yesterday), &urgent_text("urgent: today"), NOW, &config());
    assert!(to_owner(&d).is_some());
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutOwner(o) if o.urgent_sent == vec![NOW])));
    // The owner's own number, within bounds.
    let one = OwnerState { urgent_per_day: Some(1), urgent_sent: vec![NOW - 5], ..urgent_owner() };
    assert_eq!(to_owner(&decide(&held_with(one), &urgent_text("urgent: x"), NOW, &config())), None);
}

#[test]
fn a_wave_sender_never_gets_through_and_is_told_nothing() {
    let mut s = held_with(urgent_owner());
    s.rooms = vec![RoomState::Held(HeldRoom { wave: Some(WaveKind::Sender), ..held_room(true) })];
    let d = decide(&s, &urgent_text("urgent: buy now"), NOW, &config());
    assert_eq!((to_owner(&d), told(&d)), (None, None));
    assert_eq!(captures(&d), 1);
}

#[test]
fn only_the_inviter_of_a_held_direct_chat_with_a_new_kept_text_message() {
    let s = held_with(urgent_owner());
    // A group room: no reply told them of it, and others are listening.
    let mut group = s.clone();
    group.rooms = vec![RoomState::Held(held_room(false))];
    assert_eq!(to_owner(&decide(&group, &urgent_text("urgent: x"), NOW, &config())), None);
    // A notice (a bot) or an emote.
    for msgtype in ["m.notice", "m.emote"] {
        let d = decide(&s, &msg_n(STRANGER, HELD, msgtype, "urgent: x", 0), NOW, &config());
        assert_eq!(to_owner(&d), None, "{msgtype}");
    }
    // The same event again (a replay, a backfill): already captured.
    let mut again = s.clone();
    again.related = vec![captured(&meta(STRANGER, HELD).event_id, "urgent: x")];
    assert_eq!(decide(&again, &urgent_text("urgent: x"), NOW, &config()), Decision::default());
    // An edit into `urgent:` is not a new message.
    let mut edit = s.clone();
    edit.related = vec![captured(&meta_n(STRANGER, HELD, 9).event_id, "hello")];
    let input = Input::Message {
        meta: meta_n(STRANGER, HELD, 10),
        msgtype: "m.text".into(),
        body: "* urgent: x".into(),
        html: None,
        media: None,
        replaces: Some(Replacement {
            original: meta_n(STRANGER, HELD, 9).event_id,
            body: "urgent: x".into(),
            html: None,
        }),
    };
    assert_eq!(to_owner(&decide(&edit, &input, NOW, &config())), None);
    // Past the stranger's bound the message is only counted: nothing urgent.
    let mut full = s.clone();
    full.kept_with.insert((uid(ALICE), uid(STRANGER)), Kept { held_rooms: 1, messages: 1_000 });
    assert_eq!(to_owner(&decide(&full, &urgent_text("urgent: x"), NOW, &config())), None);
}

#[test]
fn an_urgent_message_is_mailed_at_once_to_a_verified_address_with_a_fixed_subject() {
    let config = EngineConfig { mail_secret: Some(gatekeeper_common::Secret::new("k".repeat(40))), ..config() };
    let owner = OwnerState { email: Some("alice@example.org".into()), ..urgent_owner() };
    let d = decide(&held_with(owner), &urgent_text("urgent: Bcc: x@y.org\r\nhello"), NOW, &config);
    let mail = d.effects.iter().find_map(|e| match e {
        Effect::SendEmail { to, subject, text, .. } => Some((to.clone(), subject.clone(), text.clone())),
        _ => None,
    });
    let (to, subject, text) = mail.expect("an e-mail");
    assert_eq!(to, "alice@example.org");
    assert_eq!(subject, texts::urgent_email_subject(), "nothing the sender wrote reaches a header");
    assert!(text.contains("Bcc: x@y.org"), "{text}");
    // No verified address: no mail.
    let pending_only = OwnerState { email_unconfirmed: Some("alice@example.org".into()), ..urgent_owner() };
    let d = decide(&held_with(pending_only), &urgent_text("urgent: x"), NOW, &config);
    assert!(!kinds(&d).contains(&"mail"));
}

#[test]
fn set_urgent_puts_a_ringing_rule_above_the_control_rooms_and_off_removes_it() {
    let d = decide(&control(), &text(ALICE, CONTROL, "set urgent on"), NOW, &config());
    let rule = rules::urgent(CONTROL, &uid(BOT));
    assert_eq!(rule.before.as_deref(), Some(rules::CONTROL));
    assert_eq!(rule.actions, RuleActions::Ring);
    assert!(d.effects.contains(&Effect::PutPushRule { owner: uid(ALICE), rule }));
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutOwner(o) if o.urgent)));
    let mut on = control();
    on.owners.insert(uid(ALICE), urgent_owner());
    let d = decide(&on, &text(ALICE, CONTROL, "set urgent off"), NOW, &config());
    assert!(d.effects.contains(&Effect::DeletePushRule {
        owner: uid(ALICE),
        rule_id: rules::URGENT.into(),
        room: None
    }));
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutOwner(o) if !o.urgent)));
    // The limits are the owner's, within bounds.
    for (input, ok) in [
        ("set urgent-per-day 5", true),
        ("set urgent-per-day 0", false),
        ("set urgent-per-day 21", false),
        ("set urgent-per-sender 7d", true),
        ("set urgent-per-sender 1h", false),
        ("set urgent maybe", false),
    ] {
        let d = decide(&control(), &text(ALICE, CONTROL, input), NOW, &config());
        assert_eq!(d.changes.iter().any(|c| matches!(c, StateChange::PutOwner(_))), ok, "{input}");
    }
}

#[test]
fn in_client_mode_the_notice_is_not_marked_and_no_rule_is_set() {
    let config = client_config();
    let mut s = held_with(urgent_owner());
    s.owners.insert(uid(ALICE), urgent_owner());
    let d = decide(&s, &urgent_text("urgent: x"), NOW, &config);
    assert_eq!(to_owner(&d).map(|(_, ring)| ring), Some(false));
    let d = decide(&control(), &text(ALICE, CONTROL, "set urgent on"), NOW, &config);
    assert_eq!(kinds(&d), ["notice"]);
}

#[test]
fn while_paused_rooms_held_before_stay_held_and_urgent_still_gets_through() {
    // A pause lets new invitations ring; a room held before it stays held,
    // so its urgent message is the owner's one way to hear of it at once.
    let paused = OwnerState { paused_until_ms: Some(NOW + DAY_MS), ..urgent_owner() };
    let d = decide(&held_with(paused), &urgent_text("urgent: the van is at your door"), NOW, &config());
    let (body, ring) = to_owner(&d).expect("a notice to the owner while paused");
    assert!(ring && body.contains("the van is at your door"), "{body}");
    assert!(told(&d).unwrap().contains("passed on"));
    assert_eq!(captures(&d), 1);
}
