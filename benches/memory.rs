//! Memory: Gatekeeper's resident memory with an empty store, and with
//! 10,000 owners and 100,000 held messages in it (sled's page cache set to
//! the configured 64 MiB), before and after a restart and while processing.
//! Run with `cargo bench --bench memory`; results go to BENCHMARKS.md.

use std::time::Instant;

use gatekeeper::engine::{Decision, Deferred, EngineConfig, HeldRoom, OwnerState, RoomState, StateChange};
use gatekeeper::pipeline::processor::process_batch;
use gatekeeper::store::{SledStore, Store};

// The binary's allocator (src/main.rs): what production measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OWNERS: usize = 10_000;
const MESSAGES_PER_OWNER: usize = 10;
const CACHE_MB: u64 = 64;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn dir_mib(path: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| if e.path().is_dir() { walk(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(path) as f64 / (1 << 20) as f64
}

fn owner_decision(o: usize) -> Decision {
    let owner: ruma::OwnedUserId = format!("@owner{o}:example.org").try_into().unwrap();
    let held: ruma::OwnedRoomId = format!("!held{o}:remote.org").try_into().unwrap();
    let stranger: ruma::OwnedUserId = format!("@s{o}:remote.org").try_into().unwrap();
    let mut changes = vec![
        StateChange::PutOwner(OwnerState::new(owner.clone(), format!("!c{o}:example.org").try_into().unwrap(), 1)),
        StateChange::PutRoom(
            held.clone(),
            RoomState::Held(HeldRoom {
                owner: owner.clone(),
                inviter: stranger.clone(),
                inviter_name: Some("A stranger".into()),
                is_dm: true,
                invited_at_ms: 1,
                name: None,
                members: Some(2),
                reason: None,
                replied: true,
                digested: false,
                unreadable: None,
                wave: None,
                reply_owed_ms: None,
                said: None,
                invited_here: None,
                shared: None,
            }),
        ),
    ];
    for m in 0..MESSAGES_PER_OWNER {
        changes.push(StateChange::PutDeferred(Deferred {
            owner: owner.clone(),
            room_id: held.clone(),
            event_id: format!("$m{o}x{m}").try_into().unwrap(),
            sender: stranger.clone(),
            ts_ms: 1_764_000_000_000 + m as u64,
            received_ms: 1_764_000_000_000 + m as u64,
            msgtype: "m.text".into(),
            body: "Hello, I found your profile and wanted to ask about the project. ".repeat(3),
            html: None,
            media: None,
            encrypted: false,
            edited: false,
            digested: false,
            redacted_by: None,
            denied_ms: None,
        }));
    }
    Decision { changes, effects: vec![], outcomes: vec![] }
}

fn main() {
    gatekeeper::allocator::settle();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let before = rss_mib();
    let store = SledStore::open(&path, CACHE_MB).unwrap();
    println!("RSS, empty store open:                  {:>7.1} MiB (process before: {before:.1} MiB)", rss_mib());

    let start = Instant::now();
    for chunk in 0..OWNERS / 100 {
        let raws: Vec<&[u8]> = vec![b"{}"; 100];
        store.accept_transaction(&format!("load{chunk}"), &raws, 1).unwrap();
        for (i, item) in store.inbox_batch(100).unwrap().into_iter().enumerate() {
            store.commit(item.seq, &owner_decision(chunk * 100 + i)).unwrap();
        }
        store.flush().unwrap();
    }
    let stats = store.stats().unwrap();
    assert_eq!((stats.owners as usize, stats.deferred_messages as usize), (OWNERS, OWNERS * MESSAGES_PER_OWNER));
    println!(
        "loaded {OWNERS} owners, {} held rooms, {} held messages in {:.1?}; on disk {:.0} MiB",
        OWNERS,
        OWNERS * MESSAGES_PER_OWNER,
        start.elapsed(),
        dir_mib(&path)
    );
    println!("RSS, after loading:                     {:>7.1} MiB", rss_mib());
    drop(store);

    let store = SledStore::open(&path, CACHE_MB).unwrap();
    println!("RSS, reopened (a restart):              {:>7.1} MiB", rss_mib());
    // Strangers write to 2,000 of the owners: point look-ups, captures, commits.
    let events: Vec<String> = (0..2_000)
        .map(|i| {
            let o = i * (OWNERS / 2_000);
            format!(
                r#"{{"type":"m.room.message","event_id":"$new{i}","room_id":"!held{o}:remote.org","sender":"@s{o}:remote.org","origin_server_ts":1764000100000,"content":{{"msgtype":"m.text","body":"one more thing"}}}}"#
            )
        })
        .collect();
    for (t, chunk) in events.chunks(100).enumerate() {
        let raws: Vec<&[u8]> = chunk.iter().map(|e| e.as_bytes()).collect();
        store.accept_transaction(&format!("t{t}"), &raws, 2).unwrap();
    }
    while process_batch(&store, &EngineConfig::example(), &gatekeeper::pipeline::clock::SystemClock).unwrap().processed
        > 0
    {}
    assert_eq!(store.stats().unwrap().deferred_messages as usize, OWNERS * MESSAGES_PER_OWNER + 2_000);
    println!("RSS, after processing 2,000 messages:   {:>7.1} MiB", rss_mib());
    let first: ruma::OwnedUserId = "@owner0:example.org".try_into().unwrap();
    let overview = store.overview(&first).unwrap();
    assert_eq!(overview.deferred.len(), MESSAGES_PER_OWNER + 1);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?").to_owned();
    println!("peak RSS of the whole run: {}", peak.trim_start_matches("VmHWM:").trim());
}
