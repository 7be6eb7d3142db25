//! Failover against a real Synapse: two Gatekeepers on one PostgreSQL
//! database behind a proxy that sends each transaction to whichever
//! answers (the standby answers 503). Strangers invite the owner and write
//! throughout, while the active one is killed with -9 at random moments
//! (and once loses its lease's connection instead, and must stop by
//! itself); each killed one is started again and stands by. At the end
//! every message is captured exactly once, each stranger got exactly one
//! reply, nothing was done twice, and the lease was held by one at a time.
//! `GK_FAILOVER_SEED=<n>` replays a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::exactly_once::ExactlyOnce;
use crate::support::failover::{Proxy, twin, use_postgres};
use crate::support::faults::FaultProxy;
use crate::support::gate::{LONG, ask, barrier, opt_in, reply_to};
use crate::support::postgres::Postgres;
use crate::support::rng::Rng;
use crate::support::{
    Backend, CLIENT_OWNER, Client, Gatekeeper, Mode, PLACEHOLDER_HS, Synapse, World, eventually, free_port, wall,
};
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

/// Takeovers in all; the middle one by cutting the lease's connection.
const TAKEOVERS: usize = 5;
const STRANGERS: usize = 6;
const ACTIVE: &str = "lease taken; active";
const STANDBY: &str = "standby: another Gatekeeper holds the lease";

struct Stranger {
    client: Client,
    room: String,
    sent: usize,
}

/// Milliseconds into the (UTC) day of a log line's timestamp
/// (`2026-12-07T11:20:01.123456Z …`) or of [`wall`]'s `11:20:01.123`.
fn ms_of_day(text: &str) -> u64 {
    let clock = text.split_whitespace().next().unwrap();
    let clock = clock.rsplit('T').next().unwrap().trim_end_matches('Z');
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let parts: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let ms: u64 = format!("{frac:0<3}")[..3].parse().unwrap();
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + ms
}

/// Each "lease taken" line of a log: when, and at which epoch.
fn takes(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter(|l| l.contains(ACTIVE))
        .map(|l| {
            let epoch = l.split("epoch=").nth(1).and_then(|e| e.split_whitespace().next()).unwrap();
            (ms_of_day(l), epoch.parse().unwrap())
        })
        .collect()
}

/// Strangers invite the owner, one after another, and write, until
/// `stop`; every stranger has invited them by then. Returns what each sent.
async fn write_throughout(clients: Vec<Client>, owner: String, mut rng: Rng, stop: Arc<AtomicBool>) -> Vec<Stranger> {
    let mut strangers: Vec<Stranger> = Vec::new();
    let mut clients = clients.into_iter();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if (strangers.is_empty() || rng.below(4) == 0 || stopping)
            && let Some(client) = clients.next()
        {
            let room = client.create_dm(&owner).await;
            client.send_text(&room, &format!("hello from {}", client.user_id)).await;
            strangers.push(Stranger { client, room, sent: 1 });
            continue;
        }
        if stopping {
            return strangers;
        }
        let pick = rng.below(strangers.len());
        let s = &mut strangers[pick];
        s.client.send_text(&s.room, &format!("message {} of {}", s.sent, s.client.user_id)).await;
        s.sent += 1;
        // Room for the two Gatekeepers and Synapse on two cores.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn the_standby_takes_over_and_nothing_is_lost_or_done_twice() {
    let (mut rng, seed) = Rng::from_env("GK_FAILOVER_SEED");
    println!("failover seed: {seed} (GK_FAILOVER_SEED={seed} replays it)");
    let pg = Postgres::shared();
    let database_url = pg.create_database();
    let database = database_url.rsplit('/').next().unwrap().to_owned();
    let tmp = tempfile::tempdir().unwrap();

    let mut a = Gatekeeper::prepare(&tmp.path().join("gk-a"), PLACEHOLDER_HS, "@.*:localhost");
    let b_port = free_port();
    let proxy = Proxy::start(&[&a.url, &format!("http://127.0.0.1:{b_port}")]).await;
    a.route_appservice_through(&proxy.url);
    use_postgres(&a, &database_url);
    // The hourly reply cap is lifted so that every stranger must get exactly one.
    a.append_config("gate:\n  max_replies_per_hour: 100000\n");
    let b = twin(&a, &tmp.path().join("gk-b"), b_port);
    let synapse = Synapse::start(&tmp.path().join("synapse"), &[&a.registration]).await;
    let metrics = [free_port(), free_port()];
    for (gk, port) in [&a, &b].into_iter().zip(metrics) {
        gk.set_homeserver(&synapse.url);
        gk.append_config(&format!("metrics:\n  listen: 127.0.0.1:{port}\n"));
    }
    let bot = format!("@gatekeeper:{}", crate::support::SERVER_NAME);
    let mut gks = [a, b];

    gks[0].start(&[]);
    gks[0].wait_for_log(ACTIVE, LONG).await;
    gks[0].wait_for_log("homeserver ping ok", LONG).await;
    gks[1].start(&[]);
    gks[1].wait_for_log(STANDBY, LONG).await;

    // The standby: not ready, and it stores no transaction.
    let http = reqwest::Client::new();
    let ready = http.get(format!("http://127.0.0.1:{}/health/ready", metrics[1])).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("standby"));
    let refused = http
        .put(format!("{}/_matrix/app/v1/transactions/standby-probe", gks[1].url))
        .bearer_auth(gks[1].hs_token())
        .body(r#"{"events":[{"event_id":"$probe","type":"m.room.message","room_id":"!r:localhost","sender":"@x:localhost","content":{}}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let ready = http.get(format!("http://127.0.0.1:{}/health/ready", metrics[0])).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the active one is ready");
    // Prometheus sees both up, and which one acts.
    for (port, active) in [(metrics[0], 1), (metrics[1], 0)] {
        let scraped = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
        assert_eq!(scraped.status(), 200, "metrics of the one with gatekeeper_active {active}");
        let text = scraped.text().await.unwrap();
        assert!(text.lines().any(|l| l == format!("gatekeeper_active {active}")), "{text}");
    }

    let alice = synapse.register("alice").await;
    let control = alice.create_dm(&bot).await;
    let greeting = eventually("the greeting", LONG, || {
        let (o, c, bot) = (alice.clone(), control.clone(), bot.clone());
        async move { o.notices_from(&c, &bot).await.into_iter().next() }
    })
    .await;

    // Strangers write throughout, takeovers included, from a task of their
    // own: what arrives while neither holds the lease waits in Synapse.
    let mut clients = Vec::new();
    for i in 0..STRANGERS {
        clients.push(synapse.register(&format!("s{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(write_throughout(clients, alice.user_id.clone(), Rng::seeded(rng.next()), stop.clone()));
    let mut active = 0;
    // When each run stopped holding the lease, by process and run.
    let mut ended: Vec<((usize, usize), u64)> = Vec::new();
    let mut runs = [1usize, 1];
    let started = Instant::now();
    for round in 0..TAKEOVERS {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2500) as u64)).await;
        let standby = 1 - active;
        if round == TAKEOVERS / 2 {
            // Its lease's session ends (as with a network cut): it must stop
            // acting by itself, at once, and exit non-zero. The lease is the
            // advisory lock "gkactive"; every connection of both also holds
            // the schema's lock and the running lock, shared.
            ended.push(((active, runs[active]), ms_of_day(&wall())));
            let cut = pg.sql(&format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
                 AND (classid::bigint << 32 | objid::bigint) = x'676b616374697665'::bigint \
                 AND database = (SELECT oid FROM pg_database WHERE datname = '{database}')"
            ));
            assert_eq!(cut.trim(), "1", "the active one's lease session");
            let status = gks[active].wait_exit(Duration::from_secs(10)).await;
            assert_eq!(status.code(), Some(75), "{status:?}; log:\n{}", gks[active].log());
            assert!(gks[active].log().contains("lease lost"), "{}", gks[active].log());
        } else {
            // Noted before: the lease cannot pass on before the kill.
            ended.push(((active, runs[active]), ms_of_day(&wall())));
            gks[active].kill9();
        }
        gks[standby].wait_for_log(ACTIVE, LONG).await;
        gks[active].start(&[]);
        runs[active] += 1;
        gks[active].wait_for_log(STANDBY, LONG).await;
        active = standby;
    }
    // A last while of writing with no takeover, then the end.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let strangers = traffic.await.unwrap();
    assert_eq!(strangers.len(), STRANGERS, "every stranger invited the owner");
    let expected: usize = strangers.iter().map(|s| s.sent).sum();
    // Which backend answered the transactions, in runs: "a×12 b×7 a×3 …".
    let mut turns: Vec<(usize, usize)> = Vec::new();
    for (_, i) in proxy.answered.lock().unwrap().iter() {
        match turns.last_mut() {
            Some((last, n)) if last == i => *n += 1,
            _ => turns.push((*i, 1)),
        }
    }
    let turns: Vec<String> = turns.iter().map(|(i, n)| format!("{}×{n}", ["a", "b"][*i])).collect();
    println!(
        "failover: {TAKEOVERS} takeovers in {:.0?}; {} strangers, {expected} messages; transactions answered: {}",
        started.elapsed(),
        strangers.len(),
        turns.join(" ")
    );

    let check = ExactlyOnce {
        metrics: format!("http://127.0.0.1:{}/metrics", metrics[active]),
        owner: &alice.user_id,
        strangers: strangers.iter().map(|s| (&s.client, s.room.as_str())).collect(),
        expected,
    };
    check.settled_and_answered_once(Duration::from_secs(120)).await;
    let notices = alice.notices_from(&control, &bot).await;
    assert_eq!(notices.iter().filter(|n| **n == greeting).count(), 1, "greeted once: {notices:?}");

    gks[1 - active].stop();
    ended.push(((active, runs[active]), ms_of_day(&wall())));
    gks[active].stop();

    // One holder at a time: every take is at the next epoch, and after the
    // previous holder's lease ended (killed, or its session cut).
    let mut all: Vec<(u64, u64, (usize, usize))> = Vec::new();
    for (g, gk) in gks.iter().enumerate() {
        for (run, log) in gk.all_logs().iter().enumerate() {
            let taken = takes(log);
            assert!(taken.len() <= 1, "run {} of {g} took the lease {} times", run + 1, taken.len());
            all.extend(taken.into_iter().map(|(at, epoch)| (at, epoch, (g, run + 1))));
        }
    }
    all.sort();
    let epochs: Vec<u64> = all.iter().map(|(_, e, _)| *e).collect();
    assert_eq!(epochs, (1..=TAKEOVERS as u64 + 1).collect::<Vec<_>>(), "{all:?}");
    for pair in all.windows(2) {
        let (_, _, holder) = pair[0];
        let (next_at, _, _) = pair[1];
        let (_, end) = ended.iter().find(|(run, _)| *run == holder).expect("every holder ended");
        assert!(next_at >= *end, "taken at {next_at} while {holder:?} held it until {end}: {all:?} {ended:?}");
    }

    let report = gks[0].inspect();
    check.check_store(&report);
    let stats = &report["stats"];
    // Each transaction stored once, by whichever held the lease — a retry
    // after a kill is a replay — and the one sent to the standby not at all.
    let answered: std::collections::BTreeSet<String> =
        proxy.answered.lock().unwrap().iter().map(|(path, _)| path.split('?').next().unwrap().to_owned()).collect();
    assert_eq!(stats["transactions"], answered.len(), "{stats}");
    println!("failover: captured {expected}/{expected} exactly once; one reply per stranger; epochs {epochs:?}");
}

/// Client mode: two Gatekeepers on one database, each with its own device
/// of the owner's account (its own `client.store`, its own `gatekeeper
/// login`). The second one's login, while the first is active, must leave
/// the shared sync position and control room alone. The active one is
/// killed; the standby takes over from the stored sync position, in the
/// same control room: the stranger's message written before the kill and
/// the one written while none was active are each captured once, and the
/// stranger is answered once.
#[tokio::test]
async fn client_mode_the_standby_takes_over_with_its_own_device() {
    let mut w = World::with_mode_on(Mode::Client, Backend::Postgres, "").await;
    let alice = w.synapse.register(CLIENT_OWNER).await;
    let control = opt_in(&mut w, &alice).await;
    assert!(w.gatekeeper.log().contains(ACTIVE), "{}", w.gatekeeper.log());
    let mut b = Gatekeeper::prepare_client(&w.tmp.path().join("gk-b"), &w.synapse.url);
    std::fs::copy(&w.gatekeeper.config, &b.config).unwrap();
    b.login();
    b.start(&[]);
    b.wait_for_log(STANDBY, LONG).await;

    let stranger = w.synapse.register("bob").await;
    let room = stranger.create_dm(&alice.user_id).await;
    stranger.send_text(&room, "written while the first one is active").await;
    reply_to(&stranger, &room, &alice.user_id).await;
    w.gatekeeper.kill9();
    stranger.send_text(&room, "written while none is active").await;
    b.wait_for_log(ACTIVE, LONG).await;
    b.wait_for_log(b.ready_line(), LONG).await;
    assert!(!b.log().contains("control room created"), "the standby started over:\n{}", b.log());
    std::mem::swap(&mut w.gatekeeper, &mut b);
    // Answered in the first control room: the second one did not start over.
    barrier(&w, &alice, &control).await;
    let pending = ask(&w, &alice, &control, "pending").await;
    assert!(pending.contains(&stranger.user_id), "{pending}");
    assert_eq!(stranger.notices_from(&room, &alice.user_id).await.len(), 1, "answered once");
    let notices = alice.notices_from(&control, &alice.user_id).await;
    assert_eq!(notices.iter().filter(|n| **n == notices[0]).count(), 1, "greeted once: {notices:?}");
    // The stopped one's device logs out while the other is active: the
    // account's push rules silence the active one's held rooms, and stay.
    let out = b.logout();
    assert!(out.contains("Another Gatekeeper is active on this account"), "{out}");
    let rules = alice.override_rule_ids().await;
    assert!(rules.contains(&"gk.hold.invites".to_owned()), "{rules:?}");
    w.gatekeeper.stop();

    let report = w.gatekeeper.inspect();
    let owner = &report["owners"][0];
    assert_eq!(owner["held_rooms"], 1, "{report}");
    assert_eq!(owner["captured_messages"], 2, "each captured once: {report}");
}

/// A client-mode Gatekeeper active behind a proxy for its own calls, and a
/// standby with a device of its own that calls the homeserver directly.
async fn active_behind_a_proxy_and_a_standby(w: &mut World) -> (Client, String, Gatekeeper, FaultProxy) {
    let alice = w.synapse.register(CLIENT_OWNER).await;
    let control = opt_in(w, &alice).await;
    let mut b = Gatekeeper::prepare_client(&w.tmp.path().join("gk-b"), &w.synapse.url);
    std::fs::copy(&w.gatekeeper.config, &b.config).unwrap();
    // Its keys are published at login: the active one shares its own with it.
    b.login();
    let proxy = FaultProxy::passing(&w.synapse.url).await;
    w.gatekeeper.stop();
    w.gatekeeper.redirect_homeserver(&w.synapse.url, &proxy.url);
    w.gatekeeper.start(&[]);
    w.gatekeeper.wait_for_log(w.gatekeeper.ready_line(), LONG).await;
    b.start(&[]);
    b.wait_for_log(STANDBY, LONG).await;
    (alice, control, b, proxy)
}

/// How many replies the stranger's room holds.
type Count = std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;

/// Kills the active one, then has the standby take over (after `meanwhile`
/// is written) and finish the reply it inherited, one way or the other:
/// found and recorded as done, or sent again (`replies` > 1).
async fn take_over_and_finish<F, Fut>(w: &mut World, mut b: Gatekeeper, meanwhile: Fut, replies: F)
where
    F: Fn() -> Count,
    Fut: std::future::Future<Output = ()>,
{
    w.gatekeeper.kill9();
    // The standby's sync starts from the shared position, after the room
    // was joined: a new event there shows it the room if nothing else does.
    meanwhile.await;
    b.wait_for_log(ACTIVE, LONG).await;
    b.wait_for_log(b.ready_line(), LONG).await;
    std::mem::swap(&mut w.gatekeeper, &mut b);
    let not_again = "sent before a takeover by another device; not again";
    eventually("the inherited reply to be finished", LONG, || {
        let (w, replies) = (&*w, &replies);
        async move { (w.gatekeeper.log().contains(not_again) || replies().await > 1).then_some(()) }
    })
    .await;
}

/// Client mode: the active one sends a stranger's reply, but is killed
/// before it records the send (the homeserver's answer never reaches it).
/// The standby takes over with a device of its own, whose transaction IDs
/// the homeserver does not match with the first one's: it must find the
/// reply among the owner's events and record it as done, not send it again.
#[tokio::test]
async fn client_mode_a_reply_sent_just_before_a_kill_is_not_sent_again_by_the_standby() {
    let mut w = World::with_mode_on(Mode::Client, Backend::Postgres, "").await;
    let (alice, control, b, proxy) = active_behind_a_proxy_and_a_standby(&mut w).await;
    let stranger = w.synapse.register("bob").await;
    let room = stranger.create_dm(&alice.user_id).await;
    proxy.never_answer_sends_in(&room);
    stranger.send_text(&room, "hello, about your talk").await;
    // Sent, as the stranger sees; never answered, so never recorded.
    reply_to(&stranger, &room, &alice.user_id).await;
    assert!(proxy.counts().unanswered_sends >= 1, "{:?}", proxy.counts());

    let replies = || {
        let (s, r, o) = (stranger.clone(), room.clone(), alice.user_id.clone());
        Box::pin(async move { s.notices_from(&r, &o).await.len() }) as Count
    };
    let meanwhile = async {
        stranger.send_text(&room, "written while none is active").await;
    };
    take_over_and_finish(&mut w, b, meanwhile, replies).await;
    barrier(&w, &alice, &control).await;
    let replies = stranger.notices_from(&room, &alice.user_id).await;
    assert_eq!(replies.len(), 1, "answered once: {replies:?}");
    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    assert_eq!(report["stats"]["outbox_pending"], 0, "{report}");
    assert_eq!(report["stats"]["effects_failed"], 0, "{report}");
}

/// The same in an end-to-end encrypted chat, where the standby reads the
/// reply only with the key the active one shared with its device, which
/// came while it stood by.
#[tokio::test]
async fn client_mode_an_encrypted_reply_sent_just_before_a_kill_is_not_sent_again_by_the_standby() {
    let mut w = World::with_mode_on(Mode::Client, Backend::Postgres, "").await;
    let (alice, control, b, proxy) = active_behind_a_proxy_and_a_standby(&mut w).await;
    let stranger = crate::client_mode::encrypting_client(&w, "bob").await;
    let owner = matrix_sdk::ruma::OwnedUserId::try_from(alice.user_id.as_str()).unwrap();
    let room = stranger.create_dm(&owner).await.unwrap();
    assert!(room.latest_encryption_state().await.unwrap().is_encrypted());
    let room_id = room.room_id().to_string();
    proxy.never_answer_sends_in(&room_id);
    room.send(RoomMessageEventContent::text_plain("a secret hello")).await.unwrap();
    eventually("the stranger to decrypt the reply", LONG, || {
        let (s, r, a) = (stranger.clone(), room.clone(), alice.user_id.clone());
        async move { Some(crate::client_mode::decrypted_notices(&s, &r, &a).await).filter(|n| !n.is_empty()) }
    })
    .await;
    assert!(proxy.counts().unanswered_sends >= 1, "{:?}", proxy.counts());

    // Counted as the homeserver holds them: the owner's encrypted events.
    let replies = || {
        let (a, r) = (alice.clone(), room_id.clone());
        Box::pin(async move {
            a.messages(&r).await.iter().filter(|e| e["sender"] == a.user_id && e["type"] == "m.room.encrypted").count()
        }) as Count
    };
    let meanwhile = async {
        room.send(RoomMessageEventContent::text_plain("written while none is active")).await.unwrap();
    };
    take_over_and_finish(&mut w, b, meanwhile, replies).await;
    barrier(&w, &alice, &control).await;
    assert_eq!(replies().await, 1, "answered once");
    let decrypted = crate::client_mode::decrypted_notices(&stranger, &room, &alice.user_id).await;
    assert_eq!(decrypted.len(), 1, "{decrypted:?}");
    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    assert_eq!(report["stats"]["outbox_pending"], 0, "{report}");
    assert_eq!(report["stats"]["effects_failed"], 0, "{report}");
}
