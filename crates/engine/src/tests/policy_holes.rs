//! Holes an attacker review found in the ban lists' index, glob budget,
//! pending checks and records, each test failing before its fix: a deep
//! subdomain under a `*.domain` rule, rules that name nobody read under one
//! key, a list made the operator's, a new list's rules in `after`, a server
//! banned on another port, and a pending check's shared glob budget.

use super::policy::{LIST, list_with, rule};
use super::*;
use crate::policy::{MAX_GLOBS_PER_LIST, Matcher, PolicyList, RuleEvent, index_key, names, rule_of};

fn following(list: PolicyList) -> Snapshot {
    let mut s = with_owner(Snapshot::default());
    s.owners.get_mut(&uid(ALICE)).unwrap().policy_lists = vec![list.room_id.clone()];
    s.policy.insert(list.room_id.clone(), list);
    s
}

/// A `*.evil.org` rule (server, or user `@*:*.evil.org`) is looked up
/// under `evil.org`, but `names` gives only the first 8 parent domains of
/// the sender's server, counted from the left: whoever controls evil.org
/// names a homeserver ten labels deep and is never looked up under it.
#[test]
fn a_deep_subdomain_is_still_banned_by_a_star_dot_domain_rule() {
    let sender = "@spam:a.b.c.d.e.f.g.h.i.evil.org";
    for (kind, entity) in [("server", "*.evil.org"), ("user", "@*:*.evil.org")] {
        let r = rule_of(&rule(kind, "k", entity)).unwrap();
        assert!(r.covers(&uid(sender), None, &mut u64::MAX.clone()), "the glob itself matches");
        let d = decide(
            &following(list_with(&[rule(kind, "k", entity)])),
            &member(sender, HELD, ALICE, Membership::Invite, true),
            NOW,
            &config(),
        );
        assert_eq!(kinds(&d), ["leave"], "{entity} lets {sender} through: {d:?}");
    }
}

/// A server rule names a server as server ACLs do (Synapse's ACL check,
/// which is how Draupnir and Meowlnir enforce a server ban, ignores the
/// port). Here a rule for `evil.org` or `*.evil.org` is compared with the
/// whole server name, port included: the banned server's admin names
/// their homeserver `evil.org:8448` and every rule misses them.
#[test]
fn a_banned_server_is_banned_on_any_port() {
    for (entity, sender) in [("evil.org", "@spam:evil.org:8448"), ("*.evil.org", "@spam:mail.evil.org:443")] {
        let d = decide(
            &following(list_with(&[rule("server", "k", entity)])),
            &member(sender, HELD, ALICE, Membership::Invite, true),
            NOW,
            &config(),
        );
        assert_eq!(kinds(&d), ["leave"], "server rule {entity} lets {sender} through: {d:?}");
    }
}

/// An invitation reads the rules under the keys `names` gives; a rule
/// with no wildcard is under its entity, whatever its kind, so a hostile
/// list's 10,000 user rules whose entity is `remote.org` (no user ID: they
/// ban nobody) are all read, from the store, for every invitation from
/// anyone on remote.org (or on any `*.org`, with entity `org`). The glob
/// budget bounds the globs; nothing bounds these.
#[test]
fn one_invitation_reads_only_rules_that_could_name_its_sender() {
    let sender = uid(STRANGER);
    let keys = names(&sender, Some(&rid(HELD)));
    for (kind, entity) in
        [("user", "remote.org"), ("room", "remote.org"), ("user", "org"), ("server", "@stranger:remote.org")]
    {
        let rules: Vec<RuleEvent> = (0..10_000).map(|i| rule(kind, &format!("k{i}"), entity)).collect();
        let list = list_with(&rules);
        let read: Vec<_> = list.rules.values().filter(|r| keys.contains(&index_key(r))).collect();
        let could_ban = read.iter().filter(|r| r.covers(&sender, Some(&rid(HELD)), &mut u64::MAX.clone())).count();
        assert!(
            read.len() <= MAX_GLOBS_PER_LIST + could_ban,
            "{kind} rules for {entity:?}: one invitation from {sender} reads {} rules, none of which can ban anyone",
            read.len()
        );
    }
}

/// A pending check matches every pending stranger against each list with
/// ONE glob budget for them all (`Matcher` per list per decision): honest
/// globs that each cost a few hundred steps on a long user ID exhaust it
/// after a few strangers, and a banned stranger later in the held rooms'
/// order is not matched, yet the owner is marked checked and never looked
/// at again. The same stranger's own invitation would be declined.
#[test]
fn a_pending_check_finds_a_banned_stranger_however_many_others_are_pending() {
    // An honest list: 999 `*word*` globs (not indexable: under `*`) and one
    // for the spammer's domain.
    let mut rules: Vec<RuleEvent> =
        (0..999).map(|i| rule("user", &format!("g{i:04}"), &format!("*spamword{i}*"))).collect();
    rules.push(rule("user", "h", "@*:*.evil.org"));
    let list = list_with(&rules);
    assert_eq!(list.globs as usize, MAX_GLOBS_PER_LIST);
    let spammer = "@spam:mail.evil.org";
    // Control: the spammer's own invitation is declined.
    assert!(Matcher::of(&list).bans(&uid(spammer), None).is_some());
    let mut s = following(list);
    let mut overview = OwnerOverview::default();
    // Strangers whose IDs a hostile sender made long (a localpart may be
    // 200 bytes), held first by room order.
    for i in 0..5 {
        let stranger = uid(&format!("@{}{i}:remote.org", "x".repeat(200)));
        overview.held.insert(rid(&format!("!a{i}:remote.org")), HeldRoom::new(uid(ALICE), stranger, true, NOW - 10));
    }
    overview.held.insert(rid("!z:evil.org"), HeldRoom::new(uid(ALICE), uid(spammer), true, NOW - 10));
    s.overview = Some(overview);
    let d = decide(&s, &Input::CheckPending { owner: uid(ALICE) }, NOW, &config());
    assert!(
        d.effects.iter().any(|e| matches!(e, Effect::Leave { room_id, .. } if *room_id == rid("!z:evil.org"))),
        "the banned pending stranger was not declined, and the owner is marked checked: {:?}",
        d.changes
    );
}

/// A list followed for the first time: `list_read` writes its rules
/// (`PutPolicyRule`) before the list's record (`PutPolicyList`), and the
/// snapshot's `after` (like the memory store) drops a rule for a list it
/// does not have yet: the decision's own view of the list it just read has
/// no rules (sled keeps them: the stores disagree).
#[test]
fn a_list_read_for_the_first_time_keeps_its_rules_in_the_snapshot_after_it() {
    let s = with_owner(Snapshot::default());
    let input = Input::ListRead {
        owner: Some(uid(ALICE)),
        asked: "#list:lists.org".into(),
        room_id: Some(rid(LIST)),
        rules: vec![rule("user", "a", "@spam:evil.org")],
        error: None,
        read_ms: None,
    };
    let d = decide(&s, &input, NOW, &config());
    let after = s.after(&d.changes);
    assert_eq!(after.policy[&rid(LIST)].kept, 1);
    assert_eq!(after.policy[&rid(LIST)].rules.len(), 1, "changes in order: {:?}", d.changes);
}

/// A list some owner already follows, added to the operator's
/// configuration: the start's `ListRead` (owner `None`) makes it the
/// operator's, so it now applies to every owner, but `replaced` finds no
/// rule that was not there before and leaves `changed_ms` as it was, older
/// than every other owner's last check. No pending check is ever due for
/// them: their pending strangers the list bans stay held for good.
#[test]
fn a_followed_list_made_the_operators_checks_every_owners_pending_strangers() {
    let mut list = list_with(&[rule("user", "a", "@stranger:remote.org")]);
    list.followers = [uid("@bob:example.org")].into();
    list.changed_ms = NOW - 1_000;
    let mut s = with_owner(Snapshot::default());
    s.owners.get_mut(&uid(ALICE)).unwrap().lists_checked_ms = NOW - 500;
    s.policy.insert(rid(LIST), list);
    let input = Input::ListRead {
        owner: None,
        asked: LIST.into(),
        room_id: Some(rid(LIST)),
        rules: vec![rule("user", "a", "@stranger:remote.org")],
        error: None,
        read_ms: None,
    };
    let d = decide(&s, &input, NOW, &config());
    let s = s.after(&d.changes);
    assert!(s.policy[&rid(LIST)].operator, "now the operator's");
    let alice = &s.owners[&uid(ALICE)];
    assert!(
        crate::policy::check_due(alice, &s.policy.values().collect::<Vec<_>>()),
        "Alice's pending strangers are never checked against the operator's list: {:?}",
        s.policy[&rid(LIST)]
    );
}
