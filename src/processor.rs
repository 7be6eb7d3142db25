//! Drains the durable inbox in order: event -> engine -> committed decision.
//! A batch of decisions (state, effects, inbox removals) is committed
//! atomically and flushed before its effects are released to the executor.

use crate::metrics::METRICS;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::engine::{self, Decision, EngineConfig, StateChange};
use crate::store::{Overlay, Store, StoreError, assemble_snapshot};
use crate::translate::translate;

pub const BATCH: usize = 100;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

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
/// look-ups (an owner's whole overview, what is due) or forgets an owner's
/// data, and before an event is set aside, so the inbox is consumed in order.
pub fn process_batch(store: &dyn Store, config: &EngineConfig) -> Result<BatchReport, StoreError> {
    process_up_to(store, config, BATCH)
}

fn process_up_to(store: &dyn Store, config: &EngineConfig, limit: usize) -> Result<BatchReport, StoreError> {
    let mut report = BatchReport::default();
    let mut pending = Pending::new(store);
    for item in store.inbox_batch(limit)? {
        let input = match translate(&item.raw, item.internal) {
            Ok(Some(input)) => input,
            Ok(None) => {
                METRICS.events.get_or_create(&crate::metrics::KindLabel { kind: "other" }).inc();
                pending.empty.push(item.seq);
                report.processed += 1;
                continue;
            }
            Err(reason) => {
                tracing::warn!(seq = item.seq, %reason, "event set aside (quarantined)");
                pending.commit()?;
                store.quarantine(item.seq, &reason.0, now_ms())?;
                report.quarantined += 1;
                continue;
            }
        };
        let started = std::time::Instant::now();
        let mut snapshot = assemble_snapshot(
            &pending.overlay,
            input.room_id().map(|r| &**r),
            &input.users(),
            input.related_event().map(|e| &**e),
        )?;
        if let Some(owner) = overview_needed(&snapshot, &input) {
            pending.commit()?;
            snapshot.overview = Some(store.overview(&owner)?);
        }
        if matches!(input, crate::engine::Input::Tick) {
            pending.commit()?;
            snapshot.due = Some(due_now(store, now_ms(), true)?);
        }
        // A bug in one rule must not wedge the queue behind one event.
        let decided =
            std::panic::catch_unwind(AssertUnwindSafe(|| engine::decide(&snapshot, &input, now_ms(), config)));
        if let Ok(decision) = &decided {
            METRICS.decided(&input, &snapshot, decision);
        }
        match decided {
            Ok(decision) if decision.effects.is_empty() && decision.changes.is_empty() => {
                pending.empty.push(item.seq);
                report.processed += 1;
            }
            Ok(decision) => {
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
                tracing::error!(input = ?input, "engine panicked; event set aside");
                pending.commit()?;
                store.quarantine(item.seq, "the engine failed on this event (a bug: please report it)", now_ms())?;
                report.quarantined += 1;
            }
        }
    }
    pending.commit()?;
    store.flush()?;
    Ok(report)
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

/// Whose whole overview a decision reads: the owner commanding in their
/// control room (commands, opt-out), confirming an e-mailed link, or
/// answering in a held room (which releases it with its messages). Every
/// other input decides from the point look-ups alone.
fn overview_needed(snapshot: &crate::engine::Snapshot, input: &crate::engine::Input) -> Option<ruma::OwnedUserId> {
    use crate::engine::{Input, RoomState};
    match (&snapshot.room, input) {
        (Some(RoomState::Control { owner }), _) => Some(owner.clone()),
        (_, Input::LinkUsed { owner, .. }) => Some(owner.clone()),
        (Some(RoomState::Held(held)), Input::Message { meta, .. }) if meta.sender == held.owner => {
            Some(held.owner.clone())
        }
        _ => None,
    }
}

/// Runs until `shutdown` fires: wakes on `wake` (new transactions) or every
/// second, and after each durable batch publishes the outbox high-water mark
/// so the executor only carries out effects that survive a crash.
pub async fn run(
    store: Arc<dyn Store>,
    config: Arc<EngineConfig>,
    wake: Arc<Notify>,
    released: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (s, c) = (store.clone(), config.clone());
        let result = tokio::task::spawn_blocking(move || {
            let report = process_batch(s.as_ref(), &c)?;
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
                sleep_or_shutdown(backoff, &mut shutdown).await;
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
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Everything time-driven that is due: the store's expiries and pauses, and
/// the owners whose digest slot has passed (with their overviews when
/// `with_overviews`, which the engine needs and the timer does not).
pub fn due_now(store: &dyn Store, now: u64, with_overviews: bool) -> Result<crate::engine::Due, StoreError> {
    use crate::engine::schedule;
    let mut due = store.due(now)?;
    for owner in store.owners()? {
        let tz = schedule::zone(owner.timezone.as_deref());
        let minute = owner.digest_minute.unwrap_or(schedule::DEFAULT_MINUTE);
        if let Some(slot_ms) = schedule::due_slot(owner.digest_last_slot_ms, owner.since_ms, now, &tz, minute) {
            let overview = if with_overviews { store.overview(&owner.user_id)? } else { Default::default() };
            due.digests.push(crate::engine::DueDigest { owner, overview, slot_ms });
        }
    }
    Ok(due)
}

/// Every `interval`, queues a tick if something has come due (an allow that
/// expired, a pause that ended, a digest), so the engine acts on it in order
/// with everything else. Ticks are idempotent: a tick that finds nothing due
/// (because an earlier one handled it) decides nothing.
pub async fn housekeeping(
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let tick = serde_json::to_vec(&crate::translate::Internal::Tick).expect("tick serializes");
    loop {
        sleep_or_shutdown(interval, &mut shutdown).await;
        if *shutdown.borrow() {
            return;
        }
        let (s, t) = (store.clone(), tick.clone());
        let queued = tokio::task::spawn_blocking(move || {
            let due = due_now(s.as_ref(), now_ms(), false)?;
            if due.expired.is_empty() && due.unpause.is_empty() && due.digests.is_empty() {
                return Ok(false);
            }
            s.push_internal(&t).map(|()| true)
        })
        .await;
        match queued {
            Ok(Ok(true)) => wake.notify_one(),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "housekeeping failed; will retry"),
            Err(e) => tracing::warn!(error = %e, "housekeeping task died; will retry"),
        }
    }
}

pub async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let report = process_batch(&store, &config()).unwrap();
        assert_eq!(report, BatchReport { processed: 2, quarantined: 1 });
        assert_eq!(process_batch(&store, &config()).unwrap(), BatchReport::default());
        let stats = store.stats().unwrap();
        assert_eq!((stats.events_processed, stats.events_quarantined, stats.outbox_pending), (2, 1, 1));
        assert_eq!(store.quarantined(10).unwrap()[0].raw, "{oops");
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use crate::engine::{HeldRoom, OwnerState, RoomState};
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
        store.commit(item.seq, &Decision { changes, effects: vec![] }).unwrap();
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
        while process_up_to(&one, &config(), 1).unwrap() != BatchReport::default() {}
        let report = process_batch(&batched, &config()).unwrap();
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

#[cfg(test)]
mod housekeeping_tests {
    use super::*;
    use crate::engine::{Decision, OwnerState, StateChange};
    use crate::store::MemoryStore;

    /// The digest timer runs on tokio time: with the clock paused, nothing
    /// happens until it is advanced past the interval, then a tick is queued
    /// for the owner whose digest is due.
    #[tokio::test(start_paused = true)]
    async fn housekeeping_queues_a_tick_when_a_digest_is_due() {
        let store = Arc::new(MemoryStore::new());
        store.accept_transaction("setup", &[b"{}"], 1).unwrap();
        let item = store.inbox_batch(1).unwrap().remove(0);
        // Opted in two days ago: yesterday's 08:00 UTC slot is due.
        let owner = OwnerState::new(
            "@alice:example.org".try_into().unwrap(),
            "!c:example.org".try_into().unwrap(),
            now_ms() - 2 * 86_400_000,
        );
        store.commit(item.seq, &Decision { changes: vec![StateChange::PutOwner(owner)], effects: vec![] }).unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(housekeeping(store.clone(), wake, Duration::from_secs(30), stop_rx));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(store.inbox_batch(10).unwrap().is_empty(), "nothing before the interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..50 {
            if !store.inbox_batch(10).unwrap().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let inbox = store.inbox_batch(10).unwrap();
        assert_eq!(inbox.len(), 1);
        assert!(inbox[0].internal);
        assert_eq!(translate(&inbox[0].raw, true).unwrap(), Some(crate::engine::Input::Tick));
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
