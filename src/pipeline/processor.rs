//! Drains the durable inbox in order: event -> engine -> committed decision.
//! A batch of decisions (state, effects, inbox removals) is committed
//! atomically and flushed before its effects are released to the executor.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use super::clock::Clock;
use super::translate::translate;
use crate::engine::{self, Decision, Due, DueDigest, EngineConfig, Input, StateChange, schedule};
use crate::metrics::METRICS;
use crate::store::{Overlay, Store, StoreError, assemble_snapshot};

pub const BATCH: usize = 100;

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
    let mut report = BatchReport::default();
    let mut pending = Pending::new(store);
    for item in store.inbox_batch(limit)? {
        let input = match translate(&item.raw, item.internal) {
            Ok(Some(input)) => input,
            Ok(None) => {
                METRICS.ignored();
                pending.empty.push(item.seq);
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
        if let Some(owner) = engine::overview_read(&snapshot, &input) {
            pending.commit()?;
            snapshot.overview = Some(store.overview(&owner)?);
        }
        if reads.due {
            pending.commit()?;
            snapshot.due = Some(due_now(store, now_ms, true)?);
        }
        // A bug in one rule must not wedge the queue behind one event.
        let decided = std::panic::catch_unwind(AssertUnwindSafe(|| engine::decide(&snapshot, &input, now_ms, config)));
        if let Ok(decision) = &decided {
            METRICS.decided(&input, decision);
        }
        match decided {
            Ok(decision) if decision.is_empty() => {
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
                pending.add(item.seq, decision, started);
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
    store.flush()?;
    Ok(report)
}

fn input_kind(input: &Input) -> &'static str {
    crate::metrics::input_kind(input)
}

/// Decisions made and not yet committed, with the overlay they are read
/// through.
struct Pending<'a> {
    store: &'a dyn Store,
    overlay: Overlay<'a>,
    decided: Vec<(u64, Decision, std::time::Instant)>,
    empty: Vec<u64>,
}

impl<'a> Pending<'a> {
    fn new(store: &'a dyn Store) -> Self {
        Self { store, overlay: Overlay::new(store), decided: Vec::new(), empty: Vec::new() }
    }

    fn add(&mut self, seq: u64, decision: Decision, started: std::time::Instant) {
        self.overlay.apply(&decision.changes);
        self.decided.push((seq, decision, started));
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.decided.is_empty() && self.empty.is_empty() {
            return Ok(());
        }
        let decided: Vec<(u64, &Decision)> = self.decided.iter().map(|(seq, d, _)| (*seq, d)).collect();
        self.store.commit_batch(&decided, &self.empty)?;
        for (_, _, started) in self.decided.drain(..) {
            METRICS.processing_seconds.observe(started.elapsed().as_secs_f64());
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
    loop {
        let (s, c, k) = (store.clone(), engine.clone(), clock.clone());
        let result = tokio::task::spawn_blocking(move || {
            let report = process_batch(s.as_ref(), &c, k.as_ref())?;
            Ok::<_, StoreError>((report, s.outbox_high_water()?))
        })
        .await;
        match result {
            Ok(Ok((report, high))) => {
                backoff = Duration::from_millis(100);
                released.send_replace(high);
                if report.processed + report.quarantined == BATCH {
                    continue;
                }
                if report.processed + report.quarantined > 0 {
                    tracing::debug!(?report, "inbox batch done");
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, retry_in = ?backoff, "inbox processing failed; will retry");
                if shutdown.sleep(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(join) => {
                tracing::error!(error = %join, "inbox processing task died; will retry");
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => {}
        }
        if shutdown.is_set() {
            return;
        }
    }
}

/// Everything time-driven that is due: the store's expiries and pauses, and
/// the owners whose digest slot has passed (with their overviews when
/// `with_overviews`, which the engine needs and the timer does not).
pub fn due_now(store: &dyn Store, now: u64, with_overviews: bool) -> Result<Due, StoreError> {
    let mut due = store.due(now)?;
    for owner in store.owners()? {
        let tz = schedule::zone(owner.timezone.as_deref());
        let minute = owner.digest_minute.unwrap_or(schedule::DEFAULT_MINUTE);
        if let Some(slot_ms) = schedule::due_slot(owner.digest_last_slot_ms, owner.since_ms, now, &tz, minute) {
            let overview = if with_overviews { store.overview(&owner.user_id)? } else { Default::default() };
            due.digests.push(DueDigest { owner, overview, slot_ms });
        }
    }
    Ok(due)
}

/// A fixed "now" for the tests in this file.
#[cfg(test)]
const NOW: u64 = 1_700_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::clock::ManualClock;
    use crate::store::MemoryStore;

    fn config() -> EngineConfig {
        crate::engine::tests_support::config()
    }

    const INVITE: &[u8] = br#"{"type":"m.room.member","event_id":"$i","room_id":"!dm:example.org",
        "sender":"@alice:example.org","state_key":"@gatekeeper:example.org","origin_server_ts":1,
        "content":{"membership":"invite","is_direct":true}}"#;

    #[test]
    fn events_are_processed_once_and_bad_ones_set_aside() {
        let store = MemoryStore::new();
        store.accept_transaction("t", &[INVITE, b"{oops", br#"{"type":"m.typing","content":{}}"#], 1).unwrap();
        let report = process_batch(&store, &config(), &ManualClock::at(NOW)).unwrap();
        assert_eq!(report, BatchReport { processed: 2, quarantined: 1 });
        assert_eq!(process_batch(&store, &config(), &ManualClock::at(NOW)).unwrap(), BatchReport::default());
        let stats = store.stats().unwrap();
        assert_eq!((stats.events_processed, stats.events_quarantined, stats.outbox_pending), (2, 1, 1));
        assert_eq!(store.quarantined(10).unwrap()[0].raw, "{oops");
    }
}

#[cfg(test)]
mod batch_tests {
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
        store.commit(item.seq, &Decision { changes, effects: vec![], outcomes: vec![] }).unwrap();
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
        e.push("{not json".into());
        e.push(message("m3b", "!held3:remote.org", "@s3:remote.org", "again"));
        e.push(message("cmd", CONTROL, OWNER, "allow @s4:remote.org"));
        e.push(message("m4b", "!held4:remote.org", "@s4:remote.org", "after allow"));
        e.push(message("own", "!held3:remote.org", OWNER, "hello back"));
        e.push(message("m3c", "!held3:remote.org", "@s3:remote.org", "after answer"));
        e
    }

    fn outcome(store: &MemoryStore) -> (Vec<crate::engine::Effect>, crate::engine::OwnerOverview, crate::store::Stats) {
        let effects = store.outbox_batch(u64::MAX, 1000, false).unwrap().into_iter().map(|i| i.effect).collect();
        let mut overview = store.overview(&ruma::UserId::parse(OWNER).unwrap()).unwrap();
        // The clock moves between the two runs.
        for contact in overview.contacts.values_mut() {
            if let crate::engine::Contact::Allowed { since_ms, .. } = contact {
                *since_ms = 0;
            }
        }
        (effects, overview, store.stats().unwrap())
    }

    /// A batch decides exactly what one event at a time decides.
    #[test]
    fn a_batch_decides_what_one_at_a_time_decides() {
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

    fn config() -> EngineConfig {
        crate::engine::tests_support::config()
    }
}
