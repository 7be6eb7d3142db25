//! Digests, scheduled and asked for, and what a housekeeping tick does with them.

use super::*;

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

#[test]
fn an_empty_digest_can_say_so_in_one_line() {
    let mut snapshot = due_digest(OwnerOverview::default(), NOW - 5);
    snapshot.due.as_mut().unwrap().digests[0].owner.digest_when_empty = true;
    let d = decide(&snapshot, &Input::Tick, NOW, &config());
    assert_eq!(notice_body(&d), "Nothing new since your last digest.");
    let set = decide(&control(), &text(ALICE, CONTROL, "set empty-digest on"), NOW, &config());
    assert!(set.changes.contains(&StateChange::PutOwner(OwnerState { digest_when_empty: true, ..owner() })));
}
