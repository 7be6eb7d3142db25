//! Shared ban lists: a stranger a followed list bans is declined without a
//! word, the owner's own allow comes first, a rule added later reaches
//! who is pending, one removed undoes nothing, and whatever a list's
//! moderators write stays within bounds.

use super::*;
use crate::policy::{MAX_LISTS_PER_OWNER, MAX_RULES_PER_LIST, PolicyList, PolicyRule, RuleEvent, RuleKind};

const LIST: &str = "!list:lists.org";

fn rule(kind: &str, key: &str, entity: &str) -> RuleEvent {
    RuleEvent {
        event_type: format!("m.policy.rule.{kind}"),
        state_key: key.into(),
        entity: Some(entity.into()),
        recommendation: Some("m.ban".into()),
        reason: Some("spam".into()),
    }
}

fn list_with(rules: &[RuleEvent]) -> PolicyList {
    let mut l = PolicyList::new(rid(LIST), "#list:lists.org".into()).replaced(rules);
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
    assert_eq!(put_list(&d).rules.len(), 1);
    // Each follower's pending strangers are looked at on their own.
    assert_eq!(kinds(&d), ["check_pending"]);
    let s = s.after(&d.changes);
    // The same slot, a new entity: replaced, not added.
    let d = decide(&s, &rule_input(rule("user", "a", "@eggs:x.org"), 2), NOW, &config());
    let l = put_list(&d);
    assert_eq!(l.rules.len(), 1);
    assert_eq!(l.rules.values().next().unwrap().entity, "@eggs:x.org");
    let s = s.after(&d.changes);
    // The same rule again changes nothing.
    assert!(decide(&s, &rule_input(rule("user", "a", "@eggs:x.org"), 3), NOW, &config()).is_empty());
    // Redacted (empty content): the slot is emptied, and nothing is checked.
    let mut gone = rule("user", "a", "@eggs:x.org");
    (gone.entity, gone.recommendation, gone.reason) = (None, None, None);
    let d = decide(&s, &rule_input(gone, 4), NOW, &config());
    assert!(put_list(&d).rules.is_empty());
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
    assert_eq!(list.rules.len(), MAX_RULES_PER_LIST);
    assert_eq!(list.ignored, 5);
    // A full list still takes a new rule in a slot it has.
    let s = following(with_owner(Snapshot::default()), list);
    let d = decide(&s, &rule_input(rule("user", "k0", "@new:x.org"), 1), NOW, &config());
    assert_eq!(put_list(&d).rules.len(), MAX_RULES_PER_LIST);
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
    let s = pending_snapshot(&[]);
    let added = PolicyRule { kind: RuleKind::User, entity: "@stranger:*".into(), takedown: false, reason: None };
    let input = Input::CheckPending { owner: uid(ALICE), list: rid(LIST), rule: added.clone() };
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
    assert!(decide(&allowed, &input, NOW, &config()).is_empty());
    // A list the owner no longer follows decides nothing for them.
    let mut left = s.clone();
    left.owners.get_mut(&uid(ALICE)).unwrap().policy_lists.clear();
    assert!(decide(&left, &input, NOW, &config()).is_empty());
}

#[test]
fn a_rule_removed_undoes_nothing() {
    let s = pending_snapshot(&[rule("user", "a", "@nobody:x.org")]);
    let mut gone = rule("user", "a", "@nobody:x.org");
    gone.recommendation = None;
    let d = decide(&s, &rule_input(gone, 1), NOW, &config());
    assert!(d.effects.is_empty());
    assert!(d.changes.iter().all(|c| matches!(c, StateChange::PutPolicyList(_))), "{d:?}");
}

fn read_input(owner: Option<&str>, rules: Vec<RuleEvent>, error: Option<&str>) -> Input {
    Input::ListRead {
        owner: owner.map(uid),
        asked: "#list:lists.org".into(),
        room_id: error.is_none().then(|| rid(LIST)),
        rules,
        error: error.map(Into::into),
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
    // Not sharing: nothing published.
    assert!(published(&command(&commanding(None), "block @spam:evil.org because spam")).is_empty());
    // Off: the owner's record forgets the room; nothing published from then on.
    let d = command(&s, "share blocks off");
    assert!(matches!(&d.changes[0], StateChange::PutOwner(o) if o.shared_list.is_none()));
    assert!(notice_body(&command(&commanding(None), "share blocks off")).contains("not shared"));
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
    let input = rule_input(rule("user", "a", "@spam:x.org"), 1);
    // Only with every owner read (declared: `everyone_read`).
    assert!(crate::everyone_read(&s, &input));
    s.everyone = vec![uid(ALICE), uid("@bob:example.org")];
    let d = decide(&s, &input, NOW, &config());
    let owners: Vec<&str> = d
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::CheckPending { owner, .. } => Some(owner.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(owners, [ALICE, "@bob:example.org"]);
    // Each owner's check then applies it, though the list is not theirs.
    let mut pending = pending_snapshot(&[]);
    pending.owners.get_mut(&uid(ALICE)).unwrap().policy_lists.clear();
    pending.policy.get_mut(&rid(LIST)).unwrap().operator = true;
    let added = PolicyRule { kind: RuleKind::User, entity: "@stranger:*".into(), takedown: false, reason: None };
    let check = Input::CheckPending { owner: uid(ALICE), list: rid(LIST), rule: added };
    assert_eq!(kinds(&decide(&pending, &check, NOW, &config())), ["leave", "unrule"]);
    assert!(!crate::everyone_read(&invited(&[]), &input), "an owner's own list needs only its followers");
}

#[test]
fn a_rule_that_bans_everyone_is_no_rule() {
    for everyone in ["*", "@*:*", "*:*", "?*", "@?:*.*", "a*"] {
        assert_eq!(crate::policy::rule_of(&rule("user", "k", everyone)), None, "{everyone}");
        assert_eq!(crate::policy::rule_of(&rule("server", "k", everyone)), None, "{everyone}");
    }
    for narrow in ["@*:evil.org", "*.evil.org", "@spam*:*", "ev"] {
        assert!(crate::policy::rule_of(&rule("user", "k", narrow)).is_some(), "{narrow}");
    }
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
    let d = decide(&s, &rule_input(reworded, 1), NOW, &config());
    assert!(!kinds(&d).contains(&"check_pending"), "{d:?}");
    assert!(d.changes.iter().all(|c| matches!(c, StateChange::PutPolicyList(_))), "{d:?}");
}

#[test]
fn a_list_command_after_a_mention_reads_the_lists() {
    for body in ["Gatekeeper: stop", "@gatekeeper:example.org unsubscribe #l:x.org", "!gk subscriptions", "stop"] {
        assert!(crate::commands::reads_lists(body), "{body}");
    }
    assert!(!crate::commands::reads_lists("Gatekeeper: pending"));
}
