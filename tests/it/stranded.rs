//! Nothing stranded (issue 13), against a real Synapse: a proxy between the
//! homeserver and Gatekeeper swallows a transaction with a stranger's
//! message and one with the owner's command, answering 200 itself, so the
//! homeserver believes both delivered. After Gatekeeper's next start it
//! reads its held and control rooms forward: the message is kept once,
//! the stranger still has one etiquette reply, the command runs once, a
//! command delivered before is not run again (a `deny 1` would now deny
//! someone else), and a second restart changes nothing.
//!
//! With `refuse_transaction_gaps` (Gatekeeper the homeserver's only
//! appservice), a command swallowed while Gatekeeper runs is found with no
//! restart: the next transaction is refused once for the gap, the
//! homeserver resends after its backoff, and the read after that resend
//! finds the command.
//!
//! Appservice mode only: in client mode the sync position is stored in the
//! same write as the events it leads past, so nothing can be stranded.

use crate::support::faults::Swallower;
use crate::support::gate::{LONG, ask, barrier, opt_in, reply_to, start, wait_membership};
use crate::support::{Gatekeeper, PLACEHOLDER_HS, Synapse, World, eventually};

const STRANGER: &str = "@stranger:localhost";
const BLOCKED: &str = "Blocked @spammer:localhost";
const PEST_BLOCKED: &str = "Blocked @pest:localhost";

/// A started Gatekeeper whose homeserver reaches it through a swallowing
/// proxy, with `option` added to its appservice section.
async fn behind_a_swallower(option: Option<&str>) -> (World, Swallower) {
    let tmp = tempfile::tempdir().unwrap();
    let mut gatekeeper = Gatekeeper::prepare(&tmp.path().join("gatekeeper"), PLACEHOLDER_HS, "@.*:localhost");
    let proxy = Swallower::start(&gatekeeper.url).await;
    gatekeeper.route_appservice_through(&proxy.url);
    if let Some(option) = option {
        gatekeeper.set_appservice_option(option);
    }
    let synapse = Synapse::start(&tmp.path().join("synapse"), &[&gatekeeper.registration]).await;
    gatekeeper.set_homeserver(&synapse.url);
    let mut w = World { gatekeeper, synapse, tmp };
    start(&mut w).await;
    (w, proxy)
}

#[tokio::test]
async fn a_swallowed_transaction_is_read_after_the_restart_and_decided_once() {
    let (mut w, proxy) = behind_a_swallower(None).await;

    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;
    let stranger = w.synapse.register("stranger").await;
    let held = stranger.create_dm(&alice.user_id).await;
    wait_membership(&stranger, &held, &alice.user_id, "join").await;
    stranger.send_text(&held, "line 0").await;
    reply_to(&stranger, &held, &alice.user_id).await;

    // A decision by number, delivered: were it decided again when the
    // control room is read forward after the restart, `pending` would list
    // only the stranger above, and "1" would deny them.
    let early = w.synapse.register("early").await;
    let early_room = early.create_dm(&alice.user_id).await;
    wait_membership(&early, &early_room, &alice.user_id, "join").await;
    let pending = ask(&w, &alice, &control, "pending").await;
    let (first, second) = (pending.find("@early:localhost"), pending.find(STRANGER));
    assert!(first.is_some() && first < second, "newest first: {pending}");
    ask(&w, &alice, &control, "deny 1").await;
    wait_membership(&early, &early_room, &alice.user_id, "leave").await;

    // The stranger's message never reaches Gatekeeper; the next one does.
    proxy.swallow_next("stranded line");
    stranger.send_text(&held, "stranded line").await;
    eventually("the stranger's message to be swallowed", LONG, || async {
        (proxy.swallowed().len() == 1).then_some(())
    })
    .await;
    stranger.send_text(&held, "line 2").await;
    let shown = eventually("line 2 to be kept", LONG, || {
        let (w, a, c) = (&w, alice.clone(), control.clone());
        async move { Some(ask(w, &a, &c, &format!("show {STRANGER}")).await).filter(|s| s.contains("line 2")) }
    })
    .await;
    assert!(!shown.contains("stranded line"), "the proxy swallowed it: {shown}");

    // The owner's command never reaches Gatekeeper either; a later one does.
    proxy.swallow_next("block @spammer:localhost");
    alice.send_text(&control, "block @spammer:localhost").await;
    eventually("the command to be swallowed", LONG, || async { (proxy.swallowed().len() == 2).then_some(()) }).await;
    barrier(&w, &alice, &control).await;
    let bot = w.bot();
    let answers = |needle: &'static str| {
        let (a, c, bot) = (alice.clone(), control.clone(), bot.clone());
        async move { a.notices_from(&c, &bot).await.iter().filter(|n| n.starts_with(needle)).count() }
    };
    assert_eq!(answers(BLOCKED).await, 0, "the homeserver thinks it delivered the command, Gatekeeper never saw it");

    for run in ["the restart", "a second restart"] {
        w.gatekeeper.stop();
        start(&mut w).await;
        w.gatekeeper.wait_for_log("rooms read forward after the start", LONG).await;
        let shown =
            eventually(&format!("the stranded line to be kept after {run}"), LONG, || {
                let (w, a, c) = (&w, alice.clone(), control.clone());
                async move {
                    Some(ask(w, &a, &c, &format!("show {STRANGER}")).await).filter(|s| s.contains("stranded line"))
                }
            })
            .await;
        // As messages ("— line 0"; the subject above them quotes one too).
        for line in ["— line 0", "— stranded line", "— line 2"] {
            assert_eq!(shown.matches(line).count(), 1, "{line:?} once after {run}: {shown}");
        }
        let (zero, stranded, two) =
            (shown.find("— line 0").unwrap(), shown.find("— stranded line").unwrap(), shown.find("— line 2").unwrap());
        assert!(zero < stranded && stranded < two, "in the order written: {shown}");
        barrier(&w, &alice, &control).await;
        assert_eq!(answers(BLOCKED).await, 1, "the swallowed command ran once after {run}");
        assert_eq!(stranger.notices_from(&held, &alice.user_id).await.len(), 1, "one etiquette reply after {run}");
    }
    let blocked = ask(&w, &alice, &control, "blocked").await;
    assert!(blocked.contains("@spammer:localhost"), "{blocked}");
    let pending = ask(&w, &alice, &control, "pending").await;
    assert!(pending.contains(STRANGER) && !pending.contains("@early:localhost"), "{pending}");
    w.gatekeeper.stop();
    let report = w.gatekeeper.inspect();
    assert_eq!(report["owners"][0]["captured_messages"], 3, "{report}");
}

#[tokio::test]
async fn a_gap_is_refused_and_the_read_after_the_resend_finds_what_was_swallowed() {
    let (mut w, proxy) = behind_a_swallower(Some("refuse_transaction_gaps: true")).await;
    let alice = w.synapse.register("alice").await;
    let control = opt_in(&mut w, &alice).await;
    w.gatekeeper.wait_for_log("rooms read forward after the start", LONG).await;
    barrier(&w, &alice, &control).await;
    assert!(!w.gatekeeper.log().contains("after the homeserver's resend"), "no resend yet");

    proxy.swallow_next("block @pest:localhost");
    alice.send_text(&control, "block @pest:localhost").await;
    eventually("the command to be swallowed", LONG, || async { (proxy.swallowed().len() == 1).then_some(()) }).await;
    // The next transaction shows the gap: refused once, resent after the
    // homeserver's backoff, and then the rooms are read forward.
    barrier(&w, &alice, &control).await;
    w.gatekeeper.wait_for_log("never arrived; refusing it once", LONG).await;
    w.gatekeeper.wait_for_log("rooms read forward after the homeserver's resend", LONG).await;
    barrier(&w, &alice, &control).await;
    let bot = w.bot();
    let answered = alice.notices_from(&control, &bot).await.iter().filter(|n| n.starts_with(PEST_BLOCKED)).count();
    assert_eq!(answered, 1, "the swallowed command ran once, with no restart");
    let blocked = ask(&w, &alice, &control, "blocked").await;
    assert!(blocked.contains("@pest:localhost"), "{blocked}");
}
