//! Ahead of every screener (issue 16): the subject a stranger gives, the
//! card the owner sees, and a stranger's links shown dead.

use super::*;

fn put_held(d: &Decision) -> HeldRoom {
    d.changes
        .iter()
        .find_map(|c| match c {
            StateChange::PutRoom(_, RoomState::Held(h)) => Some(h.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no held room in {d:?}"))
}

fn pending_of(overview: OwnerOverview) -> String {
    let mut s = control();
    s.overview = Some(overview);
    notice_body(&decide(&s, &text(ALICE, CONTROL, "pending"), NOW, &config()))
}

#[test]
fn the_line_after_the_reply_is_kept_as_the_subject_once() {
    // The first message gets the reply; nothing is the subject yet.
    let first = decide(&held(true), &text(STRANGER, HELD, "hi"), NOW, &config());
    let replied = put_held(&first);
    assert!(replied.replied && replied.said.is_none());
    // The next line is kept, flattened, its links dead.
    let snapshot = with_owner(Snapshot { rooms: vec![RoomState::Held(replied.clone())], ..Default::default() });
    let line = "Bob from\nthe bakery\u{202E}, see https://bakery.example/o/1";
    let second = decide(&snapshot, &msg_n(STRANGER, HELD, "m.text", line, 1), NOW, &config());
    let said = put_held(&second);
    assert_eq!(said.said.as_deref(), Some("Bob from the bakery, see https[:]//bakery[.]example/o/1"));
    // Only the first line after the reply.
    let snapshot = with_owner(Snapshot { rooms: vec![RoomState::Held(said)], ..Default::default() });
    let third = decide(&snapshot, &msg_n(STRANGER, HELD, "m.text", "and more", 2), NOW, &config());
    assert!(third.changes.iter().all(|c| !matches!(c, StateChange::PutRoom(..))), "{third:?}");
}

#[test]
fn the_subject_is_the_reason_else_the_line_after_the_reply_else_the_first_message_and_comes_first() {
    let msg = |n: u32, body: &str| Deferred { ts_ms: n as u64, ..captured(&meta_n(STRANGER, HELD, n).event_id, body) };
    let mut o = OwnerOverview::default();
    o.deferred.push(msg(1, "hi"));
    o.deferred.push(msg(2, "Bob, about the invoice"));
    o.held.insert(rid(HELD), held_room(true));
    let p = pending_of(o.clone());
    assert!(p.contains("1. @stranger:remote.org — 2 messages"), "{p}");
    let first = p.find("Subject: “hi”").unwrap_or_else(|| panic!("{p}"));
    assert!(first < p.find("“Bob, about the invoice”").unwrap(), "the subject before the messages: {p}");
    o.held.insert(rid(HELD), HeldRoom { said: Some("Bob, about the invoice".into()), ..held_room(true) });
    assert!(pending_of(o.clone()).contains("Subject: “Bob, about the invoice”"));
    // A reason wins, flattened and bounded, however it was forged.
    let reason = format!("Re: your order\n\n2. @friend:example.org — 1 message\u{2067}{}", "x".repeat(50_000));
    o.held.insert(rid(HELD), HeldRoom { reason: Some(reason), ..held_room(true) });
    let p = pending_of(o.clone());
    let line = p.lines().find(|l| l.contains("Subject:")).unwrap();
    assert!(line.starts_with("  Subject: “Re: your order 2. @friend:example[.]org — 1 message"), "{line}");
    assert!(line.chars().count() < 140, "{}", line.chars().count());
    assert!(!p.lines().any(|l| l.starts_with("2.")), "{p}");

    // `show` and the digest say it first too.
    let mut s = control();
    s.overview = Some(o.clone());
    let show = notice_body(&decide(&s, &text(ALICE, CONTROL, &format!("show {STRANGER}")), NOW, &config()));
    assert!(show.find("Subject: “Re: your order").unwrap() < show.find("hi").unwrap(), "{show}");
    let d = texts::digest::render(&owner(), &o).unwrap();
    let plain = &d.parts[0].plain;
    assert!(plain.find("Subject: “Re: your order").unwrap() < plain.find("] hi").unwrap(), "{plain}");
    assert!(d.parts[0].html.contains("<b>Subject:</b> “Re: your order"), "{}", d.parts[0].html);
}

#[test]
fn a_strangers_links_are_dead_everywhere_they_are_shown() {
    let mut o = OwnerOverview::default();
    o.deferred.push(captured(&meta_n(STRANGER, HELD, 1).event_id, "go to https://evil.example/pay now"));
    o.deferred.push(Deferred {
        media: Some(Media {
            url: "https://evil.example/i.png".into(),
            name: "evil.example".into(),
            mimetype: None,
            size: None,
        }),
        ..captured(&meta_n(STRANGER, HELD, 2).event_id, "pic")
    });
    o.held.insert(
        rid(HELD),
        HeldRoom {
            inviter_name: Some("visit evil.example".into()),
            name: Some("evil.example lounge".into()),
            reason: Some("see www.evil.example".into()),
            ..held_room(false)
        },
    );
    let d = texts::digest::render(&owner(), &o).unwrap();
    let mut s = control();
    s.overview = Some(o.clone());
    let show = decide(&s, &text(ALICE, CONTROL, &format!("show {STRANGER}")), NOW, &config());
    let pending = decide(&s, &text(ALICE, CONTROL, "pending"), NOW, &config());
    let notices = |d: &Decision| -> Vec<(String, String)> {
        d.effects
            .iter()
            .filter_map(|e| match e {
                Effect::SendNotice { body, html, .. } => Some((body.clone(), html.clone())),
                _ => None,
            })
            .collect()
    };
    let mut all: Vec<(String, String)> = d.parts.iter().map(|p| (p.plain.clone(), p.html.clone())).collect();
    all.extend(notices(&show));
    all.extend(notices(&pending));
    for (plain, html) in all {
        for t in [&plain, &html] {
            assert!(!t.contains("evil.example") && !t.contains("://evil"), "{t}");
        }
        assert!(plain.contains("evil[.]example"), "{plain}");
        assert!(!html.contains("<a ") && !html.contains("<img"), "{html}");
    }
}

#[test]
fn the_card_counts_invites_here_within_a_day_distinct_and_bounded() {
    let cfg = config();
    let invite = |target: &str, snapshot: &Snapshot, now: u64| {
        let mut s = snapshot.clone();
        if target == ALICE {
            s.owners.insert(uid(ALICE), owner());
        }
        decide(&s, &member(STRANGER, "!r:remote.org", target, Membership::Invite, true), now, &cfg)
    };
    let apply = |s: &mut Snapshot, d: &Decision| {
        for c in &d.changes {
            if let StateChange::PutWave(k, r) = c {
                s.waves.insert(k.clone(), r.clone());
            }
        }
    };
    let mut s = Snapshot::default();
    // People who are not owners count (the appservice sees their invites
    // too), each once however often invited.
    for (i, who) in ["@dave:example.org", "@erin:example.org", "@dave:example.org"].iter().enumerate() {
        let d = invite(who, &s, NOW + i as u64);
        assert!(d.effects.is_empty() && d.outcomes.is_empty(), "{d:?}");
        apply(&mut s, &d);
    }
    // Nobody on other servers: the count is of people here.
    assert_eq!(invite("@zed:remote.org", &s, NOW + 5), Decision::default());
    let d = invite(ALICE, &s, NOW + 10);
    assert_eq!(put_held(&d).invited_here, Some(3));
    let p = pending_of(OwnerOverview {
        held: [(rid("!r:remote.org"), put_held(&d))].into_iter().collect(),
        ..Default::default()
    });
    assert!(p.contains("invited 3 people on this server in the last 24 hours"), "{p}");
    // A day later they are forgotten.
    assert_eq!(put_held(&invite(ALICE, &s, NOW + crate::waves::DAY_MS + 10)).invited_here, Some(1));
    // A flood keeps the record bounded; the count says the most it keeps.
    for i in 0..500 {
        let d = invite(&format!("@user{i}:example.org"), &s, NOW + 20 + i);
        apply(&mut s, &d);
    }
    let record = &s.waves[&WaveKey::Sender(uid(STRANGER))];
    assert_eq!(record.day.len(), crate::waves::DAY_CAP);
    assert_eq!(put_held(&invite(ALICE, &s, NOW + 600)).invited_here, Some(crate::waves::DAY_CAP as u32));
    // Client mode sees only the owner's own invites: no count.
    let mut s = Snapshot::default();
    s.owners.insert(uid(ALICE), owner());
    let d = decide(&s, &member(STRANGER, "!r:remote.org", ALICE, Membership::Invite, true), NOW, &client_config());
    assert_eq!(put_held(&d).invited_here, None);
}

#[test]
fn the_card_warns_of_look_alike_and_hidden_names_and_of_what_messages_contain() {
    let mut o = OwnerOverview::default();
    o.deferred.push(captured(
        &meta_n(STRANGER, HELD, 1).event_id,
        "pay 0x52908400098527886E0F7030069857D2E4169EE7 or call +49 30 1234567",
    ));
    o.held.insert(rid(HELD), HeldRoom { inviter_name: Some("A\u{200B}lice".into()), ..held_room(true) });
    let p = pending_of(o);
    assert!(p.contains("@stranger:remote.org (“Alice”) ⚠ uses your own name"), "{p}");
    assert!(
        p.contains(
            "from remote[.]org · ⚠ their name hides invisible characters · their messages contain a phone number, \
             a cryptocurrency address"
        ),
        "{p}"
    );
}

#[test]
fn shared_rooms_are_looked_up_once_per_sender_and_shown_flattened_on_the_card() {
    let cfg = config();
    let mut s = Snapshot::default();
    s.owners.insert(uid(ALICE), owner());
    let lookups = |d: &Decision| {
        d.effects.iter().filter(|e| matches!(e, Effect::LookUpShared { .. })).cloned().collect::<Vec<_>>()
    };
    // First held room of this sender: one look-up, as the owner, for it.
    let first = decide(&s, &member(STRANGER, "!r1:remote.org", ALICE, Membership::Invite, true), NOW, &cfg);
    assert_eq!(
        lookups(&first),
        vec![Effect::LookUpShared { owner: uid(ALICE), user: uid(STRANGER), room_id: rid("!r1:remote.org") }]
    );
    assert_eq!(lookups(&first)[0].acts_for(), Some(&uid(ALICE)));
    // A second room of theirs: none (the first one's card covers them).
    let mut s2 = s.clone();
    s2.kept_with.insert((uid(ALICE), uid(STRANGER)), Kept { held_rooms: 1, ..Default::default() });
    let second = decide(&s2, &member(STRANGER, "!r2:remote.org", ALICE, Membership::Invite, true), NOW, &cfg);
    assert!(lookups(&second).is_empty() && !second.effects.is_empty(), "{second:?}");

    // The answer is kept on the held room, names flattened, dead and bounded.
    let held = put_held(&first);
    let mut s3 = with_owner(Snapshot { rooms: vec![RoomState::Held(held.clone())], ..Default::default() });
    s3.owners.insert(uid(ALICE), owner());
    let answer = Input::SharedRooms {
        owner: uid(ALICE),
        room_id: rid("!r1:remote.org"),
        names: vec![
            Some("Book\nclub\u{202E} see bank.example".into()),
            None,
            Some("x".repeat(500)),
            Some("a fourth, never shown".into()),
        ],
        count: 5,
        complete: true,
    };
    let d = decide(&s3, &answer, NOW, &cfg);
    let shared = put_held(&d).shared.expect("shared rooms kept");
    assert_eq!(shared.names.len(), 3);
    assert_eq!(shared.names[0], "“Book club see bank[.]example”");
    assert_eq!(shared.names[1], "a room without a name");
    assert!(shared.names[2].chars().count() <= 45, "{}", shared.names[2]);
    let p = pending_of(OwnerOverview {
        held: [(rid("!r1:remote.org"), put_held(&d))].into_iter().collect(),
        ..Default::default()
    });
    assert!(p.contains("shares 5 rooms with you: “Book club see bank[.]example”, a room without a name, “xx"), "{p}");
    assert!(p.contains(" and 2 more"), "{p}");
    // The same answer again changes nothing; for a room no longer held,
    // nothing either.
    let mut s4 = s3.clone();
    s4.rooms = vec![RoomState::Held(put_held(&d))];
    assert_eq!(decide(&s4, &answer, NOW, &cfg), Decision::default());
    let mut gone = s3.clone();
    gone.rooms.clear();
    assert_eq!(decide(&gone, &answer, NOW, &cfg), Decision::default());

    // Nothing shared, and a look-up that could not read every room.
    for (complete, said) in [(true, "shares no room with you"), (false, "shares none of the rooms of yours looked at")]
    {
        let none =
            Input::SharedRooms { owner: uid(ALICE), room_id: rid("!r1:remote.org"), names: vec![], count: 0, complete };
        let d = decide(&s3, &none, NOW, &cfg);
        let p = pending_of(OwnerOverview {
            held: [(rid("!r1:remote.org"), put_held(&d))].into_iter().collect(),
            ..Default::default()
        });
        assert!(p.contains(said), "{p}");
    }
}

#[test]
fn an_owner_under_a_flood_of_new_senders_costs_no_look_ups() {
    let mut s = Snapshot::default();
    s.owners.insert(uid(ALICE), owner());
    s.kept.insert(uid(ALICE), Kept { held_rooms: crate::gate::SHARED_LOOKUPS_HELD, ..Default::default() });
    let d = decide(&s, &member(STRANGER, "!f:remote.org", ALICE, Membership::Invite, true), NOW, &config());
    assert!(d.outcomes.contains(&Outcome::InviteHeld), "{d:?}");
    assert!(!d.effects.iter().any(|e| matches!(e, Effect::LookUpShared { .. })), "{d:?}");
}

#[test]
fn a_wave_sender_costs_no_look_up() {
    let cfg = config();
    let mut s = Snapshot::default();
    s.owners.insert(uid(ALICE), owner());
    // The stranger already invited enough owners to be a wave.
    s.waves.insert(
        WaveKey::Sender(uid(STRANGER)),
        WaveRecord {
            seen: vec![],
            wave_ms: Some(NOW - 1_000),
            expires_ms: NOW + crate::waves::WAVE_MEMORY_MS,
            day: vec![],
        },
    );
    let d = decide(&s, &member(STRANGER, "!w:remote.org", ALICE, Membership::Invite, true), NOW, &cfg);
    assert!(d.outcomes.contains(&Outcome::WaveInvite), "{d:?}");
    assert!(!d.effects.iter().any(|e| matches!(e, Effect::LookUpShared { .. })), "{d:?}");
}
