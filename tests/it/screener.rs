//! Ahead of every screener (issue 16): the stranger is asked why they write
//! and told when the owner reads; the owner sees a subject and a card for
//! each sender; nothing a stranger sends is live in the control room or in
//! the e-mail.

use std::time::Duration;

use serde_json::json;

use crate::support::gate::{LONG, ask, barrier, opt_in, reply_to, start, wait_membership};
use crate::support::matrix::enc;
use crate::support::smtp::SmtpServer;
use crate::support::{Mode, World, eventually, free_port};

/// The HTML of the last notice Gatekeeper sent in `control`.
async fn last_notice_html(w: &World, owner: &crate::support::Client, control: &str) -> String {
    let voice = w.voice(&owner.user_id);
    owner
        .messages(control)
        .await
        .into_iter()
        .rev()
        .find(|e| e["sender"] == voice.as_str() && e["content"]["msgtype"] == "m.notice")
        .and_then(|e| e["content"]["formatted_body"].as_str().map(str::to_owned))
        .expect("a notice with HTML")
}

both_modes!(the_subject_is_the_invite_reason_or_the_line_after_the_reply_and_stranger_links_are_dead);
async fn the_subject_is_the_invite_reason_or_the_line_after_the_reply_and_stranger_links_are_dead(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let smtp = SmtpServer::start(w.tmp.path()).await;
    let pages = free_port();
    w.gatekeeper.append_config(&format!(
        "email:\n  smtp_url: smtp://127.0.0.1:{}\n  from: Gatekeeper <gatekeeper@localhost>\n  secret: {}\n  \
         public_url: http://127.0.0.1:{pages}\n  listen: 127.0.0.1:{pages}\n",
        smtp.port,
        "s".repeat(40)
    ));
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    alice.set_displayname("Alice").await;
    let control = opt_in(&mut w, &alice).await;
    ask(&w, &alice, &control, "set email alice@example.org").await;
    let code_mail = eventually("the verification e-mail", LONG, || {
        let found = smtp.messages().into_iter().next();
        async move { found }
    })
    .await;
    let plain = code_mail["parts"][0]["content"].as_str().unwrap().to_owned();
    let code: String = plain.split("code is ").nth(1).unwrap().chars().take(6).collect();
    assert!(ask(&w, &alice, &control, &format!("verify {code}")).await.contains("Verified"));

    // A group invitation whose reason says why, with a link in it.
    let club = w.synapse.register("club").await;
    let room = club.create_group(&[]).await;
    let path = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    let reason = "Book club\nfor the street:\u{202E} see https://club.example/join";
    let (status, _) =
        club.call(reqwest::Method::POST, &path, Some(json!({"user_id": alice.user_id, "reason": reason}))).await;
    assert_eq!(status, 200);
    wait_membership(&club, &room, &alice.user_id, "join").await;

    // A DM from someone who calls themselves "Аlice" (a Cyrillic А): the
    // reply asks for one line and says when Alice reads; the line after
    // it is the subject.
    let baker = w.synapse.register("baker").await;
    baker.set_displayname("\u{410}lice").await;
    let dm = baker.create_dm(&alice.user_id).await;
    wait_membership(&baker, &dm, &alice.user_id, "join").await;
    baker.send_text(&dm, "hello?").await;
    let reply = reply_to(&baker, &dm, &alice.user_id).await;
    assert!(reply.contains("Could you reply with one line: who you are and what it is about?"), "{reply}");
    assert!(reply.contains("Alice reads first messages from new contacts every morning at 08:00 (UTC) — next in "));
    baker.send_text(&dm, "Bob from the bakery, about your order: www.bakery.example/o/1").await;
    baker.send_text(&dm, "also http://evil.example/x.png").await;
    barrier(&w, &alice, &control).await;

    let pending = eventually("pending with both subjects", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("3 messages")) }
    })
    .await;
    assert!(pending.contains("Subject: “Book club for the street: see https[:]//club[.]example/join”"), "{pending}");
    let subject = "Subject: “Bob from the bakery, about your order: www[.]bakery[.]example/o/1”";
    assert!(pending.contains(subject), "{pending}");
    // First, before the messages; the card after it.
    let baker_entry = &pending[pending.find(subject).unwrap()..];
    let card = baker_entry.lines().nth(1).unwrap();
    assert!(card.contains("from localhost") && card.contains("their messages contain links"), "{card}");
    assert!(pending.contains("@baker:localhost (“Аlice”) ⚠ uses your own name"), "{pending}");
    assert!(!pending.contains("bakery.example") && !pending.contains("evil.example"), "{pending}");

    let show = ask(&w, &alice, &control, "show @baker:localhost").await;
    let (s, first) = (show.find(subject).expect("the subject in show"), show.find("hello?").unwrap());
    assert!(s < first, "the subject comes before the messages: {show}");

    let digest = ask(&w, &alice, &control, "digest").await;
    assert!(digest.contains(subject), "{digest}");
    let html = last_notice_html(&w, &alice, &control).await;
    assert!(html.contains("www[.]bakery[.]example/o/1") && html.contains("http[:]//evil[.]example/x[.]png"), "{html}");
    assert!(!html.contains("bakery.example") && !html.contains("evil.example"), "{html}");
    assert!(!html.contains("<a ") && !html.contains("<img"), "nothing live, nothing loaded: {html}");

    let mail = eventually("the digest e-mail", Duration::from_secs(60), || {
        let found = smtp
            .messages()
            .into_iter()
            .find(|m| m["headers"]["Subject"].as_str().is_some_and(|s| s.contains("digest")));
        async move { found }
    })
    .await;
    let (text, html) = (mail["parts"][0]["content"].as_str().unwrap(), mail["parts"][1]["content"].as_str().unwrap());
    for part in [text, html] {
        assert!(part.contains("www[.]bakery[.]example/o/1"), "{part}");
        assert!(!part.contains("bakery.example") && !part.contains("evil.example"), "{part}");
        assert!(!part.contains("club.example"), "{part}");
    }
    assert!(!html.contains("<img"), "{html}");
    // The only live links are Gatekeeper's own.
    let gatekeepers = format!("http://127.0.0.1:{pages}/");
    let hrefs: Vec<&str> = html.split("href=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert!(!hrefs.is_empty());
    assert!(hrefs.iter().all(|h| h.starts_with(&gatekeepers)), "{hrefs:?}");
}

/// Appservice mode only: the appservice sees every invite on the server.
#[tokio::test]
async fn the_card_counts_the_people_a_stranger_invited_here() {
    let mut w = World::new("@.*:localhost").await;
    start(&mut w).await;
    let mut owners = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let owner = w.synapse.register(name).await;
        let control = opt_in(&mut w, &owner).await;
        owners.push((owner, control));
    }
    let dave = w.synapse.register("dave").await;
    let stranger = w.synapse.register("stranger").await;
    // Someone who is no owner first, twice (one person, counted once).
    for _ in 0..2 {
        stranger.create_dm(&dave.user_id).await;
    }
    barrier(&w, &owners[0].0, &owners[0].1).await;
    for (owner, _) in &owners {
        let room = stranger.create_dm(&owner.user_id).await;
        wait_membership(&stranger, &room, &owner.user_id, "join").await;
    }
    let (carol, control) = &owners[2];
    let pending = ask(&w, carol, control, "pending").await;
    assert!(pending.contains("invited 4 people on this server in the last 24 hours"), "{pending}");
    let (alice, control) = &owners[0];
    let pending = ask(&w, alice, control, "pending").await;
    assert!(pending.contains("invited 2 people on this server in the last 24 hours"), "{pending}");
}

both_modes!(the_card_names_the_rooms_a_stranger_shares_with_the_owner);
async fn the_card_names_the_rooms_a_stranger_shares_with_the_owner(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;
    let room = |body: serde_json::Value| {
        let alice = alice.clone();
        async move {
            let (status, created) =
                alice.call(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await;
            assert_eq!(status, 200, "{created}");
            created["room_id"].as_str().unwrap().to_owned()
        }
    };
    // Rooms of Alice's that a neighbour was let into by a third person
    // (three people: never read as a direct chat; not by Alice, whose
    // invitation would make them a contact): one by invitation, one by
    // knocking and being let in.
    let party = room(json!({"preset": "private_chat", "name": "Street\nparty \u{202E}at street.example"})).await;
    let garden = room(json!({
        "preset": "private_chat",
        "name": "Garden",
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
    }))
    .await;
    // And a public room of hers, which anyone can join to look close to her.
    let town = room(json!({"preset": "public_chat", "name": "Town square"})).await;
    let neighbour = w.synapse.register("neighbour").await;
    let carol = w.synapse.register("carol").await;
    let nobody = w.synapse.register("nobody").await;
    for room in [&party, &garden] {
        alice.invite(room, &carol.user_id).await;
        carol.join(room).await;
    }
    carol.invite(&party, &neighbour.user_id).await;
    neighbour.join(&party).await;
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&garden));
    let (status, knocked) = neighbour.call(reqwest::Method::POST, &knock, Some(json!({}))).await;
    assert_eq!(status, 200, "{knocked}");
    carol.invite(&garden, &neighbour.user_id).await;
    neighbour.join(&garden).await;
    for anyone in [&neighbour, &carol, &nobody] {
        anyone.join(&town).await;
    }
    for stranger in [&neighbour, &nobody] {
        let dm = stranger.create_dm(&alice.user_id).await;
        wait_membership(stranger, &dm, &alice.user_id, "join").await;
        stranger.send_text(&dm, "hello").await;
    }
    barrier(&w, &alice, &control).await;
    let show = eventually("the neighbour's card names the shared rooms", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "show @neighbour:localhost").await).filter(|s| s.contains("shares")) }
    })
    .await;
    // The public room is not counted: a stranger's joining it says nothing.
    assert!(show.contains("shares 2 rooms with you: "), "{show}");
    assert!(show.contains("“Street party at street[.]example”") && show.contains("“Garden”"), "{show}");
    assert!(!show.contains("Town square"), "{show}");
    let show = eventually("the other card says nothing is shared", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "show @nobody:localhost").await).filter(|s| s.contains("shares")) }
    })
    .await;
    // The held rooms themselves are not "shared" (Gatekeeper's silence
    // marks them), nor is the control room, nor the public room.
    assert!(show.contains("shares no room with you"), "{show}");
    let pending = ask(&w, &alice, &control, "pending").await;
    assert!(pending.contains("shares 2 rooms with you") && pending.contains("shares no room with you"), "{pending}");
}
