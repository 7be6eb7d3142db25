//! Commands in the control room: who may give them, help, refused arguments, and the owner's settings.

use super::*;

#[test]
fn owner_help_in_control_room_is_answered_with_a_notice_from_the_bot() {
    let d = decide(&control(), &text(ALICE, CONTROL, "help"), NOW, &config());
    assert_eq!(kinds(&d), ["notice"]);
    let Effect::SendNotice { as_user, room_id, body, .. } = &d.effects[0] else { unreachable!() };
    assert_eq!((as_user.as_str(), room_id.as_str()), (BOT, CONTROL));
    for cmd in ["pending", "reply", "stop", "help"] {
        assert!(body.contains(cmd), "{cmd} missing from help");
    }
}

#[test]
fn unknown_commands_and_bad_arguments_get_a_one_line_error() {
    for (input, needle) in [("frob", "frob"), ("pending now", "pending"), ("reply frob", "reply set")] {
        let body = notice_body(&decide(&control(), &text(ALICE, CONTROL, input), NOW, &config()));
        assert!(body.contains(needle), "{input}: {body}");
        assert_eq!(body.lines().count(), 1, "{input}: {body}");
    }
}

#[test]
fn commands_from_anyone_but_the_owner_or_outside_the_control_room_are_ignored() {
    check(&control(), &text("@mallory:example.org", CONTROL, "stop"), Decision::default());
    check(&with_owner(Snapshot::default()), &text(ALICE, "!other:example.org", "stop"), Decision::default());
    let mut someone_elses = control();
    someone_elses.rooms = vec![RoomState::Control { owner: uid("@bob:example.org") }];
    check(&someone_elses, &text(ALICE, CONTROL, "stop"), Decision::default());
    // A control-room record that disagrees with the owner's (stale) is ignored.
    let mut stale = control();
    stale.owners.insert(uid(ALICE), OwnerState { control_room: rid("!elsewhere:example.org"), ..owner() });
    check(&stale, &text(ALICE, CONTROL, "stop"), Decision::default());
}

#[test]
fn notices_and_the_bots_own_messages_are_never_answered() {
    check(&control(), &msg_n(ALICE, CONTROL, "m.notice", "help", 0), Decision::default());
    check(&control(), &text(BOT, CONTROL, "help"), Decision::default());
}

#[test]
fn reply_commands_show_set_and_reset_the_template() {
    let show = decide(&control(), &text(ALICE, CONTROL, "reply"), NOW, &config());
    assert!(notice_body(&show).contains("Alice will read it"));
    assert!(show.changes.is_empty());
    let set = decide(&control(), &text(ALICE, CONTROL, "reply set Away till May. — {name}"), NOW, &config());
    assert!(notice_body(&set).contains("Away till May. — Alice"));
    assert_eq!(
        set.changes,
        vec![StateChange::PutOwner(OwnerState { reply_template: Some("Away till May. — {name}".into()), ..owner() })]
    );
    let reset = decide(&control(), &text(ALICE, CONTROL, "reply reset"), NOW, &config());
    assert_eq!(reset.changes, vec![StateChange::PutOwner(owner())]);
}

#[test]
fn settings_are_validated_shown_and_used() {
    let d = decide(&control(), &text(ALICE, CONTROL, "set reply-interval 1d"), NOW, &config());
    let Some(StateChange::PutOwner(o)) = d.changes.first() else { panic!() };
    assert_eq!(o.reply_interval_ms, Some(86_400_000));
    let bad = decide(&control(), &text(ALICE, CONTROL, "set timezone Mars/Base"), NOW, &config());
    assert!(bad.changes.is_empty());
    // Without e-mail nothing can confirm a digest address: none is kept,
    // so none is ever mailed unconfirmed once e-mail is set up.
    let d = decide(&control(), &text(ALICE, CONTROL, "set email me@alice.example"), NOW, &config());
    assert!(d.changes.is_empty(), "{d:?}");
    assert!(notice_body(&d).contains("set contact"), "{}", notice_body(&d));
    let d = decide(&control(), &text(ALICE, CONTROL, "set contact me@alice.example"), NOW, &config());
    let Some(StateChange::PutOwner(o)) = d.changes.first() else { panic!("{d:?}") };
    assert_eq!((o.contact.as_deref(), o.email.as_deref()), (Some("me@alice.example"), None));
    let bad = decide(&control(), &text(ALICE, CONTROL, &format!("set contact {}", "x".repeat(201))), NOW, &config());
    assert!(bad.changes.is_empty());
    let shown = notice_body(&decide(&control(), &text(ALICE, CONTROL, "settings"), NOW, &config()));
    for key in [
        "reply-interval: 1w",
        "email (digests, never shown): off",
        "contact (shown in your reply): off",
        "timezone: UTC",
        "digest-time: 08:00",
        "retention: 4w2d",
        "paused: no",
    ] {
        assert!(shown.contains(key), "{key} missing in {shown}");
    }
    // The owner's interval is what the gate uses.
    let mut s = held(true);
    s.owners.insert(uid(ALICE), OwnerState { reply_interval_ms: Some(60_000), ..owner() });
    s.strangers.insert(
        (uid(ALICE), uid(STRANGER)),
        StrangerState { last_reply_ms: Some(NOW - 120_000), ..Default::default() },
    );
    assert_eq!(kinds(&decide(&s, &text(STRANGER, HELD, "hi"), NOW, &config())), ["notice"]);
}

#[test]
fn how_digests_notify_is_the_owners_setting() {
    let d = decide(&control(), &text(ALICE, CONTROL, "set notify off"), NOW, &config());
    assert_eq!(
        d.effects[0],
        Effect::PutPushRule { owner: uid(ALICE), rule: rules::control_room(CONTROL, &uid(BOT), Notify::Off) }
    );
    assert!(d.changes.contains(&StateChange::PutOwner(OwnerState { notify: Some(Notify::Off), ..owner() })));
    assert!(
        notice_body(&decide(&control(), &text(ALICE, CONTROL, "settings"), NOW, &config())).contains("notify: quiet")
    );
}

#[test]
fn pause_disables_holding_and_resume_or_its_end_brings_it_back() {
    let d = decide(&control(), &text(ALICE, CONTROL, "pause 2h"), NOW, &config());
    assert_eq!(kinds(&d), ["disable", "notice"]);
    assert_eq!(
        d.changes,
        vec![StateChange::PutOwner(OwnerState { paused_until_ms: Some(NOW + 7_200_000), ..owner() })]
    );
    let mut paused = with_owner(Snapshot::default());
    paused.owners.insert(uid(ALICE), OwnerState { paused_until_ms: Some(NOW + 7_200_000), ..owner() });
    assert_eq!(
        decide(&paused, &member(STRANGER, HELD, ALICE, Membership::Invite, true), NOW, &config()),
        Decision::default()
    );
    let mut paused_control = control();
    paused_control.owners = paused.owners.clone();
    let d = decide(&paused_control, &text(ALICE, CONTROL, "resume"), NOW, &config());
    assert_eq!(kinds(&d), ["enable", "notice"]);
    let o = OwnerState { paused_until_ms: Some(NOW - 1), ..owner() };
    let tick = Snapshot {
        due: Some(Due { expired: vec![], unpause: vec![o], digests: vec![], replies: vec![] }),
        ..Default::default()
    };
    let d = decide(&tick, &Input::Tick, NOW, &config());
    assert_eq!(kinds(&d), ["enable", "notice"]);
    assert_eq!(d.changes, vec![StateChange::PutOwner(owner())]);
}

fn help(topic: &str) -> String {
    let asked = if topic.is_empty() { "help".to_owned() } else { format!("help {topic}") };
    notice_body(&decide(&control(), &text(ALICE, CONTROL, &asked), NOW, &config()))
}

#[test]
fn every_command_and_alias_has_help_and_the_overview_lists_every_command() {
    let overview = help("");
    let mut words = std::collections::BTreeSet::new();
    for spec in crate::commands::ALL {
        assert!(spec.usage.starts_with(spec.name), "{}: usage {:?}", spec.name, spec.usage);
        assert!(!spec.summary.is_empty() && !spec.summary.ends_with('.'), "{}: summary {:?}", spec.name, spec.summary);
        assert!(
            overview.contains(&format!("\n• {} — {}", spec.usage, spec.summary)),
            "{} not in {overview}",
            spec.name
        );
        for word in std::iter::once(spec.name).chain(spec.aliases.iter().copied()) {
            assert!(words.insert(word), "`{word}` names two commands");
            assert_eq!(crate::commands::find(word).map(|s| s.name), Some(spec.name), "{word}");
            assert_eq!(help(word), format!("{} — {}.", spec.usage, spec.summary), "help {word}");
            assert_eq!(help(&word.to_uppercase()), help(word), "help {word} in capitals");
        }
    }
    assert_eq!(overview.lines().filter(|l| l.starts_with("• ")).count(), crate::commands::ALL.len(), "{overview}");
    assert!(help("frobnicate").contains("I don't know the command \"frobnicate\""));
}

#[test]
fn help_verify_explains_verify() {
    assert_eq!(help("verify"), "verify <code> — confirm your e-mail address with the code sent to it.");
    assert!(help("").contains("• verify <code> — "));
}
