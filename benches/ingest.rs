//! Ingestion benchmark: 100-event transactions of unrelated traffic through
//! the real HTTP intake and the processor, next to the floor measured in the
//! same run (parse + store + one sled flush per transaction), and the time
//! from a stranger's first message arriving to the etiquette reply being
//! queued. Run with `cargo bench --bench ingest`; results go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatekeeper::appservice::http::{Intake, router};
use gatekeeper::engine::{Effect, EngineConfig, HeldRoom, OwnerState, RoomState, StateChange};
use gatekeeper::pipeline::processor::process_batch;
use gatekeeper::secret::Secret;
use gatekeeper::store::{SledStore, Store};
use serde_json::value::RawValue;

const TXNS: usize = 300;
const EVENTS: usize = 100;
const TOKEN: &str = "bench-hs-token";

fn config() -> EngineConfig {
    EngineConfig { max_replies_per_hour: 1_000_000, ..EngineConfig::example() }
}

/// Unrelated traffic: messages between users nobody protects, ~600 bytes each.
fn transaction(t: usize) -> String {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"type":"m.room.message","event_id":"$ev{t}x{i}","room_id":"!room{}:example.org","sender":"@user{}:example.org","origin_server_ts":{},"content":{{"msgtype":"m.text","body":"{}"}},"unsigned":{{"age":12}}}}"#,
                i % 37,
                i % 53,
                1_700_000_000_000u64 + (t * EVENTS + i) as u64,
                "lorem ipsum dolor sit amet ".repeat(18)
            )
        })
        .collect();
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Parses each transaction and stores its events under sequence numbers in
/// `tree`, with one flush per transaction.
fn store_transactions(db: &sled::Db, tree: &sled::Tree, bodies: &[String]) {
    let mut seq = 0u64;
    for body in bodies {
        let parsed: Body<'_> = serde_json::from_str(body).unwrap();
        for e in parsed.events {
            seq += 1;
            tree.insert(seq.to_be_bytes(), e.get().as_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
}

fn floor(bodies: &[String]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(64 << 20).open().unwrap();
    let tree = db.open_tree("inbox").unwrap();
    let start = Instant::now();
    store_transactions(&db, &tree, bodies);
    start.elapsed()
}

/// The least sled work a captured message needs, on top of [`floor`]: read
/// back from the inbox, its capture written under its own key, the inbox
/// entry removed, in one transaction and one flush per 100 events. No
/// look-ups and no decisions: what any design that keeps captures as
/// their own durable records must pay.
fn capture_floor(bodies: &[String]) -> Duration {
    use sled::Transactional;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(64 << 20).open().unwrap();
    let (inbox, captured) = (db.open_tree("inbox").unwrap(), db.open_tree("captured").unwrap());
    #[derive(serde::Deserialize)]
    struct Ids<'a> {
        room_id: &'a str,
        event_id: &'a str,
    }
    let start = Instant::now();
    store_transactions(&db, &inbox, bodies);
    loop {
        let batch: Vec<(sled::IVec, sled::IVec)> = inbox.iter().take(100).map(Result::unwrap).collect();
        if batch.is_empty() {
            break;
        }
        (&inbox, &captured)
            .transaction(|(inbox, captured)| {
                for (k, v) in &batch {
                    let ids: Ids<'_> = serde_json::from_slice(v).unwrap();
                    captured.insert(format!("{}\0{}", ids.room_id, ids.event_id).as_bytes(), v.clone())?;
                    inbox.remove(k)?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
        db.flush().unwrap();
    }
    start.elapsed()
}

struct Intaken {
    total: Duration,
    acks: Vec<Duration>,
}

async fn through_http(store: Arc<SledStore>, bodies: &[String]) -> Intaken {
    let intake = Arc::new(Intake {
        store: store.clone(),
        hs_token: Secret::new(TOKEN),
        wake: Arc::new(tokio::sync::Notify::new()),
        max_body_bytes: 16 << 20,
        clock: gatekeeper::pipeline::clock::system(),
        gaps: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(intake)).await.unwrap() });
    let http = reqwest::Client::new();
    let mut acks = Vec::with_capacity(bodies.len());
    let start = Instant::now();
    // Like a homeserver: one transaction in flight at a time.
    for (i, body) in bodies.iter().enumerate() {
        let t = Instant::now();
        let resp = http
            .put(format!("{base}/_matrix/app/v1/transactions/{i}"))
            .bearer_auth(TOKEN)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        acks.push(t.elapsed());
    }
    let total = start.elapsed();
    server.abort();
    acks.sort();
    Intaken { total, acks }
}

fn drain(store: &dyn Store, config: &EngineConfig) -> Duration {
    let start = Instant::now();
    while process_batch(store, config, &gatekeeper::pipeline::clock::SystemClock).unwrap().processed > 0 {}
    start.elapsed()
}

/// Strangers' messages in held rooms: every event is captured (and the
/// first in each room answered), the opposite of unrelated traffic.
const HELD_ROOMS: usize = 200;

fn stranger_transaction(t: usize) -> String {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            let r = (t * EVENTS + i) % HELD_ROOMS;
            format!(
                r#"{{"type":"m.room.message","event_id":"$st{t}x{i}","room_id":"!held{r}:remote.org","sender":"@s{r}:remote.org","origin_server_ts":{},"content":{{"msgtype":"m.text","body":"{}"}},"unsigned":{{"age":12}}}}"#,
                1_700_000_000_000u64 + (t * EVENTS + i) as u64,
                "lorem ipsum dolor sit amet ".repeat(18)
            )
        })
        .collect();
    format!(r#"{{"events":[{}]}}"#, events.join(","))
}

/// A store with one owner holding `rooms` DMs from strangers.
fn store_with_held_rooms(path: &std::path::Path, rooms: usize) -> SledStore {
    let store = SledStore::open(path, 64).unwrap();
    let owner: ruma::OwnedUserId = "@alice:example.org".try_into().unwrap();
    let control: ruma::OwnedRoomId = "!control:example.org".try_into().unwrap();
    let mut changes = vec![StateChange::PutOwner(OwnerState::new(owner.clone(), control, 1))];
    for r in 0..rooms {
        changes.push(StateChange::PutRoom(
            format!("!held{r}:remote.org").try_into().unwrap(),
            RoomState::Held(HeldRoom::new(owner.clone(), format!("@s{r}:remote.org").try_into().unwrap(), true, 1)),
        ));
    }
    store.accept_transaction("setup", &[b"{}"], 1).unwrap();
    let item = store.inbox_batch(1).unwrap().remove(0);
    store.commit(item.seq, &gatekeeper::engine::Decision { changes, effects: vec![], outcomes: vec![] }).unwrap();
    store
}

/// From a stranger's first message being accepted to the reply being queued.
fn invite_to_reply(rounds: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_held_rooms(&dir.path().join("db"), rounds);
    let config = config();
    let mut out = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let event = format!(
            r#"{{"type":"m.room.message","event_id":"$first{r}","room_id":"!held{r}:remote.org","sender":"@s{r}:remote.org","origin_server_ts":1,"content":{{"msgtype":"m.text","body":"hello"}}}}"#
        );
        let start = Instant::now();
        store.accept_transaction(&format!("r{r}"), &[event.as_bytes()], 2).unwrap();
        process_batch(&store, &config, &gatekeeper::pipeline::clock::SystemClock).unwrap();
        out.push(start.elapsed());
        let queued = store.outbox_batch(u64::MAX, 1000, false).unwrap();
        assert!(queued.iter().any(|i| matches!(&i.effect, Effect::SendNotice { room_id, .. } if room_id.as_str() == format!("!held{r}:remote.org"))));
    }
    out.sort();
    out
}

#[tokio::main]
async fn main() {
    let bodies: Vec<String> = (0..TXNS).map(transaction).collect();
    let bytes: usize = bodies.iter().map(String::len).sum();
    let events = (TXNS * EVENTS) as f64;
    println!(
        "{TXNS} transactions x {EVENTS} events ({:.1} KB each), sequential, loopback",
        bytes as f64 / TXNS as f64 / 1024.0
    );

    let floor_time = floor(&bodies);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("db"), 64).unwrap());
    let intake = through_http(store.clone(), &bodies).await;
    let processing = drain(store.as_ref(), &config());
    assert_eq!(store.stats().unwrap().events_processed as usize, TXNS * EVENTS);

    let rate = |d: Duration| events / d.as_secs_f64();
    println!("floor (parse + store + 1 flush/txn): {:>9.0} events/s  {:>8.2?} total", rate(floor_time), floor_time);
    println!("intake over HTTP (ack'd, durable):   {:>9.0} events/s  {:>8.2?} total", rate(intake.total), intake.total);
    println!(
        "intake + processing:                 {:>9.0} events/s  {:>8.2?} total",
        rate(intake.total + processing),
        intake.total + processing
    );
    println!("ratio intake / floor:                {:.2}", intake.total.as_secs_f64() / floor_time.as_secs_f64());
    println!(
        "ratio (intake + processing) / floor: {:.2}",
        (intake.total + processing).as_secs_f64() / floor_time.as_secs_f64()
    );
    println!(
        "ack latency, 100-event transaction:  p50 {:.2?}  p99 {:.2?}",
        percentile(&intake.acks, 0.5),
        percentile(&intake.acks, 0.99)
    );
    let small: Vec<String> = (0..TXNS)
        .map(|t| {
            let one = transaction(t + 10_000);
            let first = one.split(r#"},{"type""#).next().unwrap().to_owned();
            format!("{first}}}]}}")
        })
        .collect();
    let dir1 = tempfile::tempdir().unwrap();
    let single = through_http(Arc::new(SledStore::open(&dir1.path().join("db"), 64).unwrap()), &small).await;
    println!(
        "ack latency, 1-event transaction:    p50 {:.2?}  p99 {:.2?}",
        percentile(&single.acks, 0.5),
        percentile(&single.acks, 0.99)
    );
    // The same, for strangers' messages: each one captured, with a reply
    // decided for the first message of each held room.
    let strangers: Vec<String> = (0..TXNS).map(stranger_transaction).collect();
    let stranger_floor = floor(&strangers);
    let stranger_capture_floor = capture_floor(&strangers);
    let dir2 = tempfile::tempdir().unwrap();
    let held = Arc::new(store_with_held_rooms(&dir2.path().join("db"), HELD_ROOMS));
    let stranger_intake = through_http(held.clone(), &strangers).await;
    let stranger_processing = drain(held.as_ref(), &config());
    assert_eq!(held.stats().unwrap().deferred_messages as usize, TXNS * EVENTS);
    println!(
        "stranger traffic ({HELD_ROOMS} held DMs, every event captured): floor {:.0} events/s; \
         intake {:.0} events/s; intake + processing {:.0} events/s",
        rate(stranger_floor),
        rate(stranger_intake.total),
        rate(stranger_intake.total + stranger_processing)
    );
    println!(
        "stranger ratios: intake / floor {:.2}; (intake + processing) / floor {:.2}",
        stranger_intake.total.as_secs_f64() / stranger_floor.as_secs_f64(),
        (stranger_intake.total + stranger_processing).as_secs_f64() / stranger_floor.as_secs_f64()
    );
    println!(
        "stranger capture floor (floor + read back, capture written, inbox entry removed): {:.0} events/s; \
         (intake + processing) / capture floor {:.2}",
        rate(stranger_capture_floor),
        (stranger_intake.total + stranger_processing).as_secs_f64() / stranger_capture_floor.as_secs_f64()
    );

    let reply = invite_to_reply(200);
    println!(
        "stranger's message -> reply queued:  p50 {:.2?}  p99 {:.2?}  (accept + flush + decide + flush)",
        percentile(&reply, 0.5),
        percentile(&reply, 0.99)
    );
}
