//! Digests, scheduled and asked for, and what a housekeeping tick does with them.

use super::*;

#[test]
fn a_due_digest_is_sent_to_the_control_room_and_marks_everything_digested() {
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    let d = decide(&due_digest(overview.clone(), NOW - 5), &alices_digest(), NOW, &config());
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
    let d = decide(&due_digest(OwnerOverview::default(), NOW - 5), &alices_digest(), NOW, &config());
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
    let d = decide(&snapshot, &alices_digest(), NOW, &config());
    assert_eq!(notice_body(&d), "Nothing new since your last digest.");
    let set = decide(&control(), &text(ALICE, CONTROL, "set empty-digest on"), NOW, &config());
    assert!(set.changes.contains(&StateChange::PutOwner(OwnerState { digest_when_empty: true, ..owner() })));
}

/// What each digest notice says it carries, in order.
fn parts_carried(d: &Decision) -> Vec<DigestPart> {
    d.effects
        .iter()
        .filter_map(|e| match e {
            Effect::SendNotice { digest: Some(part), .. } => Some(part.as_ref().clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_digest_part_set_aside_gives_its_items_back_to_the_next_digest() {
    let mut overview = OwnerOverview::default();
    let group = rid("!group:remote.org");
    overview.held.insert(group.clone(), HeldRoom { name: Some("Deals".into()), ..held_room(false) });
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 2).event_id, "anyone there?"));
    let d = decide(&due_digest(overview.clone(), NOW - 5), &alices_digest(), NOW, &config());
    // The part says what it carries: exactly what the digest marked.
    let carried = parts_carried(&d);
    assert_eq!(carried.len(), 1, "{d:?}");
    let part = carried[0].clone();
    assert_eq!(part.owner, uid(ALICE));
    assert_eq!(part.messages, vec![meta_n(STRANGER, HELD, 1).event_id, meta_n(STRANGER, HELD, 2).event_id]);
    assert_eq!(part.invites, vec![group.clone()]);

    // Committed: everything marked; an older digest's message too.
    let mut after = overview.clone();
    for m in &mut after.deferred {
        m.digested = true;
    }
    let older = Deferred { digested: true, ..captured(&meta_n(STRANGER, HELD, 0).event_id, "earlier") };
    after.deferred.push(older);
    after.held.get_mut(&group).unwrap().digested = true;
    let mut snapshot = with_owner(Snapshot { overview: Some(after.clone()), ..Default::default() });
    let failed = Input::DigestPartFailed { owner: part.owner, messages: part.messages, invites: part.invites };
    assert_eq!(reads(&failed).users, vec![uid(ALICE)]);
    assert_eq!(overview_read(&snapshot, &failed), Some(uid(ALICE)));
    let d = decide(&snapshot, &failed, NOW, &config());
    assert!(d.effects.is_empty());
    let mut expected: Vec<StateChange> = overview.deferred.iter().cloned().map(StateChange::PutDeferred).collect();
    expected.push(StateChange::PutRoom(
        group.clone(),
        RoomState::Held(HeldRoom { digested: false, ..after.held[&group].clone() }),
    ));
    assert_eq!(d.changes, expected, "only what the part carried, the older digest's message stays marked");

    // Once applied, the next digest carries them again.
    snapshot.overview = Some(overview.clone());
    let again = decide(&due_digest(overview, NOW + 5), &alices_digest(), NOW + 10, &config());
    assert!(notice_body(&again).contains("anyone there?"));
    assert_eq!(parts_carried(&again), carried);
    // Heard twice (a replay): nothing is marked any more, nothing changes.
    let twice =
        decide(&with_owner(Snapshot { overview: snapshot.overview, ..Default::default() }), &failed, NOW, &config());
    assert!(twice.is_empty());
}

#[test]
fn scheduled_digests_come_one_owner_per_input_never_with_the_tick() {
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    let snapshot = due_digest(overview, NOW - 5);
    // The tick reads no overview and sends no digest; each owner's input
    // declares that owner's digest, and only theirs.
    assert_eq!(reads(&Input::Tick).due_of, None);
    assert!(decide(&snapshot, &Input::Tick, NOW, &config()).is_empty());
    let bobs = Input::OwnerDue { owner: uid("@bob:example.org") };
    assert_eq!(reads(&bobs).due_of, Some(uid("@bob:example.org")));
    assert!(!reads(&bobs).due);
    assert!(decide(&snapshot, &bobs, NOW, &config()).is_empty());
    assert_eq!(kinds(&decide(&snapshot, &alices_digest(), NOW, &config())), ["notice"]);
}
