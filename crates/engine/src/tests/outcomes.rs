//! What a decision reports it amounted to (`Decision::outcomes`), which
//! metrics count instead of re-deriving it.

use super::*;

fn outcomes(snapshot: &Snapshot, input: &Input) -> Vec<Outcome> {
    decide(snapshot, input, NOW, &config()).outcomes
}

fn notices(d: &Decision) -> usize {
    d.effects.iter().filter(|e| matches!(e, Effect::SendNotice { .. })).count()
}

/// A held DM whose owner has used up this hour's replies.
fn capped() -> Snapshot {
    let mut s = held(true);
    let o =
        OwnerState { reply_window_start_ms: NOW - 60_000, replies_in_window: config().max_replies_per_hour, ..owner() };
    s.owners.insert(uid(ALICE), o);
    s
}

#[test]
fn a_held_invite_reports_invite_held() {
    let invite = member(STRANGER, HELD, ALICE, Membership::Invite, true);
    assert_eq!(outcomes(&with_owner(Snapshot::default()), &invite), [Outcome::InviteHeld]);
    // Not for an invite that is let through or was held already.
    let mut allowed = with_owner(Snapshot::default());
    allowed.contacts.insert(
        (uid(ALICE), usr(STRANGER)),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
    );
    assert_eq!(outcomes(&allowed, &invite), []);
    assert_eq!(outcomes(&held(true), &invite), []);
}

#[test]
fn a_strangers_first_dm_message_reports_captured_and_reply_sent() {
    assert_eq!(outcomes(&held(true), &text(STRANGER, HELD, "hi")), [Outcome::MessageCaptured, Outcome::ReplySent]);
    let encrypted = Input::Encrypted { meta: meta(STRANGER, HELD) };
    assert_eq!(outcomes(&held(true), &encrypted), [Outcome::MessageCaptured, Outcome::ReplySent]);
}

#[test]
fn a_reply_held_back_by_the_hourly_cap_or_the_interval_reports_reply_suppressed() {
    let d = decide(&capped(), &text(STRANGER, HELD, "hi"), NOW, &config());
    assert_eq!(d.outcomes, [Outcome::MessageCaptured, Outcome::ReplySuppressed]);
    assert_eq!(notices(&d), 0);
    let mut recent = held(true);
    recent
        .strangers
        .insert((uid(ALICE), uid(STRANGER)), StrangerState { last_reply_ms: Some(NOW - 60_000), ..Default::default() });
    let d = decide(&recent, &text(STRANGER, HELD, "hi"), NOW, &config());
    assert_eq!(d.outcomes, [Outcome::MessageCaptured, Outcome::ReplySuppressed]);
    assert_eq!(notices(&d), 0);
}

#[test]
fn a_message_in_a_dm_answered_already_is_captured_without_a_reply_outcome() {
    let mut answered = held(true);
    answered.rooms = vec![RoomState::Held(HeldRoom { replied: true, ..held_room(true) })];
    assert_eq!(outcomes(&answered, &text(STRANGER, HELD, "again")), [Outcome::MessageCaptured]);
}

#[test]
fn a_strangers_notice_is_captured_and_never_counted_as_a_suppressed_reply() {
    let notice = msg_n(STRANGER, HELD, "m.notice", "I am a bot", 0);
    // Even where a reply would have been held back: a notice is never answered.
    for snapshot in [held(true), capped()] {
        assert_eq!(outcomes(&snapshot, &notice), [Outcome::MessageCaptured]);
    }
}

#[test]
fn a_message_in_a_held_group_room_is_captured_with_no_reply_outcome() {
    assert_eq!(outcomes(&held(false), &text(STRANGER, HELD, "hi all")), [Outcome::MessageCaptured]);
}

#[test]
fn a_digest_reports_how_many_notices_it_queued() {
    let mut small = OwnerOverview::default();
    small.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    let d = decide(&due_digest(small, NOW - 5), &alices_digest(), NOW, &config());
    assert_eq!(d.outcomes, [Outcome::DigestSent { notices: 1 }]);
    assert_eq!(notices(&d), 1);

    // Big enough to be split into several notices.
    let mut big = OwnerOverview::default();
    for n in 0..400 {
        let mut m = captured(&meta_n(&format!("@s{n}:remote.org"), HELD, n).event_id, &"lorem ipsum ".repeat(40));
        m.sender = uid(&format!("@s{n}:remote.org"));
        big.deferred.push(m);
    }
    let d = decide(&due_digest(big, NOW - 5), &alices_digest(), NOW, &config());
    assert!(notices(&d) > 1, "{}", notices(&d));
    assert_eq!(d.outcomes, [Outcome::DigestSent { notices: notices(&d) }]);

    // Asked for with nothing new: the one-line answer is the digest.
    let d = decide(&control(), &text(ALICE, CONTROL, "digest"), NOW, &config());
    assert_eq!(d.outcomes, [Outcome::DigestSent { notices: 1 }]);
    // A scheduled digest with nothing new sends nothing, and says so.
    let d = decide(&due_digest(OwnerOverview::default(), NOW - 5), &alices_digest(), NOW, &config());
    assert_eq!((d.outcomes.as_slice(), notices(&d)), (&[][..], 0));
}

#[test]
fn commands_and_the_owners_own_messages_report_no_outcome() {
    assert_eq!(outcomes(&control(), &text(ALICE, CONTROL, "pending")), []);
    assert_eq!(outcomes(&held(true), &text(ALICE, HELD, "hi, sure")), []);
}
