//! The appservice against a real Synapse: wiring, intake guarantees and the
//! opt-in flow, with the real `gatekeeper` binary as a separate process.

use std::time::Duration;

use serde_json::json;

use crate::support::gate::barrier;
use crate::support::{World, eventually};

const LONG: Duration = Duration::from_secs(60);

/// Owners in these tests are alice and owner*; bob is outside the namespace.
const USERS: &str = "@(alice|owner.*):localhost";

#[tokio::test]
async fn startup_registers_the_bot_sets_its_profile_and_the_ping_succeeds() {
    let mut w = World::new(USERS).await;
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;

    let carol = w.synapse.register("carol").await;
    let name = eventually("bot display name", LONG, || {
        let (c, bot) = (carol.clone(), w.bot());
        async move { c.displayname(&bot).await }
    })
    .await;
    assert_eq!(name, "Gatekeeper");

    // The homeserver can ping us on demand too, with the registration's as_token.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/_matrix/client/v1/appservice/gatekeeper/ping", w.synapse.url))
        .bearer_auth(w.gatekeeper.as_token())
        .body(r#"{"transaction_id":"from-the-test"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!w.gatekeeper.log().contains(&w.gatekeeper.as_token()), "a token leaked into the log");
    assert!(!w.gatekeeper.log().contains(&w.gatekeeper.hs_token()), "a token leaked into the log");
}

#[tokio::test]
async fn a_real_invite_reaches_the_engine_and_the_bot_greets_and_answers_help() {
    let mut w = World::new(USERS).await;
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let alice = w.synapse.register("alice").await;
    let room = alice.create_dm(&w.bot()).await;

    let greeting = eventually("the bot's greeting", LONG, || {
        let (a, room, bot) = (alice.clone(), room.clone(), w.bot());
        async move { a.notices_from(&room, &bot).await.into_iter().next() }
    })
    .await;
    assert!(greeting.contains("help"), "{greeting}");
    assert_eq!(alice.membership_of(&room, &w.bot()).await.as_deref(), Some("join"));

    alice.send_text(&room, "help").await;
    let notices = eventually("the help answer", LONG, || {
        let (a, room, bot) = (alice.clone(), room.clone(), w.bot());
        async move { Some(a.notices_from(&room, &bot).await).filter(|n| n.len() >= 2) }
    })
    .await;
    assert!(notices[1].contains("help [command]"), "{notices:?}");

    // Notices carry no mentions, so they ping nobody.
    let events = alice.messages(&room).await;
    let notice = events.iter().find(|e| e["content"]["msgtype"] == "m.notice").unwrap();
    assert_eq!(notice["content"]["m.mentions"], json!({}));
    assert!(notice["content"]["formatted_body"].as_str().unwrap().contains("<p>"));

    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    assert_eq!(report["owners"][0]["user_id"], "@alice:localhost");
    assert_eq!(report["owners"][0]["control_room"], room.as_str());
    assert_eq!(report["stats"]["inbox_pending"], 0);
    assert_eq!(report["stats"]["outbox_pending"], 0);
}

#[tokio::test]
async fn users_outside_the_namespace_are_refused_politely_and_the_bot_leaves() {
    let mut w = World::new(USERS).await;
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let bob = w.synapse.register("bob").await;
    let room = bob.create_dm(&w.bot()).await;
    eventually("the bot to leave", LONG, || {
        let (b, room, bot) = (bob.clone(), room.clone(), w.bot());
        async move { (b.membership_of(&room, &bot).await.as_deref() == Some("leave")).then_some(()) }
    })
    .await;
    let notices = bob.notices_from(&room, &w.bot()).await;
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("enabled"), "{}", notices[0]);
    w.gatekeeper.stop();
    assert_eq!(w.gatekeeper.inspect()["stats"]["owners"], 0);
}

#[tokio::test]
async fn bad_tokens_are_refused_and_a_replayed_transaction_is_processed_once() {
    let mut w = World::new(USERS).await;
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let http = reqwest::Client::new();
    let url = format!("{}/_matrix/app/v1/transactions/test-1", w.gatekeeper.url);
    // Events in a room nobody watches, and one that is not an event at all:
    // unreadable, but of no room Gatekeeper tracks, so dropped rather than
    // kept in the quarantine (which only keeps what concerns an owner).
    let body = json!({"events": [
        {"type": "m.room.message", "event_id": "$t1", "room_id": "!elsewhere:localhost", "sender": "@x:localhost",
         "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "one"}},
        {"type": "m.room.message", "event_id": "$t2", "room_id": "!elsewhere:localhost", "sender": "@x:localhost",
         "origin_server_ts": 2, "content": {"msgtype": "m.text", "body": "two"}},
        "not an event"
    ]})
    .to_string();

    let missing = http.put(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    let wrong = http.put(&url).bearer_auth("not-the-hs-token").body(body.clone()).send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 403);
    let errcode: serde_json::Value = serde_json::from_slice(&wrong.bytes().await.unwrap()).unwrap();
    assert_eq!(errcode["errcode"], "M_FORBIDDEN");

    for _ in 0..3 {
        let ok = http.put(&url).bearer_auth(w.gatekeeper.hs_token()).body(body.clone()).send().await.unwrap();
        assert_eq!(ok.status().as_u16(), 200);
    }
    w.gatekeeper.wait_for_log("unreadable event of no tracked room dropped", LONG).await;
    w.gatekeeper.stop();

    // The test created no rooms, so these are the only events Gatekeeper saw.
    let stats = &w.gatekeeper.inspect()["stats"];
    assert_eq!(stats["transactions"], 1, "{stats}");
    assert_eq!(stats["replayed_transactions"], 2, "{stats}");
    assert_eq!(stats["events_received"], 3, "{stats}");
    // Start-up queues inputs of its own (the operator's lists, the owners'
    // refreshes) as follow-ups, which the stop may leave in the inbox: each
    // input is processed once or still waiting, never processed twice.
    let n = |k: &str| stats[k].as_u64().unwrap();
    assert_eq!(n("events_processed") + n("inbox_pending"), 3 + n("follow_ups"), "{stats}");
    assert_eq!(stats["events_quarantined"], 0, "{stats}");
    assert_eq!(w.gatekeeper.inspect()["quarantined"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn kill_9_between_acknowledging_and_processing_loses_nothing() {
    let mut w = World::new(USERS).await;
    // Intake only: Synapse's transaction is acknowledged but not acted on.
    w.gatekeeper.start(&["--hold-processing"]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    let owner = w.synapse.register("owner1").await;
    let room = owner.create_dm(&w.bot()).await;
    w.gatekeeper.wait_for_log("transaction accepted", LONG).await;
    // With processing on hold nothing answers a command, so no barrier can
    // show that the invite was not acted on: a short wait has to do.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(owner.membership_of(&room, &w.bot()).await.as_deref(), Some("invite"));
    w.gatekeeper.kill9();

    // Synapse got its 200 and will not resend: only our inbox has the invite.
    w.gatekeeper.start(&[]);
    let greeting = eventually("the greeting after restart", LONG, || {
        let (o, room, bot) = (owner.clone(), room.clone(), w.bot());
        async move { o.notices_from(&room, &bot).await.into_iter().next() }
    })
    .await;
    assert!(greeting.contains("Gatekeeper"));

    // Restart once more: nothing is processed or sent again. The DM is
    // owner1's control room: once a later command is answered, anything
    // replayed from before it would be in the room.
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.gatekeeper.stop();
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log("homeserver ping ok", LONG).await;
    barrier(&w, &owner, &room).await;
    let notices = owner.notices_from(&room, &w.bot()).await;
    let besides_the_barrier: Vec<_> = notices.iter().filter(|n| !n.contains("\"barrier-")).collect();
    assert_eq!(besides_the_barrier, [&greeting], "{notices:?}");
    w.gatekeeper.stop();
    let stats = &w.gatekeeper.inspect()["stats"];
    assert_eq!(stats["inbox_pending"], 0, "{stats}");
    let inputs = stats["events_received"].as_u64().unwrap() + stats["follow_ups"].as_u64().unwrap();
    assert_eq!(inputs, stats["events_processed"].as_u64().unwrap(), "every input processed once: {stats}");
}
