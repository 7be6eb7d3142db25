//! The harness's own promise about ports (`support::ports`): a server it
//! starts on a port that turns out taken moves to another one instead of
//! failing the scenario, and a server that ends before it serves fails the
//! wait at once with its log, instead of after a minute of silence.

use std::net::TcpListener;

use crate::support::ports::{ephemeral_range, pool};
use crate::support::postgres::Postgres;
use crate::support::{Gatekeeper, PLACEHOLDER_HS, Synapse, free_port};

/// Holds a port the way another process's server would.
fn occupy() -> (TcpListener, u16) {
    let listener = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// The message a future panicked with.
async fn panic_of<F: std::future::Future<Output = ()> + Send + 'static>(future: F) -> String {
    let err = tokio::spawn(future).await.expect_err("it should have failed");
    let payload = err.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
    let (low, high) = ephemeral_range();
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    // A machine with no room outside the range gets the kernel's ports.
    if pool().is_some() {
        for p in &ports {
            let p = u32::from(*p);
            assert!(p > 1024 && !(low..=high).contains(&p), "{p} is in the ephemeral range {low}-{high}");
        }
    }
    let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
}

#[tokio::test]
async fn synapse_on_a_taken_port_starts_again_on_another() {
    let (_held, port) = occupy();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synapse");
    let synapse = Synapse::start_on(&dir, &[], "", port).await;
    assert_eq!(synapse.busy_ports, [port], "one start found the port taken, the next one served");
    assert_ne!(synapse.url, format!("http://127.0.0.1:{port}"));
    // The first start's log, kept, says why it moved on.
    let first = std::fs::read_to_string(dir.join(format!("homeserver.{port}-taken.log"))).unwrap();
    assert!(first.contains("Address already in use"), "{first}");
    // The one that started serves.
    let alice = synapse.register("alice").await;
    assert_eq!(alice.user_id, "@alice:localhost");
}

#[tokio::test]
async fn synapse_that_ends_before_serving_fails_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("synapse");
    // A registration that is not there: the configuration loads (and the
    // keys are made), and the server ends as it sets up its appservices.
    let missing = tmp.path().join("no-such-registration.yaml");
    let message = panic_of(async move {
        Synapse::start(&dir, &[&missing]).await;
    })
    .await;
    assert!(message.contains("Synapse exited before it served"), "{message}");
    assert!(message.contains("no-such-registration.yaml"), "the log's reason is in the failure: {message}");
    assert!(!message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn gatekeeper_that_ends_before_its_log_line_fails_the_wait_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut gatekeeper = Gatekeeper::prepare(&tmp.path().join("gatekeeper"), PLACEHOLDER_HS, "@.*:localhost");
    let listen = gatekeeper.url.strip_prefix("http://").unwrap().to_owned();
    let _held = TcpListener::bind(&listen).unwrap();
    gatekeeper.start(&[]);
    let message = panic_of(async move {
        gatekeeper.wait_for_log("homeserver ping ok", std::time::Duration::from_secs(60)).await;
    })
    .await;
    assert!(message.contains("gatekeeper ended (exit code"), "{message}");
    assert!(message.contains(&format!("cannot listen on {listen}")), "{message}");
}

#[test]
fn postgres_on_a_taken_port_starts_again_on_another() {
    let (_held, port) = occupy();
    let pg = Postgres::start_trying_first(port);
    assert_eq!(pg.busy_ports, [port], "one start found the port taken, the next one served");
    assert_ne!(pg.port, port);
    assert_eq!(pg.sql("SELECT 1").trim(), "1");
}
