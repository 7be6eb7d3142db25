//! Drains the durable inbox in order: event -> engine -> committed decision.
//! A batch of decisions (state, effects, inbox removals) is committed
//! atomically and flushed before its effects are released to the executor.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use super::clock::Clock;
use super::head::Head;
use super::translate::translate;
use crate::engine::{
    self, Decision, Due, DueDigest, DueReplies, EngineConfig, Input, OwnerState, StateChange, schedule,
};
use crate::metrics::METRICS;
use crate::store::{Lookups, Overlay, Store, StoreError, assemble_snapshot, read_policy, read_waves};

pub const BATCH: usize = 100;

/// A batch's size while the inbox is deep (the batch before was full): the
/// commit's fixed costs (each room's list of events consumed, each owner's
/// counts, the transaction itself) and each room's and sender's records
/// read are paid once for more events. A batch decides a thousand
/// strangers' messages in about a twentieth of a second, so an event that
/// comes in behind it waits no longer than it waited before.
pub const DEEP_BATCH: usize = 1000;

/// How many bytes of events a batch holds at most (and one event more):
/// a batch of large events is smaller, so a flood of 64 KiB events does not
/// hold a thousand of them at once.
pub const BATCH_BYTES: usize = 4 << 20;

/// How many batches in a row may be committed without being flushed out of
/// sled's buffers while the inbox is deep. Only batches with no effects
/// wait: nothing is carried out, or acknowledged to anyone, on their
/// account, and until the flush the file still holds their events in the
/// inbox (the commit takes them out in the same write), so a crash only has
/// them decided again. Every batch that queues an effect, and the last one
/// before the inbox runs dry, is flushed at once.
pub const UNFLUSHED_BATCHES: usize = 8;

/// How one batch went, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub processed: usize,
    pub quarantined: usize,
}

/// Processes up to [`BATCH`] inbox events and flushes. Blocking: run it on a
/// blocking thread.
///
/// Decisions are committed together, in one write, over an [`Overlay`] that
/// lets each decision read what the earlier ones in the batch decided. The
/// batch is committed early only where a decision reads more than point
/// look-ups (an owner's whole overview, what is due: see
/// [`engine::reads`]) or forgets an owner's data, and before an event is set
/// aside, so the inbox is consumed in order.
pub fn process_batch(store: &dyn Store, config: &EngineConfig, clock: &dyn Clock) -> Result<BatchReport, StoreError> {
    process_up_to(store, config, clock, BATCH)
}

pub(crate) fn process_up_to(
    store: &dyn Store,
    config: &EngineConfig,
    clock: &dyn Clock,
    limit: usize,
) -> Result<BatchReport, StoreError> {
    let (report, _, _) = decide_up_to(store, config, clock, limit)?;
    store.flush()?;
    Ok(report)
}

/// The processor's way through the inbox, batch after batch: larger
/// batches, flushed less often, while the inbox is deep ([`DEEP_BATCH`],
/// [`UNFLUSHED_BATCHES`]); one [`BATCH`] at a time, each flushed, otherwise.
#[derive(Debug, Default)]
pub struct Drain {
    deep: bool,
    unflushed: usize,
    /// Effects are committed but their flush failed: every step flushes
    /// until one succeeds, so the high-water mark is never released past
    /// them.
    owed: bool,
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// The drain to go on with after one was lost with its step (the task
    /// panicked): that step may have committed effects before it died, so
    /// the first batch flushes whatever it finds.
    pub fn after_a_lost_step() -> Self {
        Self { owed: true, ..Self::default() }
    }

    /// Decides and commits one batch; flushes it unless it may wait. Returns
    /// the batch's report and whether more is waiting (the batch was full).
    pub fn step(
        &mut self,
        store: &dyn Store,
        config: &EngineConfig,
        clock: &dyn Clock,
    ) -> Result<(BatchReport, bool), StoreError> {
        let limit = if self.deep { DEEP_BATCH } else { BATCH };
        // A batch that failed half-way may have committed effects already.
        let (report, effects, bytes) = decide_up_to(store, config, clock, limit).inspect_err(|_| self.owed = true)?;
        let full = report.processed + report.quarantined == limit || bytes >= BATCH_BYTES;
        self.owed |= effects > 0;
        if self.owed || !full || self.unflushed + 1 >= UNFLUSHED_BATCHES {
            self.unflushed += 1;
            store.flush()?;
            self.unflushed = 0;
            self.owed = false;
        } else {
            self.unflushed += 1;
        }
        self.deep = full;
        Ok((report, full))
    }

    /// Flushes whatever was committed and not flushed yet (before stopping).
    pub fn flush(&mut self, store: &dyn Store) -> Result<(), StoreError> {
        if self.unflushed > 0 || self.owed {
            store.flush()?;
            self.unflushed = 0;
            self.owed = false;
        }
        Ok(())
    }
}

/// Decides up to `limit` inbox events and commits them, without flushing;
/// returns the report, how many effects the batch queued and the bytes of
/// its events.
fn decide_up_to(
    store: &dyn Store,
    config: &EngineConfig,
    clock: &dyn Clock,
    limit: usize,
) -> Result<(BatchReport, usize, usize), StoreError> {
    let mut report = BatchReport::default();
    let mut pending = Pending::new(store);
    let items = store.inbox_batch_within(limit, BATCH_BYTES)?;
    let bytes = items.iter().map(|i| i.raw.len()).sum();
    // The batch's look-ups asked at once, not a round trip per event.
    super::prefetch::prefetch(&pending.overlay, &items)?;
    for item in items {
        // An event of a tracked room is decided once, however often it comes:
        // pushed by the homeserver and read forward at a start, or read back
        // after a join. A command must never run twice.
        // Most of a server's traffic concerns nobody Gatekeeper protects:
        // recognised from a few top-level fields, it is consumed with the
        // batch (no decoding, no write of its own).
        // The top-level fields, read once for both questions below.
        let head = if item.internal { None } else { serde_json::from_slice::<Head<'_>>(&item.raw).ok() };
        if let Some(head) = &head
            && let Some(kind) = concerns_nobody(&pending.overlay, head, &config.bot)?
        {
            pending.empty.push(item.seq);
            pending.counts.push((kind, Vec::new()));
            report.processed += 1;
            continue;
        }
        let event = match &head {
            Some(head) => head.ids(),
            None if item.internal => None,
            // Another field of a type the head does not expect: the IDs
            // may still be there.
            None => event_of(&item.raw),
        };
        if let Some((room, id)) = &event
            && pending.overlay.tracks(room)?
            && pending.overlay.has_seen(room, id)?
        {
            tracing::debug!(seq = item.seq, event_id = %id, "event decided before; skipped");
            pending.empty.push(item.seq);
            pending.counts.push(("repeat", Vec::new()));
            report.processed += 1;
            continue;
        }
        let input = match translate(&item.raw, item.internal) {
            Ok(Some(input)) => input,
            Ok(None) => {
                pending.note_seen(item.seq, event.as_ref())?;
                pending.empty.push(item.seq);
                pending.counts.push(("other", Vec::new()));
                report.processed += 1;
                continue;
            }
            // Only events of rooms Gatekeeper tracks (and its own inputs) are
            // worth keeping to look at: with the `@.*:server` namespace most
            // traffic concerns nobody, and keeping it would grow without bound.
            Err(reason) if !item.internal && !tracked(&pending.overlay, &item.raw)? => {
                tracing::debug!(seq = item.seq, %reason, "unreadable event of no tracked room dropped");
                pending.empty.push(item.seq);
                pending.counts.push(("unreadable", Vec::new()));
                report.processed += 1;
                continue;
            }
            Err(reason) => {
                tracing::warn!(seq = item.seq, %reason, "event set aside (quarantined)");
                pending.commit()?;
                store.quarantine(item.seq, &reason.0, clock.now_ms())?;
                report.quarantined += 1;
                continue;
            }
        };
        let started = std::time::Instant::now();
        let now_ms = clock.now_ms();
        let reads = engine::reads(&input);
        let mut snapshot =
            assemble_snapshot(&pending.overlay, reads.room.as_deref(), &reads.users, reads.related.as_deref())?;
        for key in &reads.codes {
            if let Some(record) = pending.overlay.wave(key)? {
                snapshot.waves.insert(key.clone(), record);
            }
        }
        if let Some(sender) = &reads.waves {
            snapshot.waves.extend(read_waves(&pending.overlay, sender)?);
        }
        if let Some(owner) = engine::overview_read(&snapshot, &input) {
            pending.commit()?;
            snapshot.overview = Some(store.overview(&owner)?);
        }
        // After the overview: a pending check reads the rules that could
        // name each pending stranger.
        let policy = engine::policy_read(&snapshot, &input, now_ms);
        read_policy(&pending.overlay, &policy, &mut snapshot)?;
        if reads.due {
            pending.commit()?;
            snapshot.due = Some(store.due(now_ms)?);
        }
        if let Some(owner) = &reads.due_of {
            pending.commit()?;
            snapshot.due = Some(owner_due(store, owner, now_ms)?);
        }
        // A bug in one rule must not wedge the queue behind one event.
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| engine::decide(&snapshot, &input, now_ms, config)));
        if let Ok(decision) = &decided {
            pending.counts.push((crate::metrics::input_kind(&input), decision.outcomes.clone()));
        }
        match decided {
            Ok(decision) if decision.is_empty() => {
                pending.note_seen(item.seq, event.as_ref())?;
                pending.empty.push(item.seq);
                report.processed += 1;
            }
            Ok(decision) => {
                // Bodies and texts stay out of the log: kinds and counts only.
                tracing::info!(
                    event_id = ?input.meta().map(|m| &m.event_id),
                    changes = decision.changes.len(),
                    effects = decision.effects.len(),
                    "decided"
                );
                let forgets = decision.changes.iter().any(|c| matches!(c, StateChange::ForgetOwnerData(_)));
                if forgets {
                    pending.commit()?;
                }
                pending.add(item.seq, decision, started)?;
                pending.note_seen(item.seq, event.as_ref())?;
                if forgets {
                    pending.commit()?;
                }
                report.processed += 1;
            }
            Err(_) => {
                tracing::error!(kind = input_kind(&input), "the engine panicked; event set aside");
                pending.commit()?;
                store.quarantine(
                    item.seq,
                    "the engine failed on this event (a bug: please report it)",
                    clock.now_ms(),
                )?;
                report.quarantined += 1;
            }
        }
    }
    pending.commit()?;
    Ok((report, pending.effects, bytes))
}

fn input_kind(input: &Input) -> &'static str {
    crate::metrics::input_kind(input)
}

/// The room and ID of a homeserver event, as far as they can be read.
fn event_of(raw: &[u8]) -> Option<(ruma::OwnedRoomId, ruma::OwnedEventId)> {
    #[derive(serde::Deserialize)]
    struct Ids<'a> {
        #[serde(borrow)]
        room_id: Option<&'a str>,
        #[serde(borrow)]
        event_id: Option<&'a str>,
    }
    let ids = serde_json::from_slice::<Ids<'_>>(raw).ok()?;
    Some((ids.room_id?.try_into().ok()?, ids.event_id?.try_into().ok()?))
}

/// For a homeserver event that concerns nobody, the kind it is counted as:
/// the engine decides nothing on it, whatever its content, because no rule
/// reads more than its room, its sender and its target (`state_key`). That
/// is: not an event of a room Gatekeeper tracks, neither sent by nor aimed
/// at an owner or the bot; or of a type the engine has no rule for, outside
/// a tracked room. `None` when it may concern someone, or cannot be read
/// this way: then it is decoded and decided as usual (and unreadable ones
/// dropped or set aside as usual).
fn concerns_nobody(
    lookups: &dyn Lookups,
    head: &Head<'_>,
    bot: &ruma::UserId,
) -> Result<Option<&'static str>, StoreError> {
    let (Some(kind), Some(room)) = (head.kind.as_deref(), head.room_id.as_deref()) else { return Ok(None) };
    let Ok(room) = <&ruma::RoomId>::try_from(room) else { return Ok(None) };
    if lookups.tracks(room)? {
        return Ok(None);
    }
    // A ban rule is decided by the list it is in (kept or not): one look-up.
    if crate::engine::policy::RuleKind::of(kind).is_some() {
        return Ok(None);
    }
    let counted = match kind {
        "m.room.member" => "member",
        "m.room.message" => "message",
        "m.room.encrypted" => "encrypted",
        "m.room.redaction" => "redaction",
        _ => return Ok(Some("other")),
    };
    // What the engine must have to read these at all: without it the event
    // is unreadable, which the usual path reports.
    let (Some(_), Some(sender)) = (head.event_id.as_deref(), head.sender.as_deref()) else { return Ok(None) };
    let Ok(sender) = <&ruma::UserId>::try_from(sender) else { return Ok(None) };
    if sender == bot || lookups.owner(sender)?.is_some() {
        return Ok(None);
    }
    if let Some(target) = head.state_key.as_deref() {
        let Ok(target) = <&ruma::UserId>::try_from(target) else { return Ok(None) };
        if target == bot || lookups.owner(target)?.is_some() {
            return Ok(None);
        }
        // Someone acting on another user (an invite, most often): the
        // engine counts whom a sender invited on this server, owners or not
        // (the card's "invited 37 people here today").
        if counted == "member" && target != sender {
            return Ok(None);
        }
    }
    Ok(Some(counted))
}

/// Whether an unreadable event belongs to a room Gatekeeper tracks (a
/// held room, a control room, one pending), as far as its `room_id` can be
/// read at all.
fn tracked(lookups: &dyn Lookups, raw: &[u8]) -> Result<bool, StoreError> {
    #[derive(serde::Deserialize)]
    struct RoomOnly {
        room_id: Option<serde_json::Value>,
    }
    let room = serde_json::from_slice::<RoomOnly>(raw)
        .ok()
        .and_then(|r| r.room_id)
        .and_then(|v| v.as_str().and_then(|s| ruma::OwnedRoomId::try_from(s).ok()));
    match room {
        Some(room) => lookups.tracks(&room),
        None => Ok(false),
    }
}

/// Decisions made and not yet committed, with the overlay they are read
/// through.
struct Pending<'a> {
    store: &'a dyn Store,
    overlay: Overlay<'a>,
    decided: Vec<(u64, Decision, std::time::Instant)>,
    empty: Vec<u64>,
    /// What the batch's inputs amounted to, counted once it is committed (a
    /// batch that fails is decided again, and must not count twice).
    counts: Vec<(&'static str, Vec<crate::engine::Outcome>)>,
    /// Effects the batch's decisions queued, committed or not yet.
    effects: usize,
}

impl<'a> Pending<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Self {
            store,
            overlay: Overlay::new(store),
            decided: Vec::new(),
            empty: Vec::new(),
            counts: Vec::new(),
            effects: 0,
        }
    }

    fn add(&mut self, seq: u64, decision: Decision, started: std::time::Instant) -> Result<(), StoreError> {
        self.overlay.apply(&decision.changes)?;
        self.effects += decision.effects.len();
        self.decided.push((seq, decision, started));
        Ok(())
    }

    /// Remembers, with the batch, that inbox item `seq` (`event`) is
    /// consumed, if it is an event of a room Gatekeeper tracks now that it
    /// is decided.
    fn note_seen(
        &mut self,
        seq: u64,
        event: Option<&(ruma::OwnedRoomId, ruma::OwnedEventId)>,
    ) -> Result<(), StoreError> {
        if let Some((room, id)) = event
            && self.overlay.tracks(room)?
        {
            self.overlay.note_seen(seq, room, id)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.decided.is_empty() && self.empty.is_empty() {
            return Ok(());
        }
        let decided: Vec<(u64, &Decision)> = self.decided.iter().map(|(seq, d, _)| (*seq, d)).collect();
        self.store.commit_batch_seen(&decided, &self.empty, self.overlay.seen())?;
        for (_, _, started) in self.decided.drain(..) {
            METRICS.processing_seconds.observe(started.elapsed().as_secs_f64());
        }
        for (kind, outcomes) in self.counts.drain(..) {
            METRICS.decided(kind, &outcomes);
        }
        self.empty.clear();
        self.overlay.clear();
        Ok(())
    }
}

/// Runs until shutdown: wakes on `shared.wake` (new transactions) or every
/// second, and after each durable batch publishes the outbox high-water mark
/// so the executor only carries out effects that survive a crash.
pub async fn run(shared: Shared, released: watch::Sender<u64>) {
    let Shared { store, engine, clock, wake, mut shutdown } = shared;
    let mut backoff = Duration::from_millis(100);
    let mut drain = Some(Drain::new());
    loop {
        let (s, c, k) = (store.clone(), engine.clone(), clock.clone());
        let mut d = drain.take().unwrap_or_else(Drain::after_a_lost_step);
        let result = tokio::task::spawn_blocking(move || {
            let stepped = d.step(s.as_ref(), &c, k.as_ref());
            let out = stepped.and_then(|(report, more)| Ok((report, more, s.outbox_high_water()?)));
            (d, out)
        })
        .await;
        match result {
            Ok((d, Ok((report, more, high)))) => {
                drain = Some(d);
                backoff = Duration::from_millis(100);
                // Only what is flushed: a batch that waits for its flush queued no effects.
                released.send_replace(high);
                if more {
                    continue;
                }
                if report.processed + report.quarantined > 0 {
                    tracing::debug!(?report, "inbox batch done");
                }
            }
            Ok((d, Err(e))) => {
                drain = Some(d);
                tracing::error!(error = %e, retry_in = ?backoff, "inbox processing failed; will retry");
                if shutdown.sleep(backoff).await {
                    return flush_before_stopping(&store, drain).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(join) => {
                // The drain went with the task, which may have committed
                // effects: the new one flushes its first batch.
                drain = Some(Drain::after_a_lost_step());
                tracing::error!(error = %join, "inbox processing task died; will retry");
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => {}
        }
        if shutdown.is_set() {
            return flush_before_stopping(&store, drain).await;
        }
    }
}

/// A clean stop leaves nothing committed unflushed behind it.
async fn flush_before_stopping(store: &std::sync::Arc<dyn Store>, drain: Option<Drain>) {
    let Some(mut drain) = drain else { return };
    let store = store.clone();
    match tokio::task::spawn_blocking(move || drain.flush(store.as_ref())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing the last batches at shutdown failed"),
        Err(e) => tracing::warn!(error = %e, "flushing the last batches at shutdown failed"),
    }
}

/// Everything time-driven that is due, for the timer: the store's expiries
/// and pauses, the owners whose digest slot has passed, and the owners owed
/// replies whose hourly budget is back — without their overviews: each
/// owner's work is decided on its own input (`Input::OwnerDue`).
pub fn due_now(store: &dyn Store, now: u64) -> Result<Due, StoreError> {
    let mut due = store.due(now)?;
    for owner in store.owners()? {
        if let Some(slot_ms) = due_slot(&owner, now) {
            due.digests.push(DueDigest { owner: owner.clone(), overview: Default::default(), slot_ms });
        }
        if replies_due(&owner, now) {
            due.replies.push(DueReplies {
                owner,
                overview: Default::default(),
                strangers: Default::default(),
                waves: Default::default(),
            });
        }
    }
    Ok(due)
}

/// Some of `owner`'s replies were held back by the hourly cap, and the hour
/// is over.
pub fn replies_due(owner: &OwnerState, now: u64) -> bool {
    owner.replies_owed && now.saturating_sub(owner.reply_window_start_ms) >= engine::waves::WINDOW_MS
}

/// What deciding `owner`'s owed replies reads beyond their overview: the
/// stranger entry and wave records of each owed room's inviter.
fn owed_replies(
    store: &dyn Store,
    owner: OwnerState,
    overview: engine::OwnerOverview,
) -> Result<DueReplies, StoreError> {
    let mut due = DueReplies { overview, strangers: Default::default(), waves: Default::default(), owner };
    for held in due.overview.held.values().filter(|h| h.reply_owed_ms.is_some()) {
        if let Some(s) = store.stranger(&due.owner.user_id, &held.inviter)? {
            due.strangers.insert(held.inviter.clone(), s);
        }
        due.waves.extend(read_waves(store, &held.inviter)?);
    }
    Ok(due)
}

/// The slot of `owner`'s scheduled digest that has passed and is not yet
/// handled, if any.
pub fn due_slot(owner: &OwnerState, now: u64) -> Option<u64> {
    let tz = schedule::zone(owner.timezone.as_deref());
    let minute = owner.digest_minute.unwrap_or(schedule::DEFAULT_MINUTE);
    schedule::due_slot(owner.digest_last_slot_ms, owner.since_ms, now, &tz, minute)
}

/// What `Input::OwnerDue` reads: that one owner's owed replies and digest,
/// with their overview (read once, for both), if either is due; nothing of
/// anyone else.
fn owner_due(store: &dyn Store, owner: &ruma::UserId, now: u64) -> Result<Due, StoreError> {
    let mut due = Due::default();
    let Some(state) = store.owner(owner)? else { return Ok(due) };
    let slot = due_slot(&state, now);
    if slot.is_none() && !replies_due(&state, now) {
        return Ok(due);
    }
    let overview = store.overview(owner)?;
    if replies_due(&state, now) {
        due.replies.push(owed_replies(store, state.clone(), overview.clone())?);
    }
    if let Some(slot_ms) = slot {
        due.digests.push(DueDigest { owner: state, overview, slot_ms });
    }
    Ok(due)
}

/// A fixed "now" for the tests in this file.
#[cfg(test)]
const NOW: u64 = 1_700_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::concerns_nobody`] on a raw event, as the processor reads it:
    /// what cannot be read as a head concerns someone (decided as usual).
    fn concerns_nobody(
        lookups: &dyn Lookups,
        raw: &[u8],
        bot: &ruma::UserId,
    ) -> Result<Option<&'static str>, StoreError> {
        match serde_json::from_slice::<Head<'_>>(raw) {
            Ok(head) => super::concerns_nobody(lookups, &head, bot),
            Err(_) => Ok(None),
        }
    }
    use crate::pipeline::clock::ManualClock;
    use crate::store::MemoryStore;

    fn config() -> EngineConfig {
        crate::engine::tests_support::config()
    }

    const INVITE: &[u8] = br#"{"type":"m.room.member","event_id":"$i","room_id":"!dm:example.org",
        "sender":"@alice:example.org","state_key":"@gatekeeper:example.org","origin_server_ts":1,
        "content":{"membership":"invite","is_direct":true}}"#;

    /// A member event without a state key, in the room the invite just made
    /// Gatekeeper track.
    const BROKEN: &[u8] = br#"{"type":"m.room.member","event_id":"$b","room_id":"!dm:example.org",
        "sender":"@alice:example.org","content":{"membership":"join"}}"#;

    /// Bad events are set aside where Gatekeeper tracks the room, and
    /// dropped where it does not (most of a server's traffic, which would
    /// otherwise fill the quarantine); neither blocks the queue.
    #[test]
    fn events_are_processed_once_and_bad_ones_set_aside() {
        let store = MemoryStore::new();
        let events: [&[u8]; 4] = [INVITE, b"{oops", br#"{"type":"m.typing","content":{}}"#, BROKEN];
        store.accept_transaction("t", &events, 1).unwrap();
        let report = process_batch(&store, &config(), &ManualClock::at(NOW)).unwrap();
        assert_eq!(report, BatchReport { processed: 3, quarantined: 1 });
        assert_eq!(process_batch(&store, &config(), &ManualClock::at(NOW)).unwrap(), BatchReport::default());
        let stats = store.stats().unwrap();
        assert_eq!((stats.events_processed, stats.events_quarantined, stats.outbox_pending), (3, 1, 1));
        let quarantined = store.quarantined(10).unwrap();
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].raw.as_bytes(), BROKEN);
    }

    /// What the processor recognises as concerning nobody from a few fields
    /// is what the engine, given the whole event, decides nothing on: every
    /// kind of event, in untracked, held and control rooms, from and to
    /// strangers, owners and the bot.
    #[test]
    fn events_recognised_as_concerning_nobody_are_those_the_engine_ignores() {
        use crate::engine::{HeldRoom, RoomState};
        let store = MemoryStore::new();
        let config = config();
        let alice: ruma::OwnedUserId = "@alice:example.org".parse().unwrap();
        let stranger: ruma::OwnedUserId = "@s:remote.org".parse().unwrap();
        let changes = vec![
            StateChange::PutOwner(OwnerState::new(alice.clone(), "!control:example.org".try_into().unwrap(), 1)),
            StateChange::PutRoom(
                "!control:example.org".try_into().unwrap(),
                RoomState::Control { owner: alice.clone() },
            ),
            StateChange::PutRoom(
                "!held:remote.org".try_into().unwrap(),
                RoomState::Held(HeldRoom::new(alice.clone(), stranger.clone(), true, 1)),
            ),
        ];
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        store.commit(item.seq, &Decision { changes, ..Default::default() }).unwrap();

        let users = ["@alice:example.org", "@s:remote.org", "@bob:example.org", config.bot.as_str()];
        let rooms = ["!control:example.org", "!held:remote.org", "!elsewhere:example.org"];
        let mut nobody = 0;
        let mut n = 0;
        for kind in ["m.room.member", "m.room.message", "m.room.encrypted", "m.room.redaction", "m.reaction"] {
            for room in rooms {
                for sender in users {
                    for target in users.iter().map(Some).chain([None]) {
                        for membership in ["invite", "join", "leave"] {
                            n += 1;
                            let mut event = serde_json::json!({
                                "type": kind, "event_id": format!("$e{n}"), "room_id": room, "sender": sender,
                                "origin_server_ts": NOW, "redacts": "$x",
                                "content": {"membership": membership, "is_direct": true, "msgtype": "m.text",
                                    "body": "stop", "redacts": "$x"},
                            });
                            if let Some(t) = target {
                                event["state_key"] = serde_json::json!(t);
                            }
                            let raw = event.to_string();
                            let Some(_) = concerns_nobody(&store, raw.as_bytes(), &config.bot).unwrap() else {
                                continue;
                            };
                            nobody += 1;
                            let input = match translate(raw.as_bytes(), false) {
                                Ok(Some(input)) => input,
                                _ => continue,
                            };
                            let reads = engine::reads(&input);
                            let mut snapshot = assemble_snapshot(
                                &store,
                                reads.room.as_deref(),
                                &reads.users,
                                reads.related.as_deref(),
                            )
                            .unwrap();
                            if let Some(sender) = &reads.waves {
                                snapshot.waves = read_waves(&store, sender).unwrap();
                            }
                            assert!(engine::overview_read(&snapshot, &input).is_none(), "{raw}");
                            let decision = engine::decide(&snapshot, &input, NOW, &config);
                            assert!(decision.is_empty(), "{raw} concerns someone: {decision:?}");
                        }
                    }
                }
            }
        }
        // Events between users nobody protects, outside tracked rooms, are
        // the ones recognised: most of a server's traffic.
        assert!(nobody > 20, "{nobody} of {n}");
        let unrelated = br#"{"type":"m.room.message","event_id":"$u","room_id":"!r:example.org",
            "sender":"@bob:example.org","content":{"msgtype":"m.text","body":"\u0068i"}}"#;
        assert_eq!(concerns_nobody(&store, unrelated, &config.bot).unwrap(), Some("message"));
        for concerned in [
            br#"{"type":"m.room.member","event_id":"$i","room_id":"!new:remote.org","sender":"@s:remote.org","state_key":"@alice:example.org","content":{"membership":"invite"}}"#.as_slice(),
            br#"{"type":"m.room.member","event_id":"$i","room_id":"!new:example.org","sender":"@bob:example.org","state_key":"@gatekeeper:example.org","content":{"membership":"invite"}}"#,
            br#"{"type":"m.room.message","event_id":"$m","room_id":"!held:remote.org","sender":"@s:remote.org","content":{}}"#,
            br#"{"type":"m.room.member","event_id":"$j","room_id":"!new:example.org","sender":"@alice:example.org","state_key":"@bob:example.org","content":{"membership":"invite"}}"#,
            // Not readable this way: decided (or dropped) the usual way.
            br#"{"type":"m.room.message","room_id":"!r:example.org","sender":"@bob:example.org","content":{}}"#,
            br#"{"type":"m.room.member","event_id":"$k","room_id":"!r:example.org","sender":"@bob:example.org","state_key":7}"#,
            br#"{"type":"m.room.message","type":"m.room.message","event_id":"$d","room_id":"!r:example.org","sender":"@bob:example.org"}"#,
        ] {
            assert_eq!(concerns_nobody(&store, concerned, &config.bot).unwrap(), None, "{}", String::from_utf8_lossy(concerned));
        }
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::engine::{Effect, OwnerState, RoomState};
    use crate::pipeline::clock::ManualClock;
    use crate::store::MemoryStore;

    /// An owner who opens a second DM with the bot keeps their settings and
    /// moves their control room: deciding the bot's join reads the owner
    /// record of the user who invited it. (It used to enrol them afresh.)
    #[test]
    fn a_second_dm_with_the_bot_moves_the_control_room_and_keeps_the_settings() {
        let store = MemoryStore::new();
        let alice: ruma::OwnedUserId = "@alice:example.org".parse().unwrap();
        let (old, new): (ruma::OwnedRoomId, ruma::OwnedRoomId) =
            ("!old:example.org".parse().unwrap(), "!new:example.org".parse().unwrap());
        let owner =
            OwnerState { timezone: Some("Europe/Berlin".into()), ..OwnerState::new(alice.clone(), old.clone(), 1) };
        let changes = vec![
            StateChange::PutOwner(owner),
            StateChange::PutRoom(old.clone(), RoomState::Control { owner: alice.clone() }),
            StateChange::PutRoom(new.clone(), RoomState::PendingControl { inviter: alice.clone(), invited_at_ms: 1 }),
        ];
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        store.commit(item.seq, &Decision { changes, ..Default::default() }).unwrap();
        let join = serde_json::json!({
            "type": "m.room.member", "event_id": "$join", "room_id": new, "sender": "@gatekeeper:example.org",
            "state_key": "@gatekeeper:example.org", "origin_server_ts": NOW, "content": {"membership": "join"},
        });
        store.accept_transaction("t", &[join.to_string().as_bytes()], 1).unwrap();
        process_batch(&store, &crate::engine::tests_support::config(), &ManualClock::at(NOW)).unwrap();
        let owner = store.owners().unwrap().remove(0);
        assert_eq!((owner.control_room, owner.timezone.as_deref()), (new, Some("Europe/Berlin")));
        let effects: Vec<Effect> =
            store.outbox_batch(u64::MAX, 100, false).unwrap().into_iter().map(|i| i.effect).collect();
        assert!(
            effects.iter().any(|e| matches!(e, Effect::Leave { room_id, .. } if *room_id == old)),
            "the bot leaves the old control room: {effects:?}"
        );
    }
}

#[cfg(test)]
mod wave_tests {
    //! Waves through the pipeline: records read and written through a
    //! batch's overlay, and owed replies found by the tick.

    use super::*;
    use crate::engine::{Effect, HeldRoom, OwnerState, RoomState, WaveKey};
    use crate::pipeline::clock::ManualClock;
    use crate::pipeline::translate::Internal;
    use crate::store::MemoryStore;

    fn setup(store: &MemoryStore, changes: Vec<StateChange>) {
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        store.commit(item.seq, &Decision { changes, ..Default::default() }).unwrap();
    }

    fn owner(name: &str) -> OwnerState {
        OwnerState::new(
            format!("@{name}:example.org").try_into().unwrap(),
            format!("!control-{name}:example.org").try_into().unwrap(),
            1,
        )
    }

    fn notices_in(store: &MemoryStore, room: &str) -> usize {
        store
            .outbox_batch(u64::MAX, 1000, false)
            .unwrap()
            .into_iter()
            .filter(|i| matches!(&i.effect, Effect::SendNotice { room_id, .. } if room_id.as_str() == room))
            .count()
    }

    /// One batch: a sender invites three owners, then writes to each. The
    /// third invite reads the first two through the overlay, and none of
    /// the messages (all decided after it) is answered.
    #[test]
    fn a_wave_in_one_batch_is_seen_and_none_of_it_is_answered() {
        let store = MemoryStore::new();
        setup(&store, ["alice", "bob", "carol"].map(|n| StateChange::PutOwner(owner(n))).to_vec());
        let mut events = Vec::new();
        for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
            events.push(serde_json::json!({
                "type": "m.room.member", "event_id": format!("$inv{i}"), "room_id": format!("!r{i}:remote.org"),
                "sender": "@spam:remote.org", "state_key": format!("@{name}:example.org"), "origin_server_ts": NOW,
                "content": {"membership": "invite", "is_direct": true},
            }));
        }
        for i in 0..3 {
            events.push(serde_json::json!({
                "type": "m.room.message", "event_id": format!("$msg{i}"), "room_id": format!("!r{i}:remote.org"),
                "sender": "@spam:remote.org", "origin_server_ts": NOW, "content": {"msgtype": "m.text", "body": "hi"},
            }));
        }
        let raw: Vec<Vec<u8>> = events.iter().map(|e| e.to_string().into_bytes()).collect();
        store.accept_transaction("t", &raw.iter().map(Vec::as_slice).collect::<Vec<_>>(), NOW).unwrap();
        process_batch(&store, &crate::engine::tests_support::config(), &ManualClock::at(NOW)).unwrap();
        for i in 0..3 {
            assert_eq!(notices_in(&store, &format!("!r{i}:remote.org")), 0, "room {i} answered");
        }
        let record = store.wave(&WaveKey::Sender("@spam:remote.org".try_into().unwrap())).unwrap().unwrap();
        assert_eq!((record.seen.len(), record.wave_ms), (3, Some(NOW)));
        for i in 0..3 {
            let room: ruma::OwnedRoomId = format!("!r{i}:remote.org").try_into().unwrap();
            let Some(RoomState::Held(h)) = store.rooms(&room).unwrap().pop() else { panic!("room {i} not held") };
            assert!(h.wave.is_some(), "room {i} marked for the digest");
        }
        assert_eq!(store.stats().unwrap().deferred_messages, 3);
    }

    /// An owner owed replies is due once their hour is over, and only then;
    /// the tick sends the reply.
    #[test]
    fn owed_replies_come_due_after_the_hour_and_the_tick_sends_them() {
        let store = MemoryStore::new();
        let room: ruma::OwnedRoomId = "!owed:remote.org".try_into().unwrap();
        let alice = OwnerState {
            replies_owed: true,
            reply_window_start_ms: NOW - 1000,
            replies_in_window: 3,
            digest_last_slot_ms: Some(u64::MAX / 2),
            ..owner("alice")
        };
        let held = HeldRoom {
            reply_owed_ms: Some(NOW - 2000),
            said: None,
            invited_here: None,
            ..HeldRoom::new(alice.user_id.clone(), "@someone:remote.org".try_into().unwrap(), true, NOW - 3000)
        };
        setup(
            &store,
            vec![StateChange::PutOwner(alice.clone()), StateChange::PutRoom(room.clone(), RoomState::Held(held))],
        );
        assert!(due_now(&store, NOW).unwrap().replies.is_empty(), "not within the hour");
        assert!(owner_due(&store, &alice.user_id, NOW).unwrap().replies.is_empty());
        let later = NOW - 1000 + engine::waves::WINDOW_MS;
        let timer = due_now(&store, later).unwrap();
        assert_eq!(timer.replies.len(), 1, "the timer sees it, without loading anything");
        assert!(timer.replies[0].overview.held.is_empty());
        let due = owner_due(&store, &alice.user_id, later).unwrap();
        assert_eq!(due.replies[0].overview.held.len(), 1, "the owner's own input reads their rooms");
        store
            .push_internal(&serde_json::to_vec(&Internal::OwnerDue { owner: alice.user_id.clone() }).unwrap())
            .unwrap();
        process_batch(&store, &crate::engine::tests_support::config(), &ManualClock::at(later)).unwrap();
        assert_eq!(notices_in(&store, room.as_str()), 1);
        let after = store.owner(&alice.user_id).unwrap().unwrap();
        assert_eq!((after.replies_owed, after.replies_in_window), (false, 1));
        assert!(due_now(&store, later + engine::waves::WINDOW_MS).unwrap().replies.is_empty());
    }
}

#[cfg(test)]
mod batch_example_tests {
    //! One hand-written batch whose right answers are spelled out, beside
    //! the random property below.

    use super::*;
    use crate::engine::{HeldRoom, OwnerState, RoomState};
    use crate::pipeline::clock::ManualClock;
    use crate::store::MemoryStore;

    const OWNER: &str = "@alice:example.org";
    const CONTROL: &str = "!control:example.org";

    fn held(r: usize) -> RoomState {
        RoomState::Held(HeldRoom::new(
            OWNER.try_into().unwrap(),
            format!("@s{r}:remote.org").try_into().unwrap(),
            true,
            1,
        ))
    }

    /// An owner with five held DMs from five strangers.
    fn setup(store: &dyn Store) {
        let mut changes =
            vec![StateChange::PutOwner(OwnerState::new(OWNER.try_into().unwrap(), CONTROL.try_into().unwrap(), 1))];
        changes.push(StateChange::PutRoom(
            CONTROL.try_into().unwrap(),
            RoomState::Control { owner: OWNER.try_into().unwrap() },
        ));
        for r in 0..5 {
            changes.push(StateChange::PutRoom(format!("!held{r}:remote.org").try_into().unwrap(), held(r)));
        }
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        store.commit(item.seq, &Decision { changes, ..Default::default() }).unwrap();
    }

    fn message(id: &str, room: &str, sender: &str, body: &str) -> String {
        format!(
            r#"{{"type":"m.room.message","event_id":"${id}","room_id":"{room}","sender":"{sender}","origin_server_ts":5,
            "content":{{"msgtype":"m.text","body":"{body}"}}}}"#
        )
    }

    /// Everything that reads what an earlier event in the same batch
    /// decided: replies counted against the cap, a message delivered twice,
    /// an edit and a redaction of a message just captured, the owner's
    /// command and the owner answering a held room (which read the whole
    /// overview), and a bad event in between.
    fn events() -> Vec<String> {
        let mut e: Vec<String> = (0..5)
            .map(|r| message(&format!("m{r}"), &format!("!held{r}:remote.org"), &format!("@s{r}:remote.org"), "hi"))
            .collect();
        e.push(message("m0", "!held0:remote.org", "@s0:remote.org", "hi"));
        e.push(
            r#"{"type":"m.room.message","event_id":"$edit","room_id":"!held1:remote.org","sender":"@s1:remote.org",
            "origin_server_ts":6,"content":{"msgtype":"m.text","body":"* fixed","m.new_content":{"msgtype":"m.text","body":"fixed"},
            "m.relates_to":{"rel_type":"m.replace","event_id":"$m1"}}}"#
                .into(),
        );
        e.push(
            r#"{"type":"m.room.redaction","event_id":"$red","room_id":"!held2:remote.org","sender":"@s2:remote.org",
            "origin_server_ts":7,"redacts":"$m2","content":{}}"#
                .into(),
        );
        // Unreadable in a held room: set aside.
        e.push(r#"{"type":"m.room.message","event_id":"$bad","room_id":"!held0:remote.org","content":{}}"#.into());
        e.push(message("m3b", "!held3:remote.org", "@s3:remote.org", "again"));
        e.push(message("cmd", CONTROL, OWNER, "allow @s4:remote.org"));
        e.push(message("m4b", "!held4:remote.org", "@s4:remote.org", "after allow"));
        e.push(message("own", "!held3:remote.org", OWNER, "hello back"));
        e.push(message("m3c", "!held3:remote.org", "@s3:remote.org", "after answer"));
        e
    }

    fn outcome(store: &MemoryStore) -> (Vec<crate::engine::Effect>, crate::engine::OwnerOverview, crate::store::Stats) {
        let effects = store.outbox_batch(u64::MAX, 1000, false).unwrap().into_iter().map(|i| i.effect).collect();
        let overview = store.overview(&ruma::UserId::parse(OWNER).unwrap()).unwrap();
        (effects, overview, store.stats().unwrap())
    }

    fn notices_in(store: &MemoryStore, room: &str) -> usize {
        let effects = store.outbox_batch(u64::MAX, 1000, false).unwrap();
        effects
            .iter()
            .filter(
                |i| matches!(&i.effect, crate::engine::Effect::SendNotice { room_id, .. } if room_id.as_str() == room),
            )
            .count()
    }

    fn read_forward(store: &MemoryStore, events: &[&str]) {
        let follow_ups: Vec<crate::store::FollowUp> =
            events.iter().map(|e| crate::store::FollowUp { internal: false, raw: e.as_bytes().to_vec() }).collect();
        store.push_follow_ups(&follow_ups).unwrap();
    }

    fn drain(store: &MemoryStore) {
        while process_batch(store, &config(), &ManualClock::at(NOW)).unwrap() != BatchReport::default() {}
    }

    /// A command pushed by the homeserver, read forward at a start, read
    /// again at the next start, and pushed again (a stranded transaction
    /// sent at last) runs once; one that only the read found runs once too.
    #[test]
    fn a_command_runs_once_however_often_it_comes() {
        let store = MemoryStore::new();
        setup(&store);
        let pending = message("c1", CONTROL, OWNER, "pending");
        let stranded = message("c2", CONTROL, OWNER, "allowed");
        store.accept_transaction("t1", &[pending.as_bytes()], 1).unwrap();
        drain(&store);
        assert_eq!(notices_in(&store, CONTROL), 1);
        read_forward(&store, &[&pending, &stranded]);
        drain(&store);
        assert_eq!(notices_in(&store, CONTROL), 2, "the stranded command is answered, the other not again");
        read_forward(&store, &[&pending, &stranded]);
        store.accept_transaction("t2", &[stranded.as_bytes()], 1).unwrap();
        drain(&store);
        assert_eq!(notices_in(&store, CONTROL), 2);
        // Twice within one batch, too.
        let third = message("c3", CONTROL, OWNER, "blocked");
        store.accept_transaction("t3", &[third.as_bytes(), third.as_bytes()], 1).unwrap();
        drain(&store);
        assert_eq!(notices_in(&store, CONTROL), 3);
        let seen: Vec<String> = store
            .seen_events(ruma::RoomId::parse(CONTROL).unwrap().as_ref())
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(seen, ["$c1", "$c2", "$c3"]);
    }

    /// A stranger's message delivered, then read forward with one the
    /// homeserver never delivered: both kept once, one etiquette reply.
    #[test]
    fn a_message_pushed_and_read_forward_is_kept_once_and_answered_once() {
        let store = MemoryStore::new();
        setup(&store);
        let first = message("m1", "!held0:remote.org", "@s0:remote.org", "first");
        let stranded = message("m2", "!held0:remote.org", "@s0:remote.org", "stranded");
        store.accept_transaction("t1", &[first.as_bytes()], 1).unwrap();
        drain(&store);
        read_forward(&store, &[&first, &stranded]);
        drain(&store);
        store.accept_transaction("t2", &[stranded.as_bytes()], 1).unwrap();
        drain(&store);
        let overview = store.overview(&ruma::UserId::parse(OWNER).unwrap()).unwrap();
        let bodies: Vec<&str> = overview.deferred.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["first", "stranded"]);
        assert_eq!(notices_in(&store, "!held0:remote.org"), 1);
        // Events of rooms Gatekeeper does not track are not remembered.
        let elsewhere = message("x1", "!elsewhere:remote.org", "@s0:remote.org", "hi");
        store.accept_transaction("t3", &[elsewhere.as_bytes()], 1).unwrap();
        drain(&store);
        assert!(store.seen_rooms().unwrap().iter().all(|(room, _)| room.as_str() != "!elsewhere:remote.org"));
    }

    /// A batch decides exactly what one event at a time decides.
    #[test]
    fn a_known_batch_decides_what_one_at_a_time_decides_and_decides_it_right() {
        let events = events();
        let raw: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        let (one, batched) = (MemoryStore::new(), MemoryStore::new());
        for store in [&one, &batched] {
            setup(store);
            store.accept_transaction("t", &raw, 2).unwrap();
        }
        while process_up_to(&one, &config(), &ManualClock::at(NOW), 1).unwrap() != BatchReport::default() {}
        let report = process_batch(&batched, &config(), &ManualClock::at(NOW)).unwrap();
        assert_eq!(report, BatchReport { processed: raw.len() - 1, quarantined: 1 });
        let (effects, overview, stats) = outcome(&batched);
        assert_eq!((effects.clone(), overview.clone(), stats.clone()), outcome(&one));
        // And what it decided is right: three replies (the cap), the
        // duplicate captured once, the edit applied, the redaction honoured,
        // the allowed and the answered strangers' messages released.
        let replies = effects
            .iter()
            .filter(|e| matches!(e, crate::engine::Effect::SendNotice { room_id, .. } if room_id.as_str() != CONTROL))
            .count();
        assert_eq!(replies, 3, "{effects:#?}");
        let bodies: Vec<&str> = overview.deferred.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["hi", "fixed"]);
        assert_eq!(overview.held.len(), 3);
        assert_eq!(stats.events_quarantined, 1);
    }

    /// The same batch on PostgreSQL, whose store answers the batch's reads
    /// in statements of its own (see `prefetch`): the same decisions as one
    /// at a time there, and as the memory store's.
    #[test]
    fn a_known_batch_decides_on_postgres_what_it_decides_in_memory() {
        let events = events();
        let raw: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        let pg = crate::store::pg_test_server::Postgres::shared();
        let one = crate::store::PgStore::open(&pg.create_database()).unwrap();
        let batched = crate::store::PgStore::open(&pg.create_database()).unwrap();
        let memory = MemoryStore::new();
        for store in [&one as &dyn Store, &batched, &memory] {
            setup(store);
            store.accept_transaction("t", &raw, 2).unwrap();
        }
        while process_up_to(&one, &config(), &ManualClock::at(NOW), 1).unwrap() != BatchReport::default() {}
        let report = process_batch(&batched, &config(), &ManualClock::at(NOW)).unwrap();
        assert_eq!(report, BatchReport { processed: raw.len() - 1, quarantined: 1 });
        process_batch(&memory, &config(), &ManualClock::at(NOW)).unwrap();
        let outcome = |store: &dyn Store| {
            let effects: Vec<_> =
                store.outbox_batch(u64::MAX, 1000, false).unwrap().into_iter().map(|i| i.effect).collect();
            (effects, store.overview(&ruma::UserId::parse(OWNER).unwrap()).unwrap(), store.stats().unwrap())
        };
        assert_eq!(outcome(&batched), outcome(&one));
        assert_eq!(outcome(&batched), outcome(&memory));
    }

    fn config() -> EngineConfig {
        crate::engine::tests_support::config()
    }
}

#[cfg(test)]
mod batch_tests {
    //! Batching is an optimisation only: over random mixes of inputs, a
    //! batch decides exactly what one input at a time decides, on every
    //! store backend.

    use super::*;
    use crate::engine::links::LinkAction;
    use crate::engine::{HeldRoom, OwnerState, RoomState};
    use crate::pipeline::clock::ManualClock;
    use crate::pipeline::translate::Internal;
    use crate::store::{MemoryStore, SledStore};

    const OWNERS: [(&str, &str, usize); 2] =
        [("@alice:example.org", "!control:example.org", 5), ("@bob:example.org", "!bobctl:example.org", 2)];

    fn stranger(owner: usize, r: usize) -> String {
        format!("@s{owner}x{r}:remote.org")
    }

    fn held_room(owner: usize, r: usize) -> String {
        format!("!held{owner}x{r}:remote.org")
    }

    /// Two owners, opted in two days ago (so a digest is due), each with
    /// held DMs from strangers of their own.
    fn setup(store: &dyn Store) {
        let mut changes = Vec::new();
        for (o, (owner, control, rooms)) in OWNERS.iter().enumerate() {
            let uid: ruma::OwnedUserId = owner.parse().unwrap();
            changes.push(StateChange::PutOwner(OwnerState::new(
                uid.clone(),
                control.parse().unwrap(),
                NOW - 2 * 86_400_000,
            )));
            changes.push(StateChange::PutRoom(control.parse().unwrap(), RoomState::Control { owner: uid.clone() }));
            for r in 0..*rooms {
                let held = HeldRoom::new(uid.clone(), stranger(o, r).parse().unwrap(), true, NOW - 3_600_000);
                changes.push(StateChange::PutRoom(held_room(o, r).parse().unwrap(), RoomState::Held(held)));
            }
        }
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        store.commit(item.seq, &Decision { changes, ..Default::default() }).unwrap();
    }

    fn message(id: &str, room: &str, sender: &str, body: &str) -> String {
        serde_json::json!({
            "type": "m.room.message", "event_id": format!("${id}"), "room_id": room, "sender": sender,
            "origin_server_ts": NOW - 10_000, "content": {"msgtype": "m.text", "body": body},
        })
        .to_string()
    }

    /// One inbox entry: from the homeserver, or one of Gatekeeper's own.
    #[derive(Clone, Debug)]
    enum Entry {
        Homeserver(String),
        Internal(Internal),
    }

    /// xorshift64*: reproducible from its seed, no dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
        }
    }

    /// A random mix of everything a batch must get right: strangers'
    /// messages (some delivered twice), edits and redactions of messages
    /// captured earlier in the batch, new invites, the owners' commands
    /// (decisions, opt-out), owners answering in held rooms, housekeeping
    /// ticks with digests due, e-mailed links, and unreadable events.
    fn entries(rng: &mut Rng, n: usize) -> Vec<Entry> {
        const COMMANDS: [&str; 14] = [
            "pending",
            "allow 1",
            "deny 2",
            "block 1",
            "digest",
            "stop",
            "show 1",
            "allowed",
            "blocked",
            "set reply-interval 1d",
            "pause 1h",
            "resume",
            "unblock 1",
            "frobnicate",
        ];
        let mut out = Vec::new();
        for i in 0..n {
            let o = rng.below(OWNERS.len());
            let (owner, control, rooms) = OWNERS[o];
            let r = rng.below(rooms);
            let id = format!("m{}", rng.below(n));
            let entry = match rng.below(12) {
                0..=3 => Entry::Homeserver(message(&id, &held_room(o, r), &stranger(o, r), &format!("hi {i}"))),
                4 => Entry::Homeserver(
                    serde_json::json!({
                        "type": "m.room.message", "event_id": format!("$e{i}"), "room_id": held_room(o, r),
                        "sender": stranger(o, r), "origin_server_ts": NOW - 5_000,
                        "content": {"msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text", "body": format!("fixed {i}")},
                            "m.relates_to": {"rel_type": "m.replace", "event_id": format!("${id}")}},
                    })
                    .to_string(),
                ),
                5 => Entry::Homeserver(
                    serde_json::json!({
                        "type": "m.room.redaction", "event_id": format!("$r{i}"), "room_id": held_room(o, r),
                        "sender": stranger(o, r), "origin_server_ts": NOW - 5_000, "redacts": format!("${id}"), "content": {},
                    })
                    .to_string(),
                ),
                6 => {
                    let command = COMMANDS[rng.below(COMMANDS.len())];
                    Entry::Homeserver(message(&format!("c{i}"), control, owner, command))
                }
                7 => Entry::Homeserver(message(&format!("o{i}"), &held_room(o, r), owner, "hello back")),
                8 => Entry::Homeserver(
                    serde_json::json!({
                        "type": "m.room.member", "event_id": format!("$i{i}"), "room_id": format!("!new{i}:remote.org"),
                        "sender": format!("@new{i}:remote.org"), "state_key": owner, "origin_server_ts": NOW - 5_000,
                        "content": {"membership": "invite", "is_direct": rng.below(2) == 0},
                    })
                    .to_string(),
                ),
                9 if i % 2 == 0 => Entry::Internal(Internal::Tick),
                9 => Entry::Internal(Internal::OwnerDue { owner: owner.parse().unwrap() }),
                10 => {
                    let action = [LinkAction::Allow, LinkAction::Deny, LinkAction::Block, LinkAction::Unsubscribe]
                        [rng.below(4)];
                    let subject = if action == LinkAction::Unsubscribe { String::new() } else { stranger(o, r) };
                    Entry::Internal(Internal::LinkUsed {
                        owner: owner.parse().unwrap(),
                        action,
                        subject,
                        nonce: format!("n{i}"),
                    })
                }
                // Unreadable: in no room (dropped), or in a held one (set aside).
                _ if i % 2 == 0 => Entry::Homeserver("{not json".into()),
                _ => Entry::Homeserver(
                    serde_json::json!({"type": "m.room.redaction", "event_id": format!("$x{i}"), "room_id": held_room(o, r), "sender": stranger(o, r), "content": {}}).to_string(),
                ),
            };
            out.push(entry);
        }
        out
    }

    fn fill(store: &dyn Store, entries: &[Entry]) {
        for (i, e) in entries.iter().enumerate() {
            match e {
                Entry::Homeserver(raw) => {
                    store.accept_transaction(&format!("t{i}"), &[raw.as_bytes()], NOW).unwrap();
                }
                Entry::Internal(internal) => store.push_internal(&serde_json::to_vec(internal).unwrap()).unwrap(),
            }
        }
    }

    /// Everything a decision can leave behind.
    fn state(store: &dyn Store) -> impl PartialEq + std::fmt::Debug {
        let effects: Vec<_> =
            store.outbox_batch(u64::MAX, 100_000, false).unwrap().into_iter().map(|i| i.effect).collect();
        let mail: Vec<_> = store.outbox_batch(u64::MAX, 100_000, true).unwrap().into_iter().map(|i| i.effect).collect();
        let overviews: Vec<_> =
            OWNERS.iter().map(|(o, _, _)| store.overview(&o.parse::<ruma::OwnedUserId>().unwrap()).unwrap()).collect();
        let mut stats = store.stats().unwrap();
        // The two runs flush and batch differently; what was decided is the same.
        stats.transactions = 0;
        (effects, mail, overviews, store.owners().unwrap(), stats, store.quarantined(1000).unwrap().len())
    }

    /// A store that logs each overview it loads (`overview <owner>`) and each
    /// commit, delegating everything to a memory store.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        log: std::sync::Mutex<Vec<String>>,
        /// Effects committed since the last flush.
        unflushed_effects: std::sync::atomic::AtomicBool,
        flushes: std::sync::atomic::AtomicUsize,
        /// The next quarantine panics (a bug in the shell, as the blocking
        /// task's JoinError path sees it).
        panic_in_quarantine: std::sync::atomic::AtomicBool,
        /// The next quarantine fails (a store error).
        fail_in_quarantine: std::sync::atomic::AtomicBool,
    }

    impl Counting {
        fn note(&self, what: String) {
            self.log.lock().unwrap().push(what);
        }
    }

    impl crate::store::Lookups for Counting {
        fn rooms(&self, room: &ruma::RoomId) -> Result<Vec<RoomState>, StoreError> {
            self.inner.rooms(room)
        }
        fn kept(&self, owner: &ruma::UserId, with: Option<&ruma::UserId>) -> Result<crate::engine::Kept, StoreError> {
            self.inner.kept(owner, with)
        }
        fn owner(&self, user: &ruma::UserId) -> Result<Option<OwnerState>, StoreError> {
            self.inner.owner(user)
        }
        fn contact(
            &self,
            owner: &ruma::UserId,
            subject: &crate::engine::Subject,
        ) -> Result<Option<crate::engine::Contact>, StoreError> {
            self.inner.contact(owner, subject)
        }
        fn stranger(
            &self,
            owner: &ruma::UserId,
            user: &ruma::UserId,
        ) -> Result<Option<crate::engine::StrangerState>, StoreError> {
            self.inner.stranger(owner, user)
        }
        fn deferred(
            &self,
            owner: &ruma::UserId,
            event: &ruma::EventId,
        ) -> Result<Option<crate::engine::Deferred>, StoreError> {
            self.inner.deferred(owner, event)
        }
        fn wave(&self, key: &crate::engine::WaveKey) -> Result<Option<crate::engine::WaveRecord>, StoreError> {
            self.inner.wave(key)
        }
        fn seen_events(&self, room: &ruma::RoomId) -> Result<Vec<ruma::OwnedEventId>, StoreError> {
            self.inner.seen_events(room)
        }
    }

    impl Store for Counting {
        fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError> {
            self.inner.prune_waves(now_ms)
        }
        fn wave_records(&self) -> Result<usize, StoreError> {
            self.inner.wave_records()
        }
        fn accept_transaction(
            &self,
            txn_id: &str,
            events: &[&[u8]],
            now_ms: u64,
        ) -> Result<crate::store::Accepted, StoreError> {
            self.inner.accept_transaction(txn_id, events, now_ms)
        }
        fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
            self.inner.highest_transaction_number()
        }
        fn accept_sync(&self, since: Option<&str>, next_batch: &str, events: &[&[u8]]) -> Result<bool, StoreError> {
            self.inner.accept_sync(since, next_batch, events)
        }
        fn sync_position(&self) -> Result<Option<String>, StoreError> {
            self.inner.sync_position()
        }
        fn reset_sync_position(&self) -> Result<(), StoreError> {
            self.inner.reset_sync_position()
        }
        fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.connector_value(key)
        }
        fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
            self.inner.set_connector_value(key, value)
        }
        fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.connector_values(prefix)
        }
        fn inbox_batch_within(&self, limit: usize, bytes: usize) -> Result<Vec<crate::store::InboxItem>, StoreError> {
            self.inner.inbox_batch_within(limit, bytes)
        }
        fn overview(&self, owner: &ruma::UserId) -> Result<crate::engine::OwnerOverview, StoreError> {
            self.note(format!("overview {owner}"));
            self.inner.overview(owner)
        }
        fn commit_batch_seen(
            &self,
            decided: &[(u64, &Decision)],
            empty: &[u64],
            seen: &[crate::store::Seen],
        ) -> Result<(), StoreError> {
            self.note("commit".into());
            if decided.iter().any(|(_, d)| !d.effects.is_empty()) {
                self.unflushed_effects.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.inner.commit_batch_seen(decided, empty, seen)
        }
        fn seen_rooms(&self) -> Result<Vec<(ruma::OwnedRoomId, Vec<ruma::OwnedEventId>)>, StoreError> {
            self.inner.seen_rooms()
        }
        fn push_follow_ups(&self, follow_ups: &[crate::store::FollowUp]) -> Result<(), StoreError> {
            self.inner.push_follow_ups(follow_ups)
        }
        fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
            if self.panic_in_quarantine.swap(false, std::sync::atomic::Ordering::SeqCst) {
                panic!("injected");
            }
            if self.fail_in_quarantine.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Backend("injected".into()));
            }
            self.inner.quarantine(seq, reason, now_ms)
        }
        fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError> {
            self.inner.prune_quarantine(before_ms, keep)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.unflushed_effects.store(false, std::sync::atomic::Ordering::SeqCst);
            self.flushes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.flush()
        }
        fn outbox_after(
            &self,
            after: u64,
            up_to: u64,
            limit: usize,
            mail: bool,
        ) -> Result<Vec<crate::store::OutboxItem>, StoreError> {
            self.inner.outbox_after(after, up_to, limit, mail)
        }
        fn outbox_high_water(&self) -> Result<u64, StoreError> {
            self.inner.outbox_high_water()
        }
        fn finish_effects(
            &self,
            finished: &[(u64, crate::store::EffectOutcome)],
            follow_ups: &[crate::store::FollowUp],
            now_ms: u64,
        ) -> Result<(), StoreError> {
            self.inner.finish_effects(finished, follow_ups, now_ms)
        }
        fn stats(&self) -> Result<crate::store::Stats, StoreError> {
            self.inner.stats()
        }
        fn quarantined(&self, limit: usize) -> Result<Vec<crate::store::QuarantinedEvent>, StoreError> {
            self.inner.quarantined(limit)
        }
        fn failed_effects(&self, limit: usize) -> Result<Vec<crate::store::FailedEffect>, StoreError> {
            self.inner.failed_effects(limit)
        }
        fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
            self.inner.owners()
        }
        fn policy_lists(&self) -> Result<Vec<crate::engine::policy::PolicyList>, StoreError> {
            self.inner.policy_lists()
        }
        fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
            self.inner.prune_transactions(before_ms)
        }
        fn due(&self, now_ms: u64) -> Result<Due, StoreError> {
            self.inner.due(now_ms)
        }
        fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError> {
            self.inner.push_internal(raw)
        }
        fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError> {
            self.inner.use_link(nonce, expires_ms, raw)
        }
        fn prune_deferred(&self, owner: &ruma::UserId, before_ms: u64, denied: u64) -> Result<usize, StoreError> {
            self.inner.prune_deferred(owner, before_ms, denied)
        }
    }

    #[test]
    fn the_daily_tick_holds_one_owners_overview_at_a_time() {
        let store = Counting::default();
        setup(&store);
        // Every stranger wrote: both owners have something to digest.
        for (o, (_, _, rooms)) in OWNERS.iter().enumerate() {
            for r in 0..*rooms {
                let raw = message(&format!("m{o}x{r}"), &held_room(o, r), &stranger(o, r), "hello");
                store.accept_transaction(&format!("m{o}x{r}"), &[raw.as_bytes()], NOW).unwrap();
            }
        }
        let clock = ManualClock::at(NOW);
        while process_batch(&store, &config(), &clock).unwrap() != BatchReport::default() {}
        // What the timer queues when the digests are due: a tick for the
        // rest, and one input per due owner.
        let due = due_now(&store, NOW).unwrap();
        assert_eq!(due.digests.len(), OWNERS.len());
        assert!(due.digests.iter().all(|d| d.overview == Default::default()), "the timer loads no overview");
        store.push_internal(&serde_json::to_vec(&Internal::Tick).unwrap()).unwrap();
        for d in &due.digests {
            let input = Internal::OwnerDue { owner: d.owner.user_id.clone() };
            store.push_internal(&serde_json::to_vec(&input).unwrap()).unwrap();
        }
        store.log.lock().unwrap().clear();
        while process_batch(&store, &config(), &clock).unwrap() != BatchReport::default() {}
        let log = store.log.lock().unwrap().clone();
        // Each owner's overview loaded once, and a commit between any two:
        // never two owners' overviews held for one decision.
        let loads: Vec<&String> = log.iter().filter(|l| l.starts_with("overview")).collect();
        assert_eq!(loads, ["overview @alice:example.org", "overview @bob:example.org"], "{log:?}");
        assert!(log.windows(2).all(|w| !(w[0].starts_with("overview") && w[1].starts_with("overview"))), "{log:?}");
        // Both digests were sent, and are not sent again.
        let digests = |store: &Counting| {
            store
                .outbox_batch(u64::MAX, 1000, false)
                .unwrap()
                .into_iter()
                .filter(|i| matches!(&i.effect, crate::engine::Effect::SendNotice { txn_id, .. } if txn_id.starts_with("gk.digest")))
                .count()
        };
        assert_eq!(digests(&store), OWNERS.len());
        assert!(due_now(&store, NOW).unwrap().digests.is_empty());
    }

    fn one_at_a_time_and_batched(one: &dyn Store, batched: &dyn Store, entries: &[Entry], seed: u64) {
        let clock = ManualClock::at(NOW);
        for store in [one, batched] {
            setup(store);
            fill(store, entries);
        }
        while process_up_to(one, &config(), &clock, 1).unwrap() != BatchReport::default() {}
        while process_batch(batched, &config(), &clock).unwrap() != BatchReport::default() {}
        assert_eq!(state(batched), state(one), "seed {seed} (replay with GK_BATCH_SEED={seed})");
    }

    fn seeds() -> Vec<u64> {
        match std::env::var("GK_BATCH_SEED").ok().and_then(|s| s.parse().ok()) {
            Some(seed) => vec![seed],
            None => {
                let base =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
                (0..25).map(|i| (base.wrapping_add(i * 0x9E37_79B9)) | 1).collect()
            }
        }
    }

    #[test]
    fn a_batch_decides_what_one_at_a_time_decides_in_memory() {
        for seed in seeds() {
            let entries = entries(&mut Rng(seed), 60);
            one_at_a_time_and_batched(&MemoryStore::new(), &MemoryStore::new(), &entries, seed);
        }
    }

    #[test]
    fn a_batch_decides_what_one_at_a_time_decides_on_sled() {
        for seed in seeds().into_iter().take(5) {
            let entries = entries(&mut Rng(seed), 60);
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let one = SledStore::open(&a.path().join("db"), 4).unwrap();
            let batched = SledStore::open(&b.path().join("db"), 4).unwrap();
            one_at_a_time_and_batched(&one, &batched, &entries, seed);
        }
    }

    /// Through a deep inbox the drain decides what one event at a time
    /// decides, in larger batches, and leaves only effect-free batches
    /// unflushed: whenever it returns, every effect committed is flushed
    /// (the executor may carry out whatever the store holds), and the last
    /// batch before the inbox ran dry is flushed too.
    #[test]
    fn the_drain_flushes_every_effect_it_releases_and_decides_as_one_at_a_time() {
        for seed in seeds().into_iter().take(3) {
            let (one, drained) = (MemoryStore::new(), Counting::default());
            let unrelated: Vec<String> = (0..2_500)
                .map(|i| message(&format!("u{i}"), "!elsewhere:other.org", "@x:other.org", "unrelated"))
                .collect();
            let mut rng = Rng(seed);
            let (before, after) = (entries(&mut rng, 60), entries(&mut rng, 60));
            for store in [&one as &dyn Store, &drained] {
                setup(store);
                fill(store, &before);
                for (i, raw) in unrelated.iter().enumerate() {
                    store.accept_transaction(&format!("u{i}"), &[raw.as_bytes()], NOW).unwrap();
                }
                fill(store, &after);
            }
            let clock = ManualClock::at(NOW);
            while process_up_to(&one, &config(), &clock, 1).unwrap() != BatchReport::default() {}
            let (mut drain, mut steps, mut largest) = (Drain::new(), 0, 0);
            loop {
                let (report, more) = drain.step(&drained, &config(), &clock).unwrap();
                steps += 1;
                largest = largest.max(report.processed + report.quarantined);
                assert!(
                    !drained.unflushed_effects.load(std::sync::atomic::Ordering::SeqCst),
                    "seed {seed}: effects unflushed"
                );
                if !more {
                    break;
                }
            }
            assert_eq!(drained.stats().unwrap().inbox_pending, 0);
            assert_eq!(state(&drained.inner), state(&one), "seed {seed} (replay with GK_BATCH_SEED={seed})");
            let flushes = drained.flushes.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(largest, DEEP_BATCH, "seed {seed}");
            assert!(flushes < steps, "seed {seed}: {flushes} flushes in {steps} steps");
        }
    }

    /// A batch holds about [`BATCH_BYTES`] of events, however large each is
    /// and whatever came before: small events first make the inbox deep,
    /// then large ones come, the largest Matrix allows (64 KiB).
    #[test]
    fn a_batch_of_large_events_is_smaller() {
        let store = MemoryStore::new();
        setup(&store);
        let mut sizes = Vec::new();
        for i in 0..1_200 {
            let body = if i < 150 { "small".to_owned() } else { "x".repeat(64_000) };
            let raw = message(&format!("u{i:04}"), "!elsewhere:other.org", "@x:other.org", &body);
            store.accept_transaction(&format!("u{i}"), &[raw.as_bytes()], NOW).unwrap();
            sizes.push(raw.len());
        }
        let largest = *sizes.iter().max().unwrap();
        let (mut drain, mut done, mut batches, mut deep) = (Drain::new(), 0, Vec::new(), false);
        loop {
            let (report, more) = drain.step(&store, &config(), &ManualClock::at(NOW)).unwrap();
            let n = report.processed + report.quarantined;
            let bytes: usize = sizes[done..done + n].iter().sum();
            assert!(bytes < BATCH_BYTES + largest, "{n} events, {bytes} bytes");
            // Cut short by the bound, it says more is waiting (and stays deep).
            let limit = if deep { DEEP_BATCH } else { BATCH };
            assert_eq!(more, n == limit || bytes >= BATCH_BYTES, "{n} events, {bytes} bytes");
            deep = more;
            batches.push(n);
            done += n;
            if !more {
                break;
            }
        }
        assert_eq!(done, sizes.len());
        assert_eq!(store.stats().unwrap().inbox_pending, 0);
        // The first deep batch took the small events and large ones up to the bound.
        assert_eq!(batches[0], BATCH);
        assert!(batches[1] < 150, "{batches:?}");
    }

    /// `run` replaces a drain lost with a panicking task by a new one: the
    /// batch that panicked may have committed effects (the commit before a
    /// quarantine), and the new drain's first batch must flush them before
    /// the high-water mark is read and released to the executor.
    fn effects_then_a_tracked_unreadable_event(store: &Counting) {
        setup(store);
        let mut entries = Vec::new();
        for i in 0..4 {
            entries.push(Entry::Homeserver(message(&format!("h{i}"), &held_room(0, i), &stranger(0, i), "hi")));
            entries.push(Entry::Homeserver(
                serde_json::json!({
                    "type": "m.room.member", "event_id": format!("$i{i}"), "room_id": format!("!new{i}:remote.org"),
                    "sender": format!("@new{i}:remote.org"), "state_key": OWNERS[0].0, "origin_server_ts": NOW - 5_000,
                    "content": {"membership": "invite", "is_direct": true},
                })
                .to_string(),
            ));
        }
        // Unreadable, in a held room: set aside, after a commit of the above.
        entries.push(Entry::Homeserver(
            serde_json::json!({"type": "m.room.redaction", "event_id": "$x", "room_id": held_room(0, 0), "sender": stranger(0, 0), "content": {}}).to_string(),
        ));
        for i in 0..300 {
            entries.push(Entry::Homeserver(message(
                &format!("u{i}"),
                "!elsewhere:other.org",
                "@x:other.org",
                "unrelated",
            )));
        }
        fill(store, &entries);
        store.flush().unwrap();
    }

    #[test]
    fn a_new_drain_after_a_panicked_step_flushes_effects_committed_before_the_panic() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Counting::default();
        effects_then_a_tracked_unreadable_event(&store);
        let clock = ManualClock::at(NOW);
        store.panic_in_quarantine.store(true, SeqCst);
        let mut drain = Drain::new();
        let died = std::panic::catch_unwind(AssertUnwindSafe(|| drain.step(&store, &config(), &clock)));
        assert!(died.is_err(), "the step panics");
        assert!(store.unflushed_effects.load(SeqCst), "the batch committed effects before it panicked");
        // What `run` goes on with after a JoinError.
        let (_, more) = Drain::after_a_lost_step().step(&store, &config(), &clock).unwrap();
        assert!(more);
        // `run` now reads `outbox_high_water()` and releases it to the executor.
        assert!(store.outbox_high_water().unwrap() > 0);
        assert!(!store.unflushed_effects.load(SeqCst), "effects committed by the panicked step are released unflushed");
    }

    /// A step that fails after its batch committed effects owes a flush;
    /// stopping then (`flush_before_stopping`) must pay it.
    #[test]
    fn the_drain_flushes_at_a_stop_after_a_failed_step_that_committed_effects() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Counting::default();
        effects_then_a_tracked_unreadable_event(&store);
        store.fail_in_quarantine.store(true, SeqCst);
        let mut drain = Drain::new();
        assert!(drain.step(&store, &config(), &ManualClock::at(NOW)).is_err());
        assert!(store.unflushed_effects.load(SeqCst), "the batch committed effects before it failed");
        drain.flush(&store).unwrap();
        assert!(!store.unflushed_effects.load(SeqCst), "a stop after a failed step leaves effects unflushed");
    }

    #[test]
    fn a_batch_decides_what_one_at_a_time_decides_on_postgres() {
        let pg = crate::store::pg_test_server::Postgres::shared();
        for seed in seeds().into_iter().take(3) {
            let entries = entries(&mut Rng(seed), 60);
            let one = crate::store::PgStore::open(&pg.create_database()).unwrap();
            let batched = crate::store::PgStore::open(&pg.create_database()).unwrap();
            one_at_a_time_and_batched(&one, &batched, &entries, seed);
        }
    }

    /// The mix really exercises what batching could get wrong: with a fixed
    /// seed, the run holds replies, captures, an opt-out and a digest.
    #[test]
    fn the_random_mix_reaches_the_interesting_decisions() {
        let mut seen = (false, false, false, false);
        for seed in 1..40u64 {
            let store = MemoryStore::new();
            setup(&store);
            fill(&store, &entries(&mut Rng((seed * 7919) | 1), 60));
            while process_batch(&store, &config(), &ManualClock::at(NOW)).unwrap() != BatchReport::default() {}
            let effects = store.outbox_batch(u64::MAX, 100_000, false).unwrap();
            let notices = |purpose: &str| {
                effects.iter().any(|i| matches!(&i.effect, crate::engine::Effect::SendNotice { txn_id, .. } if txn_id.starts_with(purpose)))
            };
            seen.0 |= notices("gk.etiquette.");
            seen.1 |= notices("gk.digest");
            seen.2 |= store.owners().unwrap().len() < OWNERS.len();
            seen.3 |= store.stats().unwrap().deferred_messages > 0;
        }
        assert_eq!(seen, (true, true, true, true), "(replies, digests, an opt-out, captures)");
    }

    fn config() -> EngineConfig {
        crate::engine::tests_support::config()
    }
}
