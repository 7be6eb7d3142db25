//! One behavioural suite that every store backend must pass. A backend's
//! test module calls `store_conformance!(factory)`, where `factory` is a
//! function returning the store and a guard that keeps its files alive.

use ruma::{owned_room_id, owned_user_id};

use super::*;
use crate::engine::{
    AllowSource, Contact, Deferred, HeldRoom, RoomState, SharedRooms, StateChange, StrangerState, Subject, Unreadable,
    WaveKey, WaveKind, WaveRecord,
};

pub fn sample_decision() -> Decision {
    Decision {
        changes: vec![
            StateChange::PutOwner(OwnerState {
                displayname: Some("Alice".into()),
                reply_template: Some("Hi {name}".into()),
                replies_in_window: 2,
                ..OwnerState::new(owned_user_id!("@alice:example.org"), owned_room_id!("!dm:example.org"), 7)
            }),
            StateChange::PutRoom(
                owned_room_id!("!dm:example.org"),
                RoomState::Control { owner: owned_user_id!("@alice:example.org") },
            ),
        ],
        effects: vec![
            Effect::Join {
                as_user: owned_user_id!("@gatekeeper:example.org"),
                room_id: owned_room_id!("!dm:example.org"),
            },
            Effect::SendNotice {
                as_user: owned_user_id!("@gatekeeper:example.org"),
                room_id: owned_room_id!("!dm:example.org"),
                txn_id: "gk.test".into(),
                body: "hi".into(),
                html: "<p>hi</p>".into(),
                digest: None,
                only_with: None,
                urgent: false,
            },
        ],
        outcomes: vec![],
    }
}

const E1: &[u8] = br#"{"event_id":"$1","unsigned":{"age":1}}"#;
const E1_LATER: &[u8] = br#"{"event_id":"$1","unsigned":{"age":900}}"#;
const E2: &[u8] = br#"{"event_id":"$2"}"#;

pub fn new_transaction_fills_the_inbox_in_order(s: &dyn Store) {
    assert_eq!(s.accept_transaction("t1", &[E1, E2], 1).unwrap(), Accepted::New { events: 2 });
    let batch = s.inbox_batch(10).unwrap();
    assert_eq!(batch.iter().map(|i| i.raw.as_slice()).collect::<Vec<_>>(), vec![E1, E2]);
    assert!(batch[0].seq < batch[1].seq);
    s.accept_transaction("t2", &[E2], 2).unwrap();
    assert_eq!(s.inbox_batch(10).unwrap().len(), 3);
    assert_eq!(s.inbox_batch(1).unwrap()[0].raw, E1);
    let st = s.stats().unwrap();
    assert_eq!((st.transactions, st.events_received, st.inbox_pending), (2, 3, 3));
}

/// A batch read stops at its count or once its events hold the bytes
/// asked for (the one that reaches them is read, so one always is), also
/// inside a stored transaction.
pub fn a_batch_read_is_bounded_by_count_and_bytes(s: &dyn Store) {
    let events: Vec<Vec<u8>> =
        (0..6).map(|i| format!(r#"{{"event_id":"${i}","pad":"{}"}}"#, "p".repeat(90)).into_bytes()).collect();
    let size = events[0].len();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    s.accept_transaction("big", &refs[..4], 1).unwrap();
    s.accept_transaction("more", &refs[4..], 2).unwrap();
    let raws = |items: Vec<InboxItem>| items.into_iter().map(|i| i.raw).collect::<Vec<_>>();
    assert_eq!(raws(s.inbox_batch_within(10, usize::MAX).unwrap()), events);
    assert_eq!(raws(s.inbox_batch_within(10, 1).unwrap()), events[..1]);
    assert_eq!(raws(s.inbox_batch_within(10, size).unwrap()), events[..1]);
    assert_eq!(raws(s.inbox_batch_within(10, size + 1).unwrap()), events[..2]);
    assert_eq!(raws(s.inbox_batch_within(10, 4 * size + 1).unwrap()), events[..5]);
    assert_eq!(raws(s.inbox_batch_within(3, 100 * size).unwrap()), events[..3]);
    assert_eq!(raws(s.inbox_batch(2).unwrap()), events[..2]);
}

/// A transaction is stored whole and split into its events when read:
/// each is consumed on its own, in any order, once (committed, set aside
/// or found empty), and what is left stays in order.
pub fn a_transactions_events_are_consumed_each_once_in_any_order(s: &dyn Store) {
    let events: Vec<Vec<u8>> = (0..5).map(|i| format!(r#"{{"event_id":"${i}"}}"#).into_bytes()).collect();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    s.accept_transaction("t1", &refs, 1).unwrap();
    s.accept_transaction("t2", &[E2], 1).unwrap();
    let items = s.inbox_batch(10).unwrap();
    assert_eq!(items.len(), 6);
    assert!(items.windows(2).all(|w| w[0].seq < w[1].seq));
    s.commit_empty(&[items[3].seq]).unwrap();
    s.quarantine(items[1].seq, "bad", 1).unwrap();
    s.commit(items[4].seq, &sample_decision()).unwrap();
    // Again: nothing more.
    s.commit_empty(&[items[3].seq, items[4].seq, items[1].seq]).unwrap();
    s.quarantine(items[3].seq, "bad", 1).unwrap();
    let left: Vec<Vec<u8>> = s.inbox_batch(10).unwrap().into_iter().map(|i| i.raw).collect();
    assert_eq!(left, [refs[0], refs[2], E2]);
    assert_eq!(s.inbox_batch(2).unwrap().iter().map(|i| i.seq).collect::<Vec<_>>(), [items[0].seq, items[2].seq]);
    let st = s.stats().unwrap();
    assert_eq!((st.inbox_pending, st.events_processed, st.events_quarantined, st.outbox_pending), (3, 2, 1, 2));
    s.commit_empty(&[items[0].seq, items[2].seq, items[5].seq]).unwrap();
    assert!(s.inbox_batch(10).unwrap().is_empty());
    assert_eq!(s.stats().unwrap().inbox_pending, 0);
}

pub fn replayed_transaction_stores_nothing(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    // Same ID, same events (the homeserver recomputes unsigned.age).
    assert_eq!(s.accept_transaction("t1", &[E1_LATER], 2).unwrap(), Accepted::Replay);
    assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
    // Still a replay after the events were processed.
    let item = s.inbox_batch(1).unwrap().remove(0);
    s.commit(item.seq, &Decision::default()).unwrap();
    assert_eq!(s.accept_transaction("t1", &[E1], 3).unwrap(), Accepted::Replay);
    assert_eq!(s.inbox_batch(10).unwrap().len(), 0);
    let st = s.stats().unwrap();
    assert_eq!((st.transactions, st.replayed_transactions, st.events_processed), (1, 2, 1));
}

pub fn reused_id_with_other_events_is_kept(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    assert_eq!(s.accept_transaction("t1", &[E2], 2).unwrap(), Accepted::ReusedId { events: 1 });
    assert_eq!(s.inbox_batch(10).unwrap().len(), 2);
}

pub fn the_highest_numeric_transaction_id_is_remembered(s: &dyn Store) {
    assert_eq!(s.highest_transaction_number().unwrap(), None);
    s.accept_transaction("7", &[E1], 1).unwrap();
    s.accept_transaction("not-a-number", &[E2], 1).unwrap();
    s.accept_transaction("5", &[b"{}"], 1).unwrap();
    assert_eq!(s.highest_transaction_number().unwrap(), Some(7), "an older one (a retry) does not lower it");
    s.accept_transaction("8", &[b"{\"x\":1}"], 1).unwrap();
    assert_eq!(s.highest_transaction_number().unwrap(), Some(8));
}

pub fn empty_transaction_is_accepted(s: &dyn Store) {
    assert_eq!(s.accept_transaction("t0", &[], 1).unwrap(), Accepted::New { events: 0 });
    assert_eq!(s.accept_transaction("t0", &[], 1).unwrap(), Accepted::Replay);
}

pub fn commit_applies_state_enqueues_effects_and_consumes_the_item(s: &dyn Store) {
    s.accept_transaction("t1", &[E1, E2], 1).unwrap();
    let item = s.inbox_batch(1).unwrap().remove(0);
    s.commit(item.seq, &sample_decision()).unwrap();
    s.flush().unwrap();
    assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
    let snap = s
        .snapshot(
            Some(&owned_room_id!("!dm:example.org")),
            &[owned_user_id!("@alice:example.org"), owned_user_id!("@bob:example.org")],
            None,
        )
        .unwrap();
    assert_eq!(snap.rooms, vec![RoomState::Control { owner: owned_user_id!("@alice:example.org") }]);
    assert_eq!(snap.owners.len(), 1);
    let out = s.outbox_batch(u64::MAX, 10, false).unwrap();
    assert_eq!(out.iter().map(|o| o.effect.clone()).collect::<Vec<_>>(), sample_decision().effects);
    assert!(out[0].id < out[1].id);
    assert_eq!(s.outbox_high_water().unwrap(), out[1].id);
    // Committing the same item again (a retry after a crash that did land)
    // must not enqueue the effects twice.
    s.commit(item.seq, &sample_decision()).unwrap();
    assert_eq!(s.outbox_batch(u64::MAX, 10, false).unwrap().len(), 2);
    assert_eq!(s.stats().unwrap().events_processed, 1);
}

pub fn removals_apply(s: &dyn Store) {
    s.accept_transaction("t1", &[E1, E2], 1).unwrap();
    let items = s.inbox_batch(2).unwrap();
    s.commit(items[0].seq, &sample_decision()).unwrap();
    let remove = Decision {
        changes: vec![
            StateChange::RemoveOwner(owned_user_id!("@alice:example.org")),
            StateChange::RemoveRoom {
                room: owned_room_id!("!dm:example.org"),
                owner: owned_user_id!("@alice:example.org"),
            },
        ],
        effects: vec![],
        outcomes: vec![],
    };
    s.commit(items[1].seq, &remove).unwrap();
    let snap =
        s.snapshot(Some(&owned_room_id!("!dm:example.org")), &[owned_user_id!("@alice:example.org")], None).unwrap();
    assert_eq!(snap, Snapshot::default());
    assert!(s.owners().unwrap().is_empty());
}

pub fn outbox_respects_the_watermark_and_finishing(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    let item = s.inbox_batch(1).unwrap().remove(0);
    s.commit(item.seq, &sample_decision()).unwrap();
    let all = s.outbox_batch(u64::MAX, 10, false).unwrap();
    assert_eq!(s.outbox_batch(all[0].id, 10, false).unwrap().len(), 1);
    assert_eq!(s.outbox_batch(all[0].id - 1, 10, false).unwrap().len(), 0);
    s.finish_effect(all[0].id, &EffectOutcome::Done, &[], 5).unwrap();
    s.finish_effect(all[1].id, &EffectOutcome::Failed("M_FORBIDDEN".into()), &[], 6).unwrap();
    // Finishing twice is harmless.
    s.finish_effect(all[1].id, &EffectOutcome::Failed("again".into()), &[], 7).unwrap();
    assert!(s.outbox_batch(u64::MAX, 10, false).unwrap().is_empty());
    let failed = s.failed_effects(10).unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, "M_FORBIDDEN");
    let st = s.stats().unwrap();
    assert_eq!((st.effects_done, st.effects_failed, st.outbox_pending), (1, 1, 0));
}

pub fn the_outbox_is_read_on_past_what_was_read(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    let item = s.inbox_batch(1).unwrap().remove(0);
    s.commit(item.seq, &sample_decision()).unwrap();
    let high = s.outbox_high_water().unwrap();
    let all = s.outbox_after(0, high, 10, false).unwrap();
    assert_eq!(all.len(), 2);
    let rest = s.outbox_after(all[0].id, high, 10, false).unwrap();
    assert_eq!(rest, all[1..]);
    assert!(s.outbox_after(all[1].id, high, 10, false).unwrap().is_empty());
    assert!(s.outbox_after(high, high, 10, false).unwrap().is_empty());
    // What was read but not finished stays, for the next executor after a crash.
    assert_eq!(s.outbox_batch(high, 10, false).unwrap(), all);
}

pub fn effects_that_stand_or_fall_together_are_finished_together(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    let item = s.inbox_batch(1).unwrap().remove(0);
    s.commit(item.seq, &sample_decision()).unwrap();
    let all = s.outbox_batch(u64::MAX, 10, false).unwrap();
    let (first, second) = (all[0].id, all[1].id);
    let follow_ups = [FollowUp { internal: true, raw: b"{\"kind\":\"tick\"}".to_vec() }];
    let finished =
        [(first, EffectOutcome::Failed("no answer".into())), (second, EffectOutcome::Failed("needs the first".into()))];
    s.finish_effects(&finished, &follow_ups, 4).unwrap();
    assert!(s.outbox_batch(u64::MAX, 10, false).unwrap().is_empty());
    let failed = s.failed_effects(10).unwrap();
    assert_eq!(failed.iter().map(|f| f.reason.as_str()).collect::<Vec<_>>(), ["no answer", "needs the first"]);
    assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
    // Again (a crash before the executor knew it was recorded): nothing more.
    s.finish_effects(&finished, &follow_ups, 5).unwrap();
    assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
    let st = s.stats().unwrap();
    assert_eq!((st.effects_failed, st.follow_ups, st.outbox_pending), (2, 1, 0));
}

pub fn quarantine_moves_the_event_aside(s: &dyn Store) {
    s.accept_transaction("t1", &[b"not json", E2], 1).unwrap();
    let bad = s.inbox_batch(1).unwrap().remove(0);
    s.quarantine(bad.seq, "not a Matrix event", 9).unwrap();
    s.quarantine(bad.seq, "twice", 10).unwrap();
    let q = s.quarantined(10).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].raw.as_str(), q[0].reason.as_str(), q[0].at_ms), ("not json", "not a Matrix event", 9));
    assert_eq!(s.inbox_batch(10).unwrap()[0].raw, E2);
    assert_eq!(s.stats().unwrap().events_quarantined, 1);
}

/// The quarantine is bounded: what is kept of an event, how long, and how
/// many.
pub fn the_quarantine_is_bounded_in_size_age_and_count(s: &dyn Store) {
    let huge = format!("{{\"x\":\"{}\"}}", "é".repeat(super::QUARANTINE_RAW_BYTES));
    let events: Vec<Vec<u8>> =
        std::iter::once(huge.into_bytes()).chain((0..5).map(|i| format!("bad {i}").into_bytes())).collect();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    s.accept_transaction("tq", &refs, 1).unwrap();
    for (i, item) in s.inbox_batch(10).unwrap().into_iter().enumerate() {
        s.quarantine(item.seq, "bad", 100 + i as u64).unwrap();
    }
    let kept = s.quarantined(10).unwrap();
    assert_eq!(kept.len(), 6);
    assert!(kept[0].raw.len() < super::QUARANTINE_RAW_BYTES + 100, "{} bytes kept", kept[0].raw.len());
    assert!(kept[0].raw.ends_with("bytes in all)"));
    // Older than 102 goes (two), then the oldest beyond three kept (one).
    assert_eq!(s.prune_quarantine(102, 3).unwrap(), 3);
    let reasons: Vec<u64> = s.quarantined(10).unwrap().iter().map(|q| q.at_ms).collect();
    assert_eq!(reasons, [103, 104, 105]);
    assert_eq!(s.prune_quarantine(0, 10).unwrap(), 0);
    assert_eq!(s.stats().unwrap().events_quarantined, 6, "the count of all ever set aside stays");
}

/// The count bound holds between prunings: a flood of events set aside
/// keeps the newest [`super::QUARANTINE_KEEP`], whatever comes.
pub fn the_quarantine_count_is_bounded_as_events_are_set_aside(s: &dyn Store) {
    let keep = super::QUARANTINE_KEEP;
    let events: Vec<Vec<u8>> = (0..keep + 5).map(|i| format!("bad {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    s.accept_transaction("flood", &refs, 1).unwrap();
    let items = s.inbox_batch(keep + 10).unwrap();
    assert_eq!(items.len(), keep + 5);
    for (i, item) in items.iter().enumerate() {
        s.quarantine(item.seq, "bad", 100 + i as u64).unwrap();
    }
    let kept = s.quarantined(keep + 10).unwrap();
    assert_eq!(kept.len(), keep, "no pruning ran: bounded as they came");
    assert_eq!((kept[0].raw.as_str(), kept[keep - 1].raw.clone()), ("bad 5", format!("bad {}", keep + 4)));
    assert_eq!(s.stats().unwrap().events_quarantined as usize, keep + 5, "the count of all ever set aside stays");
    // Pruning and setting aside go on together.
    assert_eq!(s.prune_quarantine(0, keep - 2).unwrap(), 2);
    s.accept_transaction("more", &[b"bad again"], 2).unwrap();
    let next = s.inbox_batch(1).unwrap().remove(0);
    s.quarantine(next.seq, "bad", 1_000_000).unwrap();
    assert_eq!(s.quarantined(keep + 10).unwrap().len(), keep - 1);
}

pub fn pruning_forgets_old_transaction_ids_only(s: &dyn Store) {
    s.accept_transaction("old", &[E1], 100).unwrap();
    s.accept_transaction("new", &[E2], 200).unwrap();
    assert_eq!(s.prune_transactions(150).unwrap(), 1);
    assert_eq!(s.accept_transaction("new", &[E2], 300).unwrap(), Accepted::Replay);
    assert_eq!(s.accept_transaction("old", &[E1], 300).unwrap(), Accepted::New { events: 1 });
}

fn deferred(event: &str, body: &str) -> Deferred {
    Deferred {
        owner: owned_user_id!("@alice:example.org"),
        room_id: owned_room_id!("!held:example.org"),
        event_id: event.try_into().unwrap(),
        sender: owned_user_id!("@stranger:example.org"),
        ts_ms: 10,
        received_ms: 10,
        msgtype: "m.text".into(),
        body: body.into(),
        html: Some("<b>x</b>".into()),
        media: Some(crate::engine::Media {
            url: "mxc://x/y".into(),
            name: "y.png".into(),
            mimetype: None,
            size: Some(3),
        }),
        encrypted: false,
        edited: false,
        digested: false,
        redacted_by: None,
        denied_ms: None,
    }
}

/// A ban list followed by two owners is one record; the operator's are
/// found without reading every list; an owner's record keeps what it
/// follows and counted; a batch reads its own changes to lists; and the
/// effects that follow and check lists survive the outbox.
pub fn policy_lists_are_kept_once_and_the_operators_found(s: &dyn Store) {
    use crate::engine::policy::{PolicyList, PolicyRule, RuleKind, RulesRead};
    let (alice, bob) = (owned_user_id!("@alice:example.org"), owned_user_id!("@bob:example.org"));
    let (shared, operator) = (owned_room_id!("!shared:lists.org"), owned_room_id!("!op:lists.org"));
    let rule =
        PolicyRule { kind: RuleKind::Server, entity: "*.evil.org".into(), takedown: true, reason: Some("spam".into()) };
    let slot = ("m.policy.rule.server".to_owned(), "r1".to_owned());
    let mut list = PolicyList::new(shared.clone(), "#shared:lists.org".into());
    list.followers = [alice.clone(), bob.clone()].into_iter().collect();
    (list.kept, list.globs, list.ignored, list.changed_ms) = (1, 1, 3, 99);
    let op = PolicyList { operator: true, ..PolicyList::new(operator.clone(), "!op:lists.org".into()) };
    let owner = OwnerState {
        policy_lists: vec![shared.clone()],
        banned: crate::engine::Tally { total: 12, reported: 10 },
        banned_recent: vec![(owned_user_id!("@spam:evil.org"), 5)],
        banned_ignore: true,
        shared_list: Some(owned_room_id!("!mine:example.org")),
        lists_checked_ms: 42,
        ..OwnerState::new(alice.clone(), owned_room_id!("!dm:example.org"), 7)
    };
    commit_changes(
        s,
        vec![
            StateChange::PutOwner(owner.clone()),
            StateChange::PutPolicyList(list.clone()),
            StateChange::PutPolicyRule { list: shared.clone(), slot: slot.clone(), rule: Some(rule.clone()) },
            StateChange::PutPolicyList(op.clone()),
        ],
    );
    assert_eq!(s.owner(&alice).unwrap(), Some(owner));
    assert_eq!(s.policy_list(&shared).unwrap(), Some(list.clone()), "the record, without its rules");
    assert_eq!(s.policy_list(&owned_room_id!("!none:lists.org")).unwrap(), None);
    assert_eq!(s.operator_lists().unwrap(), vec![operator.clone()]);
    let mut all: Vec<_> = s.policy_lists().unwrap().into_iter().map(|l| l.room_id).collect();
    all.sort();
    assert_eq!(all, [operator.clone(), shared.clone()]);
    // The snapshot of an invitation reads the owner's and the operator's,
    // with the rules that could name the sender.
    let mut snapshot = Snapshot::default();
    let naming = RulesRead::Naming(crate::engine::policy::names(&owned_user_id!("@x:mail.evil.org"), None));
    let read =
        crate::engine::PolicyRead { lists: vec![shared.clone()], operator: true, rules: naming, changed_after: None };
    read_policy(s, &read, &mut snapshot).unwrap();
    assert_eq!(snapshot.policy.keys().cloned().collect::<Vec<_>>(), vec![operator.clone(), shared.clone()]);
    assert_eq!(snapshot.policy[&shared].rules.get(&slot), Some(&rule));
    // A batch sees its own changes before they are committed.
    let mut overlay = Overlay::new(s);
    overlay
        .apply(&[
            StateChange::PutPolicyList(PolicyList { operator: false, ..op.clone() }),
            StateChange::RemovePolicyList(shared.clone()),
        ])
        .unwrap();
    assert_eq!(overlay.policy_list(&shared).unwrap(), None);
    assert!(overlay.policy_rules(&shared, &RulesRead::All).unwrap().is_empty());
    assert!(overlay.operator_lists().unwrap().is_empty());
    assert_eq!(s.operator_lists().unwrap(), vec![operator.clone()]);
    // No longer the operator's, then gone with its rules.
    commit_changes(s, vec![StateChange::PutPolicyList(PolicyList { operator: false, ..op })]);
    assert!(s.operator_lists().unwrap().is_empty());
    commit_changes(s, vec![StateChange::RemovePolicyList(shared.clone())]);
    assert_eq!(s.policy_list(&shared).unwrap(), None);
    assert!(s.policy_rules(&shared, &RulesRead::All).unwrap().is_empty());
    // The effects that follow a list and check who is pending round-trip.
    let effects = vec![
        Effect::FollowList {
            as_user: owned_user_id!("@gatekeeper:example.org"),
            owner: Some(alice.clone()),
            target: "#shared:lists.org".into(),
        },
        Effect::CheckPending { owner: alice },
    ];
    s.accept_transaction("policy-effects", &[b"{}"], 1).unwrap();
    let item = s.inbox_batch(100).unwrap().pop().unwrap();
    s.commit(item.seq, &Decision { changes: vec![], effects: effects.clone(), outcomes: vec![] }).unwrap();
    let high = s.outbox_high_water().unwrap();
    let out: Vec<Effect> = s.outbox_batch(high, 100, false).unwrap().into_iter().map(|i| i.effect).collect();
    assert_eq!(out[out.len() - 2..], effects[..]);
}

/// A list's rules are kept one per slot and found by what they could name:
/// a slot replaced moves its index entry, one emptied leaves none, the same
/// rule in two slots is two rules, a state key of any bytes keeps to its
/// slot, a batch reads its own slots over the stored ones, and forgetting
/// the list forgets its rules, also those written earlier in the batch.
pub fn policy_rules_are_kept_by_slot_and_found_by_name(s: &dyn Store) {
    use crate::engine::policy::{PolicyList, PolicyRule, RuleKind, RulesRead, names};
    let room = owned_room_id!("!rules:lists.org");
    let user = |e: &str| PolicyRule { kind: RuleKind::User, entity: e.into(), takedown: false, reason: None };
    let slot = |k: &str| ("m.policy.rule.user".to_owned(), k.to_owned());
    let put =
        |k: &str, r: Option<PolicyRule>| StateChange::PutPolicyRule { list: room.clone(), slot: slot(k), rule: r };
    let naming = |u: &str| RulesRead::Naming(names(&ruma::UserId::parse(u).unwrap(), None));
    let found = |s: &dyn Lookups, read: &RulesRead| {
        let mut keys: Vec<String> = s.policy_rules(&room, read).unwrap().into_iter().map(|(k, _)| k.1).collect();
        keys.sort();
        keys
    };
    // A state key with a NUL and a length prefix's worth of bytes in it.
    let odd = "a\0\u{1}b";
    commit_changes(
        s,
        vec![
            StateChange::PutPolicyList(PolicyList::new(room.clone(), "#rules:lists.org".into())),
            put("exact", Some(user("@spam:evil.org"))),
            put("glob", Some(user("@spam*:evil.org"))),
            put("wild", Some(user("@sp?m:*"))),
            put("twice", Some(user("@spam:evil.org"))),
            put(odd, Some(user("@other:good.org"))),
        ],
    );
    assert_eq!(found(s, &naming("@spam:evil.org")), ["exact", "glob", "twice", "wild"]);
    assert_eq!(found(s, &naming("@other:good.org")), [odd, "wild"]);
    assert_eq!(found(s, &RulesRead::Slot(slot(odd))), [odd]);
    assert_eq!(found(s, &RulesRead::All).len(), 5);
    assert!(found(s, &RulesRead::None).is_empty());
    // Replaced: found under its new name only. Emptied: found nowhere.
    commit_changes(s, vec![put("exact", Some(user("@eggs:good.org"))), put("twice", None)]);
    assert_eq!(found(s, &naming("@spam:evil.org")), ["glob", "wild"]);
    assert_eq!(found(s, &naming("@eggs:good.org")), ["exact", "wild"]);
    // A batch reads its own slots over the stored ones.
    let mut overlay = Overlay::new(s);
    overlay.apply(&[put("glob", None), put("new", Some(user("@spam:evil.org")))]).unwrap();
    assert_eq!(found(&overlay, &naming("@spam:evil.org")), ["new", "wild"]);
    assert_eq!(found(&overlay, &RulesRead::Slot(slot("glob"))), Vec::<String>::new());
    drop(overlay);
    // Forgotten in the batch that also wrote one: nothing is left.
    commit_changes(s, vec![put("late", Some(user("@late:x.org"))), StateChange::RemovePolicyList(room.clone())]);
    assert!(found(s, &RulesRead::All).is_empty());
    assert!(found(s, &naming("@late:x.org")).is_empty());
}

/// ATTACK (issue 17, attack17): `engine::policy::list_read` writes a list
/// followed for the first time as its rules (`PutPolicyRule`) first and
/// its record (`PutPolicyList`) last, in one decision. Sled keeps the
/// rules whatever the order; the memory store drops a rule for a list it
/// does not have yet, so the two stores disagree on every new list.
pub fn attack17_a_new_lists_rules_written_before_its_record_are_kept(s: &dyn Store) {
    use crate::engine::policy::{PolicyList, PolicyRule, RuleKind, RulesRead};
    let room = owned_room_id!("!new:lists.org");
    let rule = PolicyRule { kind: RuleKind::User, entity: "@spam:evil.org".into(), takedown: false, reason: None };
    let mut list = PolicyList::new(room.clone(), "#new:lists.org".into());
    list.kept = 1;
    commit_changes(
        s,
        vec![
            StateChange::PutPolicyRule {
                list: room.clone(),
                slot: ("m.policy.rule.user".into(), "a".into()),
                rule: Some(rule.clone()),
            },
            StateChange::PutPolicyList(list),
        ],
    );
    assert_eq!(s.policy_list(&room).unwrap().map(|l| l.kept), Some(1));
    assert_eq!(s.policy_rules(&room, &RulesRead::All).unwrap().len(), 1, "the record says 1 rule is kept");
}

fn commit_changes(s: &dyn Store, changes: Vec<StateChange>) {
    let txn = format!("t{}", s.stats().unwrap().transactions);
    s.accept_transaction(&txn, &[b"{}"], 1).unwrap();
    let item = s.inbox_batch(100).unwrap().pop().unwrap();
    s.commit(item.seq, &Decision { changes, effects: vec![], outcomes: vec![] }).unwrap();
}

pub fn gate_state_round_trips_and_the_snapshot_finds_it(s: &dyn Store) {
    let alice = owned_user_id!("@alice:example.org");
    let stranger = owned_user_id!("@stranger:example.org");
    let friend = owned_user_id!("@friend:example.org");
    let held = HeldRoom {
        owner: alice.clone(),
        inviter: stranger.clone(),
        inviter_name: None,
        is_dm: true,
        invited_at_ms: 5,
        name: Some("Hi".into()),
        members: Some(2),
        reason: None,
        replied: true,
        digested: false,
        unreadable: Some(Unreadable::NoAnswer),
        wave: Some(WaveKind::Server),
        reply_owed_ms: Some(6),
        said: Some("about the invoice".into()),
        invited_here: Some(3),
        shared: Some(SharedRooms { names: vec!["“Book club”".into()], count: 4, complete: false }),
    };
    let mut changes = sample_decision().changes;
    changes.extend([
        StateChange::PutRoom(owned_room_id!("!held:example.org"), RoomState::Held(held.clone())),
        StateChange::PutContact {
            owner: alice.clone(),
            subject: Subject::User(friend.clone()),
            contact: Contact::Allowed { since_ms: 3, source: AllowSource::Imported, until_ms: None },
        },
        StateChange::PutContact {
            owner: alice.clone(),
            subject: Subject::User(stranger.clone()),
            contact: Contact::Blocked { since_ms: 4 },
        },
        StateChange::PutStranger {
            owner: alice.clone(),
            user: stranger.clone(),
            state: StrangerState { last_reply_ms: Some(9), ..Default::default() },
        },
        StateChange::PutDeferred(deferred("$m1", "hello")),
        StateChange::PutDeferred(deferred("$m2", "again")),
    ]);
    commit_changes(s, changes);

    // An event in the held room from the stranger sees the owner (as the
    // room's owner), the contact and stranger entries, and the related message.
    let event = ruma::event_id!("$m1");
    let snap =
        s.snapshot(Some(&owned_room_id!("!held:example.org")), std::slice::from_ref(&stranger), Some(event)).unwrap();
    assert_eq!(snap.rooms, vec![RoomState::Held(held.clone())]);
    assert!(snap.owners.contains_key(&alice));
    assert_eq!(snap.contact(&alice, &stranger), Some(&Contact::Blocked { since_ms: 4 }));
    assert_eq!(snap.stranger(&alice, &stranger).last_reply_ms, Some(9));
    assert_eq!(snap.related, vec![deferred("$m1", "hello")]);
    assert_eq!(snap.overview, None);

    let overview = s.overview(&alice).unwrap();
    assert_eq!(overview.contacts.len(), 2);
    assert_eq!(
        overview.contacts[&Subject::User(friend.clone())],
        Contact::Allowed { since_ms: 3, source: AllowSource::Imported, until_ms: None }
    );
    assert_eq!(overview.held.len(), 1);
    assert_eq!(overview.deferred.len(), 2);
    // Another owner's overview is empty.
    assert_eq!(s.overview(&friend).unwrap(), crate::engine::OwnerOverview::default());
    assert_eq!(s.stats().unwrap().deferred_messages, 2);
}

pub fn removing_and_forgetting_owner_data(s: &dyn Store) {
    let alice = owned_user_id!("@alice:example.org");
    let stranger = owned_user_id!("@stranger:example.org");
    commit_changes(
        s,
        vec![
            StateChange::PutDeferred(deferred("$m1", "hello")),
            StateChange::PutDeferred(deferred("$m2", "again")),
            StateChange::PutContact {
                owner: alice.clone(),
                subject: Subject::User(stranger.clone()),
                contact: Contact::Blocked { since_ms: 4 },
            },
        ],
    );
    commit_changes(s, vec![StateChange::RemoveDeferred { owner: alice.clone(), event_id: "$m1".try_into().unwrap() }]);
    assert_eq!(s.overview(&alice).unwrap().deferred, vec![deferred("$m2", "again")]);
    commit_changes(
        s,
        vec![StateChange::RemoveContact { owner: alice.clone(), subject: Subject::User(stranger.clone()) }],
    );
    assert!(s.overview(&alice).unwrap().contacts.is_empty());
    commit_changes(
        s,
        vec![
            StateChange::PutContact {
                owner: alice.clone(),
                subject: Subject::User(stranger.clone()),
                contact: Contact::Blocked { since_ms: 4 },
            },
            StateChange::PutStranger { owner: alice.clone(), user: stranger.clone(), state: StrangerState::default() },
        ],
    );
    commit_changes(s, vec![StateChange::ForgetOwnerData(alice.clone())]);
    assert_eq!(s.overview(&alice).unwrap(), crate::engine::OwnerOverview::default());
    let snap = s.snapshot(None, &[alice.clone(), stranger.clone()], None).unwrap();
    assert!(snap.strangers.is_empty() && snap.contacts.is_empty());
}

/// An opt-out in the middle of a batch: what the batch put before it is
/// forgotten with the rest of the owner's data, what it puts after stays,
/// and nobody else's data is touched.
pub fn forgetting_an_owner_inside_a_batch(s: &dyn Store) {
    let alice = owned_user_id!("@alice:example.org");
    let bob = owned_user_id!("@bob:example.org");
    let stranger = owned_user_id!("@stranger:example.org");
    let bobs = Deferred { owner: bob.clone(), event_id: "$b1".try_into().unwrap(), ..deferred("$b1", "for bob") };
    commit_changes(
        s,
        vec![StateChange::PutDeferred(deferred("$m1", "before the batch")), StateChange::PutDeferred(bobs.clone())],
    );
    s.accept_transaction("t-forget", &[E1, E2, b"{}"], 1).unwrap();
    let seqs: Vec<u64> = s.inbox_batch(3).unwrap().iter().map(|i| i.seq).collect();
    let blocked = || StateChange::PutContact {
        owner: alice.clone(),
        subject: Subject::User(stranger.clone()),
        contact: Contact::Blocked { since_ms: 9 },
    };
    let before = Decision {
        changes: vec![StateChange::PutDeferred(deferred("$m2", "in the batch")), blocked()],
        ..Default::default()
    };
    let forget = Decision { changes: vec![StateChange::ForgetOwnerData(alice.clone())], ..Default::default() };
    let after = Decision {
        changes: vec![StateChange::PutDeferred(deferred("$m3", "after the opt-out"))],
        ..Default::default()
    };
    s.commit_batch(&[(seqs[0], &before), (seqs[1], &forget), (seqs[2], &after)], &[]).unwrap();
    let overview = s.overview(&alice).unwrap();
    assert_eq!(overview.deferred, vec![deferred("$m3", "after the opt-out")]);
    assert!(overview.contacts.is_empty(), "the block made before the opt-out is forgotten");
    assert_eq!(s.overview(&bob).unwrap().deferred, vec![bobs]);
    assert!(s.inbox_batch(10).unwrap().is_empty());
    assert_eq!(s.stats().unwrap().deferred_messages, 2);
}

pub fn follow_ups_join_the_inbox_with_their_source(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    let item = s.inbox_batch(1).unwrap().remove(0);
    assert!(!item.internal);
    s.commit(item.seq, &sample_decision()).unwrap();
    let effect = s.outbox_batch(u64::MAX, 1, false).unwrap().remove(0);
    let follow_ups = [
        FollowUp { internal: true, raw: b"{\"kind\":\"x\"}".to_vec() },
        FollowUp { internal: false, raw: E2.to_vec() },
    ];
    s.finish_effect(effect.id, &EffectOutcome::Done, &follow_ups, 2).unwrap();
    // Finishing again (a retry whose first try landed) adds nothing.
    s.finish_effect(effect.id, &EffectOutcome::Done, &follow_ups, 3).unwrap();
    assert_eq!(s.stats().unwrap().follow_ups, 2);
    let inbox = s.inbox_batch(10).unwrap();
    assert_eq!(
        inbox.iter().map(|i| (i.internal, i.raw.clone())).collect::<Vec<_>>(),
        vec![(true, follow_ups[0].raw.clone()), (false, E2.to_vec())]
    );
}

/// Retention counts from when Gatekeeper received a message: the sender's
/// timestamp (far in the future here, far in the past there) changes
/// nothing.
pub fn retention_drops_old_captured_messages(s: &dyn Store) {
    let mut old = deferred("$old", "ancient");
    (old.ts_ms, old.received_ms) = (u64::MAX / 2, 100);
    let mut new = deferred("$new", "fresh");
    (new.ts_ms, new.received_ms) = (1, 300);
    commit_changes(s, vec![StateChange::PutDeferred(old), StateChange::PutDeferred(new.clone())]);
    assert_eq!(s.prune_deferred(&owned_user_id!("@bob:example.org"), 200, 0).unwrap(), 0, "other owners untouched");
    assert_eq!(s.prune_deferred(&owned_user_id!("@alice:example.org"), 200, 0).unwrap(), 1);
    assert_eq!(s.overview(&owned_user_id!("@alice:example.org")).unwrap().deferred, vec![new]);
    assert_eq!(s.prune_deferred(&owned_user_id!("@alice:example.org"), 200, 0).unwrap(), 0);
}

/// A denied sender's captures are kept a day for `undo`, apart from the
/// rest (an overview lists them as denied only), then pruned.
pub fn denied_captures_are_kept_apart_then_pruned(s: &dyn Store) {
    let alice = owned_user_id!("@alice:example.org");
    let mut denied = deferred("$denied", "denied");
    (denied.received_ms, denied.denied_ms) = (300, Some(400));
    let mut kept = deferred("$kept", "kept");
    kept.received_ms = 300;
    commit_changes(s, vec![StateChange::PutDeferred(denied.clone()), StateChange::PutDeferred(kept.clone())]);
    let overview = s.overview(&alice).unwrap();
    assert_eq!((overview.deferred, overview.denied), (vec![kept.clone()], vec![denied.clone()]));
    assert_eq!(s.prune_deferred(&alice, 200, 400).unwrap(), 0, "denied at 400: not before 400");
    assert_eq!(s.prune_deferred(&alice, 200, 401).unwrap(), 1);
    let overview = s.overview(&alice).unwrap();
    assert_eq!((overview.deferred, overview.denied), (vec![kept], vec![]));
}

pub fn empty_decisions_are_committed_in_one_go(s: &dyn Store) {
    s.accept_transaction("t1", &[E1, E2, E1_LATER], 1).unwrap();
    let seqs: Vec<u64> = s.inbox_batch(10).unwrap().iter().map(|i| i.seq).collect();
    s.commit_empty(&seqs[..2]).unwrap();
    s.commit_empty(&seqs[..2]).unwrap();
    assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
    assert_eq!(s.stats().unwrap().events_processed, 2);
    s.commit_empty(&[]).unwrap();
}

pub fn a_batch_commits_in_order_and_skips_what_was_committed(s: &dyn Store) {
    const E3: &[u8] = br#"{"event_id":"$3"}"#;
    s.accept_transaction("t1", &[E1, E2, E3], 1).unwrap();
    let seqs: Vec<u64> = s.inbox_batch(10).unwrap().iter().map(|i| i.seq).collect();
    let alice = owned_user_id!("@alice:example.org");
    // The first item was committed already (a retry after a crash that
    // did land): its effects must not be queued again.
    s.commit(seqs[0], &sample_decision()).unwrap();
    let later = Decision {
        changes: vec![StateChange::PutOwner(OwnerState {
            replies_in_window: 3,
            ..OwnerState::new(alice.clone(), owned_room_id!("!dm:example.org"), 7)
        })],
        effects: vec![Effect::Join { as_user: alice.clone(), room_id: owned_room_id!("!other:example.org") }],
        outcomes: vec![],
    };
    s.commit_batch(&[(seqs[0], &sample_decision()), (seqs[2], &later)], &[seqs[1]]).unwrap();
    s.flush().unwrap();
    assert!(s.inbox_batch(10).unwrap().is_empty());
    // Later decisions in a batch win over earlier ones.
    assert_eq!(s.owner(&alice).unwrap().unwrap().replies_in_window, 3);
    let out: Vec<Effect> = s.outbox_batch(u64::MAX, 10, false).unwrap().into_iter().map(|o| o.effect).collect();
    let mut expected = sample_decision().effects;
    expected.extend(later.effects.clone());
    assert_eq!(out, expected);
    let high = s.outbox_high_water().unwrap();
    assert_eq!(s.outbox_batch(u64::MAX, 10, false).unwrap().last().unwrap().id, high);
    assert_eq!(s.stats().unwrap().events_processed, 3);
    // The whole batch again changes nothing.
    s.commit_batch(&[(seqs[0], &sample_decision()), (seqs[2], &later)], &[seqs[1]]).unwrap();
    assert_eq!(s.outbox_batch(u64::MAX, 10, false).unwrap().len(), 3);
    assert_eq!(s.stats().unwrap().events_processed, 3);
}

pub fn due_finds_expired_allows_and_ended_pauses(s: &dyn Store) {
    let alice = owned_user_id!("@alice:example.org");
    let server = Subject::Server("remote.org".try_into().unwrap());
    let mut paused = sample_decision().changes;
    paused.push(StateChange::PutOwner(OwnerState {
        paused_until_ms: Some(500),
        ..OwnerState::new(alice.clone(), owned_room_id!("!dm:example.org"), 7)
    }));
    paused.extend([
        StateChange::PutContact {
            owner: alice.clone(),
            subject: server.clone(),
            contact: Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: Some(300) },
        },
        StateChange::PutContact {
            owner: alice.clone(),
            subject: Subject::User(owned_user_id!("@forever:x.org")),
            contact: Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
        },
    ]);
    commit_changes(s, paused);
    assert_eq!(s.due(100).unwrap(), crate::engine::Due::default());
    let due = s.due(400).unwrap();
    assert_eq!(due.expired, vec![(alice.clone(), server)]);
    assert!(due.unpause.is_empty());
    assert_eq!(s.due(500).unwrap().unpause.len(), 1);
    s.push_internal(br#"{"kind":"tick"}"#).unwrap();
    let last = s.inbox_batch(100).unwrap().pop().unwrap();
    assert!(last.internal);
}

pub fn mail_goes_on_its_own_lane(s: &dyn Store) {
    s.accept_transaction("t1", &[E1], 1).unwrap();
    let item = s.inbox_batch(1).unwrap().remove(0);
    let mail = Effect::SendEmail {
        owner: owned_user_id!("@alice:example.org"),
        to: "a@example.org".into(),
        subject: "s".into(),
        text: "t".into(),
        html: "<p>t</p>".into(),
        message_id: "<m@x>".into(),
        unsubscribe: None,
    };
    let mut decision = sample_decision();
    decision.effects.insert(1, mail.clone());
    s.commit(item.seq, &decision).unwrap();
    let matrix = s.outbox_batch(u64::MAX, 10, false).unwrap();
    assert_eq!(matrix.iter().map(|i| i.effect.clone()).collect::<Vec<_>>(), sample_decision().effects);
    let mails = s.outbox_batch(u64::MAX, 10, true).unwrap();
    assert_eq!(mails.iter().map(|i| i.effect.clone()).collect::<Vec<_>>(), vec![mail]);
}

pub fn a_link_is_used_once(s: &dyn Store) {
    assert!(s.use_link("n1", 100, br#"{"kind":"tick"}"#).unwrap());
    assert!(!s.use_link("n1", 100, br#"{"kind":"tick"}"#).unwrap());
    assert!(s.use_link("n2", 100, br#"{"kind":"tick"}"#).unwrap());
    let inbox = s.inbox_batch(10).unwrap();
    assert_eq!(inbox.len(), 2);
    assert!(inbox.iter().all(|i| i.internal));
}

pub fn sync_position_moves_only_from_where_it_is(s: &dyn Store) {
    assert_eq!(s.sync_position().unwrap(), None);
    assert!(s.accept_sync(None, "s1", &[E1]).unwrap());
    // A second writer from the same start (or a stale one) stores nothing.
    assert!(!s.accept_sync(None, "s1b", &[E2]).unwrap());
    assert!(!s.accept_sync(Some("s0"), "s2", &[E2]).unwrap());
    assert_eq!(s.sync_position().unwrap().as_deref(), Some("s1"));
    assert!(s.accept_sync(Some("s1"), "s2", &[E2]).unwrap());
    let inbox = s.inbox_batch(10).unwrap();
    assert_eq!(inbox.iter().map(|i| i.raw.as_slice()).collect::<Vec<_>>(), vec![E1, E2]);
    assert!(inbox.iter().all(|i| !i.internal));
    assert_eq!(s.sync_position().unwrap().as_deref(), Some("s2"));
    assert_eq!(s.stats().unwrap().events_received, 2);
    // A new device starts over from its own first sync.
    s.reset_sync_position().unwrap();
    assert_eq!(s.sync_position().unwrap(), None);
    assert!(s.accept_sync(None, "t1", &[]).unwrap());
}

pub fn connector_values_round_trip(s: &dyn Store) {
    assert_eq!(s.connector_value("control_room").unwrap(), None);
    s.set_connector_value("control_room", Some(b"!c:x")).unwrap();
    s.set_connector_value("utd/!r/$1", Some(b"1")).unwrap();
    s.set_connector_value("utd/!r/$2", Some(b"2")).unwrap();
    s.set_connector_value("utdx", Some(b"other")).unwrap();
    assert_eq!(s.connector_value("control_room").unwrap().as_deref(), Some(&b"!c:x"[..]));
    let keys: Vec<String> = s.connector_values("utd/").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["utd/!r/$1", "utd/!r/$2"]);
    s.set_connector_value("utd/!r/$1", None).unwrap();
    assert_eq!(s.connector_values("utd/").unwrap(), vec![("utd/!r/$2".to_owned(), b"2".to_vec())]);
    // Connector values never touch the sync position.
    s.set_connector_value("sync_position", Some(b"evil")).unwrap();
    assert_eq!(s.sync_position().unwrap(), None);
}

/// Wave records round-trip by key (a sender's and a server's apart), are
/// read through a batch's overlay, an owner's `replies_owed` mark is kept,
/// and pruning forgets exactly the records past their `expires_ms`.
pub fn wave_records_round_trip_and_expire(s: &dyn Store) {
    let spammer = owned_user_id!("@spam1:spam.example");
    let by_sender = WaveKey::Sender(spammer.clone());
    let by_server = WaveKey::Server("spam.example".try_into().unwrap());
    let sender_record = WaveRecord {
        seen: vec![(owned_user_id!("@alice:example.org"), 10), (owned_user_id!("@bob:example.org"), 20)],
        wave_ms: None,
        expires_ms: 100,
        day: vec![(owned_user_id!("@carol:example.org"), 5), (owned_user_id!("@alice:example.org"), 10)],
    };
    let server_record =
        WaveRecord { seen: vec![(spammer.clone(), 20)], wave_ms: Some(20), expires_ms: 500, day: vec![] };
    let owes = OwnerState {
        replies_owed: true,
        ..OwnerState::new(owned_user_id!("@alice:example.org"), owned_room_id!("!dm:example.org"), 7)
    };
    commit_changes(
        s,
        vec![
            StateChange::PutOwner(owes),
            StateChange::PutWave(by_sender.clone(), sender_record.clone()),
            StateChange::PutWave(by_server.clone(), server_record.clone()),
        ],
    );
    assert!(s.owner(&owned_user_id!("@alice:example.org")).unwrap().unwrap().replies_owed);
    assert_eq!(s.wave(&by_sender).unwrap(), Some(sender_record.clone()));
    assert_eq!(s.wave(&by_server).unwrap(), Some(server_record.clone()));
    assert_eq!(s.wave(&WaveKey::Sender(owned_user_id!("@spam2:spam.example"))).unwrap(), None);
    let both = read_waves(s, &spammer).unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[&by_server], server_record);
    // A batch reads its own uncommitted records.
    let mut overlay = Overlay::new(s);
    let newer = WaveRecord { wave_ms: Some(30), expires_ms: 900, ..sender_record.clone() };
    overlay.apply(&[StateChange::PutWave(by_sender.clone(), newer.clone())]).unwrap();
    assert_eq!(overlay.wave(&by_sender).unwrap(), Some(newer));
    assert_eq!(s.wave(&by_sender).unwrap(), Some(sender_record));
    // Pruning: the sender's record (expires at 100) goes at 100, the server's stays.
    assert_eq!(s.wave_records().unwrap(), 2);
    assert_eq!(s.prune_waves(99).unwrap(), 0);
    assert_eq!(s.prune_waves(100).unwrap(), 1);
    assert_eq!(s.wave(&by_sender).unwrap(), None);
    assert_eq!(s.wave(&by_server).unwrap(), Some(server_record));
    assert_eq!(s.prune_waves(u64::MAX).unwrap(), 1);
    assert_eq!(s.wave_records().unwrap(), 0);
}

fn kept(s: &dyn Store, owner: &str, with: Option<&str>) -> (u64, u64) {
    let owner: ruma::OwnedUserId = owner.try_into().unwrap();
    let with: Option<ruma::OwnedUserId> = with.map(|w| w.try_into().unwrap());
    let k = s.kept(&owner, with.as_deref()).unwrap();
    (k.held_rooms, k.messages)
}

fn held_by(owner: &str, inviter: &str) -> RoomState {
    RoomState::Held(HeldRoom::new(owner.try_into().unwrap(), inviter.try_into().unwrap(), true, 1))
}

fn message_from(event: &str, sender: &str) -> Deferred {
    Deferred { sender: sender.try_into().unwrap(), ..deferred(event, "hi") }
}

/// The held-room and message counts the bounds read, through every change
/// that adds, replaces or removes what they count.
pub fn kept_counts_follow_every_way_in_and_out(s: &dyn Store) {
    const A: &str = "@alice:example.org";
    const X: &str = "@x:evil.example";
    const Y: &str = "@y:evil.example";
    commit_changes(
        s,
        vec![
            StateChange::PutRoom(owned_room_id!("!1:e"), held_by(A, X)),
            StateChange::PutRoom(owned_room_id!("!2:e"), held_by(A, X)),
            StateChange::PutRoom(owned_room_id!("!3:e"), held_by(A, Y)),
            StateChange::PutRoom(
                owned_room_id!("!c:e"),
                RoomState::Control { owner: owned_user_id!("@alice:example.org") },
            ),
            StateChange::PutDeferred(message_from("$1", X)),
            StateChange::PutDeferred(message_from("$2", X)),
            StateChange::PutDeferred(message_from("$3", Y)),
        ],
    );
    assert_eq!(kept(s, A, None), (3, 3));
    assert_eq!(kept(s, A, Some(X)), (2, 2));
    assert_eq!(kept(s, A, Some(Y)), (1, 1));
    assert_eq!(s.stats().unwrap().deferred_messages, 3);
    // Updating what is there (marked digested, edited, unreadable) counts nothing.
    commit_changes(
        s,
        vec![
            StateChange::PutRoom(owned_room_id!("!1:e"), held_by(A, X)),
            StateChange::PutDeferred(Deferred { digested: true, ..message_from("$1", X) }),
        ],
    );
    assert_eq!(kept(s, A, Some(X)), (2, 2));
    // Removals, and removals of what is already gone.
    commit_changes(
        s,
        vec![
            StateChange::RemoveRoom { room: owned_room_id!("!2:e"), owner: A.try_into().unwrap() },
            StateChange::RemoveRoom { room: owned_room_id!("!2:e"), owner: A.try_into().unwrap() },
            StateChange::RemoveDeferred { owner: A.try_into().unwrap(), event_id: "$2".try_into().unwrap() },
            StateChange::RemoveDeferred { owner: A.try_into().unwrap(), event_id: "$gone".try_into().unwrap() },
            StateChange::PutRoom(owned_room_id!("!3:e"), RoomState::Control { owner: A.try_into().unwrap() }),
        ],
    );
    assert_eq!(kept(s, A, None), (1, 2));
    assert_eq!(kept(s, A, Some(X)), (1, 1));
    assert_eq!(kept(s, A, Some(Y)), (0, 1));
    // Retention, then forgetting the owner's data.
    commit_changes(s, vec![StateChange::PutDeferred(Deferred { received_ms: 100, ..message_from("$4", Y) })]);
    assert_eq!(s.prune_deferred(&owned_user_id!("@alice:example.org"), 50, 0).unwrap(), 2);
    assert_eq!(kept(s, A, None), (1, 1));
    assert_eq!(kept(s, A, Some(Y)), (0, 1));
    commit_changes(s, vec![StateChange::ForgetOwnerData(A.try_into().unwrap())]);
    assert_eq!(kept(s, A, None), (1, 0));
    assert_eq!(kept(s, A, Some(Y)), (0, 0));
    assert_eq!(s.stats().unwrap().deferred_messages, 0);
}

pub fn an_overview_has_its_owners_rooms_and_counted_strangers_only(s: &dyn Store) {
    const A: &str = "@alice:example.org";
    const B: &str = "@bob:example.org";
    let counted =
        StrangerState { messages_not_kept: crate::engine::Tally { total: 3, reported: 1 }, ..StrangerState::default() };
    commit_changes(
        s,
        vec![
            StateChange::PutRoom(owned_room_id!("!a:e"), held_by(A, "@x:evil.example")),
            StateChange::PutRoom(owned_room_id!("!b:e"), held_by(B, "@x:evil.example")),
            StateChange::PutStranger {
                owner: A.try_into().unwrap(),
                user: owned_user_id!("@x:evil.example"),
                state: counted.clone(),
            },
            StateChange::PutStranger {
                owner: A.try_into().unwrap(),
                user: owned_user_id!("@quiet:evil.example"),
                state: StrangerState { last_reply_ms: Some(5), ..StrangerState::default() },
            },
        ],
    );
    let o = s.overview(&owned_user_id!("@alice:example.org")).unwrap();
    assert_eq!(o.held.keys().cloned().collect::<Vec<_>>(), vec![owned_room_id!("!a:e")]);
    assert_eq!(o.strangers.into_iter().collect::<Vec<_>>(), vec![(owned_user_id!("@x:evil.example"), counted)]);
    // A room held for another owner too is in both overviews; one that
    // stops being held for an owner leaves theirs, and only theirs.
    commit_changes(s, vec![StateChange::PutRoom(owned_room_id!("!a:e"), held_by(B, "@x:evil.example"))]);
    assert_eq!(s.overview(&owned_user_id!("@bob:example.org")).unwrap().held.len(), 2);
    assert_eq!(s.overview(&owned_user_id!("@alice:example.org")).unwrap().held.len(), 1);
    commit_changes(
        s,
        vec![StateChange::RemoveRoom { room: owned_room_id!("!a:e"), owner: owned_user_id!("@alice:example.org") }],
    );
    assert!(s.overview(&owned_user_id!("@alice:example.org")).unwrap().held.is_empty());
    assert_eq!(s.overview(&owned_user_id!("@bob:example.org")).unwrap().held.len(), 2);
}

/// The events a batch consumes from tracked rooms are remembered in its
/// write, per room, newest last and bounded; an item the write does not
/// consume (committed before) adds nothing, nor does a room that is not
/// tracked; a room that stops being tracked forgets its list.
pub fn events_consumed_from_tracked_rooms_are_remembered(s: &dyn Store) {
    let held = owned_room_id!("!held:example.org");
    let other = owned_room_id!("!other:example.org");
    let alice = owned_user_id!("@alice:example.org");
    let room = RoomState::Held(HeldRoom::new(alice.clone(), owned_user_id!("@s:example.org"), true, 1));
    commit_changes(s, vec![StateChange::PutRoom(held.clone(), room)]);
    assert_eq!(s.seen_events(&held).unwrap(), Vec::<ruma::OwnedEventId>::new());
    let events: Vec<Vec<u8>> = (0..SEEN_PER_ROOM + 3).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
    let raw: Vec<&[u8]> = events.iter().map(|e| e.as_slice()).collect();
    s.accept_transaction("seen", &raw, 1).unwrap();
    let seqs: Vec<u64> = s.inbox_batch(100).unwrap().iter().map(|i| i.seq).collect();
    let id = |i: usize| -> ruma::OwnedEventId { format!("$e{i}").try_into().unwrap() };
    let seen = |seq: u64, room: &ruma::OwnedRoomId, i: usize| Seen { seq, room: room.clone(), event: id(i) };
    // The first item is consumed in a write of its own; noting it again with
    // the next write changes nothing.
    s.commit_batch_seen(&[], &seqs[..1], &[seen(seqs[0], &held, 0)]).unwrap();
    let mut notes = vec![seen(seqs[0], &held, 99), seen(seqs[1], &other, 1)];
    notes.extend((1..seqs.len()).map(|i| seen(seqs[i], &held, i)));
    // The same event twice is remembered once.
    notes.push(seen(seqs[seqs.len() - 1], &held, seqs.len() - 1));
    let decision = Decision::default();
    s.commit_batch_seen(&[(seqs[1], &decision)], &seqs[2..], &notes).unwrap();
    let expected: Vec<ruma::OwnedEventId> = (seqs.len() - SEEN_PER_ROOM..seqs.len()).map(id).collect();
    assert_eq!(s.seen_events(&held).unwrap(), expected, "the newest, in order, bounded");
    assert!(s.seen_events(&other).unwrap().is_empty(), "an untracked room keeps no list");
    assert_eq!(s.seen_rooms().unwrap(), vec![(held.clone(), expected)]);
    assert!(s.inbox_batch(100).unwrap().is_empty());

    commit_changes(s, vec![StateChange::RemoveRoom { room: held.clone(), owner: alice.clone() }]);
    assert!(s.seen_events(&held).unwrap().is_empty());
    assert!(s.seen_rooms().unwrap().is_empty());
}

/// A room held for two owners is two records: each owner's overview lists
/// their own, removing one leaves the other (and the room's list of events
/// consumed, until the last record goes), and each counts for its owner.
pub fn rooms_are_kept_per_owner(s: &dyn Store) {
    let room = owned_room_id!("!shared:example.org");
    let (alice, bob) = (owned_user_id!("@alice:example.org"), owned_user_id!("@bob:example.org"));
    let stranger = owned_user_id!("@s:remote.org");
    let held_for = |o: &ruma::OwnedUserId| RoomState::Held(HeldRoom::new(o.clone(), stranger.clone(), false, 1));
    commit_changes(
        s,
        vec![StateChange::PutRoom(room.clone(), held_for(&alice)), StateChange::PutRoom(room.clone(), held_for(&bob))],
    );
    assert_eq!(s.rooms(&room).unwrap(), vec![held_for(&alice), held_for(&bob)]);
    assert!(s.overview(&alice).unwrap().held.contains_key(&room));
    assert!(s.overview(&bob).unwrap().held.contains_key(&room));
    assert_eq!(s.kept(&alice, None).unwrap().held_rooms, 1);
    assert_eq!(s.kept(&bob, Some(&stranger)).unwrap().held_rooms, 1);
    // A room ID that extends this one is another room.
    let longer: ruma::OwnedRoomId = "!shared:example.org2".try_into().unwrap();
    commit_changes(s, vec![StateChange::PutRoom(longer.clone(), held_for(&alice))]);
    assert_eq!(s.rooms(&room).unwrap().len(), 2);

    s.accept_transaction("shared", &[br#"{"n":1}"#, br#"{"n":2}"#], 1).unwrap();
    let seqs: Vec<u64> = s.inbox_batch(10).unwrap().iter().map(|i| i.seq).collect();
    let seen = |seq: u64, n: &str| Seen { seq, room: room.clone(), event: format!("${n}").try_into().unwrap() };
    s.commit_batch_seen(&[], &seqs[..1], &[seen(seqs[0], "e1")]).unwrap();

    commit_changes(s, vec![StateChange::RemoveRoom { room: room.clone(), owner: alice.clone() }]);
    assert_eq!(s.rooms(&room).unwrap(), vec![held_for(&bob)]);
    assert!(!s.overview(&alice).unwrap().held.contains_key(&room));
    assert!(s.overview(&bob).unwrap().held.contains_key(&room));
    assert_eq!(s.kept(&alice, None).unwrap().held_rooms, 1, "only the longer room is still alice's");
    assert_eq!(s.seen_events(&room).unwrap().len(), 1, "bob still holds the room: its list stays");
    s.commit_batch_seen(&[], &seqs[1..], &[seen(seqs[1], "e2")]).unwrap();
    assert_eq!(s.seen_events(&room).unwrap().len(), 2);

    commit_changes(s, vec![StateChange::RemoveRoom { room: room.clone(), owner: bob.clone() }]);
    assert!(s.rooms(&room).unwrap().is_empty());
    assert!(s.seen_events(&room).unwrap().is_empty(), "the last record gone, the list goes");
    assert_eq!(s.kept(&bob, None).unwrap().held_rooms, 0);
}

/// Events read outside a transaction or an effect join the inbox in order,
/// as from the homeserver.
pub fn follow_ups_can_be_queued_on_their_own(s: &dyn Store) {
    s.push_follow_ups(&[]).unwrap();
    let follow_ups = [FollowUp { internal: false, raw: E1.to_vec() }, FollowUp { internal: false, raw: E2.to_vec() }];
    s.push_follow_ups(&follow_ups).unwrap();
    let inbox = s.inbox_batch(10).unwrap();
    assert_eq!(
        inbox.iter().map(|i| (i.internal, i.raw.clone())).collect::<Vec<_>>(),
        vec![(false, E1.to_vec()), (false, E2.to_vec())]
    );
    assert_eq!(s.stats().unwrap().follow_ups, 2);
}

#[macro_export]
macro_rules! store_conformance {
    ($factory:path) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            use $crate::store::conformance as suite;

            macro_rules! case {
                ($name:ident) => {
                    #[test]
                    fn $name() {
                        let (store, _guard) = $factory();
                        suite::$name(&store);
                    }
                };
            }
            case!(new_transaction_fills_the_inbox_in_order);
            case!(a_batch_read_is_bounded_by_count_and_bytes);
            case!(a_transactions_events_are_consumed_each_once_in_any_order);
            case!(replayed_transaction_stores_nothing);
            case!(reused_id_with_other_events_is_kept);
            case!(empty_transaction_is_accepted);
            case!(the_highest_numeric_transaction_id_is_remembered);
            case!(commit_applies_state_enqueues_effects_and_consumes_the_item);
            case!(removals_apply);
            case!(outbox_respects_the_watermark_and_finishing);
            case!(the_outbox_is_read_on_past_what_was_read);
            case!(effects_that_stand_or_fall_together_are_finished_together);
            case!(quarantine_moves_the_event_aside);
            case!(the_quarantine_is_bounded_in_size_age_and_count);
            case!(the_quarantine_count_is_bounded_as_events_are_set_aside);
            case!(pruning_forgets_old_transaction_ids_only);
            case!(gate_state_round_trips_and_the_snapshot_finds_it);
            case!(removing_and_forgetting_owner_data);
            case!(forgetting_an_owner_inside_a_batch);
            case!(follow_ups_join_the_inbox_with_their_source);
            case!(retention_drops_old_captured_messages);
            case!(denied_captures_are_kept_apart_then_pruned);
            case!(empty_decisions_are_committed_in_one_go);
            case!(a_batch_commits_in_order_and_skips_what_was_committed);
            case!(due_finds_expired_allows_and_ended_pauses);
            case!(mail_goes_on_its_own_lane);
            case!(a_link_is_used_once);
            case!(sync_position_moves_only_from_where_it_is);
            case!(connector_values_round_trip);
            case!(wave_records_round_trip_and_expire);
            case!(kept_counts_follow_every_way_in_and_out);
            case!(an_overview_has_its_owners_rooms_and_counted_strangers_only);
            case!(events_consumed_from_tracked_rooms_are_remembered);
            case!(rooms_are_kept_per_owner);
            case!(follow_ups_can_be_queued_on_their_own);
            case!(policy_lists_are_kept_once_and_the_operators_found);
            case!(policy_rules_are_kept_by_slot_and_found_by_name);
            case!(attack17_a_new_lists_rules_written_before_its_record_are_kept);
            case!(batch_reads_answer_as_point_reads);
            case!(a_batch_changing_rows_again_and_again_ends_as_its_last_changes);
        }
    };
}

/// Each batch read answers what the point reads answer, key by key, in the
/// order asked: keys found, keys absent, a key asked twice; and through an
/// overlay, what the batch wrote before over what the store holds.
pub fn batch_reads_answer_as_point_reads(s: &dyn Store) {
    let (alice, bob, carol) = (
        owned_user_id!("@alice:example.org"),
        owned_user_id!("@bob:example.org"),
        owned_user_id!("@carol:example.org"),
    );
    let (stranger, nobody) = (owned_user_id!("@stranger:example.org"), owned_user_id!("@nobody:elsewhere.org"));
    let (held, dm, untracked) =
        (owned_room_id!("!held:example.org"), owned_room_id!("!dm:example.org"), owned_room_id!("!no:example.org"));
    let by_server = Subject::Server("evil.example".try_into().unwrap());
    let wave = WaveKey::Sender(stranger.clone());
    let record = WaveRecord { seen: vec![(alice.clone(), 10)], wave_ms: None, expires_ms: 100, day: vec![] };
    let mut changes = sample_decision().changes;
    changes.extend([
        StateChange::PutOwner(OwnerState::new(bob.clone(), owned_room_id!("!bobdm:example.org"), 1)),
        StateChange::PutRoom(held.clone(), held_by(alice.as_str(), stranger.as_str())),
        StateChange::PutRoom(held.clone(), held_by(bob.as_str(), stranger.as_str())),
        StateChange::PutContact {
            owner: alice.clone(),
            subject: by_server.clone(),
            contact: Contact::Blocked { since_ms: 4 },
        },
        StateChange::PutStranger {
            owner: alice.clone(),
            user: stranger.clone(),
            state: StrangerState { last_reply_ms: Some(9), ..Default::default() },
        },
        StateChange::PutDeferred(deferred("$m1", "hello")),
        StateChange::PutWave(wave.clone(), record.clone()),
    ]);
    commit_changes(s, changes);
    s.accept_transaction("seen-batch", &[b"{}"], 1).unwrap();
    let seq = s.inbox_batch(1).unwrap()[0].seq;
    let noted = Seen { seq, room: held.clone(), event: "$e1".try_into().unwrap() };
    s.commit_batch_seen(&[], &[seq], &[noted]).unwrap();

    let rooms = vec![held.clone(), untracked.clone(), dm.clone(), held.clone()];
    let users = vec![alice.clone(), carol.clone(), bob.clone(), alice.clone()];
    let contacts = vec![
        (alice.clone(), by_server.clone()),
        (alice.clone(), Subject::User(stranger.clone())),
        (bob.clone(), by_server.clone()),
        (alice.clone(), by_server.clone()),
    ];
    let pairs =
        vec![(alice.clone(), stranger.clone()), (bob.clone(), stranger.clone()), (alice.clone(), stranger.clone())];
    let kept = vec![
        (alice.clone(), None),
        (alice.clone(), Some(stranger.clone())),
        (carol.clone(), Some(nobody.clone())),
        (alice.clone(), None),
    ];
    let waves = vec![wave.clone(), WaveKey::Sender(nobody.clone()), wave.clone()];

    let same_as_point_reads = |l: &dyn Lookups| {
        assert_eq!(l.rooms_of(&rooms).unwrap(), rooms.iter().map(|r| l.rooms(r).unwrap()).collect::<Vec<_>>());
        assert_eq!(l.owners_of(&users).unwrap(), users.iter().map(|u| l.owner(u).unwrap()).collect::<Vec<_>>());
        assert_eq!(
            l.contacts_of(&contacts).unwrap(),
            contacts.iter().map(|(o, c)| l.contact(o, c).unwrap()).collect::<Vec<_>>()
        );
        assert_eq!(
            l.strangers_of(&pairs).unwrap(),
            pairs.iter().map(|(o, u)| l.stranger(o, u).unwrap()).collect::<Vec<_>>()
        );
        assert_eq!(
            l.kept_of(&kept).unwrap(),
            kept.iter().map(|(o, w)| l.kept(o, w.as_deref()).unwrap()).collect::<Vec<_>>()
        );
        assert_eq!(l.waves_of(&waves).unwrap(), waves.iter().map(|k| l.wave(k).unwrap()).collect::<Vec<_>>());
        assert_eq!(
            l.seen_events_of(&rooms).unwrap(),
            rooms.iter().map(|r| l.seen_events(r).unwrap()).collect::<Vec<_>>()
        );
        assert!(l.rooms_of(&[]).unwrap().is_empty() && l.owners_of(&[]).unwrap().is_empty());
    };

    // The store itself: what was written is found, in place, and only that.
    same_as_point_reads(s);
    let found = s.rooms_of(&rooms).unwrap();
    assert_eq!(found.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 0, 1, 2]);
    assert_eq!(found[0][0].owner(), &alice, "ordered by owner, as the point read");
    let owners: Vec<bool> = s.owners_of(&users).unwrap().iter().map(Option::is_some).collect();
    assert_eq!(owners, vec![true, false, true, true]);
    assert_eq!(s.contacts_of(&contacts).unwrap()[0], Some(Contact::Blocked { since_ms: 4 }));
    assert_eq!(s.strangers_of(&pairs).unwrap()[2].as_ref().and_then(|st| st.last_reply_ms), Some(9));
    let counts: Vec<(u64, u64)> = s.kept_of(&kept).unwrap().iter().map(|k| (k.held_rooms, k.messages)).collect();
    assert_eq!(counts, vec![(1, 1), (1, 1), (0, 0), (1, 1)]);
    assert_eq!(s.waves_of(&waves).unwrap(), vec![Some(record.clone()), None, Some(record.clone())]);
    let seen: Vec<usize> = s.seen_events_of(&rooms).unwrap().iter().map(Vec::len).collect();
    assert_eq!(seen, vec![1, 0, 0, 1]);

    // Through an overlay, with a batch's changes not yet committed: a batch
    // read answers what its point reads answer, and a batch read made before
    // the changes keeps nothing stale.
    let mut overlay = Overlay::new(s);
    same_as_point_reads(&overlay);
    overlay
        .apply(&[
            StateChange::PutOwner(OwnerState::new(carol.clone(), owned_room_id!("!caroldm:example.org"), 1)),
            StateChange::RemoveRoom { room: held.clone(), owner: bob.clone() },
            StateChange::RemoveContact { owner: alice.clone(), subject: by_server.clone() },
            StateChange::PutStranger { owner: bob.clone(), user: stranger.clone(), state: StrangerState::default() },
            StateChange::PutDeferred(deferred("$m2", "again")),
            StateChange::PutWave(WaveKey::Sender(nobody.clone()), record.clone()),
        ])
        .unwrap();
    same_as_point_reads(&overlay);
    assert!(overlay.owners_of(&users).unwrap()[1].is_some(), "written by the batch");
    assert_eq!(overlay.rooms_of(&rooms).unwrap()[0].len(), 1);
    assert_eq!(overlay.contacts_of(&contacts).unwrap()[0], None, "removed by the batch");
    assert!(overlay.strangers_of(&pairs).unwrap()[1].is_some());
    assert_eq!(overlay.kept_of(&kept).unwrap()[1].messages, 2, "the batch's message counted");
    assert!(overlay.waves_of(&waves).unwrap()[1].is_some());
    // The store is untouched until the batch is committed.
    same_as_point_reads(s);
    assert!(s.owner(&carol).unwrap().is_none());

    // A key read as absent by a batch read stays absent for the batch (read
    // once), and is read again once the batch is committed.
    let mut fresh = Overlay::new(s);
    let dave = owned_user_id!("@dave:example.org");
    assert_eq!(fresh.owners_of(std::slice::from_ref(&dave)).unwrap(), vec![None]);
    commit_changes(s, vec![StateChange::PutOwner(OwnerState::new(dave.clone(), owned_room_id!("!d:example.org"), 1))]);
    assert!(fresh.owner(&dave).unwrap().is_none());
    fresh.clear();
    assert!(fresh.owner(&dave).unwrap().is_some());
}

/// One batch that changes the same rows again and again ends where its
/// last changes leave them, with the kept counts of that end, and a room
/// whose last record went forgets its list of events consumed even when
/// the batch holds it again after.
pub fn a_batch_changing_rows_again_and_again_ends_as_its_last_changes(s: &dyn Store) {
    let (alice, bob) = (owned_user_id!("@alice:example.org"), owned_user_id!("@bob:example.org"));
    let (stranger, friend) = (owned_user_id!("@stranger:example.org"), owned_user_id!("@friend:example.org"));
    let held = owned_room_id!("!held:example.org");
    let bob_owner = |replies| OwnerState {
        replies_in_window: replies,
        ..OwnerState::new(bob.clone(), owned_room_id!("!bobdm:example.org"), 1)
    };
    let room = held_by(alice.as_str(), stranger.as_str());
    commit_changes(
        s,
        vec![
            StateChange::PutOwner(bob_owner(1)),
            StateChange::PutRoom(held.clone(), room.clone()),
            StateChange::PutDeferred(deferred("$m1", "first")),
        ],
    );
    s.accept_transaction("noted", &[b"{}"], 1).unwrap();
    let seq = s.inbox_batch(1).unwrap()[0].seq;
    s.commit_batch_seen(&[], &[seq], &[Seen { seq, room: held.clone(), event: "$e1".try_into().unwrap() }]).unwrap();
    assert_eq!(s.seen_events(&held).unwrap().len(), 1);

    let wave = WaveKey::Sender(stranger.clone());
    let record = |expires_ms| WaveRecord { seen: vec![], wave_ms: None, expires_ms, day: vec![] };
    let stranger_state = |ms| StrangerState { last_reply_ms: Some(ms), ..Default::default() };
    let first = Decision {
        changes: vec![
            StateChange::RemoveRoom { room: held.clone(), owner: alice.clone() },
            StateChange::PutRoom(held.clone(), room.clone()),
            StateChange::PutDeferred(deferred("$m1", "edited")),
            StateChange::RemoveDeferred { owner: alice.clone(), event_id: "$m1".try_into().unwrap() },
            StateChange::PutDeferred(deferred("$m2", "second")),
            StateChange::RemoveOwner(bob.clone()),
            StateChange::PutContact {
                owner: alice.clone(),
                subject: Subject::User(friend.clone()),
                contact: Contact::Blocked { since_ms: 1 },
            },
            StateChange::PutStranger { owner: alice.clone(), user: stranger.clone(), state: stranger_state(1) },
            StateChange::PutWave(wave.clone(), record(10)),
        ],
        ..Default::default()
    };
    let second = Decision {
        changes: vec![
            StateChange::PutDeferred(deferred("$m1", "again")),
            StateChange::RemoveDeferred { owner: alice.clone(), event_id: "$m2".try_into().unwrap() },
            StateChange::PutOwner(bob_owner(3)),
            StateChange::RemoveContact { owner: alice.clone(), subject: Subject::User(friend.clone()) },
            StateChange::PutStranger { owner: alice.clone(), user: stranger.clone(), state: stranger_state(2) },
            StateChange::PutWave(wave.clone(), record(20)),
        ],
        ..Default::default()
    };
    s.accept_transaction("again", &[b"{}", b"{}"], 1).unwrap();
    let seqs: Vec<u64> = s.inbox_batch(2).unwrap().iter().map(|i| i.seq).collect();
    s.commit_batch(&[(seqs[0], &first), (seqs[1], &second)], &[]).unwrap();

    assert_eq!(s.rooms(&held).unwrap(), vec![room]);
    assert!(s.seen_events(&held).unwrap().is_empty(), "its last record went within the batch");
    assert_eq!(s.deferred(&alice, ruma::event_id!("$m1")).unwrap().map(|d| d.body), Some("again".into()));
    assert_eq!(s.deferred(&alice, ruma::event_id!("$m2")).unwrap(), None);
    assert_eq!(kept(s, alice.as_str(), Some(stranger.as_str())), (1, 1));
    assert_eq!(kept(s, alice.as_str(), None), (1, 1));
    assert_eq!(s.stats().unwrap().deferred_messages, 1);
    assert_eq!(s.owner(&bob).unwrap().map(|o| o.replies_in_window), Some(3));
    assert_eq!(s.contact(&alice, &Subject::User(friend)).unwrap(), None);
    assert_eq!(s.stranger(&alice, &stranger).unwrap().and_then(|st| st.last_reply_ms), Some(2));
    assert_eq!(s.wave(&wave).unwrap().map(|r| r.expires_ms), Some(20));
}
