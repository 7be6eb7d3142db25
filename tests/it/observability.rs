//! What operators see, against a real Synapse in both modes: Prometheus
//! metrics that count what happened, and health checks that notice a
//! homeserver going away, on a listener apart from the appservice API; and
//! a log at the default level that holds no stranger's words, reply or
//! address, and no ERROR when nothing went wrong.

use std::time::Duration;

use crate::support::gate::{LONG, ask, barrier, opt_in, reply_to, start, wait_membership};
use crate::support::smtp::SmtpServer;
use crate::support::{Mode, World, eventually, free_port};

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value of one sample line (`name{labels} value`) of a scrape.
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in:\n{scrape}"))
        .trim()
        .parse()
        .unwrap()
}

both_modes!(metrics_count_what_happened_and_health_notices_the_homeserver);
async fn metrics_count_what_happened_and_health_notices_the_homeserver(mode: Mode) {
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let port = free_port();
    w.gatekeeper.append_config(&format!("metrics:\n  listen: 127.0.0.1:{port}\n"));
    let base = format!("http://127.0.0.1:{port}");
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    opt_in(&mut w, &alice).await;

    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "Hello?").await;
    reply_to(&stranger, &held, &alice.user_id).await;
    stranger.send_text(&held, "Hello again?").await;

    let scrape = eventually("the metrics to count both messages", LONG, || {
        let url = format!("{base}/metrics");
        async move {
            let (status, text) = get(&url).await;
            (status == 200 && text.contains("gatekeeper_deferred_messages 2")).then_some(text)
        }
    })
    .await;
    assert_eq!(sample(&scrape, "gatekeeper_held_invites_total"), 1.0);
    assert_eq!(sample(&scrape, "gatekeeper_replies_sent_total"), 1.0);
    // Answered once per room: the second message is no suppressed reply.
    assert_eq!(sample(&scrape, "gatekeeper_replies_suppressed_total"), 0.0);
    assert!(sample(&scrape, "gatekeeper_transactions_total") >= 1.0);
    assert!(sample(&scrape, "gatekeeper_events_total{kind=\"message\"}") >= 2.0);
    assert!(sample(&scrape, "gatekeeper_processing_seconds_count") >= 3.0);
    assert_eq!(sample(&scrape, "gatekeeper_action_failures_total"), 0.0);
    // sled: no lease, the only Gatekeeper acts.
    assert_eq!(sample(&scrape, "gatekeeper_active"), 1.0);
    if mode == Mode::Appservice {
        // The homeserver's port serves the appservice API only.
        let (status, body) = get(&format!("{}/metrics", w.gatekeeper.url)).await;
        assert!(status >= 400 && !body.contains("gatekeeper_"), "{status} {body}");
    }

    let (status, body) = get(&format!("{base}/health/ready")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"homeserver\":\"reachable\"") && body.contains("\"store\":\"ok\""), "{body}");
    w.synapse.stop();
    let body = eventually("readiness to notice the homeserver is gone", Duration::from_secs(30), || {
        let url = format!("{base}/health/ready");
        async move {
            let (status, body) = get(&url).await;
            (status == 503).then_some(body)
        }
    })
    .await;
    assert!(body.contains("\"homeserver\":\"unreachable\""), "{body}");
    assert_eq!(get(&format!("{base}/health/live")).await.0, 200);
}

both_modes!(the_default_log_keeps_strangers_words_and_addresses_out_and_has_no_false_errors);
async fn the_default_log_keeps_strangers_words_and_addresses_out_and_has_no_false_errors(mode: Mode) {
    const WORDS: &str = "my bank PIN is 4711, please call me";
    const ADDRESS: &str = "alice.private@example.org";
    let mut w = World::with_mode(mode, "@.*:localhost").await;
    let smtp = SmtpServer::start(w.tmp.path()).await;
    let pages = free_port();
    w.gatekeeper.append_config(&format!(
        "email:\n  smtp_url: smtp://127.0.0.1:{}\n  from: Gatekeeper <gatekeeper@localhost>\n  secret: {}\n  \
         public_url: http://127.0.0.1:{pages}\n  listen: 127.0.0.1:{pages}\n",
        smtp.port,
        "s".repeat(40)
    ));
    // As an operator runs it: no RUST_LOG, the configured (default) level.
    w.gatekeeper.default_log_level = true;
    start(&mut w).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;
    let answer = ask(&w, &alice, &control, &format!("set email {ADDRESS}")).await;
    assert!(answer.contains(ADDRESS), "{answer}");
    eventually("the verification e-mail", LONG, || {
        let found = smtp.messages().into_iter().next();
        async move { found }
    })
    .await;

    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, WORDS).await;
    let reply = reply_to(&stranger, &held, &alice.user_id).await;
    let show = format!("show {}", stranger.user_id);
    let shown = eventually("the message to be kept", LONG, || {
        let (w, alice, control, show) = (&w, alice.clone(), control.clone(), show.clone());
        async move { Some(ask(w, &alice, &control, &show).await).filter(|s| s.contains(WORDS)) }
    })
    .await;
    assert!(shown.contains(stranger.user_id.as_str()), "{shown}");
    barrier(&w, &alice, &control).await;
    w.gatekeeper.stop();

    let log = w.gatekeeper.log();
    assert!(log.contains(w.gatekeeper.ready_line()), "{log}");
    assert!(!log.contains(WORDS), "the stranger's words are in the log:\n{log}");
    assert!(!log.contains(ADDRESS), "the owner's address is in the log:\n{log}");
    for line in reply.lines().map(str::trim).filter(|l| l.len() > 24) {
        assert!(!log.contains(line), "the reply's text is in the log ({line:?}):\n{log}");
    }
    // Nothing went wrong, so nothing says so.
    let alarms: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") || l.contains("backup")).collect();
    assert!(alarms.is_empty(), "{alarms:#?}\nlog:\n{log}");
}
