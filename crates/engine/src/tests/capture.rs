//! Capturing what strangers write in held rooms: messages, encrypted ones, edits, redactions, late decryptions and repeats.

use super::*;

#[test]
fn the_bots_messages_in_a_held_room_are_not_captured() {
    check(&held(true), &text(BOT, HELD, "hello"), Decision::default());
}

#[test]
fn encrypted_messages_are_captured_as_a_fact() {
    let d = decide(&held(true), &Input::Encrypted { meta: meta(STRANGER, HELD) }, NOW, &config());
    let Some(StateChange::PutDeferred(m)) = d.changes.first() else { panic!() };
    assert!(m.encrypted && m.body.is_empty());
    assert!(notice_body(&d).contains("encrypted"));
}

#[test]
fn edits_replace_the_captured_text_and_only_the_authors_count() {
    let original = meta_n(STRANGER, HELD, 1).event_id;
    let mut snapshot = held(true);
    snapshot.related = vec![captured(&original, "helo")];
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
    snapshot.related = vec![];
    check(&snapshot, &edit(STRANGER), Decision::default());
}

#[test]
fn redactions_remove_the_captured_message() {
    let original = meta_n(STRANGER, HELD, 1).event_id;
    let mut snapshot = held(true);
    snapshot.related = vec![captured(&original, "oops")];
    let redaction = Input::Redaction { meta: meta_n(STRANGER, HELD, 3), redacts: original.clone() };
    check(
        &snapshot,
        &redaction,
        Decision::default().change(StateChange::RemoveDeferred { owner: uid(ALICE), event_id: original }),
    );
    snapshot.related = vec![];
    check(&snapshot, &redaction, Decision::default());
}

#[test]
fn only_the_sender_or_the_owner_removes_a_kept_message_anyone_else_is_noted() {
    let original = meta_n(STRANGER, HELD, 1).event_id;
    let mut snapshot = held(false);
    snapshot.related = vec![captured(&original, "what I said")];
    // Another member of the stranger's room (a moderator, a second account).
    let by_other = Input::Redaction { meta: meta_n("@mod:remote.org", HELD, 3), redacts: original.clone() };
    check(
        &snapshot,
        &by_other,
        Decision::default().change(StateChange::PutDeferred(Deferred {
            redacted_by: Some(uid("@mod:remote.org")),
            ..captured(&original, "what I said")
        })),
    );
    // `show` says who removed it.
    let shown = texts::show_item(&Deferred { redacted_by: Some(uid("@mod:remote.org")), ..captured(&original, "x") });
    assert!(shown.plain.contains("removed from the room by @mod:remote.org, not by its sender"), "{}", shown.plain);
    // The owner removing it is the owner's choice.
    let by_owner = Input::Redaction { meta: meta_n(ALICE, HELD, 4), redacts: original.clone() };
    check(
        &snapshot,
        &by_owner,
        Decision::default().change(StateChange::RemoveDeferred { owner: uid(ALICE), event_id: original }),
    );
}

#[test]
fn a_late_decryption_fills_in_the_capture_without_a_second_reply() {
    let m = meta(STRANGER, HELD);
    let mut snapshot = held(true);
    snapshot.related = vec![Deferred {
        msgtype: "m.room.encrypted".into(),
        body: String::new(),
        encrypted: true,
        digested: true,
        ..captured(&m.event_id, "")
    }];
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
    // Without the earlier capture (redacted, pruned, decided on since, or
    // never kept past a bound) there is nothing to complete: nothing is
    // captured anew, and nothing answered.
    let d = decide(&held(true), &late, NOW, &client_config());
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn a_message_delivered_twice_is_captured_and_answered_once() {
    let input = text(STRANGER, HELD, "hello");
    let first = decide(&held(true), &input, NOW, &config());
    assert!(kinds(&first).contains(&"notice"));
    // The backfill brings the same event again: nothing more happens.
    let mut snapshot = held(true);
    snapshot.related = vec![captured(&meta(STRANGER, HELD).event_id, "hello")];
    assert_eq!(decide(&snapshot, &input, NOW, &config()), Decision::default());
    let encrypted = Input::Encrypted { meta: meta(STRANGER, HELD) };
    assert_eq!(decide(&snapshot, &encrypted, NOW, &config()), Decision::default());
}

#[test]
fn a_capture_is_stamped_with_gatekeepers_clock_whatever_the_sender_claims() {
    for claimed in [0, NOW - 400 * 86_400_000, u64::MAX / 2] {
        let mut input = text(STRANGER, HELD, "hi");
        if let Input::Message { meta, .. } = &mut input {
            meta.ts_ms = claimed;
        }
        let d = decide(&held(true), &input, NOW, &config());
        let Some(StateChange::PutDeferred(m)) = d.changes.first() else { panic!("not captured: {d:?}") };
        assert_eq!((m.ts_ms, m.received_ms), (claimed, NOW));
        let encrypted = decide(&held(true), &Input::Encrypted { meta: meta_n(STRANGER, HELD, 3) }, NOW, &config());
        let Some(StateChange::PutDeferred(m)) = encrypted.changes.first() else { panic!() };
        assert_eq!(m.received_ms, NOW);
    }
}
