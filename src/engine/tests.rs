//! Data-driven tests of `decide`: each case is a snapshot, an input and the
//! decision it must produce.

use super::*;
use ruma::{owned_room_id, owned_user_id};

fn config() -> EngineConfig {
    EngineConfig {
        bot: owned_user_id!("@gatekeeper:example.org"),
        server_name: "example.org".try_into().unwrap(),
        users: regex::Regex::new("^(?:@.*:example\\.org)$").unwrap(),
    }
}

const NOW: u64 = 1_700_000_000_000;

fn meta(sender: &str, room: &str) -> EventMeta {
    EventMeta {
        event_id: format!(
            "$ev{}",
            format!("{sender}{room}").replace(|c: char| !c.is_ascii_alphanumeric(), "")
        )
        .try_into()
        .unwrap(),
        room_id: room.try_into().unwrap(),
        sender: sender.try_into().unwrap(),
        ts_ms: NOW,
    }
}

fn member(
    sender: &str,
    room: &str,
    target: &str,
    membership: Membership,
    is_direct: bool,
) -> Input {
    Input::Member {
        meta: meta(sender, room),
        target: target.try_into().unwrap(),
        membership,
        is_direct,
    }
}

fn text(sender: &str, room: &str, body: &str) -> Input {
    Input::Message {
        meta: meta(sender, room),
        msgtype: "m.text".into(),
        body: body.into(),
    }
}

fn control(owner: &str) -> Snapshot {
    Snapshot {
        room: Some(RoomState::Control {
            owner: owner.try_into().unwrap(),
        }),
        ..Default::default()
    }
}

fn check(snapshot: &Snapshot, input: &Input, expected: Decision) {
    let got = decide(snapshot, input, NOW, &config());
    assert_eq!(got, expected, "input: {input:?}");
}

fn effect_kinds(d: &Decision) -> Vec<&'static str> {
    d.effects
        .iter()
        .map(|e| match e {
            Effect::Join { .. } => "join",
            Effect::Leave { .. } => "leave",
            Effect::SendNotice { .. } => "notice",
        })
        .collect()
}

#[test]
fn eligible_users_dm_invite_makes_a_pending_control_room_and_joins() {
    check(
        &Snapshot::default(),
        &member(
            "@alice:example.org",
            "!dm:example.org",
            "@gatekeeper:example.org",
            Membership::Invite,
            true,
        ),
        Decision {
            changes: vec![StateChange::PutRoom(
                owned_room_id!("!dm:example.org"),
                RoomState::PendingControl {
                    inviter: owned_user_id!("@alice:example.org"),
                    invited_at_ms: NOW,
                },
            )],
            effects: vec![Effect::Join {
                as_user: owned_user_id!("@gatekeeper:example.org"),
                room_id: owned_room_id!("!dm:example.org"),
            }],
        },
    );
}

#[test]
fn bots_join_completes_the_opt_in_with_a_greeting() {
    let snapshot = Snapshot {
        room: Some(RoomState::PendingControl {
            inviter: owned_user_id!("@alice:example.org"),
            invited_at_ms: 1,
        }),
        ..Default::default()
    };
    let input = member(
        "@gatekeeper:example.org",
        "!dm:example.org",
        "@gatekeeper:example.org",
        Membership::Join,
        false,
    );
    let d = decide(&snapshot, &input, NOW, &config());
    assert_eq!(
        d.changes,
        vec![
            StateChange::PutOwner(OwnerState {
                user_id: owned_user_id!("@alice:example.org"),
                control_room: owned_room_id!("!dm:example.org"),
                since_ms: NOW,
            }),
            StateChange::PutRoom(
                owned_room_id!("!dm:example.org"),
                RoomState::Control {
                    owner: owned_user_id!("@alice:example.org")
                }
            ),
        ]
    );
    assert_eq!(effect_kinds(&d), ["notice"]);
    let Effect::SendNotice {
        body, txn_id: t, ..
    } = &d.effects[0]
    else {
        unreachable!()
    };
    assert!(body.contains("help"));
    assert_eq!(*t, txn_id(input.meta(), "greeting"));
}

#[test]
fn a_second_dm_with_the_bot_moves_the_control_room() {
    let mut snapshot = Snapshot {
        room: Some(RoomState::PendingControl {
            inviter: owned_user_id!("@alice:example.org"),
            invited_at_ms: 1,
        }),
        ..Default::default()
    };
    snapshot.owners.insert(
        owned_user_id!("@alice:example.org"),
        OwnerState {
            user_id: owned_user_id!("@alice:example.org"),
            control_room: owned_room_id!("!old:example.org"),
            since_ms: 5,
        },
    );
    let input = member(
        "@gatekeeper:example.org",
        "!new:example.org",
        "@gatekeeper:example.org",
        Membership::Join,
        false,
    );
    let d = decide(&snapshot, &input, NOW, &config());
    assert_eq!(effect_kinds(&d), ["notice", "leave", "notice"]);
    assert!(
        d.changes
            .contains(&StateChange::RemoveRoom(owned_room_id!("!old:example.org")))
    );
    assert!(d.changes.contains(&StateChange::PutOwner(OwnerState {
        user_id: owned_user_id!("@alice:example.org"),
        control_room: owned_room_id!("!new:example.org"),
        since_ms: 5,
    })));
}

#[test]
fn bots_join_without_a_pending_opt_in_does_nothing() {
    let input = member(
        "@gatekeeper:example.org",
        "!x:example.org",
        "@gatekeeper:example.org",
        Membership::Join,
        false,
    );
    check(&Snapshot::default(), &input, Decision::default());
}

#[test]
fn users_outside_the_namespace_get_a_refusal_and_the_bot_leaves() {
    for sender in ["@mallory:evil.org", "@gatekeeper2:example.org.evil"] {
        let d = decide(
            &Snapshot::default(),
            &member(
                sender,
                "!dm:evil.org",
                "@gatekeeper:example.org",
                Membership::Invite,
                true,
            ),
            NOW,
            &config(),
        );
        assert_eq!(effect_kinds(&d), ["join", "notice", "leave"], "{sender}");
        assert!(d.changes.is_empty());
    }
}

#[test]
fn narrower_namespace_refuses_local_users_outside_it() {
    let mut cfg = config();
    cfg.users = regex::Regex::new("^(?:@(alice|bob):example\\.org)$").unwrap();
    let d = decide(
        &Snapshot::default(),
        &member(
            "@carol:example.org",
            "!dm:example.org",
            "@gatekeeper:example.org",
            Membership::Invite,
            true,
        ),
        NOW,
        &cfg,
    );
    assert_eq!(effect_kinds(&d), ["join", "notice", "leave"]);
}

#[test]
fn group_room_invite_is_rejected_with_a_reason() {
    let d = decide(
        &Snapshot::default(),
        &member(
            "@alice:example.org",
            "!group:example.org",
            "@gatekeeper:example.org",
            Membership::Invite,
            false,
        ),
        NOW,
        &config(),
    );
    assert_eq!(effect_kinds(&d), ["leave"]);
    assert!(d.changes.is_empty());
}

#[test]
fn owner_leaving_the_control_room_opts_out() {
    check(
        &control("@alice:example.org"),
        &member(
            "@alice:example.org",
            "!dm:example.org",
            "@alice:example.org",
            Membership::Leave,
            false,
        ),
        Decision {
            changes: vec![
                StateChange::RemoveOwner(owned_user_id!("@alice:example.org")),
                StateChange::RemoveRoom(owned_room_id!("!dm:example.org")),
            ],
            effects: vec![Effect::Leave {
                as_user: owned_user_id!("@gatekeeper:example.org"),
                room_id: owned_room_id!("!dm:example.org"),
                reason: None,
            }],
        },
    );
}

#[test]
fn someone_else_leaving_a_control_room_changes_nothing() {
    check(
        &control("@alice:example.org"),
        &member(
            "@bob:example.org",
            "!dm:example.org",
            "@bob:example.org",
            Membership::Leave,
            false,
        ),
        Decision::default(),
    );
}

#[test]
fn bot_removed_from_control_room_opts_out_without_acting() {
    check(
        &control("@alice:example.org"),
        &member(
            "@alice:example.org",
            "!dm:example.org",
            "@gatekeeper:example.org",
            Membership::Leave,
            false,
        ),
        Decision {
            changes: vec![
                StateChange::RemoveOwner(owned_user_id!("@alice:example.org")),
                StateChange::RemoveRoom(owned_room_id!("!dm:example.org")),
            ],
            effects: vec![],
        },
    );
}

#[test]
fn owner_help_in_control_room_is_answered_with_a_notice() {
    let d = decide(
        &control("@alice:example.org"),
        &text("@alice:example.org", "!dm:example.org", "help"),
        NOW,
        &config(),
    );
    assert_eq!(effect_kinds(&d), ["notice"]);
    let Effect::SendNotice {
        as_user, room_id, ..
    } = &d.effects[0]
    else {
        unreachable!()
    };
    assert_eq!(as_user, "@gatekeeper:example.org");
    assert_eq!(room_id, "!dm:example.org");
}

#[test]
fn unknown_command_gets_a_one_line_error() {
    let d = decide(
        &control("@alice:example.org"),
        &text("@alice:example.org", "!dm:example.org", "frob"),
        NOW,
        &config(),
    );
    let Effect::SendNotice { body, .. } = &d.effects[0] else {
        panic!("{d:?}")
    };
    assert!(body.contains("frob") && body.contains("help"), "{body}");
    assert_eq!(body.lines().count(), 1);
}

#[test]
fn commands_from_anyone_but_the_owner_or_outside_the_control_room_are_ignored() {
    // Another user in the owner's control room.
    check(
        &control("@alice:example.org"),
        &text("@mallory:example.org", "!dm:example.org", "help"),
        Decision::default(),
    );
    // The owner, in a room that is not a control room.
    check(
        &Snapshot::default(),
        &text("@alice:example.org", "!other:example.org", "help"),
        Decision::default(),
    );
    // The owner, in someone else's control room.
    check(
        &control("@bob:example.org"),
        &text("@alice:example.org", "!dm:example.org", "help"),
        Decision::default(),
    );
}

#[test]
fn notices_and_the_bots_own_messages_are_never_answered() {
    let notice = Input::Message {
        meta: meta("@alice:example.org", "!dm:example.org"),
        msgtype: "m.notice".into(),
        body: "help".into(),
    };
    check(&control("@alice:example.org"), &notice, Decision::default());
    check(
        &control("@alice:example.org"),
        &text("@gatekeeper:example.org", "!dm:example.org", "help"),
        Decision::default(),
    );
}

#[test]
fn same_event_gives_same_txn_id_and_purposes_differ() {
    let m = meta("@alice:example.org", "!dm:example.org");
    assert_eq!(txn_id(&m, "greeting"), txn_id(&m, "greeting"));
    assert_ne!(txn_id(&m, "greeting"), txn_id(&m, "reply"));
    assert_ne!(
        txn_id(&m, "reply"),
        txn_id(&meta("@bob:example.org", "!dm:example.org"), "reply")
    );
}

#[test]
fn decide_is_deterministic() {
    let input = member(
        "@alice:example.org",
        "!dm:example.org",
        "@gatekeeper:example.org",
        Membership::Invite,
        true,
    );
    let a = decide(&Snapshot::default(), &input, NOW, &config());
    let b = decide(&Snapshot::default(), &input, NOW, &config());
    assert_eq!(a, b);
}
