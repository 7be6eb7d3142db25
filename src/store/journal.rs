//! The intake's journal: what makes an acknowledged transaction survive a
//! power cut for the price of one `fdatasync` of blocks that already exist.
//!
//! Making sled's own log durable costs its flush (every dirty page, the
//! processor's too) and an `fdatasync` of a file that grows, which commits
//! the file system's own journal: 4–18 ms at p99 on the bench's disk, more
//! than the whole acknowledgement may take. Overwriting blocks of a file
//! filled with zeros when it was made changes no metadata, so its
//! `fdatasync` is the write and a cache flush (0.3 ms at p50, 1.3 at p99).
//!
//! Two segment files of a fixed size, written in turn. Each record carries
//! a log sequence number (LSN), consecutive across both, and a CRC. The
//! store writes the LSN of what it journals in the same atomic write as the
//! data itself (its "applied" LSN), so on open the records after that LSN
//! are exactly what a power cut took from the store, and are applied again.
//! A segment is written over only once the store has made everything in it
//! durable its own way: that checkpoint runs on a thread of its own as soon
//! as the writer leaves the segment, so no acknowledgement waits for it
//! unless the other segment fills first.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Each segment's size: 16 MiB of disk for both, and a checkpoint every
/// 8 MiB of transactions (about 130 of 100 events).
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// "GKJ1": a record starts here (zeros, where none was ever written).
const MAGIC: u32 = 0x474b_4a31;
/// Magic, LSN, payload length, CRC.
const HEADER: usize = 4 + 8 + 4 + 4;

const NAMES: [&str; 2] = ["journal.0", "journal.1"];

/// Makes everything the store has written up to the given LSN durable its
/// own way (the store may still be writing the last of it: it waits).
pub type Checkpoint = Box<dyn Fn(u64) -> io::Result<()> + Send + Sync>;

pub struct Journal {
    segment_bytes: u64,
    writer: Mutex<Writer>,
    checkpoints: Arc<Checkpoints>,
}

struct Writer {
    files: [File; 2],
    active: usize,
    /// Where the next record goes in the active segment.
    offset: u64,
    next_lsn: u64,
    /// The highest LSN written to each segment since it was last started
    /// (0: none).
    last_lsn: [u64; 2],
    buf: Vec<u8>,
    /// A write or sync that failed: what the kernel had of it may be lost
    /// though a later sync succeeds, so nothing is written after it.
    failed: Option<String>,
}

struct Checkpoints {
    run: Checkpoint,
    state: Mutex<CheckpointState>,
    changed: Condvar,
    /// The last checkpoint's thread, joined before another starts and when
    /// the journal is dropped: until it ends it holds the store's database.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct CheckpointState {
    /// Everything up to this LSN is durable in the store itself.
    durable_lsn: u64,
    running: bool,
    /// A checkpoint that failed: the store cannot be trusted to have made
    /// anything durable since, so nothing is written over again.
    failed: Option<String>,
}

/// A record found on open that the store had not applied, to apply again.
#[derive(Debug, PartialEq, Eq)]
pub struct Pending {
    pub lsn: u64,
    pub payload: Vec<u8>,
}

impl Journal {
    /// Opens (or makes) the journal in `dir`. `applied` is the store's
    /// applied LSN; the records after it come back, in order, to be applied
    /// again before anything else is written. The caller then makes the
    /// store durable and calls [`Journal::all_durable`].
    pub fn open(dir: &Path, segment_bytes: u64, applied: u64, run: Checkpoint) -> io::Result<(Self, Vec<Pending>)> {
        let mut chains = Vec::new();
        let mut highest = applied;
        let mut hidden_from_sight = false;
        let mut files = Vec::with_capacity(2);
        for name in NAMES {
            let path = dir.join(name);
            let mut file =
                OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            let (chain, end) = chain(&bytes);
            hidden_from_sight |= bytes.get(end..end + HEADER).is_some_and(|h| h.iter().any(|&b| b != 0));
            highest = chain.iter().map(|r| r.lsn).fold(highest, u64::max);
            chains.extend(chain);
            if (bytes.len() as u64) < segment_bytes {
                fill(&mut file, bytes.len() as u64, segment_bytes)?;
            }
            files.push(file);
        }
        File::open(dir)?.sync_all()?;
        chains.sort_by_key(|r| r.lsn);
        let mut pending: Vec<Pending> = chains.into_iter().filter(|r| r.lsn > applied).collect();
        pending.dedup_by_key(|r| r.lsn);
        let missing = pending.last().map_or(0, |r| r.lsn - applied) - pending.len() as u64;
        if missing > 0 {
            // Records are written and synced one after the other, so a gap
            // means the journal's files were damaged. The records after it
            // were acknowledged and the store lacks them (their LSNs are
            // past its own): they are applied all the same, in order.
            tracing::error!(
                dir = %dir.display(),
                applied,
                missing,
                "the intake journal has a gap: transactions acknowledged in it are lost"
            );
        }
        // Past every number a record on disk could carry: a chain ends at
        // the first record that does not check, and one damaged may hide
        // records after it (at most a segment's worth in each) that a
        // number used again could later join. Only a journal whose chains
        // end in zeros (never written there) hides nothing.
        let next_lsn = if hidden_from_sight { highest + 1 + 2 * (segment_bytes / HEADER as u64) } else { highest + 1 };
        let [first, second]: [File; 2] = files.try_into().map_err(|_| io::Error::other("two segments"))?;
        let journal = Journal {
            segment_bytes,
            writer: Mutex::new(Writer {
                files: [first, second],
                active: 0,
                offset: 0,
                next_lsn,
                // Until `all_durable`, neither segment may be written over.
                last_lsn: [highest, highest],
                buf: Vec::new(),
                failed: None,
            }),
            checkpoints: Arc::new(Checkpoints {
                run,
                state: Mutex::new(CheckpointState { durable_lsn: applied, running: false, failed: None }),
                changed: Condvar::new(),
                thread: Mutex::new(None),
            }),
        };
        Ok((journal, pending))
    }

    /// The store has made everything durable (after applying what `open`
    /// gave back): both segments may be written over.
    pub fn all_durable(&self) {
        let writer = self.writer();
        let mut state = self.checkpoints.state();
        state.durable_lsn = state.durable_lsn.max(writer.next_lsn - 1);
    }

    /// Whether a payload of `len` bytes fits in a segment at all. What does
    /// not is made durable by the store's own sync instead.
    pub fn fits(&self, len: usize) -> bool {
        (HEADER + len) as u64 <= self.segment_bytes
    }

    /// The LSN the next record takes: the store writes it as its applied
    /// LSN with the data, then calls [`Journal::append`]. The caller
    /// serialises the two (the store's intake lock).
    pub fn next_lsn(&self) -> u64 {
        self.writer().next_lsn
    }

    /// Writes the record with LSN `lsn` and syncs it: once this returns,
    /// it survives a power cut.
    pub fn append(&self, lsn: u64, payload: &[u8]) -> io::Result<()> {
        let mut writer = self.writer();
        if let Some(e) = &writer.failed {
            return Err(io::Error::other(format!("the journal failed earlier: {e}")));
        }
        // The caller's mistakes, refused before anything is written.
        if lsn != writer.next_lsn {
            return Err(io::Error::other(format!("journal record {lsn} out of turn (next is {})", writer.next_lsn)));
        }
        if !self.fits(payload.len()) {
            let len = HEADER + payload.len();
            return Err(io::Error::other(format!("a journal record of {len} bytes is larger than a segment")));
        }
        let result = self.write(&mut writer, lsn, payload);
        if let Err(e) = &result {
            writer.failed = Some(e.to_string());
        }
        result
    }

    fn write(&self, writer: &mut Writer, lsn: u64, payload: &[u8]) -> io::Result<()> {
        let len = HEADER + payload.len();
        if writer.offset + len as u64 > self.segment_bytes {
            let (left, next) = (writer.active, 1 - writer.active);
            self.checkpoints.wait_for(writer.last_lsn[next])?;
            writer.active = next;
            writer.offset = 0;
            writer.last_lsn[next] = 0;
            self.checkpoints.start(writer.last_lsn[left]);
        }
        let Writer { files, active, offset, buf, .. } = &mut *writer;
        encode(buf, lsn, payload);
        let file = &files[*active];
        file.write_all_at(buf, *offset)?;
        file.sync_data()?;
        writer.offset += len as u64;
        let active = writer.active;
        writer.last_lsn[active] = lsn;
        writer.next_lsn = lsn + 1;
        Ok(())
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Journal {
    /// Waits for a checkpoint under way: its thread holds the store's
    /// database open, which a reopen in the same process would wait for.
    fn drop(&mut self) {
        self.checkpoints.join();
    }
}

impl Checkpoints {
    fn state(&self) -> MutexGuard<'_, CheckpointState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once everything up to `lsn` is durable in the store: at
    /// once, after the checkpoint under way, or after one run here.
    fn wait_for(&self, lsn: u64) -> io::Result<()> {
        let mut state = self.state();
        loop {
            if let Some(e) = &state.failed {
                return Err(io::Error::other(format!("an earlier checkpoint failed: {e}")));
            }
            if state.durable_lsn >= lsn {
                return Ok(());
            }
            if !state.running {
                break;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.running = true;
        drop(state);
        let result = self.run_guarded(lsn);
        self.finish(lsn, &result);
        result
    }

    /// A checkpoint that panics (sled asserts) counts as failed: otherwise
    /// `running` would stay set and the next change of segment wait for ever.
    fn run_guarded(&self, lsn: u64) -> io::Result<()> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.run)(lsn)))
            .unwrap_or_else(|_| Err(io::Error::other("the checkpoint panicked")))
    }

    /// Starts a checkpoint covering `lsn` on a thread of its own, unless
    /// one is under way (the next switch of segments waits for it and, if
    /// it did not cover enough, runs one more).
    fn start(self: &Arc<Self>, lsn: u64) {
        let mut state = self.state();
        if state.running || state.durable_lsn >= lsn || state.failed.is_some() {
            return;
        }
        state.running = true;
        drop(state);
        // The one before has finished (`running` was clear): this only
        // waits for its thread to let go.
        self.join();
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("journal-checkpoint".into()).spawn(move || {
            let result = this.run_guarded(lsn);
            this.finish(lsn, &result);
        });
        match spawned {
            Ok(handle) => *self.thread() = Some(handle),
            Err(e) => {
                // No thread: the switch after next runs the checkpoint itself.
                tracing::warn!(error = %e, "could not start the journal's checkpoint thread");
                self.state().running = false;
            }
        }
    }

    fn thread(&self) -> MutexGuard<'_, Option<std::thread::JoinHandle<()>>> {
        self.thread.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn join(&self) {
        let handle = self.thread().take();
        if let Some(handle) = handle {
            // A panic in it was caught already (`run_guarded`).
            let _ = handle.join();
        }
    }

    fn finish(&self, lsn: u64, result: &io::Result<()>) {
        let mut state = self.state();
        state.running = false;
        match result {
            Ok(()) => state.durable_lsn = state.durable_lsn.max(lsn),
            Err(e) => {
                state.failed.get_or_insert_with(|| e.to_string());
            }
        }
        self.changed.notify_all();
    }
}

fn encode(buf: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buf.clear();
    buf.reserve(HEADER + payload.len());
    buf.extend_from_slice(&MAGIC.to_be_bytes());
    buf.extend_from_slice(&lsn.to_be_bytes());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crc(lsn, len, payload).to_be_bytes());
    buf.extend_from_slice(payload);
}

fn crc(lsn: u64, len: u32, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_be_bytes());
    hasher.update(&len.to_be_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The records at the start of a segment whose LSNs follow each other,
/// and where they end: what comes after (a torn record, zeros, or records
/// of an earlier round of the segment, with lower LSNs) is not part of it.
fn chain(bytes: &[u8]) -> (Vec<Pending>, usize) {
    let mut out: Vec<Pending> = Vec::new();
    let mut at = 0;
    let field = |from: usize, n: usize| &bytes[from..from + n];
    while at + HEADER <= bytes.len() {
        let magic = u32::from_be_bytes(field(at, 4).try_into().unwrap_or_default());
        let lsn = u64::from_be_bytes(field(at + 4, 8).try_into().unwrap_or_default());
        let len = u32::from_be_bytes(field(at + 12, 4).try_into().unwrap_or_default());
        let sum = u32::from_be_bytes(field(at + 16, 4).try_into().unwrap_or_default());
        let end = at + HEADER + len as usize;
        if magic != MAGIC || end > bytes.len() || out.last().is_some_and(|p| p.lsn + 1 != lsn) {
            break;
        }
        let payload = &bytes[at + HEADER..end];
        if crc(lsn, len, payload) != sum {
            break;
        }
        out.push(Pending { lsn, payload: payload.to_vec() });
        at = end;
    }
    (out, at)
}

/// Writes zeros from `from` to `to` and syncs the file: blocks that exist,
/// so that writing over them later changes no metadata.
fn fill(file: &mut File, from: u64, to: u64) -> io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    let mut writer = io::BufWriter::new(&*file);
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        writer.write_all(&zeros[..n])?;
        at += n as u64;
    }
    writer.flush()?;
    drop(writer);
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const SMALL: u64 = 4096;

    fn counting() -> (Checkpoint, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&n);
        (
            Box::new(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
            n,
        )
    }

    fn open(dir: &Path, applied: u64) -> (Journal, Vec<Pending>) {
        Journal::open(dir, SMALL, applied, counting().0).unwrap()
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i} ").repeat(20).into_bytes()
    }

    /// A journal holding records 1 to `n`, closed.
    fn written(n: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path(), 0);
        journal.all_durable();
        for lsn in 1..=n {
            journal.append(lsn, &payload(lsn)).unwrap();
        }
        dir
    }

    /// Damages the first segment's byte `at`.
    fn flip(dir: &Path, at: usize) {
        let path = dir.join(NAMES[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
    }

    /// Appends records from 1 on until one is refused: the error, and the
    /// LSN refused.
    fn append_until_refused(journal: &Journal) -> (io::Error, u64) {
        journal.all_durable();
        let mut lsn = 1;
        loop {
            match journal.append(lsn, &payload(lsn)) {
                Ok(()) => lsn += 1,
                Err(e) => return (e, lsn),
            }
            assert!(lsn < 1000, "never refused");
        }
    }

    fn lsns(pending: &[Pending]) -> Vec<u64> {
        pending.iter().map(|p| p.lsn).collect()
    }

    #[test]
    fn what_the_store_had_not_applied_comes_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, pending) = open(dir.path(), 0);
        assert!(pending.is_empty());
        journal.all_durable();
        for lsn in 1..=5 {
            journal.append(lsn, &payload(lsn)).unwrap();
        }
        drop(journal);
        for applied in [0, 2, 5] {
            let (_, pending) = open(dir.path(), applied);
            assert_eq!(lsns(&pending), ((applied + 1)..=5).collect::<Vec<_>>());
            assert!(pending.iter().all(|p| p.payload == payload(p.lsn)));
        }
        assert_eq!(std::fs::metadata(dir.path().join(NAMES[0])).unwrap().len(), SMALL);
    }

    #[test]
    fn a_torn_record_ends_the_journal_there() {
        let dir = written(3);
        // The third record's last byte never reached the disk.
        flip(dir.path(), 3 * (HEADER + payload(1).len()) - 1);
        let (journal, pending) = open(dir.path(), 0);
        assert_eq!(lsns(&pending), [1, 2]);
        assert!(journal.next_lsn() > 3);
        drop(journal);
        let (journal, pending) = open(dir.path(), 3);
        assert!(pending.is_empty());
        assert!(journal.next_lsn() > 3);
    }

    #[test]
    fn a_damaged_record_hides_no_number_to_be_used_again() {
        let dir = written(10);
        // The fourth record damaged: the chain ends before it, and the six
        // after it are out of sight.
        flip(dir.path(), 3 * (HEADER + payload(1).len()) + HEADER);
        let (journal, pending) = open(dir.path(), 0);
        assert_eq!(lsns(&pending), [1, 2, 3]);
        assert!(journal.next_lsn() > 10, "{} could meet a hidden record", journal.next_lsn());
    }

    #[test]
    fn segments_are_written_over_only_after_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (run, checkpoints) = counting();
        let (journal, _) = Journal::open(dir.path(), SMALL, 0, run).unwrap();
        journal.all_durable();
        let per_segment = SMALL as usize / (HEADER + payload(1).len());
        let total = 5 * per_segment as u64 + 3;
        for lsn in 1..=total {
            journal.append(lsn, &payload(lsn)).unwrap();
        }
        // Every switch after the first two needed the segment it went back
        // to checkpointed.
        assert!(checkpoints.load(Ordering::SeqCst) >= 4, "{}", checkpoints.load(Ordering::SeqCst));
        // What the store may have lost: everything after its last
        // checkpoint. All of it is still in the journal, though each
        // segment ends in records of an earlier round.
        let applied = journal.checkpoints.state().durable_lsn;
        assert!(applied < total, "{applied} of {total}");
        drop(journal);
        let (journal, pending) = open(dir.path(), applied);
        assert_eq!(lsns(&pending), ((applied + 1)..=total).collect::<Vec<_>>());
        assert!(journal.next_lsn() > total);
    }

    #[test]
    fn a_failed_checkpoint_stops_the_journal_before_it_writes_over_anything() {
        let dir = tempfile::tempdir().unwrap();
        let run: Checkpoint = Box::new(|_| Err(io::Error::other("disk on fire")));
        let (journal, _) = Journal::open(dir.path(), SMALL, 0, run).unwrap();
        let (err, lsn) = append_until_refused(&journal);
        assert!(err.to_string().contains("disk on fire"), "{err}");
        drop(journal);
        // Whatever was written before is still there to apply again.
        let (_, pending) = open(dir.path(), 0);
        assert_eq!(lsns(&pending), (1..lsn).collect::<Vec<_>>());
    }

    #[test]
    fn a_checkpoint_that_panics_fails_the_journal_instead_of_hanging_it() {
        let dir = tempfile::tempdir().unwrap();
        let run: Checkpoint = Box::new(|_| panic!("sled asserted"));
        let (journal, _) = Journal::open(dir.path(), SMALL, 0, run).unwrap();
        let (err, lsn) = append_until_refused(&journal);
        assert!(err.to_string().contains("panicked"), "{err}");
        // For good: the next record is refused too.
        assert!(journal.append(lsn, &payload(lsn)).is_err());
    }

    #[test]
    fn records_after_a_gap_are_given_back_all_the_same() {
        let per_segment = SMALL as usize / (HEADER + payload(30).len());
        let total = per_segment as u64 + 3;
        let dir = written(total);
        // The third record of the first segment damaged: the second
        // segment's records follow a gap.
        flip(dir.path(), 2 * (HEADER + payload(1).len()) + HEADER);
        let (journal, pending) = open(dir.path(), 0);
        let second: Vec<u64> = lsns(&pending).into_iter().skip(2).collect();
        assert_eq!(lsns(&pending)[..2], [1, 2]);
        assert!(!second.is_empty() && second.iter().all(|&l| l > 3), "{second:?}");
        assert_eq!(*second.last().unwrap(), total);
        assert!(journal.next_lsn() > total, "no number is used twice");
    }

    #[test]
    fn out_of_turn_and_oversized_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = open(dir.path(), 7);
        journal.all_durable();
        let next = journal.next_lsn();
        assert!(next > 7);
        assert!(journal.append(next + 1, b"x").is_err());
        assert!(!journal.fits(SMALL as usize));
        assert!(journal.append(next, &vec![0; SMALL as usize]).is_err());
        journal.append(next, b"x").unwrap();
    }
}
