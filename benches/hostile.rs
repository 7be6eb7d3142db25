//! Hostile strangers: what a flood costs. One run of
//! `cargo bench --bench hostile` prints every figure for BENCHMARKS.md.
//!
//! 1. One stranger sends 100,000 messages to one owner (the default bounds
//!    keep 1,000 and count the rest), then the owner asks for the digest.
//! 2. 20 strangers fill the owner's default bound (20,000 kept messages):
//!    the largest digest the defaults allow.
//! 3. The bounds raised so that one stranger's 100,000 are all kept: the
//!    digest renders and commits them; a `/metrics` scrape over them.
//! 4. 10,000 strangers invite one owner (1,000 held, the rest counted), then
//!    the owner asks for `pending` and the digest.
//!
//! Each scenario runs in a process of its own, so that its peak memory is
//! its own.
//!
//! Events go through the real store (sled, flushed per transaction like
//! the HTTP intake) and the real processor; each figure is set against the
//! honest floor measured in the same run: the least sled work with the same
//! durability (store the transaction and flush; consume each event and
//! count it, one transaction and one flush per batch of 100).

use std::time::{Duration, Instant};

use gatekeeper::engine::{Bounds, Decision, EngineConfig, HeldRoom, OwnerState, RoomState, StateChange};
use gatekeeper::pipeline::clock::SystemClock;
use gatekeeper::pipeline::processor::process_batch;
use gatekeeper::store::{SledStore, Store};

// The binary's allocator (src/main.rs): what production measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OWNER: &str = "@alice:example.org";
const CONTROL: &str = "!control:example.org";
const HELD: &str = "!held:remote.org";
const STRANGER: &str = "@flood:remote.org";
const CACHE_MB: u64 = 64;

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Starts a new peak: the kernel resets VmHWM to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak() -> f64 {
    rss_mib("VmHWM:")
}

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(&dir.path().join("db"), CACHE_MB).unwrap()
}

fn stranger(s: usize) -> String {
    if s == 0 { STRANGER.to_owned() } else { format!("@flood{s}:remote.org") }
}

fn held_room(s: usize) -> String {
    if s == 0 { HELD.to_owned() } else { format!("!held{s}:remote.org") }
}

/// Alice has opted in, and `strangers` flooding strangers' DMs are held for her.
fn set_up(store: &SledStore, strangers: usize) {
    let owner: ruma::OwnedUserId = OWNER.try_into().unwrap();
    store.accept_transaction("setup", &[b"{}"], 1).unwrap();
    let seq = store.inbox_batch(1).unwrap()[0].seq;
    let mut changes = vec![
        StateChange::PutOwner(OwnerState::new(owner.clone(), CONTROL.try_into().unwrap(), 1)),
        StateChange::PutRoom(CONTROL.try_into().unwrap(), RoomState::Control { owner: owner.clone() }),
    ];
    for s in 0..strangers {
        let held = HeldRoom { replied: true, ..HeldRoom::new(owner.clone(), stranger(s).try_into().unwrap(), true, 1) };
        changes.push(StateChange::PutRoom(held_room(s).try_into().unwrap(), RoomState::Held(held)));
    }
    store.commit(seq, &Decision { changes, effects: vec![], outcomes: vec![] }).unwrap();
}

/// Message `i`, from stranger `i % strangers` in their held DM.
fn message(i: usize, strangers: usize) -> String {
    let s = i % strangers;
    format!(
        r#"{{"type":"m.room.message","event_id":"$flood{i}","room_id":"{}","sender":"{}","origin_server_ts":{},"content":{{"msgtype":"m.text","body":"Message {i}: buy now, limited offer, reply at once to claim your prize"}}}}"#,
        held_room(s),
        stranger(s),
        1_764_000_000_000u64 + i as u64
    )
}

fn invite(i: usize) -> String {
    format!(
        r#"{{"type":"m.room.member","state_key":"{OWNER}","event_id":"$invite{i}","room_id":"!room{i}:spam{}.example","sender":"@s{i}:spam{}.example","origin_server_ts":{},"content":{{"membership":"invite","is_direct":true,"displayname":"Alice"}}}}"#,
        i % 50,
        i % 50,
        1_764_000_000_000u64 + i as u64
    )
}

fn command(body: &str, n: usize) -> String {
    format!(
        r#"{{"type":"m.room.message","event_id":"$cmd{n}","room_id":"{CONTROL}","sender":"{OWNER}","origin_server_ts":1764100000000,"content":{{"msgtype":"m.text","body":"{body}"}}}}"#
    )
}

/// Stores `events` as transactions of 100, as a homeserver sends them.
fn intake(store: &SledStore, events: &[String], tag: &str) -> Duration {
    let start = Instant::now();
    for (t, chunk) in events.chunks(100).enumerate() {
        let raws: Vec<&[u8]> = chunk.iter().map(|e| e.as_bytes()).collect();
        store.accept_transaction(&format!("{tag}{t}"), &raws, 1).unwrap();
    }
    start.elapsed()
}

fn process_all(store: &SledStore, config: &EngineConfig) -> Duration {
    let start = Instant::now();
    while process_batch(store, config, &SystemClock).unwrap().processed > 0 {}
    start.elapsed()
}

/// The floor: the same transactions stored and flushed, then each event
/// read back, consumed and counted (one transaction and one flush per 100).
fn floor(events: &[String]) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).cache_capacity(CACHE_MB << 20).open().unwrap();
    let inbox = db.open_tree("inbox").unwrap();
    let counts = db.open_tree("counts").unwrap();
    let start = Instant::now();
    for chunk in events.chunks(100) {
        let mut batch = sled::Batch::default();
        for e in chunk {
            batch.insert(&db.generate_id().unwrap().to_be_bytes(), e.as_bytes());
        }
        inbox.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    let stored = start.elapsed();
    let start = Instant::now();
    loop {
        let items: Vec<_> = inbox.iter().take(100).map(|r| r.unwrap()).collect();
        if items.is_empty() {
            break;
        }
        use sled::Transactional;
        (&inbox, &counts)
            .transaction(|(inbox, counts)| {
                for (k, v) in &items {
                    std::hint::black_box(serde_json::from_slice::<serde_json::Value>(v).is_ok());
                    inbox.remove(k)?;
                    let n = counts.get(b"n")?.map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()));
                    counts.insert(b"n", &(n + 1).to_be_bytes())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
        db.flush().unwrap();
    }
    (stored, start.elapsed())
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn flood(n: usize, strangers: usize, bounds: Bounds, label: &str) -> SledStore {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let store = open(dir);
    set_up(&store, strangers);
    let config = EngineConfig { bounds, ..EngineConfig::example() };
    let events: Vec<String> = (0..n).map(|i| message(i, strangers)).collect();
    reset_peak();
    let stored = intake(&store, &events, "m");
    let processed = process_all(&store, &config);
    let kept = store.stats().unwrap().deferred_messages;
    println!(
        "{label}: {n} messages from {strangers} stranger(s): stored in {stored:.2?} ({:.0}/s), processed in {processed:.2?} \
         ({:.0}/s); {kept} kept; peak RSS {:.1} MiB",
        per_s(n, stored),
        per_s(n, processed),
        peak()
    );
    let (floor_stored, floor_processed) = floor(&events);
    println!(
        "   floor: stored {floor_stored:.2?}, consumed and counted {floor_processed:.2?}; \
         intake {:.2}x, processing {:.2}x the floor",
        stored.as_secs_f64() / floor_stored.as_secs_f64(),
        processed.as_secs_f64() / floor_processed.as_secs_f64()
    );
    reset_peak();
    intake(&store, &[command("digest", 0)], "d");
    let digest = process_all(&store, &config);
    let notices = store.stats().unwrap().outbox_pending;
    println!(
        "   `digest` of {kept} kept messages: rendered, marked and committed in {digest:.2?}; {notices} notices \
         queued; peak RSS {:.1} MiB",
        peak()
    );
    store
}

fn main() {
    gatekeeper::allocator::settle();
    let Some(scenario) = std::env::args().nth(1).filter(|a| !a.starts_with('-')) else {
        println!("hostile strangers (release build, one run; sled cache {CACHE_MB} MiB; one process per scenario)");
        let me = std::env::current_exe().unwrap();
        for scenario in ["one-stranger", "owner-full", "all-kept", "invites"] {
            let out = std::process::Command::new(&me).arg(scenario).output().unwrap();
            print!("{}", String::from_utf8_lossy(&out.stdout));
            assert!(out.status.success(), "{scenario}: {}", String::from_utf8_lossy(&out.stderr));
        }
        return;
    };
    match scenario.as_str() {
        "one-stranger" => drop(flood(100_000, 1, Bounds::default(), "default bounds")),
        "owner-full" => drop(flood(20_000, 20, Bounds::default(), "default bounds, the owner's bound filled")),
        "all-kept" => all_kept(),
        "invites" => invites(),
        other => panic!("no scenario {other}"),
    }
}

fn all_kept() {
    let raised = Bounds { messages_per_stranger: 200_000, messages_per_owner: 200_000, ..Bounds::default() };
    let big = flood(100_000, 1, raised, "bounds raised");
    // /metrics with 100,000 kept messages: kept sizes, one read each.
    let start = Instant::now();
    let scrapes = 1_000;
    for _ in 0..scrapes {
        std::hint::black_box(gatekeeper::metrics::METRICS.render(&big).unwrap());
    }
    let scrape = start.elapsed() / scrapes;
    let start = Instant::now();
    for _ in 0..scrapes {
        std::hint::black_box(big.stats().unwrap());
    }
    let stats = start.elapsed() / scrapes;
    println!(
        "/metrics scrape with {} kept messages: {scrape:.2?} (of which the store's sizes {stats:.2?})",
        big.stats().unwrap().deferred_messages
    );
}

/// 10,000 strangers invite one owner.
fn invites() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    set_up(&store, 0);
    let config = EngineConfig::example();
    let invites: Vec<String> = (0..10_000).map(invite).collect();
    reset_peak();
    let stored = intake(&store, &invites, "i");
    let processed = process_all(&store, &config);
    let owner: ruma::OwnedUserId = OWNER.try_into().unwrap();
    let held = store.overview(&owner).unwrap().held.len();
    println!(
        "10000 strangers invite one owner: stored in {stored:.2?}, processed in {processed:.2?} ({:.0}/s); \
         {held} held, the rest counted; {} effects queued; peak RSS {:.1} MiB",
        per_s(invites.len(), processed),
        store.stats().unwrap().outbox_pending,
        peak()
    );
    let (floor_stored, floor_processed) = floor(&invites);
    println!(
        "   floor: stored {floor_stored:.2?}, consumed and counted {floor_processed:.2?}; processing {:.2}x the floor",
        processed.as_secs_f64() / floor_processed.as_secs_f64()
    );
    for (i, body) in ["pending", "pending 5", "digest"].iter().enumerate() {
        reset_peak();
        intake(&store, &[command(body, i + 1)], &format!("c{i}"));
        let took = process_all(&store, &config);
        println!("   `{body}` answered in {took:.2?}; peak RSS {:.1} MiB", peak());
    }
}
