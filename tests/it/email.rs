//! Digests by e-mail, with a real SMTP server: an address is verified with
//! a mailed code, then the digest arrives as a multipart, auto-generated
//! message with escaped sender text.

use std::time::Duration;

use crate::support::browser::Browser;
use crate::support::gate::{LONG, ask, barrier, opt_in, start, wait_membership};
use crate::support::smtp::SmtpServer;
use crate::support::{Mode, PushGateway, World, eventually, free_port};

both_modes!(a_verified_address_gets_the_digest_as_a_proper_email);
async fn a_verified_address_gets_the_digest_as_a_proper_email(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let smtp = SmtpServer::start(w.tmp.path()).await;
    let pages = free_port();
    w.gatekeeper.append_config(&format!(
        "email:\n  smtp_url: smtp://127.0.0.1:{}\n  from: Gatekeeper <gatekeeper@localhost>\n  secret: {}\n  \
         public_url: http://127.0.0.1:{pages}\n  listen: 127.0.0.1:{pages}\n",
        smtp.port,
        "s".repeat(40)
    ));
    let push = PushGateway::start().await;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    push.register(&alice).await;
    let control = opt_in(&mut w, &alice).await;

    let answer = ask(&w, &alice, &control, "set email alice@example.org").await;
    assert!(answer.contains("I sent a code to alice@example.org"), "{answer}");
    let code_mail = eventually("the verification e-mail", LONG, || {
        let found = smtp.messages().into_iter().next();
        async move { found }
    })
    .await;
    assert_eq!(code_mail["headers"]["To"], "alice@example.org");
    let plain = code_mail["parts"][0]["content"].as_str().unwrap().to_owned();
    let code: String = plain.split("code is ").nth(1).unwrap().chars().take(6).collect();
    assert!(ask(&w, &alice, &control, "verify 000000").await.contains("does not match") || code == "000000");
    let answer = ask(&w, &alice, &control, &format!("verify {code}")).await;
    assert!(answer.contains("Verified"), "{answer}");

    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "Hi <b>Alice</b>\r\nBcc: evil@example.org").await;
    eventually("the message to be captured", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "pending").await).filter(|p| p.contains("1 message")) }
    })
    .await;
    let digest = ask(&w, &alice, &control, "digest").await;
    assert!(digest.contains("1 person wrote to you"), "{digest}");

    let mail = eventually("the digest e-mail", Duration::from_secs(60), || {
        let found = smtp
            .messages()
            .into_iter()
            .find(|m| m["headers"]["Subject"].as_str().is_some_and(|s| s.contains("digest")));
        async move { found }
    })
    .await;
    let headers = &mail["headers"];
    assert_eq!(headers["Subject"], "Gatekeeper digest: 1 person wrote to you");
    assert_eq!(headers["Auto-Submitted"], "auto-generated");
    assert_eq!(headers["From"], "Gatekeeper <gatekeeper@localhost>");
    assert!(headers["Message-ID"].as_str().unwrap().starts_with("<gk.digest."));
    assert!(headers["Date"].is_string());
    assert!(headers.get("Bcc").is_none(), "{headers}");
    assert_eq!(mail["content_type"], "multipart/alternative");
    let parts = mail["parts"].as_array().unwrap();
    assert_eq!(parts.iter().map(|p| p["type"].as_str().unwrap()).collect::<Vec<_>>(), ["text/plain", "text/html"]);
    assert!(parts[0]["content"].as_str().unwrap().contains("Hi <b>Alice</b>"));
    let html = parts[1]["content"].as_str().unwrap();
    assert!(html.contains("Hi &lt;b&gt;Alice&lt;/b&gt;") && !html.contains("<b>Alice"), "{html}");
    assert_eq!(smtp.messages().len(), 2, "one code, one digest");
    let unsubscribe = headers["List-Unsubscribe"].as_str().unwrap().trim();
    assert!(!unsubscribe.contains(' '), "never folded inside the URL: {unsubscribe}");
    assert!(unsubscribe.starts_with(&format!("<http://127.0.0.1:{pages}/action/")), "{unsubscribe}");
    assert_eq!(headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");

    // One click in a real browser: the link's page asks, the button allows.
    let allow = html.split("href=\"").map(|s| s.split('"').next().unwrap()).find(|h| h.contains("/action/")).unwrap();
    let allow = allow.replace("&amp;", "&");
    let browser = Browser::start(&w.tmp.path().join("browser")).await;
    let mut page = browser.open(&allow).await;
    let text = page.wait_for_text("Allow @stranger:localhost?", Duration::from_secs(30)).await;
    assert!(text.contains("For @alice:localhost."), "{text}");
    // Had opening the page acted, its input would be queued before the page
    // was served, so before this command, and carried out before its answer.
    let pending = ask(&w, &alice, &control, "pending").await;
    assert!(pending.contains("@stranger:localhost"), "opening the page changes nothing: {pending}");
    assert!(alice.tags(&held).await.get("m.lowpriority").is_some(), "opening the page changes nothing");
    page.eval("document.querySelector('form button').click()").await;
    let done = page.wait_for_text("Done", Duration::from_secs(30)).await;
    assert!(done.contains("Gatekeeper confirms it in your Matrix chat"), "{done}");
    let http = reqwest::Client::new();
    assert_eq!(http.post(&allow).send().await.unwrap().status().as_u16(), 409, "links work once");
    eventually("the confirmation in the control room", LONG, || {
        let (a, c, bot) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move {
            a.notices_from(&c, &bot).await.into_iter().find(|n| n.starts_with("From your e-mail: Allowed @stranger"))
        }
    })
    .await;
    stranger.send_text(&held, "Thanks for letting me through").await;
    eventually("the allowed stranger's message to push", LONG, || {
        let n = push.pushes_in(&alice.user_id, &held);
        async move { (n >= 1).then_some(()) }
    })
    .await;

    // The page that said "Done" offers to take it back, for a day: one
    // click, and the stranger waits again, silenced as before.
    assert!(done.contains("Changed your mind? For the next 24 hours:"), "{done}");
    page.eval("document.querySelector('form button').click()").await;
    let mut undone = String::new();
    for _ in 0..300 {
        undone = page.text().await;
        if undone.contains("Done") && !undone.contains("Changed your mind") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!undone.contains("Changed your mind") && undone.contains("Done"), "the undo page: {undone}");
    eventually("the undo confirmed in the control room", LONG, || {
        let (a, c, bot) = (alice.clone(), control.clone(), w.voice(&alice.user_id));
        async move {
            a.notices_from(&c, &bot)
                .await
                .into_iter()
                .find(|n| n.starts_with("From your e-mail: Took back allowing @stranger:localhost"))
        }
    })
    .await;
    eventually("the room held again", LONG, || {
        let (a, h) = (alice.clone(), held.clone());
        async move { a.tags(&h).await.get("m.lowpriority").is_some().then_some(()) }
    })
    .await;
    let pushed = push.pushes_in(&alice.user_id, &held);
    stranger.send_text(&held, "Still there?").await;
    eventually("the new message held", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, "show @stranger:localhost").await).filter(|p| p.contains("Still there?")) }
    })
    .await;
    barrier(&w, &alice, &control).await;
    assert_eq!(push.pushes_in(&alice.user_id, &held), pushed, "held again: the new message does not ring");
}
