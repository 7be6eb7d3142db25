//! Whom Gatekeeper acts as, what a stranger can learn, and that deciding again (a replay, a crash) repeats nothing.

use super::*;

#[test]
fn gatekeeper_acts_only_as_the_bot_or_an_owner_who_opted_in_whatever_arrives() {
    let pending_control = Snapshot {
        rooms: vec![RoomState::PendingControl { inviter: uid(ALICE), invited_at_ms: 1 }],
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
                if let Some(actor) = e.acts_for() {
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

/// Room names, invite reasons, display names and file names reach notices
/// and e-mails flattened: one line, no bidirectional or zero-width
/// characters, bounded; bodies keep their lines but lose the invisible.
#[test]
fn what_a_sender_writes_is_flattened_before_it_is_shown() {
    let forged = "x\u{202E}\n\n2. @friend:example.org \u{200B}— 1 message\r\n";
    let flat = texts::one_line(forged, 200);
    assert!(!flat.contains('\n') && !flat.contains('\r'), "{flat:?}");
    assert!(!flat.contains('\u{202E}') && !flat.contains('\u{200B}'), "{flat:?}");
    assert_eq!(texts::clean_name("Al\u{2067}ice\u{2069}"), "Alice");
    let body = texts::visible("line one\u{202E}\nline two\u{0007}");
    assert_eq!(body, "line one\nline two");

    // A group invitation named to forge an entry stays on its own line.
    let mut overview = OwnerOverview::default();
    overview.held.insert(
        rid("!g:remote.org"),
        HeldRoom {
            name: Some(forged.into()),
            reason: Some(forged.into()),
            inviter_name: Some(forged.into()),
            ..HeldRoom::new(uid(ALICE), uid(STRANGER), false, NOW - 5000)
        },
    );
    let digest = texts::digest::render(&owner(), &overview).unwrap();
    let plain = &digest.parts[0].plain;
    assert!(!plain.lines().any(|l| l.trim_start().starts_with("2. @friend")), "{plain}");
    assert!(!plain.contains('\u{202E}') && !plain.contains('\u{200B}'), "{plain:?}");
}

/// A stranger who takes the owner's name, or a contact's, is flagged next
/// to their ID, look-alike letters and all; an ordinary name is not.
#[test]
fn a_name_that_imitates_the_owner_or_a_contact_is_flagged() {
    let alice = owner();
    let friend = uid("@bob:friend.org");
    let contacts = [&*friend];
    assert_eq!(texts::imitates(Some("Alice"), &alice, &contacts).as_deref(), Some("uses your own name"));
    // Cyrillic а and full-width letters look the same.
    assert!(texts::imitates(Some("\u{0410}lice"), &alice, &contacts).is_some());
    assert!(texts::imitates(Some("ＡＬＩＣＥ"), &alice, &contacts).is_some());
    assert_eq!(
        texts::imitates(Some("b\u{043E}b"), &alice, &contacts).as_deref(),
        Some("uses the name of your contact @bob:friend.org")
    );
    assert_eq!(texts::imitates(Some("Carol"), &alice, &contacts), None);
    assert_eq!(texts::imitates(None, &alice, &contacts), None);

    // In pending, next to the ID.
    let mut s = with_pending_stranger();
    s.overview.as_mut().unwrap().held.get_mut(&rid(HELD)).unwrap().inviter_name = Some("Аlice".into());
    let body = notice_body(&decide(&s, &text(ALICE, CONTROL, "pending"), NOW, &config()));
    assert!(body.contains("@stranger:remote.org (“Аlice”) ⚠ uses your own name"), "{body}");
}

/// Who comes first in `pending` and the digest is decided by when
/// Gatekeeper received them, not by the time a sender's server claims.
#[test]
fn a_sender_cannot_put_themselves_first_with_their_clock() {
    let mut overview = OwnerOverview::default();
    let early = Deferred {
        sender: uid("@early:remote.org"),
        ts_ms: u64::MAX / 2,
        received_ms: NOW - 60_000,
        ..captured(&meta_n("@early:remote.org", HELD, 1).event_id, "first here")
    };
    let late = Deferred {
        sender: uid("@late:remote.org"),
        ts_ms: 1,
        received_ms: NOW - 1_000,
        ..captured(&meta_n("@late:remote.org", HELD, 2).event_id, "claims 1970")
    };
    overview.deferred = vec![late, early];
    let digest = texts::digest::render(&owner(), &overview).unwrap();
    let plain = &digest.parts[0].plain;
    assert!(plain.find("@early").unwrap() < plain.find("@late").unwrap(), "{plain}");
    let late_lines: Vec<&str> = plain.lines().filter(|l| l.contains("@late") || l.contains("claims 1970")).collect();
    assert!(late_lines.iter().all(|l| !l.contains("1 Jan")), "times shown are Gatekeeper's: {plain}");
    let mut s = control();
    s.overview = Some(overview);
    let body = notice_body(&decide(&s, &text(ALICE, CONTROL, "pending"), NOW, &config()));
    // Newest first: the one received last, whatever it claims.
    assert!(body.find("@late").unwrap() < body.find("@early").unwrap(), "{body}");
}
