//! Whom Gatekeeper acts as, what a stranger can learn, and that deciding again (a replay, a crash) repeats nothing.

use super::*;

/// Whose account an effect acts on or as (`None`: Gatekeeper's own reads, mail).
fn acting_user(e: &Effect) -> Option<&OwnedUserId> {
    match e {
        Effect::Join { as_user, .. } | Effect::Leave { as_user, .. } | Effect::SendNotice { as_user, .. } => {
            Some(as_user)
        }
        Effect::PutPushRule { owner, .. }
        | Effect::EnablePushRule { owner, .. }
        | Effect::DeletePushRule { owner, .. }
        | Effect::SetTag { owner, .. }
        | Effect::ImportContacts { owner }
        | Effect::Backfill { owner, .. } => Some(owner),
        Effect::FetchProfile { .. } | Effect::SendEmail { .. } => None,
    }
}

#[test]
fn gatekeeper_acts_only_as_the_bot_or_an_owner_who_opted_in_whatever_arrives() {
    let pending_control = Snapshot {
        room: Some(RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }),
        ..Default::default()
    };
    let snapshots = [
        Snapshot::default(),
        control(),
        held(true),
        held(false),
        with_owner(Snapshot::default()),
        with_pending_stranger(),
        pending_control,
    ];
    let users = [ALICE, STRANGER, BOT, "@bob:example.org", "@eve:evil.org"];
    let rooms = [CONTROL, HELD, "!other:example.org"];
    let mut inputs = Vec::new();
    for sender in users {
        for room in rooms {
            for target in users {
                for m in [Membership::Invite, Membership::Join, Membership::Leave, Membership::Ban] {
                    inputs.push(member(sender, room, target, m, true));
                }
            }
            for body in
                ["help", "pending", "allow 1", "deny 2", "block @eve:evil.org", "allow *:evil.org", "stop", "hi"]
            {
                inputs.push(text(sender, room, body));
            }
            inputs.push(Input::Encrypted { meta: meta(sender, room) });
        }
    }
    let mut checked = 0;
    let cfg = config();
    for snapshot in &snapshots {
        for input in &inputs {
            let d = decide(snapshot, input, NOW, &cfg);
            // An owner may be enrolled by this very decision (the bot's join
            // completing an opt-in the owner started themselves).
            let enrolled: Vec<&OwnedUserId> = d
                .changes
                .iter()
                .filter_map(|c| match c {
                    StateChange::PutOwner(o) => Some(&o.user_id),
                    _ => None,
                })
                .collect();
            for e in &d.effects {
                if let Some(actor) = acting_user(e) {
                    assert!(
                        *actor == uid(BOT) || snapshot.owners.contains_key(actor) || enrolled.contains(&actor),
                        "{input:?} made Gatekeeper act as {actor}: {e:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "the cases must exercise effects: {checked}");
}

#[test]
fn what_a_stranger_sees_never_reveals_who_is_allowed_or_blocked() {
    let mut snapshot = held(true);
    let mut overview = OwnerOverview::default();
    for (user, contact) in [
        ("@friend:example.org", Contact::Allowed { since_ms: 1, source: AllowSource::Command, until_ms: None }),
        ("@ex:example.org", Contact::Blocked { since_ms: 1 }),
    ] {
        overview.contacts.insert(usr(user), contact);
    }
    snapshot.overview = Some(overview);
    for body in ["allowed", "blocked", "pending", "show @friend:example.org", "help"] {
        let d = decide(&snapshot, &text(STRANGER, HELD, body), NOW, &config());
        for e in &d.effects {
            if let Effect::SendNotice { body, html, .. } = e {
                for secret in ["@friend", "@ex:", "friend", "blocked"] {
                    assert!(!body.contains(secret) && !html.contains(secret), "{secret} leaked: {body}");
                }
            }
        }
    }
    // Commands typed in a held room, or by anyone else in the control room, get no answer at all.
    let d = decide(&snapshot, &text(STRANGER, HELD, "allowed"), NOW, &config());
    assert!(
        d.effects.iter().all(|e| matches!(e, Effect::SendNotice { txn_id, .. } if txn_id.starts_with("gk.etiquette.")))
    );
    assert_eq!(decide(&control(), &text(STRANGER, CONTROL, "allowed"), NOW, &config()), Decision::default());
}

#[test]
fn same_event_gives_same_txn_id_and_purposes_differ() {
    let m = meta(ALICE, CONTROL);
    assert_eq!(txn_id(&m, "greeting"), txn_id(&m, "greeting"));
    assert_ne!(txn_id(&m, "greeting"), txn_id(&m, "reply"));
    assert_ne!(txn_id(&m, "reply"), txn_id(&meta("@bob:example.org", CONTROL), "reply"));
}

#[test]
fn the_same_input_always_gives_the_same_decision() {
    let input = text(STRANGER, HELD, "hello");
    assert_eq!(decide(&held(true), &input, NOW, &config()), decide(&held(true), &input, NOW, &config()));
}
