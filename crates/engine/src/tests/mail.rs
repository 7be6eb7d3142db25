//! E-mail: verifying an address, mailed digests, failures, and the one-click links they carry.

use super::*;

fn mail_config() -> EngineConfig {
    EngineConfig { mail_secret: Some(gatekeeper_common::Secret::new("k".repeat(40))), ..config() }
}

#[test]
fn an_address_is_verified_with_a_mailed_code_before_digests_go_there() {
    let cfg = mail_config();
    let set = decide(&control(), &text(ALICE, CONTROL, "set email me@alice.example"), NOW, &cfg);
    assert_eq!(kinds(&set), ["mail", "notice"]);
    let Effect::SendEmail { to, text: mail_text, .. } = &set.effects[0] else { unreachable!() };
    assert_eq!(to, "me@alice.example");
    let Some(StateChange::PutOwner(pending_owner)) = set.changes.first() else { panic!() };
    let pending = pending_owner.email_pending.clone().unwrap();
    assert_eq!(pending_owner.email, None, "not used before it is verified");
    assert!(mail_text.contains(&pending.code));

    let mut waiting = control();
    waiting.owners.insert(uid(ALICE), pending_owner.clone());
    let wrong = decide(&waiting, &text(ALICE, CONTROL, "verify 000000"), NOW, &cfg);
    assert!(notice_body(&wrong).contains("does not match"));
    let right = decide(&waiting, &text(ALICE, CONTROL, &format!("verify {}", pending.code)), NOW, &cfg);
    let Some(StateChange::PutOwner(verified)) = right.changes.first() else { panic!() };
    assert_eq!((verified.email.as_deref(), verified.email_pending.is_none()), (Some("me@alice.example"), true));
    let late = decide(&waiting, &text(ALICE, CONTROL, &format!("verify {}", pending.code)), pending.expires_ms, &cfg);
    assert!(notice_body(&late).contains("expired"));

    // Too many wrong codes: ask for a new one.
    let mut tired = control();
    tired.owners.insert(
        uid(ALICE),
        OwnerState { email_pending: Some(PendingEmail { attempts: 5, ..pending.clone() }), ..owner() },
    );
    let d = decide(&tired, &text(ALICE, CONTROL, &format!("verify {}", pending.code)), NOW, &cfg);
    assert!(notice_body(&d).contains("expired"));
}

#[test]
fn codes_are_mailed_at_most_once_per_ten_minutes_and_five_times_a_day() {
    let cfg = mail_config();
    let mut s = control();
    let mut mailed = 0;
    let mut t = NOW;
    // Asking every minute for a day and a half.
    for n in 0..(36 * 60) {
        let d = decide(&s, &msg_n(ALICE, CONTROL, "m.text", &format!("set email me{n}@alice.example"), n), t, &cfg);
        if kinds(&d).contains(&"mail") {
            mailed += 1;
            s = s.after(&d.changes);
        } else {
            assert!(notice_body(&d).contains("A code was mailed a short while ago"), "{}", notice_body(&d));
            assert!(d.changes.is_empty());
        }
        t += 60_000;
    }
    // Five on the first day, five more once the first ones are a day old.
    assert_eq!(mailed, 10);
    let by = &s.waves[&WaveKey::CodesBy(uid(ALICE))];
    assert!(by.seen.len() <= crate::mail::CODES_PER_DAY, "{by:?}");
}

/// The limits hold per address too, whoever asks (many accounts cannot
/// take turns mailing one inbox), and outlive the owner's record: `stop`
/// and opting in again does not reset them.
#[test]
fn codes_to_one_address_are_limited_whoever_asks_and_after_stop() {
    let cfg = mail_config();
    let victim = "Victim@Example.org";
    let mut s = control();
    let mut mailed = 0;
    let mut t = NOW;
    for n in 0..10u32 {
        // A different would-be owner each time (with alice's record: the
        // limit must not depend on who the owner is).
        let asker = format!("@owner{n}:example.org");
        let owner = OwnerState { user_id: uid(&asker), ..owner() };
        s.owners.insert(uid(&asker), owner);
        s.rooms = vec![RoomState::Control { owner: uid(&asker) }];
        let address = if n % 2 == 0 { victim.to_owned() } else { victim.to_lowercase() };
        let d = decide(&s, &msg_n(&asker, CONTROL, "m.text", &format!("set email {address}"), n), t, &cfg);
        if kinds(&d).contains(&"mail") {
            mailed += 1;
            s = s.after(&d.changes);
        }
        t += 11 * 60_000;
    }
    assert_eq!(mailed, crate::mail::CODES_PER_DAY);

    // Alice asks, stops (her owner record goes), opts in and asks again.
    let mut s = control();
    let d = decide(&s, &text(ALICE, CONTROL, "set email a@alice.example"), NOW, &cfg);
    assert!(kinds(&d).contains(&"mail"));
    s = s.after(&d.changes);
    s.owners.insert(uid(ALICE), owner());
    let again = decide(&s, &msg_n(ALICE, CONTROL, "m.text", "set email b@alice.example", 1), NOW + 60_000, &cfg);
    assert!(!kinds(&again).contains(&"mail"), "{again:?}");
    assert!(notice_body(&again).contains("A code was mailed a short while ago"));
}

/// Sub-addresses reach one inbox: `victim+1@` and `victim+2@` share its limit.
#[test]
fn sub_addresses_share_their_inboxs_limit() {
    let cfg = mail_config();
    let s = control();
    let first = decide(&s, &text(ALICE, CONTROL, "set email Victim+1@example.org"), NOW, &cfg);
    assert!(kinds(&first).contains(&"mail"));
    let mut s = s.after(&first.changes);
    // Another account asks for another variant a minute later.
    let other = OwnerState { user_id: uid("@mallory:example.org"), ..owner() };
    s.owners.insert(uid("@mallory:example.org"), other);
    s.rooms = vec![RoomState::Control { owner: uid("@mallory:example.org") }];
    let second = decide(
        &s,
        &msg_n("@mallory:example.org", CONTROL, "m.text", "set email victim+2@example.org", 1),
        NOW + 60_000,
        &cfg,
    );
    assert!(!kinds(&second).contains(&"mail"), "{second:?}");
}

#[test]
fn set_email_declares_the_code_records_it_reads() {
    let reads = crate::reads(&text(ALICE, CONTROL, "set email Me@Alice.example"));
    assert_eq!(reads.codes, vec![WaveKey::CodesTo("me@alice.example".into()), WaveKey::CodesBy(uid(ALICE))]);
    assert!(crate::reads(&text(ALICE, CONTROL, "pending")).codes.is_empty());
}

#[test]
fn the_digest_is_also_mailed_to_a_verified_address_only() {
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "<b>hello</b>"));
    let mut snapshot = due_digest(overview.clone(), NOW - 5);
    let d = decide(&snapshot, &alices_digest(), NOW, &mail_config());
    assert_eq!(kinds(&d), ["notice"], "no verified address, no mail");
    snapshot.due.as_mut().unwrap().digests[0].owner.email = Some("me@alice.example".into());
    let d = decide(&snapshot, &alices_digest(), NOW, &mail_config());
    assert_eq!(kinds(&d), ["mail", "notice"]);
    let Effect::SendEmail { subject, html, text, message_id, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!(subject, "Gatekeeper digest: 1 person wrote to you");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("&lt;b&gt;hello"));
    assert!(text.contains("<b>hello</b>"));
    assert!(message_id.starts_with("<gk.digest."));
    // Without e-mail set up on the server, never.
    assert_eq!(kinds(&decide(&snapshot, &alices_digest(), NOW, &config())), ["notice"]);
}

#[test]
fn a_failed_mail_is_reported_in_the_control_room() {
    let d = decide(
        &with_owner(Snapshot::default()),
        &Input::MailFailed { owner: uid(ALICE), to: "me@alice.example".into(), reason: "550 no such user".into() },
        NOW,
        &config(),
    );
    assert!(notice_body(&d).contains("could not e-mail me@alice.example: 550 no such user"));
}

#[test]
fn a_confirmed_link_decides_like_the_command_and_says_so() {
    let snapshot = with_pending_stranger();
    let used = |action| Input::LinkUsed { owner: uid(ALICE), action, subject: Some(usr(STRANGER)), nonce: "n1".into() };
    let d = decide(&snapshot, &used(links::LinkAction::Allow), NOW, &config());
    assert!(d.changes.contains(&StateChange::RemoveRoom { room: rid(HELD), owner: uid(ALICE) }));
    assert!(notice_body(&d).starts_with("From your e-mail: Allowed @stranger:remote.org"), "{}", notice_body(&d));
    let d = decide(&snapshot, &used(links::LinkAction::BlockServer), NOW, &config());
    assert!(d.changes.iter().any(|c| matches!(c, StateChange::PutContact { contact: Contact::Blocked { .. }, .. })));
    let d = decide(
        &snapshot,
        &Input::LinkUsed {
            owner: uid(ALICE),
            action: links::LinkAction::Unsubscribe,
            subject: None,
            nonce: "n2".into(),
        },
        NOW,
        &config(),
    );
    assert!(notice_body(&d).contains("no longer e-mailed"));
    // For someone who is no longer an owner: nothing.
    let gone = decide(&Snapshot::default(), &used(links::LinkAction::Allow), NOW, &config());
    assert_eq!(gone, Decision::default());
}

#[test]
fn digest_emails_carry_signed_one_click_links_and_an_unsubscribe_header() {
    let cfg = EngineConfig {
        mail_links: Some(MailLinks { public_url: "https://gk.example.org".into(), lifetime_ms: 7 * 86_400_000 }),
        ..mail_config()
    };
    let mut overview = OwnerOverview::default();
    overview.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "hello"));
    let mut snapshot = due_digest(overview, NOW - 5);
    snapshot.due.as_mut().unwrap().digests[0].owner.email = Some("me@alice.example".into());
    let d = decide(&snapshot, &alices_digest(), NOW, &cfg);
    let Effect::SendEmail { html, unsubscribe: Some(unsubscribe), .. } = &d.effects[0] else { panic!("{d:?}") };
    let secret = cfg.mail_secret.clone().unwrap();
    let token = unsubscribe.strip_prefix("https://gk.example.org/action/").unwrap();
    assert_eq!(links::verify(&secret, token, NOW).unwrap().action, links::LinkAction::Unsubscribe);
    for label in ["Allow", "Allow 30 days", "Deny", "Block", "Block server"] {
        assert!(html.contains(&format!(">{label}</a>")), "{label}");
    }
    let first = html.split("href=\"https://gk.example.org/action/").nth(1).unwrap().split('"').next().unwrap();
    let link = links::verify(&secret, first, NOW).unwrap();
    assert_eq!((link.owner.as_str(), link.subject.as_str(), link.action), (ALICE, STRANGER, links::LinkAction::Allow));
    assert!(links::verify(&secret, first, NOW + 7 * 86_400_000).is_err(), "links expire");
}
