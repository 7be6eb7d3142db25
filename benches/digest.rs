//! Digest rendering: 10,000 held messages from 500 senders, rendered into
//! control-room notices and the e-mail body. Reports time and the peak
//! extra memory (counted by a wrapping allocator). Run with
//! `cargo bench --bench digest`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gatekeeper::engine::digest::render;
use gatekeeper::engine::{Deferred, OwnerOverview, OwnerState};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    gatekeeper::allocator::settle();
    let owner = OwnerState {
        timezone: Some("Europe/Berlin".into()),
        ..OwnerState::new("@alice:example.org".try_into().unwrap(), "!c:example.org".try_into().unwrap(), 0)
    };
    let mut overview = OwnerOverview::default();
    for i in 0..10_000u64 {
        let s = i % 500;
        overview.deferred.push(Deferred {
            owner: owner.user_id.clone(),
            room_id: format!("!r{s}:remote.org").try_into().unwrap(),
            event_id: format!("$e{i}").try_into().unwrap(),
            sender: format!("@sender{s}:remote.org").try_into().unwrap(),
            ts_ms: 1_764_000_000_000 + i * 1000,
            received_ms: 1_764_000_000_000 + i * 1000,
            msgtype: "m.text".into(),
            body: format!("Message {i}: {}", "a reasonably long line of text, ".repeat(4)),
            html: None,
            media: None,
            encrypted: false,
            edited: false,
            digested: false,
            redacted_by: None,
            denied_ms: None,
        });
    }
    let mut times = Vec::new();
    let mut parts = 0;
    let mut peak_extra = 0;
    for _ in 0..10 {
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let start = Instant::now();
        let digest = render(&owner, &overview).expect("a digest");
        let email: String = digest.parts.iter().map(|p| p.html.as_str()).collect();
        times.push(start.elapsed());
        parts = digest.parts.len();
        peak_extra = peak_extra.max(PEAK.load(Ordering::Relaxed) - base);
        drop((digest, email));
    }
    times.sort();
    println!("digest of 10000 messages from 500 senders: {parts} notices");
    println!(
        "render time: median {:.2?}, worst {:.2?} (target < 50 ms)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    println!("peak extra memory: {:.1} MB (target < 20 MB)", peak_extra as f64 / (1 << 20) as f64);
}
