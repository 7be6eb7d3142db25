//! Shared ban lists: a stranger a followed list bans is declined without a
//! word, the owner's own allow comes first, a rule added later reaches
//! who is pending, one removed undoes nothing, and whatever a list's
//! moderators write stays within bounds.

use super::*;
use crate::policy::{MAX_LISTS_PER_OWNER, MAX_RULES_PER_LIST, PolicyList, RuleEvent, RuleKind};

pub(super) const LIST: &str = "!list:lists.org";

pub(super) fn rule(kind: &str, key: &str, entity: &str) -> RuleEvent {
    RuleEvent {
        event_type: format!("m.policy.rule.{kind}"),
        state_key: key.into(),
        entity: Some(entity.into()),
        recommendation: Some("m.ban".into()),
        reason: Some("spam".into()),
    }
}

pub(super) fn list_with(rules: &[RuleEvent]) -> PolicyList {
    let mut l = PolicyList::new(rid(LIST), "#list:lists.org".into()).replaced(rules, NOW);
    l.followers.insert(uid(ALICE));
    l
}

fn following(mut s: Snapshot, list: PolicyList) -> Snapshot {
    let mut alice = s.owners.get(&uid(ALICE)).cloned().unwrap_or_else(owner);
    alice.policy_lists = vec![list.room_id.clone()];
    s.owners.insert(uid(ALICE), alice);
    s.policy.insert(list.room_id.clone(), list);
    s
}

fn invite_from(sender: &str, room: &str) -> Input {
    member(sender, room, ALICE, Membership::Invite, true)
}

fn invited(rules: &[RuleEvent]) -> Snapshot {
    following(with_owner(Snapshot::default()), list_with(rules))
}

fn banned_count(d: &Decision) -> Option<u32> {
    d.changes.iter().find_map(|c| match c {
        StateChange::PutOwner(o) => Some(o.banned.total),
        _ => None,
    })
}

#[test]
fn a_stranger_a_list_bans_is_declined_without_a_reply_join_or_rule_and_counted() {
    for rules in [
        vec![rule("user", "a", "@stranger:remote.org")],
        vec![rule("user", "a", "@str*:remote.*")],
        vec![rule("server", "b", "remote.org")],
    ] {
        let d = decide(&invited(&rules), &invite_from(STRANGER, HELD), NOW, &config());
        assert_eq!(kinds(&d), ["leave"], "{rules:?}");
        assert!(matches!(&d.effects[0], Effect::Leave { reason: None, as_user, .. } if *as_user == uid(ALICE)));
        assert_eq!(banned_count(&d), Some(1));
        assert!(!d.changes.iter().any(|c| matches!(c, StateChange::PutRoom(..))), "not held");
        assert_eq!(d.outcomes, [Outcome::InviteBanned]);
    }
}

#[test]
fn a_stranger_no_rule_names_is_held_as_ever() {
    let s = invited(&[rule("user", "a", "@other:remote.org"), rule("server", "b", "*.remote.org")]);
    let d = decide(&s, &invite_from(STRANGER, HELD), NOW, &config());
    assert!(kinds(&d).contains(&"join"), "{d:?}");
}

#[test]
fn set_banned_ignore_leaves_the_invitation_unanswered_but_counts_it() {
    let mut s = invited(&[rule("user", "a", "@stranger:remote.org")]);
    s.owners.get_mut(&uid(ALICE)).unwrap().banned_ignore = true;
    let d = decide(&s, &invite_from(STRANGER, HELD), NOW, &config());
    assert!(d.effects.is_empty(), "{d:?}");
    assert_eq!(banned_count(&d), Some(1));
}

#[test]
fn the_owners_own_allow_beats_a_list() {
    let mut s = invited(&[rule("user", "a", "@stranger:remote.org")]);
    s.contacts.insert(
        (uid(ALICE), usr(STRANGER)),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
    );
    let d = decide(&s, &invite_from(STRANGER, HELD), NOW, &config());
    assert!(d.is_empty(), "an allowed sender rings as ever: {d:?}");
}

#[test]
fn an_operator_list_applies_to_every_owner_and_a_list_the_owner_left_does_not() {
    let mut list = list_with(&[rule("user", "a", "@stranger:remote.org")]);
    list.followers.clear();
    let mut s = with_owner(Snapshot::default());
    s.policy.insert(rid(LIST), list.clone());
    // Not the owner's, not the operator's: read by chance, it decides nothing.
    assert!(kinds(&decide(&s, &invite_from(STRANGER, HELD), NOW, &config())).contains(&"join"));
    list.operator = true;
    s.policy.insert(rid(LIST), list);
    assert_eq!(kinds(&decide(&s, &invite_from(STRANGER, HELD), NOW, &config())), ["leave"]);
}

#[test]
fn other_recommendations_redactions_and_out_of_bounds_rules_are_no_rules() {
    let mut odd = rule("user", "a", "@stranger:remote.org");
    odd.recommendation = Some("m.mute".into());
    let mut redacted = rule("user", "a", "@stranger:remote.org");
    (redacted.entity, redacted.recommendation) = (None, None);
    let long = rule("user", "a", &format!("@{}:remote.org", "x".repeat(300)));
    let mut long_key = rule("user", "a", "@stranger:remote.org");
    long_key.state_key = "k".repeat(300);
    let empty = rule("user", "a", "");
    let mut unknown_type = rule("user", "a", "@stranger:remote.org");
    unknown_type.event_type = "m.policy.rule.whatever".into();
    for r in [odd, redacted, long, long_key, empty, unknown_type] {
        assert!(crate::policy::rule_of(&r).is_none(), "{r:?}");
    }
    let mut takedown = rule("server", "t", "remote.org");
    takedown.recommendation = Some("org.matrix.msc4204.takedown".into());
    assert!(crate::policy::rule_of(&takedown).is_some_and(|r| r.takedown));
    // A reason is one line, bounded.
    let mut loud = rule("user", "a", "@x:y.org");
    loud.reason = Some(format!("line\nbreak{}", "r".repeat(5000)));
    let reason = crate::policy::rule_of(&loud).unwrap().reason.unwrap();
    assert!(!reason.contains('\n') && reason.chars().count() <= crate::policy::MAX_REASON, "{reason}");
}

fn rule_input(r: RuleEvent, n: u32) -> Input {
    Input::PolicyRule { meta: meta_n("@mod:lists.org", LIST, n), rule: r }
}

/// The slot changes a decision makes to the list.
fn slots(d: &Decision) -> Vec<(String, Option<String>)> {
    d.changes
        .iter()
        .filter_map(|c| match c {
            StateChange::PutPolicyRule { slot, rule, .. } => {
                Some((slot.1.clone(), rule.as_ref().map(|r| r.entity.clone())))
            }
            _ => None,
        })
        .collect()
}

fn put_list(d: &Decision) -> &PolicyList {
    d.changes
        .iter()
        .find_map(|c| match c {
            StateChange::PutPolicyList(l) => Some(l),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no list kept in {d:?}"))
}

#[test]
fn a_rule_event_is_kept_replaced_and_removed_in_its_slot() {
    let s = invited(&[]);
    let d = decide(&s, &rule_input(rule("user", "a", "@spam:x.org"), 1), NOW, &config());
    // One slot written, the list's record counting it; nothing checked yet.
    assert_eq!(slots(&d), [("a".into(), Some("@spam:x.org".into()))]);
    assert_eq!((put_list(&d).kept, put_list(&d).changed_ms), (1, NOW));
    assert!(put_list(&d).rules.is_empty(), "the record carries no rules");
    assert!(d.effects.is_empty(), "followers are checked on the timer: {d:?}");
    let s = s.after(&d.changes);
    // The same slot, a new entity: replaced, not added.
    let d = decide(&s, &rule_input(rule("user", "a", "@eggs:x.org"), 2), NOW + 5, &config());
    assert_eq!(slots(&d), [("a".into(), Some("@eggs:x.org".into()))]);
    assert_eq!((put_list(&d).kept, put_list(&d).changed_ms), (1, NOW + 5));
    let s = s.after(&d.changes);
    // The same rule again changes nothing.
    assert!(decide(&s, &rule_input(rule("user", "a", "@eggs:x.org"), 3), NOW, &config()).is_empty());
    // Redacted (empty content): the slot is emptied, and nothing is checked.
    let mut gone = rule("user", "a", "@eggs:x.org");
    (gone.entity, gone.recommendation, gone.reason) = (None, None, None);
    let d = decide(&s, &rule_input(gone, 4), NOW + 9, &config());
    assert_eq!(slots(&d), [("a".into(), None)]);
    assert_eq!((put_list(&d).kept, put_list(&d).changed_ms), (0, NOW + 5));
    assert!(d.effects.is_empty());
}

#[test]
fn rules_in_a_room_that_is_no_followed_list_are_ignored() {
    let d = decide(&with_owner(Snapshot::default()), &rule_input(rule("user", "a", "@spam:x.org"), 1), NOW, &config());
    assert!(d.is_empty());
}

#[test]
fn a_list_keeps_at_most_its_bound_of_rules_and_counts_the_rest() {
    let many: Vec<RuleEvent> =
        (0..MAX_RULES_PER_LIST + 5).map(|i| rule("user", &format!("k{i}"), &format!("@u{i}:x.org"))).collect();
    let list = list_with(&many);
    assert_eq!((list.rules.len(), list.kept as usize), (MAX_RULES_PER_LIST, MAX_RULES_PER_LIST));
    assert_eq!(list.ignored, 5);
    // A full list still takes a new rule in a slot it has.
    let s = following(with_owner(Snapshot::default()), list);
    let d = decide(&s, &rule_input(rule("user", "k0", "@new:x.org"), 1), NOW, &config());
    assert_eq!(put_list(&d).kept as usize, MAX_RULES_PER_LIST);
    assert_eq!(slots(&d), [("k0".into(), Some("@new:x.org".into()))]);
    let d = decide(&s, &rule_input(rule("user", "fresh", "@new:x.org"), 2), NOW, &config());
    assert_eq!(put_list(&d).ignored, 6);
}

fn pending_snapshot(rules: &[RuleEvent]) -> Snapshot {
    let mut s = invited(rules);
    let mut overview = OwnerOverview::default();
    overview.held.insert(rid(HELD), held_room(true));
    overview.held.insert(rid("!other:remote.org"), HeldRoom::new(uid(ALICE), uid("@fine:else.org"), true, NOW - 10));
    overview.deferred.push(captured(&"$m1".try_into().unwrap(), "hello"));
    s.overview = Some(overview);
    s
}

#[test]
fn a_rule_added_later_declines_a_pending_stranger_it_bans_and_no_one_else() {
    let s = pending_snapshot(&[rule("user", "a", "@stranger:*")]);
    let input = Input::CheckPending { owner: uid(ALICE) };
    // What the check reads: the rules that could name each pending stranger.
    let read = crate::policy_read(&s, &input, NOW);
    let crate::policy::RulesRead::Naming(names) = &read.rules else { panic!("{read:?}") };
    assert!(names.contains(&STRANGER.to_owned()) && names.contains(&"@fine:else.org".to_owned()), "{names:?}");
    assert!(read.operator && read.lists == [rid(LIST)]);
    let d = decide(&s, &input, NOW, &config());
    assert_eq!(kinds(&d), ["leave", "unrule"]);
    assert!(d.effects.iter().all(|e| e.lane() == Lane::Room(rid(HELD))));
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }));
    assert!(
        d.changes.contains(&StateChange::RemoveDeferred { owner: uid(ALICE), event_id: "$m1".try_into().unwrap() })
    );
    assert_eq!(banned_count(&d), Some(1));
    // Allowed meanwhile: left alone.
    let mut allowed = s.clone();
    allowed
        .overview
        .as_mut()
        .unwrap()
        .contacts
        .insert(usr(STRANGER), Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None });
    assert!(decide(&allowed, &input, NOW, &config()).effects.is_empty());
    // A list the owner no longer follows decides nothing for them.
    let mut left = s.clone();
    left.owners.get_mut(&uid(ALICE)).unwrap().policy_lists.clear();
    assert!(decide(&left, &input, NOW, &config()).effects.is_empty());
}

#[test]
fn a_pending_check_is_due_once_per_change_of_a_list_and_not_again() {
    let mut s = pending_snapshot(&[]);
    let d = decide(&s, &rule_input(rule("user", "a", "@stranger:remote.org"), 1), NOW, &config());
    s = s.after(&d.changes);
    let alice = |s: &Snapshot| s.owners[&uid(ALICE)].clone();
    let lists = |s: &Snapshot| s.policy.values().cloned().collect::<Vec<_>>();
    assert!(crate::policy::check_due(&alice(&s), &lists(&s).iter().collect::<Vec<_>>()));
    // A hundred more rules before the timer: still one check.
    for n in 0..100 {
        let d = decide(&s, &rule_input(rule("user", &format!("k{n}"), &format!("@u{n}:x.org")), n + 2), NOW, &config());
        s = s.after(&d.changes);
    }
    let d = decide(&s, &Input::CheckPending { owner: uid(ALICE) }, NOW + 1, &config());
    assert_eq!(banned_count(&d), Some(1));
    s = s.after(&d.changes);
    assert!(!crate::policy::check_due(&alice(&s), &lists(&s).iter().collect::<Vec<_>>()));
    // A rule kept later in the check's own millisecond is still newer than it.
    let d = decide(&s, &rule_input(rule("user", "late", "@late:x.org"), 500), NOW + 1, &config());
    s = s.after(&d.changes);
    assert!(crate::policy::check_due(&alice(&s), &lists(&s).iter().collect::<Vec<_>>()));
}

#[test]
fn a_rule_removed_undoes_nothing() {
    let s = pending_snapshot(&[rule("user", "a", "@nobody:x.org")]);
    let mut gone = rule("user", "a", "@nobody:x.org");
    gone.recommendation = None;
    let d = decide(&s, &rule_input(gone, 1), NOW + 1, &config());
    assert!(d.effects.is_empty());
    assert_eq!(put_list(&d).changed_ms, NOW, "nothing to check: {d:?}");
}

fn read_input(owner: Option<&str>, rules: Vec<RuleEvent>, error: Option<&str>) -> Input {
    Input::ListRead {
        owner: owner.map(uid),
        asked: "#list:lists.org".into(),
        room_id: error.is_none().then(|| rid(LIST)),
        rules,
        error: error.map(Into::into),
        read_ms: None,
    }
}

#[test]
fn a_list_read_is_followed_answered_and_applied_to_who_is_pending() {
    let mut s = pending_snapshot(&[]);
    s.policy.clear();
    s.owners.get_mut(&uid(ALICE)).unwrap().policy_lists.clear();
    let d = decide(&s, &read_input(Some(ALICE), vec![rule("server", "r", "remote.org")], None), NOW, &config());
    let list = put_list(&d);
    assert!(list.followers.contains(&uid(ALICE)) && !list.operator);
    let alice = d.changes.iter().rev().find_map(|c| match c {
        StateChange::PutOwner(o) => Some(o),
        _ => None,
    });
    assert_eq!(alice.unwrap().policy_lists, [rid(LIST)]);
    assert_eq!(alice.unwrap().banned.total, 1, "the pending stranger was declined and counted");
    let body = notice_body(&d);
    assert!(body.contains("1 ban rule") && body.contains("Gatekeeper's bot joined"), "{body}");
    assert!(kinds(&d).contains(&"leave"));
    // In client mode the owner's own account joins, and the answer says so.
    let client = EngineConfig { client_mode: true, ..config() };
    let d = decide(&s, &read_input(Some(ALICE), vec![], None), NOW, &client);
    assert!(notice_body(&d).contains("Your account joined"), "{}", notice_body(&d));
    // One that could not be joined is answered with why, and changes nothing.
    let d = decide(&s, &read_input(Some(ALICE), vec![], Some("M_NOT_FOUND")), NOW, &config());
    assert!(d.changes.is_empty());
    assert!(notice_body(&d).contains("M_NOT_FOUND"));
    // The operator's: kept for everyone, no one answered.
    let d = decide(&s, &read_input(None, vec![rule("user", "a", "@x:y.org")], None), NOW, &config());
    assert!(put_list(&d).operator && d.effects.is_empty());
}

fn command(s: &Snapshot, body: &str) -> Decision {
    decide(s, &text(ALICE, CONTROL, body), NOW, &config())
}

fn commanding(list: Option<PolicyList>) -> Snapshot {
    let mut s = control();
    if let Some(list) = list {
        s = following(s, list);
    }
    s
}

#[test]
fn subscribe_joins_as_the_bot_within_the_bound_and_not_twice() {
    let s = commanding(None);
    let d = command(&s, "subscribe #list:lists.org");
    assert!(matches!(&d.effects[0], Effect::FollowList { as_user, owner: Some(o), target }
        if *as_user == uid(BOT) && *o == uid(ALICE) && target == "#list:lists.org"));
    assert!(d.changes.is_empty(), "followed once read");
    let s = commanding(Some(list_with(&[])));
    for again in ["subscribe #list:lists.org", "subscribe !list:lists.org"] {
        let d = command(&s, again);
        assert_eq!(kinds(&d), ["notice"]);
        assert!(notice_body(&d).contains("already"), "{}", notice_body(&d));
    }
    let mut full = commanding(None);
    full.owners.get_mut(&uid(ALICE)).unwrap().policy_lists =
        (0..MAX_LISTS_PER_OWNER).map(|i| rid(&format!("!l{i}:x.org"))).collect();
    assert_eq!(kinds(&command(&full, "subscribe #list:lists.org")), ["notice"]);
    // Two subscribes in flight when one place was left: the second read is
    // refused, so the bound holds however many joins were asked for.
    let mut one_left = pending_snapshot(&[]);
    one_left.policy.clear();
    one_left.owners.get_mut(&uid(ALICE)).unwrap().policy_lists =
        (1..MAX_LISTS_PER_OWNER).map(|i| rid(&format!("!l{i}:x.org"))).collect();
    let d = decide(&one_left, &read_input(Some(ALICE), vec![], None), NOW, &config());
    let one_left = one_left.after(&d.changes);
    assert_eq!(one_left.owners[&uid(ALICE)].policy_lists.len(), MAX_LISTS_PER_OWNER);
    let mut second = read_input(Some(ALICE), vec![], None);
    if let Input::ListRead { room_id, asked, .. } = &mut second {
        (*room_id, *asked) = (Some(rid("!second:lists.org")), "#second:lists.org".into());
    }
    let d = decide(&one_left, &second, NOW, &config());
    assert!(d.changes.is_empty() && notice_body(&d).contains("20"), "{d:?}");
    for bad in ["subscribe", "subscribe list", "subscribe @user:x.org", "subscribe #a:b #c:d"] {
        assert!(notice_body(&command(&s, bad)).contains("subscribe <"), "{bad}");
    }
}

#[test]
fn subscriptions_lists_rule_counts_and_unsubscribe_forgets_a_list_nobody_follows() {
    let s = commanding(Some(list_with(&[rule("user", "a", "@x:y.org"), rule("server", "b", "evil.org")])));
    let body = notice_body(&command(&s, "subscriptions"));
    assert!(body.contains("#list:lists.org (!list:lists.org): 2 ban rules"), "{body}");
    let d = command(&s, "unsubscribe #list:lists.org");
    assert!(d.changes.contains(&StateChange::RemovePolicyList(rid(LIST))));
    // Forgotten, never left: the room may be one Gatekeeper needs for
    // something else (another owner's control room or shared list), or in
    // client mode a room the owner was in before.
    assert!(!kinds(&d).contains(&"leave"), "{d:?}");
    // Followed by someone else too: kept, without Alice.
    let mut shared = list_with(&[]);
    shared.followers.insert(uid("@bob:example.org"));
    let d = command(&commanding(Some(shared)), "unsubscribe !list:lists.org");
    assert!(put_list(&d).followers.iter().eq([&uid("@bob:example.org")]));
    assert!(!kinds(&d).contains(&"leave"));
    assert!(notice_body(&command(&commanding(None), "unsubscribe #list:lists.org")).contains("do not follow"));
}

#[test]
fn set_banned_and_show_banned() {
    let s = commanding(None);
    let d = command(&s, "set banned ignore");
    assert!(matches!(&d.changes[0], StateChange::PutOwner(o) if o.banned_ignore));
    assert!(notice_body(&command(&s, "set banned maybe")).contains("decline"));
    let mut s = commanding(None);
    let alice = s.owners.get_mut(&uid(ALICE)).unwrap();
    alice.banned_recent = vec![(uid(STRANGER), NOW)];
    alice.banned.total = 12;
    let body = notice_body(&command(&s, "show banned"));
    assert!(body.contains(STRANGER) && body.contains("12"), "{body}");
}

#[test]
fn the_digest_counts_invitations_a_list_declined() {
    let mut o = owner();
    o.banned.total = 12;
    let digest = crate::digest::render(&o, &OwnerOverview::default()).expect("a digest");
    let all: String = digest.parts.iter().map(|p| p.plain.clone()).collect();
    assert!(all.contains("12 invitations from accounts on your ban lists were declined; `show banned`"), "{all}");
}

const SHARED: &str = "!mine:example.org";

fn sharing(s: Snapshot) -> Snapshot {
    let mut s = s;
    s.owners.get_mut(&uid(ALICE)).unwrap().shared_list = Some(rid(SHARED));
    s
}

fn published(d: &Decision) -> Vec<(String, Option<String>, bool)> {
    d.effects
        .iter()
        .filter_map(|e| match e {
            Effect::PutPolicyRule { room_id, entity, reason, present, as_user, .. } => {
                assert_eq!((room_id.as_str(), as_user.as_str()), (SHARED, BOT));
                Some((entity.clone(), reason.clone(), *present))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn share_blocks_makes_a_list_once_and_publishes_every_block_in_it() {
    let mut s = commanding(None);
    s.overview.as_mut().unwrap().contacts.insert(usr("@old:evil.org"), Contact::Blocked { since_ms: 1 });
    s.overview
        .as_mut()
        .unwrap()
        .contacts
        .insert(Subject::Server("spam.org".try_into().unwrap()), Contact::Blocked { since_ms: 1 });
    let d = command(&s, "share blocks");
    assert_eq!(kinds(&d), ["create_list", "notice"]);
    assert!(d.changes.is_empty());
    let created = Input::ListCreated { owner: uid(ALICE), room_id: rid(SHARED) };
    let d = decide(&s, &created, NOW, &config());
    let mut rules = published(&d);
    rules.sort();
    assert_eq!(rules, [("@old:evil.org".into(), None, true), ("spam.org".into(), None, true)]);
    assert!(d.effects.iter().any(|e| matches!(e, Effect::PutPolicyRule { kind: RuleKind::Server, .. })));
    assert!(notice_body(&d).contains(SHARED) && notice_body(&d).contains("public join rule"), "{}", notice_body(&d));
    // Made twice (a repeated `share blocks`): the first one stays.
    assert!(decide(&sharing(s.clone()), &created, NOW, &config()).is_empty());
    // Asked again: where it is.
    assert!(notice_body(&command(&sharing(s), "share blocks")).contains(SHARED));
}

#[test]
fn a_shared_list_follows_block_unblock_undo_and_block_all_and_stops_when_asked() {
    let s = sharing(commanding(None));
    let d = command(&s, "block @spam:evil.org because sent me spam");
    assert_eq!(published(&d), [("@spam:evil.org".into(), Some("sent me spam".into()), true)]);
    let d = command(&s, "block @spam:evil.org");
    assert_eq!(published(&d), [("@spam:evil.org".into(), None, true)]);
    let mut blocked = s.clone();
    blocked.overview.as_mut().unwrap().contacts.insert(usr("@spam:evil.org"), Contact::Blocked { since_ms: 1 });
    assert_eq!(published(&command(&blocked, "unblock @spam:evil.org")), [("@spam:evil.org".into(), None, false)]);
    // An allow over a block withdraws it too.
    assert_eq!(published(&command(&blocked, "allow @spam:evil.org")), [("@spam:evil.org".into(), None, false)]);
    // Undo of the block: withdrawn.
    let after_block = blocked.after(&command(&s, "block @spam:evil.org").changes);
    let undone = command(&after_block, "undo");
    assert_eq!(published(&undone), [("@spam:evil.org".into(), None, false)], "{undone:?}");
    // `block all`: everyone pending.
    let mut pending = s.clone();
    pending.overview.as_mut().unwrap().held.insert(rid(HELD), held_room(true));
    assert_eq!(published(&command(&pending, "block all")), [(STRANGER.into(), None, true)]);
    assert_eq!(
        published(&command(&pending, "block all because spam wave")),
        [(STRANGER.into(), Some("spam wave".into()), true)],
        "the reason goes with each rule, once"
    );
    // Not sharing: nothing published.
    assert!(published(&command(&commanding(None), "block @spam:evil.org because spam")).is_empty());
    // Off: the owner's record forgets the room; nothing published from then on.
    let d = command(&s, "share blocks off");
    assert!(matches!(&d.changes[0], StateChange::PutOwner(o) if o.shared_list.is_none()));
    assert!(notice_body(&command(&commanding(None), "share blocks off")).contains("not shared"));
    // `stop`: nobody keeps the list current any more, so its rules are
    // withdrawn rather than left banning for every follower.
    assert_eq!(published(&command(&blocked, "stop")), [("@spam:evil.org".into(), None, false)]);
    assert!(published(&command(&s, "stop")).is_empty(), "nothing blocked, nothing withdrawn");
}

#[test]
fn an_owner_who_stops_follows_no_list_and_a_list_nobody_follows_is_forgotten() {
    let mut shared = list_with(&[rule("user", "a", "@x:y.org")]);
    shared.room_id = rid("!shared:lists.org");
    shared.followers.insert(uid("@bob:example.org"));
    let mut s = commanding(Some(list_with(&[])));
    s.owners.get_mut(&uid(ALICE)).unwrap().policy_lists.push(shared.room_id.clone());
    s.policy.insert(shared.room_id.clone(), shared.clone());
    let d = command(&s, "stop");
    assert!(d.changes.contains(&StateChange::RemoveOwner(uid(ALICE))), "{d:?}");
    assert!(d.changes.contains(&StateChange::RemovePolicyList(rid(LIST))));
    assert!(!d.effects.iter().any(|e| matches!(e, Effect::Leave { room_id, .. } if room_id.as_str() == LIST)));
    let kept = d.changes.iter().find_map(|c| match c {
        StateChange::PutPolicyList(l) => Some(l),
        _ => None,
    });
    assert!(kept.unwrap().followers.iter().eq([&uid("@bob:example.org")]), "Bob still follows his");
    // Leaving the control room is a stop too.
    let left = decide(&s, &member(ALICE, CONTROL, ALICE, Membership::Leave, false), NOW, &config());
    assert!(left.changes.contains(&StateChange::RemovePolicyList(rid(LIST))), "{left:?}");
    // A list the decision did not read (not in the snapshot) is left as it is.
    let mut bare = control();
    bare.owners.get_mut(&uid(ALICE)).unwrap().policy_lists = vec![rid(LIST)];
    assert!(!command(&bare, "stop").changes.iter().any(|c| matches!(c, StateChange::RemovePolicyList(_))));
}

#[test]
fn a_rule_added_to_an_operators_list_is_checked_for_every_owner() {
    let mut list = list_with(&[]);
    list.followers.clear();
    list.operator = true;
    let mut s = with_owner(Snapshot::default());
    s.policy.insert(rid(LIST), list);
    let d = decide(&s, &rule_input(rule("user", "a", "@stranger:*"), 1), NOW, &config());
    assert!(d.effects.is_empty(), "one decision, whatever the number of owners: {d:?}");
    let s = s.after(&d.changes);
    // Every owner is due a check, though the list is not theirs.
    let bob = OwnerState { user_id: uid("@bob:example.org"), ..owner() };
    let lists: Vec<&PolicyList> = s.policy.values().collect();
    assert!(crate::policy::check_due(&s.owners[&uid(ALICE)], &lists) && crate::policy::check_due(&bob, &lists));
    // Each owner's check then applies it.
    let mut pending = pending_snapshot(&[rule("user", "a", "@stranger:*")]);
    pending.owners.get_mut(&uid(ALICE)).unwrap().policy_lists.clear();
    pending.policy.get_mut(&rid(LIST)).unwrap().operator = true;
    let check = Input::CheckPending { owner: uid(ALICE) };
    assert_eq!(kinds(&decide(&pending, &check, NOW, &config())), ["leave", "unrule"]);
}

#[test]
fn a_rule_that_bans_everyone_is_no_rule() {
    for everyone in ["*", "@*:*", "*:*", "?*", "@?:*.*", "a*"] {
        assert_eq!(crate::policy::rule_of(&rule("user", "k", everyone)), None, "{everyone}");
        assert_eq!(crate::policy::rule_of(&rule("server", "k", everyone)), None, "{everyone}");
    }
    for narrow in ["@*:evil.org", "*.evil.org", "@spam*:*"] {
        assert!(crate::policy::rule_of(&rule("user", "k", narrow)).is_some(), "{narrow}");
    }
    // Two literal characters are enough (a user rule with no wildcard must
    // be a user ID, so this one is a server's).
    assert!(crate::policy::rule_of(&rule("server", "k", "ev")).is_some());
    // Added later, a catch-all reaches nobody pending.
    let s = pending_snapshot(&[]);
    let d = decide(&s, &rule_input(rule("user", "all", "@*:*"), 1), NOW, &config());
    assert!(d.effects.is_empty(), "{d:?}");
}

#[test]
fn a_rule_whose_reason_alone_changed_checks_nobody_again() {
    let s = pending_snapshot(&[rule("user", "a", "@nobody:x.org")]);
    let mut reworded = rule("user", "a", "@nobody:x.org");
    reworded.reason = Some("spam, and more spam".into());
    let d = decide(&s, &rule_input(reworded, 1), NOW + 1, &config());
    assert_eq!(put_list(&d).changed_ms, NOW, "nobody checked again: {d:?}");
    assert_eq!(slots(&d), [("a".into(), Some("@nobody:x.org".into()))], "the new reason kept");
}

#[test]
fn a_list_command_after_a_mention_reads_the_lists() {
    for body in ["Gatekeeper: stop", "@gatekeeper:example.org unsubscribe #l:x.org", "!gk subscriptions", "stop"] {
        assert!(crate::commands::reads_lists(body), "{body}");
    }
    assert!(!crate::commands::reads_lists("Gatekeeper: pending"));
}

#[test]
fn every_rule_that_can_ban_an_invitation_is_under_a_key_it_looks_up() {
    let sender = uid("@spam.bot:mail.evil.org");
    let names = crate::policy::names(&sender, Some(&rid(HELD)));
    for (kind, entity) in [
        ("user", "@spam.bot:mail.evil.org"),
        ("user", "@spam*:mail.evil.org"),
        ("user", "@*:*.evil.org"),
        ("user", "@sp?m.bot:*"),
        ("user", "*bot:mail.evil.org"),
        ("server", "mail.evil.org"),
        ("server", "*.evil.org"),
        ("server", "mail.evil.*"),
        ("room", HELD),
        ("room", "!held*"),
    ] {
        let r = crate::policy::rule_of(&rule(kind, "k", entity)).unwrap();
        assert!(r.covers(&sender, Some(&rid(HELD)), &mut u64::MAX.clone()), "{entity}");
        assert!(names.contains(&crate::policy::index_key(&r)), "{entity} is under {}", crate::policy::index_key(&r));
    }
    // Exact names and literal domains are looked up, not matched one by one.
    let key = |kind: &str, e: &str| crate::policy::index_key(&crate::policy::rule_of(&rule(kind, "k", e)).unwrap());
    assert_eq!(key("user", "@spam*:mail.evil.org"), "mail.evil.org");
    assert_eq!(key("server", "*.evil.org"), "evil.org");
    assert_eq!(key("user", "@sp?m:*"), crate::policy::WILD);
}

#[test]
fn a_hostile_lists_globs_cost_a_bounded_number_of_steps_and_then_match_nobody() {
    // Globs that each take about pattern × text steps on this sender: every
    // run of `a`s is tried from each position after the star.
    let slow = format!("@*{}b:*", "a".repeat(120));
    let many: Vec<RuleEvent> =
        (0..crate::policy::MAX_GLOBS_PER_LIST + 10).map(|i| rule("user", &format!("g{i}"), &slow)).collect();
    let list = list_with(&many);
    assert_eq!(list.globs as usize, crate::policy::MAX_GLOBS_PER_LIST, "globs beyond the bound are not kept");
    assert_eq!(list.ignored, 10);
    let sender = uid(&format!("@{}:remote.org", "a".repeat(200)));
    assert!(crate::policy::Matcher::of(&list).bans(&sender, None).is_none());
    // The budget, not the globs, bounds the work (no timing assert: steps).
    let mut budget = u64::MAX;
    crate::policy::glob_match(&slow, sender.as_str(), &mut budget);
    let one = u64::MAX - budget;
    assert!(one * crate::policy::MAX_GLOBS_PER_LIST as u64 > crate::policy::GLOB_BUDGET * 10, "{one} steps each");
    // An honest rule under its own index key is still found beside them.
    let mut honest = many[..5].to_vec();
    honest.push(rule("user", "h", "@*:remote.org"));
    let list = list_with(&honest);
    assert!(crate::policy::Matcher::of(&list).bans(&sender, None).is_some(), "indexed under its server");
}

#[test]
fn the_owners_own_decision_needs_no_list_read() {
    let mut s = invited(&[rule("user", "a", "@stranger:remote.org")]);
    let input = invite_from(STRANGER, HELD);
    assert!(matches!(crate::policy_read(&s, &input, NOW).rules, crate::policy::RulesRead::Naming(_)));
    for contact in [
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None },
        Contact::Blocked { since_ms: 1 },
    ] {
        s.contacts.insert((uid(ALICE), usr(STRANGER)), contact);
        assert_eq!(crate::policy_read(&s, &input, NOW), crate::PolicyRead::default());
    }
    // An allow that ran out is no decision: the lists are read again.
    s.contacts.insert(
        (uid(ALICE), usr(STRANGER)),
        Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: Some(NOW - 1) },
    );
    assert!(matches!(crate::policy_read(&s, &input, NOW).rules, crate::policy::RulesRead::Naming(_)));
}

#[test]
fn a_re_read_replaces_the_rules_slot_by_slot_and_tells_nobody() {
    let mut s = pending_snapshot(&[rule("user", "a", "@old:x.org"), rule("user", "b", "@kept:x.org")]);
    let reread = |rules| Input::ListRead {
        owner: None,
        asked: crate::policy::REREAD.into(),
        room_id: Some(rid(LIST)),
        rules,
        error: None,
        read_ms: None,
    };
    // Missed while away: `a` redacted, `c` added.
    let d = decide(
        &s,
        &reread(vec![rule("user", "b", "@kept:x.org"), rule("user", "c", "@stranger:*")]),
        NOW + 7,
        &config(),
    );
    let mut changed = slots(&d);
    changed.sort();
    assert_eq!(changed, [("a".into(), None), ("c".into(), Some("@stranger:*".into()))]);
    let list = put_list(&d);
    assert_eq!((list.kept, list.changed_ms, list.operator), (2, NOW + 7, false));
    assert!(list.followers.contains(&uid(ALICE)), "followers stay");
    assert!(d.effects.is_empty(), "nobody is told: {d:?}");
    // Nothing new: nothing written but the record, nobody due.
    s = s.after(&d.changes);
    let d = decide(
        &s,
        &reread(vec![rule("user", "b", "@kept:x.org"), rule("user", "c", "@stranger:*")]),
        NOW + 9,
        &config(),
    );
    assert!(slots(&d).is_empty());
    assert_eq!(put_list(&d).changed_ms, NOW + 7);
    // A list forgotten meanwhile is not brought back by its re-read.
    s.policy.clear();
    assert!(decide(&s, &reread(vec![rule("user", "b", "@kept:x.org")]), NOW, &config()).is_empty());
}

#[test]
fn an_operators_list_dropped_from_the_configuration_stops_applying() {
    let mut s = with_owner(Snapshot::default());
    let mut gone = list_with(&[rule("user", "a", "@stranger:remote.org")]);
    (gone.operator, gone.followers) = (true, Default::default());
    let mut followed = PolicyList::new(rid("!f:lists.org"), "#f:lists.org".into());
    (followed.operator, followed.followers) = (true, [uid(ALICE)].into());
    let mut named = PolicyList::new(rid("!n:lists.org"), "#n:lists.org".into());
    named.operator = true;
    for l in [gone, followed, named] {
        s.policy.insert(l.room_id.clone(), l);
    }
    let d = decide(&s, &Input::OperatorLists { names: vec!["#n:lists.org".into()] }, NOW, &config());
    assert!(d.changes.contains(&StateChange::RemovePolicyList(rid(LIST))), "{d:?}");
    assert!(
        d.changes
            .iter()
            .any(|c| matches!(c, StateChange::PutPolicyList(l) if l.room_id == rid("!f:lists.org") && !l.operator))
    );
    assert_eq!(d.changes.len(), 2, "the one still named is left as it is: {d:?}");
}

#[test]
fn a_pending_check_goes_a_page_at_a_time_and_marks_the_owner_checked_after_the_last() {
    let mut s = pending_snapshot(&[rule("user", "a", "@spam55:remote.org")]);
    let overview = s.overview.as_mut().unwrap();
    overview.held.clear();
    for i in 0..60 {
        let room = rid(&format!("!r{i:02}:remote.org"));
        overview.held.insert(room, HeldRoom::new(uid(ALICE), uid(&format!("@spam{i}:remote.org")), true, NOW - 10));
    }
    let input = Input::CheckPending { owner: uid(ALICE) };
    let mut declined = Vec::new();
    let mut pages = 0;
    loop {
        let crate::policy::RulesRead::Naming(names) = crate::policy_read(&s, &input, NOW).rules else { panic!() };
        assert!(names.len() <= crate::policy::CHECK_PAGE * 5, "a page's names only: {}", names.len());
        let d = decide(&s, &input, NOW + 1, &config());
        pages += 1;
        declined.extend(d.effects.iter().filter_map(|e| match e {
            Effect::Leave { room_id, .. } => Some(room_id.clone()),
            _ => None,
        }));
        let more = d.effects.iter().any(|e| matches!(e, Effect::CheckPending { .. }));
        s = s.after(&d.changes);
        let alice = &s.owners[&uid(ALICE)];
        if !more {
            assert!(alice.lists_check_from.is_none() && alice.lists_checked_ms >= NOW, "{alice:?}");
            break;
        }
        assert_eq!(alice.lists_checked_ms, 0, "not checked before the last page");
        assert!(pages < 10, "the pass ends");
    }
    assert_eq!((pages, declined), (3, vec![rid("!r55:remote.org")]));
    // Queued again (the timer's and a page's after a restart): nothing to do.
    assert!(decide(&s, &input, NOW + 2, &config()).is_empty());
}

#[test]
fn a_read_asked_for_before_a_rule_event_was_applied_replaces_nothing() {
    let s = pending_snapshot(&[rule("user", "a", "@old:x.org")]);
    // A ban applied at NOW + 5 ...
    let d = decide(&s, &rule_input(rule("user", "new", "@new:x.org"), 1), NOW + 5, &config());
    let mut s = s.after(&d.changes);
    // (the snapshot of a re-read reads every rule)
    let rules = s.policy[&rid(LIST)].rules.clone();
    assert_eq!(rules.len(), 2);
    let reread = |read_ms| Input::ListRead {
        owner: None,
        asked: crate::policy::REREAD.into(),
        room_id: Some(rid(LIST)),
        rules: vec![rule("user", "a", "@old:x.org")],
        error: None,
        read_ms: Some(read_ms),
    };
    // ... and a re-read whose state was asked for at NOW + 3 comes after:
    // it would drop the new ban. It changes no rule.
    let d = decide(&s, &reread(NOW + 3), NOW + 9, &config());
    assert!(slots(&d).is_empty(), "{d:?}");
    // Asked for after it: it replaces as ever.
    let d = decide(&s, &reread(NOW + 6), NOW + 9, &config());
    assert_eq!(slots(&d), [("new".into(), None)]);
    s = s.after(&d.changes);
    assert_eq!(s.policy[&rid(LIST)].kept, 1);
}
