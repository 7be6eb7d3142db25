//! `undo`: the owner's last decision (allow, deny, block, `… all`, from a
//! command or an e-mailed link) taken back within a day; the history is
//! bounded.

use super::*;
use crate::links::LinkAction;
use crate::undo::{KEEP_MS, MAX_HISTORY};

/// `snapshot` (a control-room one) with `d`'s changes applied to its owner
/// and overview, as the store would.
fn apply(mut s: Snapshot, d: &Decision) -> Snapshot {
    let mut overview = s.overview.take().unwrap_or_default();
    for change in &d.changes {
        match change.clone() {
            StateChange::PutOwner(o) => {
                s.owners.insert(o.user_id.clone(), o);
            }
            StateChange::PutRoom(room, RoomState::Held(h)) => {
                overview.held.insert(room, h);
            }
            StateChange::RemoveRoom { room, .. } => {
                overview.held.remove(&room);
            }
            StateChange::PutContact { subject, contact, .. } => {
                overview.contacts.insert(subject, contact);
            }
            StateChange::RemoveContact { subject, .. } => {
                overview.contacts.remove(&subject);
            }
            StateChange::PutDeferred(m) => {
                overview.deferred.retain(|x| x.event_id != m.event_id);
                overview.denied.retain(|x| x.event_id != m.event_id);
                if m.denied_ms.is_some() { overview.denied.push(m) } else { overview.deferred.push(m) }
            }
            StateChange::RemoveDeferred { event_id, .. } => {
                overview.deferred.retain(|x| x.event_id != event_id);
            }
            _ => {}
        }
    }
    overview.deferred.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    s.overview = Some(overview);
    s
}

fn command(s: &Snapshot, body: &str, n: u32, at: u64) -> Decision {
    decide(s, &msg_n(ALICE, CONTROL, "m.text", body, n), at, &config())
}

fn sorted(mut o: OwnerOverview) -> OwnerOverview {
    o.deferred.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    o
}

#[test]
fn undo_after_deny_brings_the_messages_back_as_pending() {
    let before = with_pending_stranger();
    let denied = command(&before, "deny 1", 1, NOW);
    assert!(notice_body(&denied).contains("`undo`"), "{}", notice_body(&denied));
    let after_deny = apply(before.clone(), &denied);
    let overview = after_deny.overview.clone().unwrap();
    assert!(overview.deferred.is_empty() && overview.denied.len() == 2, "kept a day, shown nowhere");
    assert!(overview.denied.iter().all(|m| m.denied_ms == Some(NOW)));
    assert!(notice_body(&command(&after_deny, "pending", 2, NOW)).contains("@other:remote.org"));
    assert!(!notice_body(&command(&after_deny, "pending", 2, NOW)).contains(STRANGER));

    let undone = command(&after_deny, "undo", 3, NOW + 1000);
    let said = notice_body(&undone);
    assert!(said.contains("Took back denying @stranger:remote.org") && said.contains("2 message"), "{said}");
    let after_undo = apply(after_deny, &undone);
    let overview = after_undo.overview.clone().unwrap();
    assert_eq!(sorted(overview.clone()).deferred, sorted(before.overview.clone().unwrap()).deferred);
    assert!(overview.denied.is_empty());
    assert!(after_undo.owners[&uid(ALICE)].undo.is_empty());
    assert!(notice_body(&command(&after_undo, "pending", 4, NOW + 2000)).contains(STRANGER));
    // Nothing is left to undo.
    assert!(notice_body(&command(&after_undo, "undo", 5, NOW + 3000)).contains("Nothing to undo"));
}

#[test]
fn undo_after_block_lets_their_next_invite_be_held_again() {
    let blocked = command(&with_pending_stranger(), "block 1", 1, NOW);
    let after_block = apply(with_pending_stranger(), &blocked);
    assert!(matches!(
        after_block.overview.as_ref().unwrap().contacts.get(&usr(STRANGER)),
        Some(Contact::Blocked { .. })
    ));
    let undone = command(&after_block, "undo", 2, NOW + 1);
    assert!(undone.changes.contains(&StateChange::RemoveContact { owner: uid(ALICE), subject: usr(STRANGER) }));
    assert!(notice_body(&undone).contains("Took back blocking"));
    let after = apply(after_block, &undone);
    assert!(after.overview.as_ref().unwrap().contacts.is_empty());
    assert_eq!(after.overview.as_ref().unwrap().deferred.len(), 2);
    // Their next invite: held, not declined.
    let invite = member(STRANGER, "!new:remote.org", ALICE, Membership::Invite, true);
    let d = decide(&with_owner(Snapshot::default()), &invite, NOW + 2, &config());
    assert!(d.outcomes.contains(&Outcome::InviteHeld));
}

#[test]
fn undo_after_block_of_an_allowed_sender_gives_them_their_ringing_rule_back() {
    let mut s = with_pending_stranger();
    let allowed = Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None };
    s.overview.as_mut().unwrap().contacts.insert(usr(STRANGER), allowed.clone());
    let after = apply(s.clone(), &command(&s, &format!("block {STRANGER}"), 1, NOW));
    let undone = command(&after, "undo", 2, NOW + 1);
    assert!(undone.changes.contains(&StateChange::PutContact {
        owner: uid(ALICE),
        subject: usr(STRANGER),
        contact: allowed
    }));
    assert!(
        undone
            .effects
            .contains(&Effect::PutPushRule { owner: uid(ALICE), rule: rules::allow(&uid(ALICE), &usr(STRANGER)) })
    );
}

#[test]
fn undo_after_allow_holds_the_released_rooms_again() {
    let allowed = command(&with_pending_stranger(), "allow 1", 1, NOW);
    let after_allow = apply(with_pending_stranger(), &allowed);
    assert!(!after_allow.overview.as_ref().unwrap().held.contains_key(&rid(HELD)));
    let undone = command(&after_allow, "undo", 2, NOW + 1);
    assert!(undone.changes.contains(&StateChange::PutRoom(rid(HELD), RoomState::Held(held_room(true)))));
    assert!(undone.changes.contains(&StateChange::RemoveContact { owner: uid(ALICE), subject: usr(STRANGER) }));
    assert!(undone.effects.contains(&Effect::PutPushRule { owner: uid(ALICE), rule: rules::held_room(HELD) }));
    assert!(undone.effects.contains(&Effect::SetTag {
        owner: uid(ALICE),
        room_id: rid(HELD),
        tag: "m.lowpriority".into(),
        present: true
    }));
    assert!(undone.effects.contains(&Effect::DeletePushRule {
        owner: uid(ALICE),
        rule_id: rules::allow_id(&usr(STRANGER)),
        room: None
    }));
    // The silence comes before the tag, in the room's lane.
    let silence = undone.effects.iter().position(|e| matches!(e, Effect::PutPushRule { .. })).unwrap();
    let tag = undone.effects.iter().position(|e| matches!(e, Effect::SetTag { .. })).unwrap();
    assert!(silence < tag);
    assert!(notice_body(&undone).contains("holding 1 room"));
}

#[test]
fn a_second_undo_goes_one_further_back_and_a_day_on_nothing_is_left() {
    let s0 = with_pending_stranger();
    let s1 = apply(s0.clone(), &command(&s0, "deny 1", 1, NOW));
    let s2 = apply(s1.clone(), &command(&s1, "block @other:remote.org", 2, NOW + 10));
    assert_eq!(s2.owners[&uid(ALICE)].undo.len(), 2);
    let u1 = command(&s2, "undo", 3, NOW + 20);
    assert!(notice_body(&u1).contains("Took back blocking @other:remote.org"), "{}", notice_body(&u1));
    assert!(notice_body(&u1).contains("1 more"));
    let s3 = apply(s2.clone(), &u1);
    let u2 = command(&s3, "undo", 4, NOW + 30);
    assert!(notice_body(&u2).contains("Took back denying @stranger:remote.org"), "{}", notice_body(&u2));
    // A day after the decisions, none can be undone.
    assert!(notice_body(&command(&s2, "undo", 5, NOW + 10 + KEEP_MS)).contains("Nothing to undo"));
}

#[test]
fn the_history_is_bounded_and_stamps_never_repeat() {
    let mut s = with_pending_stranger();
    for n in 0..(MAX_HISTORY as u32 + 5) {
        let d = command(&s, &format!("block @x{n}:remote.org"), n, NOW);
        s = apply(s, &d);
    }
    let undo = &s.owners[&uid(ALICE)].undo;
    assert_eq!(undo.len(), MAX_HISTORY);
    let stamps: std::collections::BTreeSet<u64> = undo.iter().map(|u| u.at_ms).collect();
    assert_eq!(stamps.len(), MAX_HISTORY, "decisions in the same millisecond get their own stamps");
    // A day on, the next decision forgets every expired one.
    let d = command(&s, "block @late:remote.org", 99, NOW + 2 * KEEP_MS);
    assert_eq!(apply(s, &d).owners[&uid(ALICE)].undo.len(), 1);
}

#[test]
fn deny_all_and_block_all_act_on_everyone_pending_as_one_decision() {
    let s = with_pending_stranger();
    let d = command(&s, "deny all", 1, NOW);
    let said = notice_body(&d);
    assert!(said.contains("2 sender"), "{said}");
    assert_eq!(d.changes.iter().filter(|c| matches!(c, StateChange::RemoveRoom { .. })).count(), 2);
    let after = apply(s.clone(), &d);
    assert_eq!(after.owners[&uid(ALICE)].undo.len(), 1);
    assert_eq!(after.owners[&uid(ALICE)].undo[0].subjects.len(), 2);
    let undone = command(&after, "undo", 2, NOW + 1);
    assert!(notice_body(&undone).contains(STRANGER) && notice_body(&undone).contains("@other:remote.org"));
    assert_eq!(apply(after, &undone).overview.unwrap().deferred.len(), 2);

    let d = command(&s, "BLOCK ALL", 3, NOW);
    assert!(notice_body(&d).starts_with("Blocked everyone pending: 2"), "{}", notice_body(&d));
    assert_eq!(d.changes.iter().filter(|c| matches!(c, StateChange::PutContact { .. })).count(), 2);
    assert!(notice_body(&command(&control(), "deny all", 4, NOW)).contains("Nobody is waiting"));
}

#[test]
fn an_emailed_links_decision_can_be_undone_by_its_own_undo_link_only() {
    let s = with_pending_stranger();
    let used = |action, nonce: &str, subject: Option<Subject>| Input::LinkUsed {
        owner: uid(ALICE),
        action,
        subject,
        nonce: nonce.into(),
    };
    let d = decide(&s, &used(LinkAction::Deny, "n1", Some(usr(STRANGER))), NOW, &config());
    let after = apply(s, &d);
    assert_eq!(after.owners[&uid(ALICE)].undo[0].link.as_deref(), Some("n1"));
    // Another link's undo changes nothing.
    let other = decide(&after, &used(LinkAction::Undo, "undo.n2", None), NOW + 1, &config());
    assert!(notice_body(&other).contains("Nothing to undo"));
    assert!(other.changes.is_empty());
    let undone = decide(&after, &used(LinkAction::Undo, "undo.n1", None), NOW + 1, &config());
    assert!(notice_body(&undone).contains("Took back denying"), "{}", notice_body(&undone));
    assert_eq!(apply(after.clone(), &undone).overview.unwrap().deferred.len(), 2);
    // Past the day, its undo link does nothing.
    let late = decide(&after, &used(LinkAction::Undo, "undo.n1", None), NOW + KEEP_MS, &config());
    assert!(late.changes.is_empty());
}
