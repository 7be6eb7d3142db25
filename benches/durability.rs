//! The durability step alone, as the intake takes it: a 68 KB transaction
//! inserted into sled, then made durable before it could be acknowledged,
//! two ways in one run, each on a database of its own:
//!
//! - the intake journal (`store::journal`): the record written over zeros
//!   and synced, sled's own files left to the journal's checkpoints;
//! - the same with sled's insert after the acknowledgement, on a thread of
//!   its own (`store::sled_store::inserter`), as the intake does: its
//!   "insert" is handing the transaction to that thread;
//! - what the intake did before it: sled's flush, then its files synced
//!   (`store::durable`).
//!
//! Each step's latency is timed per transaction, so the tail shows where
//! it comes from: sled's insert (it writes a full I/O buffer of its log
//! inline) or the sync. Run with `cargo bench --bench durability`;
//! `BENCH_TXNS` sets how many transactions (600 when unset).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatekeeper::store::durable::FileSync;
use gatekeeper::store::journal::{Journal, SEGMENT_BYTES};

/// About a 100-event transaction of ~680-byte events.
const BODY_BYTES: usize = 68 * 1024;

struct Timings {
    insert: Vec<Duration>,
    sync: Vec<Duration>,
    total: Vec<Duration>,
}

impl Timings {
    fn new(n: usize) -> Self {
        Timings { insert: Vec::with_capacity(n), sync: Vec::with_capacity(n), total: Vec::with_capacity(n) }
    }

    fn push(&mut self, start: Instant, inserted: Instant, synced: Instant) {
        self.insert.push(inserted - start);
        self.sync.push(synced - inserted);
        self.total.push(synced - start);
    }

    fn print(mut self, what: &str) {
        for (step, v) in [("insert", &mut self.insert), ("sync", &mut self.sync), ("insert + sync", &mut self.total)] {
            v.sort();
            let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
            println!(
                "{what:<28} {step:<14} p50 {:>9.2?}  p90 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}",
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0)
            );
        }
    }
}

fn open_db(path: &std::path::Path) -> sled::Db {
    sled::Config::new().path(path).cache_capacity(64 << 20).open().unwrap()
}

fn journal(body: &[u8], n: usize) -> Timings {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let tree = db.open_tree("inbox").unwrap();
    let files = Arc::new(FileSync::open(dir.path()).unwrap());
    let checkpointed = db.clone();
    let (journal, _) =
        Journal::open(dir.path(), SEGMENT_BYTES, 0, Box::new(move |_| files.flush_and_sync(&checkpointed))).unwrap();
    journal.all_durable();
    let mut t = Timings::new(n);
    for seq in 0..n as u64 {
        let start = Instant::now();
        tree.insert(seq.to_be_bytes(), body).unwrap();
        let inserted = Instant::now();
        journal.append(journal.next_lsn(), body).unwrap();
        t.push(start, inserted, Instant::now());
    }
    t
}

fn journal_insert_after(body: &[u8], n: usize) -> Timings {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let tree = db.open_tree("inbox").unwrap();
    let files = Arc::new(FileSync::open(dir.path()).unwrap());
    let applied = Arc::new(AtomicU64::new(0));
    let (checkpointed, behind) = (db.clone(), Arc::clone(&applied));
    let checkpoint = Box::new(move |lsn| {
        // As the intake's: what it covers is in sled first.
        while behind.load(Ordering::SeqCst) < lsn {
            std::thread::sleep(Duration::from_micros(50));
        }
        files.flush_and_sync(&checkpointed)
    });
    let (journal, _) = Journal::open(dir.path(), SEGMENT_BYTES, 0, checkpoint).unwrap();
    journal.all_durable();
    let (queue, received) = std::sync::mpsc::sync_channel::<(u64, u64, Vec<u8>)>(8);
    let inserter = std::thread::spawn(move || {
        while let Ok((lsn, seq, body)) = received.recv() {
            tree.insert(seq.to_be_bytes(), body).unwrap();
            applied.store(lsn, Ordering::SeqCst);
        }
    });
    let mut t = Timings::new(n);
    for seq in 0..n as u64 {
        let start = Instant::now();
        let lsn = journal.next_lsn();
        journal.append(lsn, body).unwrap();
        let synced = Instant::now();
        queue.send((lsn, seq, body.to_vec())).unwrap();
        let handed = Instant::now();
        // Printed as insert, then sync: the hand-over is this step's insert.
        t.insert.push(handed - synced);
        t.sync.push(synced - start);
        t.total.push(handed - start);
    }
    drop(queue);
    inserter.join().unwrap();
    t
}

fn sled_sync(body: &[u8], n: usize) -> Timings {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let tree = db.open_tree("inbox").unwrap();
    let files = FileSync::open(dir.path()).unwrap();
    let mut t = Timings::new(n);
    for seq in 0..n as u64 {
        let start = Instant::now();
        tree.insert(seq.to_be_bytes(), body).unwrap();
        let inserted = Instant::now();
        files.flush_and_sync(&db).unwrap();
        t.push(start, inserted, Instant::now());
    }
    t
}

fn main() {
    gatekeeper::allocator::settle();
    let n = std::env::var("BENCH_TXNS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let body: Vec<u8> = (0..BODY_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    println!("{n} transactions of {} KB, one at a time", BODY_BYTES / 1024);
    // Interleaved, so that both meet the disk in the same state.
    for round in 1..=2 {
        println!("-- round {round}");
        journal(&body, n).print("journal (store::journal)");
        journal_insert_after(&body, n).print("journal, insert after ack");
        sled_sync(&body, n).print("sled's flush + sync");
    }
}
