//! Carries out the outbox through a connector's [`Performer`], lane by lane
//! (the engine says each effect's [`Lane`]): one lane's effects in order,
//! lanes side by side, so that a room whose server never answers holds up
//! only itself. What may succeed later is retried with backoff for a bounded
//! time; what never will, or still fails when that time is up, is set aside
//! and, where the engine cares, reported back to it as an input.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Shared;
use super::translate::Internal;
use crate::engine::native::NativeEffect;
use crate::engine::{Effect, Lane};
use crate::metrics::METRICS;
use crate::store::{EffectOutcome, FollowUp, OutboxItem};
use ruma::{OwnedUserId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum PerformError {
    /// Network trouble, 429, 5xx: worth retrying with the same request.
    #[error("temporary: {0}")]
    Transient(String),
    /// The homeserver said no for good (e.g. 403): retrying cannot help.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A connector's way of doing one effect. Must be idempotent: an effect is
/// repeated after a crash between doing it and recording it.
/// What it learned comes back as follow-ups, to go through the engine.
pub trait Performer: Send + Sync + 'static {
    fn perform(&self, effect: &Effect) -> impl Future<Output = Result<Vec<FollowUp>, PerformError>> + Send;

    /// [`Self::perform`] for an outbox item: a connector whose repeats are
    /// not recognised everywhere (client mode's devices, each with its own
    /// transaction IDs) reads which item it is.
    fn perform_item(&self, item: &OutboxItem) -> impl Future<Output = Result<Vec<FollowUp>, PerformError>> + Send {
        self.perform(&item.effect)
    }
}

/// How hard the executor tries, and how much it does at once.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long an effect that keeps failing transiently is retried before
    /// it is set aside (`gate.effect_retry_for`).
    pub retry_for: Duration,
    /// At most this many lanes have an effect in flight at once. A lane
    /// waiting to retry holds no place.
    pub max_in_flight: usize,
    /// Of those, at most this many act for one owner (see [`Share`]): one
    /// owner's rooms (one stranger's flood of invitations to them) cannot
    /// take every place while another owner's effects wait.
    pub max_in_flight_per_owner: usize,
    /// An attempt that has not returned after this long counts as failed
    /// (and is tried again): a request that hangs, or a client library
    /// retrying on its own (matrix-sdk retries a 5xx for 15 minutes), must
    /// not hold a place in flight, nor its room, past the retry bound.
    pub attempt_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            retry_for: Duration::from_secs(24 * 3600),
            max_in_flight: 32,
            max_in_flight_per_owner: 8,
            attempt_timeout: Duration::from_secs(120),
        }
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Effects read ahead of what is finished, at most: memory stays bounded
/// whatever waits. Reading resumes as lanes finish. A lane waiting to retry
/// keeps none of its effects here (they stay in the store, read again when
/// it is its turn), so retrying lanes cannot fill the read-ahead.
const MAX_QUEUED: usize = 10_000;
/// Lanes known at most (each a few dozen bytes while it waits to retry):
/// reading pauses beyond it.
const MAX_LANES: usize = 100_000;
const READ_BATCH: usize = 500;
/// A lane's effects read back from the store at a time, once the effect at
/// its head that was retried is finished.
const LANE_REFILL: usize = 64;
/// A held room's silence and what needs it are committed together, one
/// decision's effects in a row: this many following items cover them.
const DEPENDENTS_WINDOW: usize = 8;

/// Where a lane stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing to do, or not yet handed a place.
    Idle,
    /// Waiting for a place in flight.
    Ready,
    /// Its first effect is being carried out (or recorded).
    Running,
    /// Its first effect failed; retried when the backoff is over.
    Waiting,
}

struct LaneState {
    /// Whose turn the lane is started in.
    share: Share,
    /// The lane's first effects, in order.
    items: VecDeque<OutboxItem>,
    /// `Some(id)`: the lane's effects after `id`, up to the cursor, are in
    /// the store but not in `items` (set aside while its head waited to
    /// retry); they are read again, in order, when `items` runs out. What
    /// the cursor reads for the lane meanwhile is left in the store too.
    behind: Option<u64>,
    stage: Stage,
    /// When the first effect was first tried (its retry bound counts from
    /// then), whether it has failed since, and the wait before its next try.
    first_try: Option<Instant>,
    retrying: bool,
    backoff: Duration,
}

impl LaneState {
    fn new(share: Share) -> Self {
        LaneState {
            share,
            items: VecDeque::new(),
            behind: None,
            stage: Stage::Idle,
            first_try: None,
            retrying: false,
            backoff: FIRST_BACKOFF,
        }
    }
}

/// Whose turn a lane is started in: the owner its effects act for, so that
/// owners take turns for the places in flight and none holds more than its
/// cap. The bot's notices (control rooms' answers) take turns per room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Share {
    Owner(OwnedUserId),
    Lane(Lane),
}

impl Share {
    fn of(effect: &Effect, bot: &UserId) -> Share {
        let user = match effect {
            Effect::Join { as_user, .. } | Effect::Leave { as_user, .. } | Effect::SendNotice { as_user, .. } => {
                as_user
            }
            Effect::PutPushRule { owner, .. }
            | Effect::EnablePushRule { owner, .. }
            | Effect::DeletePushRule { owner, .. }
            | Effect::SetTag { owner, .. }
            | Effect::SendEmail { owner, .. }
            | Effect::ImportContacts { owner }
            | Effect::LookUpShared { owner, .. }
            | Effect::Backfill { owner, .. }
            | Effect::CheckPending { owner, .. }
            | Effect::CreateList { owner, .. } => owner,
            Effect::FetchProfile { user } => user,
            Effect::Native(native) => native.acts_for(),
            Effect::PutPolicyRule { .. } => return Share::Lane(effect.lane()),
            // The bot's (or in client mode the owner's) joins of ban lists
            // take turns list by list.
            Effect::FollowList { .. } => return Share::Lane(effect.lane()),
        };
        match effect {
            // Control rooms' answers and commands (and in client mode, where
            // the bot is the owner, every notice) take turns room by room.
            Effect::SendNotice { .. } | Effect::Native(NativeEffect::PutState { .. }) if user == bot => {
                Share::Lane(effect.lane())
            }
            _ => Share::Owner(user.clone()),
        }
    }
}

/// The lanes waiting for a place in flight, by share. Shares take turns (one
/// lane each, round and round), and a share at its cap is passed over until
/// one of its places is free.
#[derive(Default)]
struct Ready {
    queues: HashMap<Share, VecDeque<Lane>>,
    turns: VecDeque<Share>,
    busy: HashMap<Share, usize>,
}

impl Ready {
    fn push(&mut self, share: &Share, lane: Lane) {
        let queue = self.queues.entry(share.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(share.clone());
        }
        queue.push_back(lane);
    }

    /// The next lane to start, taking its share's place (at most `cap` each).
    fn pop(&mut self, cap: usize) -> Option<Lane> {
        // At most `max_in_flight / cap` shares are at their cap: few are passed over.
        for _ in 0..self.turns.len() {
            let share = self.turns.pop_front()?;
            if self.busy.get(&share).is_some_and(|n| *n >= cap) {
                self.turns.push_back(share);
                continue;
            }
            let queue = self.queues.get_mut(&share)?;
            let lane = queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&share);
            } else {
                self.turns.push_back(share);
            }
            return lane;
        }
        None
    }

    /// A lane of `share` holds a place in flight.
    fn take(&mut self, share: &Share) {
        *self.busy.entry(share.clone()).or_default() += 1;
    }

    /// A lane of `share` gives its place back.
    fn give(&mut self, share: &Share) {
        if let Some(n) = self.busy.get_mut(share) {
            *n -= 1;
            if *n == 0 {
                self.busy.remove(share);
            }
        }
    }
}

/// What a lane's task came back with.
enum Report {
    /// The first effect, and any set aside with it, are recorded as finished.
    Finished { ids: Vec<u64> },
    /// The first effect failed and may succeed later.
    Failed(String),
    /// The wait before retrying is over.
    Wake,
}

/// What a lane's task needs: the shared state, and which part of the
/// outbox this executor reads (for the effects that depend on another).
#[derive(Clone)]
struct Ctx {
    shared: Shared,
    up_to: u64,
    mail: bool,
}

/// The running tasks, each on behalf of one lane.
#[derive(Default)]
struct Tasks {
    set: JoinSet<(Lane, Report)>,
    lanes: HashMap<tokio::task::Id, Lane>,
}

impl Tasks {
    fn spawn(&mut self, lane: Lane, task: impl Future<Output = Report> + Send + 'static) {
        let for_lane = lane.clone();
        let handle = self.set.spawn(async move { (for_lane, task.await) });
        self.lanes.insert(handle.id(), lane);
    }

    /// The next task to end, and for which lane. A task that died (a
    /// performer that panicked) is reported as a failure, so that it is
    /// retried within the bound, then set aside, like any other.
    async fn next(&mut self) -> Option<(Lane, Report)> {
        loop {
            match self.set.join_next_with_id().await? {
                Ok((id, done)) => {
                    self.lanes.remove(&id);
                    return Some(done);
                }
                Err(e) => {
                    let Some(lane) = self.lanes.remove(&e.id()) else { continue };
                    tracing::error!(error = %e, ?lane, "an effect's task died");
                    return Some((lane, Report::Failed(format!("the attempt died: {e}"))));
                }
            }
        }
    }
}

/// Carries out one executor's part of the outbox (`mail`: e-mail, else every
/// Matrix effect), up to what `released` says is durable, until shutdown.
/// Stopping drops the tasks in flight: their effects stay in the outbox and
/// are done again at the next start (every effect is idempotent).
pub async fn run<P: Performer>(
    shared: Shared,
    performer: Arc<P>,
    mail: bool,
    mut released: watch::Receiver<u64>,
    policy: Policy,
) {
    let mut shutdown = shared.shutdown.clone();
    let mut lanes: HashMap<Lane, LaneState> = HashMap::new();
    let mut ready = Ready::default();
    let bot = shared.engine.bot.clone();
    let mut tasks = Tasks::default();
    // Finished together with another lane's effect before this executor read
    // them: never to be done (ids at most `cursor` cannot come again).
    let mut skip: HashSet<u64> = HashSet::new();
    let mut in_flight = 0usize;
    let mut queued = 0usize;
    let mut cursor = 0u64;
    let mut up_to = *released.borrow_and_update();
    let mut released_open = true;
    let max_in_flight = policy.max_in_flight.max(1);
    let per_owner = policy.max_in_flight_per_owner.max(1);
    loop {
        if shutdown.is_set() {
            return;
        }
        if cursor < up_to && queued < MAX_QUEUED && lanes.len() < MAX_LANES {
            let (store, after) = (shared.store.clone(), cursor);
            match tokio::task::spawn_blocking(move || store.outbox_after(after, up_to, READ_BATCH, mail)).await {
                Ok(Ok(batch)) => {
                    cursor = if batch.len() < READ_BATCH { up_to } else { batch.last().map_or(up_to, |i| i.id) };
                    for item in batch {
                        if skip.remove(&item.id) {
                            continue;
                        }
                        let lane = item.effect.lane();
                        let share = || Share::of(&item.effect, &bot);
                        let state = lanes.entry(lane.clone()).or_insert_with(|| LaneState::new(share()));
                        if state.behind.is_some() {
                            // Read again from the store when it is the lane's turn.
                            continue;
                        }
                        state.items.push_back(item);
                        queued += 1;
                        if state.stage == Stage::Idle {
                            state.stage = Stage::Ready;
                            ready.push(&state.share, lane);
                        }
                    }
                    skip.retain(|id| *id > cursor);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the outbox failed; will retry");
                    if shutdown.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                }
                Err(e) => tracing::error!(error = %e, "outbox task died; will retry"),
            }
            continue;
        }
        while in_flight < max_in_flight
            && let Some(lane) = ready.pop(per_owner)
        {
            let Some(state) = lanes.get_mut(&lane) else { continue };
            if state.items.is_empty()
                && let Some(after) = state.behind
            {
                // While the head is retried only it is read back; after
                // that, the lane's next effects.
                let want = if state.retrying { 1 } else { LANE_REFILL };
                match read_lane(&shared, &lane, after, cursor, want, mail).await {
                    Ok(items) => {
                        state.behind = (items.len() == want).then(|| items.last().map_or(after, |i| i.id));
                        queued += items.len();
                        state.items.extend(items);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, ?lane, "reading a lane's effects failed; will retry");
                        state.stage = Stage::Waiting;
                        let mut sleeper = shutdown.clone();
                        tasks.spawn(lane, async move {
                            sleeper.sleep(Duration::from_secs(1)).await;
                            Report::Wake
                        });
                        continue;
                    }
                }
            }
            let Some(item) = state.items.front().cloned() else {
                // Nothing left in it (finished along with another's effect).
                if state.retrying {
                    METRICS.lanes_retrying.dec();
                }
                lanes.remove(&lane);
                continue;
            };
            state.stage = Stage::Running;
            in_flight += 1;
            ready.take(&state.share);
            let now = Instant::now();
            let deadline = *state.first_try.get_or_insert(now) + policy.retry_for;
            // At least a moment: a retry due at the bound still gets its try.
            let limit = policy.attempt_timeout.min(deadline.saturating_duration_since(now)).max(Duration::from_secs(1));
            let ctx = Ctx { shared: shared.clone(), up_to, mail };
            tasks.spawn(lane, attempt(ctx, performer.clone(), item, limit));
        }
        let (lane, report) = tokio::select! {
            _ = shutdown.wait() => return,
            changed = released.changed(), if released_open => {
                match changed {
                    Ok(()) => up_to = *released.borrow_and_update(),
                    // The processor is gone (shutting down): nothing new comes.
                    Err(_) => released_open = false,
                }
                continue;
            }
            Some(next) = tasks.next() => next,
        };
        let Some(state) = lanes.get_mut(&lane) else { continue };
        match report {
            Report::Finished { ids } => {
                in_flight -= 1;
                ready.give(&state.share);
                for id in ids {
                    if let Some(at) = state.items.iter().position(|i| i.id == id) {
                        state.items.remove(at);
                        queued -= 1;
                    } else if id > cursor {
                        skip.insert(id);
                    }
                }
                state.first_try = None;
                if std::mem::take(&mut state.retrying) {
                    METRICS.lanes_retrying.dec();
                }
                state.backoff = FIRST_BACKOFF;
                if state.items.is_empty() && state.behind.is_none() {
                    lanes.remove(&lane);
                } else {
                    state.stage = Stage::Ready;
                    ready.push(&state.share, lane);
                }
            }
            Report::Failed(reason) => {
                in_flight -= 1;
                ready.give(&state.share);
                let Some(item) = state.items.front().cloned() else { continue };
                let now = Instant::now();
                if !std::mem::replace(&mut state.retrying, true) {
                    METRICS.lanes_retrying.inc();
                }
                let deadline = *state.first_try.get_or_insert(now) + policy.retry_for;
                if now >= deadline {
                    // Given up: set aside like a refusal, and reported. The
                    // lane keeps its place in flight while that is recorded.
                    METRICS.effects_given_up.inc();
                    tracing::warn!(
                        id = item.id, kind = item.effect.kind(), %reason, retried_for = ?policy.retry_for,
                        "effect still failing when its retry time ran out; set aside"
                    );
                    in_flight += 1;
                    ready.take(&state.share);
                    let ctx = Ctx { shared: shared.clone(), up_to, mail };
                    let bound = gatekeeper_common::duration::format(policy.retry_for.as_millis() as u64);
                    let why = format!("still failing after {bound}: {reason}");
                    tasks.spawn(lane, async move { Report::Finished { ids: set_aside(&ctx, &item, why, true).await } });
                    continue;
                }
                METRICS.action_retries.inc();
                let wait = state.backoff.min(deadline - now);
                tracing::warn!(id = item.id, kind = item.effect.kind(), %reason, retry_in = ?wait, "effect failed; will retry");
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
                state.stage = Stage::Waiting;
                // While it waits, the lane keeps nothing read ahead: its
                // effects stay in the store (the head too) and count for
                // nothing here, so that waiting lanes cannot stop the
                // reading for everyone else.
                queued -= state.items.len();
                state.items.clear();
                state.behind = Some(item.id - 1);
                let mut sleeper = shutdown.clone();
                tasks.spawn(lane, async move {
                    sleeper.sleep(wait).await;
                    Report::Wake
                });
            }
            Report::Wake => {
                if state.stage == Stage::Waiting {
                    state.stage = Stage::Ready;
                    ready.push(&state.share, lane);
                }
            }
        }
    }
}

/// The next `want` effects of `lane` after `after`, up to `up_to`, from the
/// store, in order (fewer when there are no more).
async fn read_lane(
    shared: &Shared,
    lane: &Lane,
    after: u64,
    up_to: u64,
    want: usize,
    mail: bool,
) -> Result<Vec<OutboxItem>, String> {
    let mut found = Vec::new();
    let mut from = after;
    // The lane's head is usually the very next item: look at that first.
    let mut batch = want.min(READ_BATCH);
    while found.len() < want && from < up_to {
        let store = shared.store.clone();
        let next = tokio::task::spawn_blocking(move || store.outbox_after(from, up_to, batch, mail))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        from = if next.len() < batch { up_to } else { next.last().map_or(up_to, |i| i.id) };
        found.extend(next.into_iter().filter(|i| i.effect.lane() == *lane).take(want - found.len()));
        batch = READ_BATCH;
    }
    Ok(found)
}

/// One try at a lane's first effect, for at most `limit`; recorded unless
/// it may succeed later.
async fn attempt<P: Performer>(ctx: Ctx, performer: Arc<P>, item: OutboxItem, limit: Duration) -> Report {
    let span = tracing::info_span!("action", id = item.id, kind = item.effect.kind());
    let tried = tokio::time::timeout(limit, tracing::Instrument::instrument(performer.perform_item(&item), span));
    let answered = tried.await.unwrap_or_else(|_| {
        let limit = gatekeeper_common::duration::format(limit.as_millis() as u64);
        Err(PerformError::Transient(format!("no answer within {limit}")))
    });
    match answered {
        Ok(follow_ups) => {
            METRICS.done(&item.effect);
            record(&ctx, &[(item.id, EffectOutcome::Done)], &follow_ups).await;
            Report::Finished { ids: vec![item.id] }
        }
        Err(PerformError::Permanent(reason)) => {
            tracing::warn!(id = item.id, kind = item.effect.kind(), %reason, "effect failed for good; set aside");
            Report::Finished { ids: set_aside(&ctx, &item, reason, false).await }
        }
        Err(PerformError::Transient(reason)) => Report::Failed(reason),
    }
}

/// Sets `item` aside, with what cannot happen without it (a held room's
/// join and the rest of that invite, when its silence failed), in one
/// write that also queues the reports the engine asked for. The IDs set aside.
async fn set_aside(ctx: &Ctx, item: &OutboxItem, reason: String, no_answer: bool) -> Vec<u64> {
    let mut follow_ups: Vec<FollowUp> = report(&item.effect, &reason, no_answer).into_iter().collect();
    let mut finished = vec![(item.id, EffectOutcome::Failed(reason.clone()))];
    if item.effect.silenced_room().is_some() {
        let why = format!("not done: the room's silence failed ({reason})");
        for dependent in dependents(ctx, item).await {
            tracing::warn!(id = dependent.id, kind = dependent.effect.kind(), "set aside: its room's silence failed");
            follow_ups.extend(report(&dependent.effect, &why, false));
            finished.push((dependent.id, EffectOutcome::Failed(why.clone())));
        }
    }
    METRICS.action_failures.inc_by(finished.len() as u64);
    record(ctx, &finished, &follow_ups).await;
    finished.into_iter().map(|(id, _)| id).collect()
}

/// The effects right after a held room's silence that need it: the rest of
/// the invite's decision, whose effects were committed in a row (read from
/// the store, not from what this executor happened to read so far).
async fn dependents(ctx: &Ctx, silence: &OutboxItem) -> Vec<OutboxItem> {
    let lane = silence.effect.lane();
    let mut shutdown = ctx.shared.shutdown.clone();
    loop {
        let (store, after, up_to, mail) = (ctx.shared.store.clone(), silence.id, ctx.up_to, ctx.mail);
        match tokio::task::spawn_blocking(move || store.outbox_after(after, up_to, DEPENDENTS_WINDOW, mail)).await {
            Ok(Ok(next)) => {
                // Only the same owner's steps: another owner holding the
                // same room has a silence of their own.
                let owner = silence.effect.acts_for();
                return next
                    .into_iter()
                    .take_while(|i| i.effect.lane() == lane && i.effect.needs_silence() && i.effect.acts_for() == owner)
                    .collect();
            }
            Ok(Err(e)) => tracing::error!(error = %e, "reading the outbox failed; will retry"),
            Err(e) => tracing::error!(error = %e, "outbox task died; will retry"),
        }
        if shutdown.sleep(Duration::from_secs(1)).await {
            return Vec::new();
        }
    }
}

/// The input that tells the engine an effect was set aside, if it asked:
/// a held room's silence or join, or a digest's part (whose items go back
/// into the next digest).
fn report(effect: &Effect, reason: &str, no_answer: bool) -> Option<FollowUp> {
    let input = if let Effect::SendNotice { digest: Some(part), .. } = effect {
        let part = part.as_ref().clone();
        Internal::DigestPartFailed { owner: part.owner, messages: part.messages, invites: part.invites }
    } else {
        let (room_id, owner, step) = effect.failure_report()?;
        Internal::EffectFailed { room_id, owner: Some(owner), step: step.into(), no_answer, reason: reason.to_owned() }
    };
    Some(FollowUp { internal: true, raw: serde_json::to_vec(&input).expect("results serialize") })
}

/// Records effects as finished and queues what they learned. Must not be
/// skipped: an unrecorded effect is done again on restart (harmless,
/// idempotent) but a lost one never would be; so it is retried until it
/// succeeds or Gatekeeper stops.
async fn record(ctx: &Ctx, finished: &[(u64, EffectOutcome)], follow_ups: &[FollowUp]) {
    let Shared { store, clock, wake, shutdown, .. } = &ctx.shared;
    let mut shutdown = shutdown.clone();
    loop {
        let (s, done, f, now) = (store.clone(), finished.to_vec(), follow_ups.to_vec(), clock.now_ms());
        let id = finished.first().map_or(0, |(id, _)| *id);
        match tokio::task::spawn_blocking(move || s.finish_effects(&done, &f, now)).await {
            Ok(Ok(())) => {
                if !follow_ups.is_empty() {
                    wake.notify_one();
                }
                return;
            }
            Ok(Err(e)) => tracing::error!(error = %e, id, "recording an effect failed; will retry"),
            Err(e) => tracing::error!(error = %e, id, "recording task died; will retry"),
        }
        if shutdown.sleep(Duration::from_secs(1)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Decision, FailedStep, Input, rules};
    use crate::pipeline::{clock::ManualClock, shutdown, translate};
    use crate::store::{MemoryStore, Store};
    use ruma::{OwnedRoomId, owned_user_id};
    use std::sync::Mutex;

    /// How the stand-in homeserver treats each room's effects.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Script {
        /// Every effect succeeds.
        Fine,
        /// Each effect fails transiently once, then succeeds.
        FailsOnce,
        /// The room's server never answers: every join fails transiently
        /// (the rest goes to the owner's own homeserver, which answers).
        NeverAnswers,
        /// Nothing about the room is ever answered.
        Unreachable,
        /// Joins never return at all (a library retrying on its own).
        JoinsHang,
        /// Refused for good.
        Refused,
        /// The first attempt of each effect never returns (it is in flight
        /// when Gatekeeper stops).
        HangsOnce,
    }

    /// A Performer whose behaviour is scripted per room; it logs every
    /// attempt as `kind room` (a notice by its transaction ID).
    struct StandIn {
        scripts: HashMap<String, Script>,
        log: Mutex<Vec<String>>,
    }

    impl StandIn {
        fn new(scripts: &[(&str, Script)]) -> Arc<Self> {
            let scripts = scripts.iter().map(|(r, s)| (r.to_string(), *s)).collect();
            Arc::new(StandIn { scripts, log: Mutex::new(Vec::new()) })
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        /// The attempts in one room, in order.
        fn in_room(&self, room: &str) -> Vec<String> {
            self.log().into_iter().filter(|l| l.ends_with(room)).collect()
        }
    }

    fn label(effect: &Effect) -> String {
        let room = match effect.lane() {
            Lane::Room(r) => r.to_string(),
            other => format!("{other:?}"),
        };
        match effect {
            Effect::SendNotice { txn_id, .. } => format!("{txn_id} {room}"),
            other => format!("{} {room}", other.kind()),
        }
    }

    impl Performer for StandIn {
        async fn perform(&self, effect: &Effect) -> Result<Vec<FollowUp>, PerformError> {
            let label = label(effect);
            let tries = {
                let mut log = self.log.lock().unwrap();
                let tries = log.iter().filter(|l| **l == label).count();
                log.push(label.clone());
                tries
            };
            let room = label.split(' ').nth(1).unwrap_or_default();
            match self.scripts.get(room).copied().unwrap_or(Script::Fine) {
                Script::Fine => Ok(vec![]),
                Script::FailsOnce if tries == 0 => Err(PerformError::Transient("503".into())),
                Script::FailsOnce => Ok(vec![]),
                Script::NeverAnswers if matches!(effect, Effect::Join { .. }) => {
                    Err(PerformError::Transient("502 failed to make_join".into()))
                }
                Script::NeverAnswers => Ok(vec![]),
                Script::Unreachable => Err(PerformError::Transient("502".into())),
                Script::JoinsHang if matches!(effect, Effect::Join { .. }) => std::future::pending().await,
                Script::JoinsHang => Ok(vec![]),
                Script::Refused => Err(PerformError::Permanent("M_FORBIDDEN".into())),
                Script::HangsOnce if tries == 0 => std::future::pending().await,
                Script::HangsOnce => Ok(vec![]),
            }
        }
    }

    const ALICE: &str = "@alice:x.org";

    fn rid(r: &str) -> OwnedRoomId {
        r.try_into().unwrap()
    }

    fn join(r: &str) -> Effect {
        Effect::Join { as_user: ALICE.try_into().unwrap(), room_id: rid(r) }
    }

    fn silence(r: &str) -> Effect {
        Effect::PutPushRule { owner: ALICE.try_into().unwrap(), rule: rules::held_room(r) }
    }

    fn tag(r: &str) -> Effect {
        Effect::SetTag { owner: ALICE.try_into().unwrap(), room_id: rid(r), tag: "m.lowpriority".into(), present: true }
    }

    fn backfill(r: &str) -> Effect {
        Effect::Backfill { owner: ALICE.try_into().unwrap(), room_id: rid(r) }
    }

    fn leave(r: &str) -> Effect {
        Effect::Leave { as_user: ALICE.try_into().unwrap(), room_id: rid(r), reason: None }
    }

    fn notice(r: &str, txn: &str) -> Effect {
        Effect::SendNotice {
            as_user: owned_user_id!("@gatekeeper:x.org"),
            room_id: rid(r),
            txn_id: txn.into(),
            body: "b".into(),
            html: "h".into(),
            digest: None,
            only_with: None,
            urgent: false,
        }
    }

    /// What a held invite asks for, in the order the engine gives it.
    fn hold(r: &str) -> Vec<Effect> {
        vec![silence(r), join(r), tag(r), backfill(r)]
    }

    /// Commits one decision's effects, as the processor would.
    fn queue(store: &dyn Store, effects: Vec<Effect>) {
        let n = store.stats().unwrap().transactions;
        store.accept_transaction(&format!("t{n}"), &[b"{}"], 1).unwrap();
        let seq = store.inbox_batch(10_000).unwrap().last().unwrap().seq;
        store.commit(seq, &Decision { effects, ..Default::default() }).unwrap();
    }

    struct Running {
        task: tokio::task::JoinHandle<()>,
        trigger: shutdown::Trigger,
        _released: watch::Sender<u64>,
    }

    fn start(store: &Arc<dyn Store>, performer: Arc<StandIn>, policy: Policy) -> Running {
        let (released, release_rx) = watch::channel(store.outbox_high_water().unwrap());
        let (trigger, shutdown) = shutdown::channel();
        let shared = Shared {
            store: store.clone(),
            engine: Arc::new(crate::engine::tests_support::config()),
            clock: Arc::new(ManualClock::at(1)),
            wake: Arc::new(tokio::sync::Notify::new()),
            shutdown,
        };
        Running { task: tokio::spawn(run(shared, performer, false, release_rx, policy)), trigger, _released: released }
    }

    /// Waits (on tokio's paused clock) until `done` holds; how long it took.
    async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    fn pending(store: &Arc<dyn Store>) -> Vec<Effect> {
        store.outbox_batch(u64::MAX, 100_000, false).unwrap().into_iter().map(|i| i.effect).collect()
    }

    /// The engine inputs the executor queued.
    fn reports(store: &Arc<dyn Store>) -> Vec<Input> {
        store
            .inbox_batch(10_000)
            .unwrap()
            .into_iter()
            .filter(|i| i.internal)
            .filter_map(|i| translate::translate(&i.raw, true).unwrap())
            .collect()
    }

    fn day() -> Policy {
        Policy::default()
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_stuck_in_transient_failures_does_not_delay_the_others() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), hold("!stuck:dead.org"));
        queue(store.as_ref(), hold("!b:x.org"));
        queue(store.as_ref(), vec![notice("!control:x.org", "answer")]);
        queue(store.as_ref(), vec![leave("!c:x.org")]);
        let performer = StandIn::new(&[("!stuck:dead.org", Script::NeverAnswers)]);
        let running = start(&store, performer.clone(), day());
        let took = until("everything but the stuck room done", Duration::from_secs(5), || {
            pending(&store).iter().all(|e| e.lane() == Lane::Room(rid("!stuck:dead.org")))
        })
        .await;
        // Less than the stuck join's first backoff: nobody waited for it.
        assert!(took < Duration::from_secs(1), "the others waited {took:?}");
        assert_eq!(pending(&store), hold("!stuck:dead.org")[1..]);
        // Still retried (with backoff), long after everyone else was served.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let tries = performer.in_room("!stuck:dead.org").iter().filter(|l| l.starts_with("join")).count();
        assert!((10..40).contains(&tries), "{tries} tries in an hour");
        assert_eq!(
            performer.in_room("!b:x.org"),
            ["put_push_rule !b:x.org", "join !b:x.org", "set_tag !b:x.org", "backfill !b:x.org"]
        );
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn thousands_of_retrying_lanes_do_not_stop_the_reading_for_the_others() {
        // Each held room whose join never succeeds keeps its join, tag and
        // history waiting: more of them than the read-ahead holds.
        let rooms = MAX_QUEUED / 3 + 200;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let names: Vec<String> = (0..rooms).map(|n| format!("!stuck{n}:dead.org")).collect();
        for room in &names {
            queue(store.as_ref(), hold(room));
        }
        queue(store.as_ref(), vec![notice("!control:x.org", "answer")]);
        let scripts: Vec<(&str, Script)> = names.iter().map(|r| (r.as_str(), Script::NeverAnswers)).collect();
        let performer = StandIn::new(&scripts);
        let running = start(&store, performer.clone(), day());
        until("the other owner's answer", Duration::from_secs(60), || {
            performer.log().contains(&"answer !control:x.org".to_owned())
        })
        .await;
        // Every stuck room got its silence and is still retrying its join,
        // in order: nothing after the join was tried.
        let log = performer.log();
        assert_eq!(log.iter().filter(|l| l.starts_with("put_push_rule")).count(), rooms);
        assert!(!log.iter().any(|l| l.starts_with("set_tag") || l.starts_with("backfill")));
        assert_eq!(pending(&store).len(), 3 * rooms);
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_read_back_from_the_store_keeps_its_order_and_loses_nothing() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let queue_both = |from: usize, to: usize| {
            for n in from..to {
                queue(store.as_ref(), vec![notice("!a:x.org", &format!("a{n}")), notice("!b:x.org", &format!("b{n}"))]);
            }
        };
        queue_both(0, 100);
        // Every effect in room a fails once: its lane is set aside and read
        // back from the store, again and again, past the read-back batch.
        let performer = StandIn::new(&[("!a:x.org", Script::FailsOnce)]);
        let running = start(&store, performer.clone(), day());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // More arrives while room a waits: the cursor passes it by, and it is
        // read back in its turn.
        queue_both(100, 150);
        running._released.send(store.outbox_high_water().unwrap()).unwrap();
        until("all done", Duration::from_secs(3600), || pending(&store).is_empty()).await;
        let expected_a: Vec<String> =
            (0..150).flat_map(|n| [format!("a{n} !a:x.org"), format!("a{n} !a:x.org")]).collect();
        assert_eq!(performer.in_room("!a:x.org"), expected_a);
        let expected_b: Vec<String> = (0..150).map(|n| format!("b{n} !b:x.org")).collect();
        assert_eq!(performer.in_room("!b:x.org"), expected_b);
        assert_eq!(store.stats().unwrap().effects_done, 300);
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn within_a_lane_effects_keep_their_order_through_retries() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), hold("!r:x.org"));
        queue(store.as_ref(), vec![notice("!control:x.org", "n1"), notice("!control:x.org", "n2")]);
        queue(store.as_ref(), vec![notice("!r:x.org", "reply"), notice("!control:x.org", "n3")]);
        let performer = StandIn::new(&[("!r:x.org", Script::FailsOnce), ("!control:x.org", Script::FailsOnce)]);
        let running = start(&store, performer.clone(), day());
        until("all done", Duration::from_secs(60), || pending(&store).is_empty()).await;
        let twice = |l: &str| [l.to_owned(), l.to_owned()];
        let expected_room: Vec<String> =
            ["put_push_rule !r:x.org", "join !r:x.org", "set_tag !r:x.org", "backfill !r:x.org", "reply !r:x.org"]
                .iter()
                .flat_map(|l| twice(l))
                .collect();
        assert_eq!(performer.in_room("!r:x.org"), expected_room);
        let expected_control: Vec<String> =
            ["n1 !control:x.org", "n2 !control:x.org", "n3 !control:x.org"].iter().flat_map(|l| twice(l)).collect();
        assert_eq!(performer.in_room("!control:x.org"), expected_control);
        assert_eq!(store.stats().unwrap().effects_done, 8);
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_retry_bound_sets_the_effect_aside_and_tells_the_engine() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), vec![silence("!stuck:dead.org"), join("!stuck:dead.org")]);
        queue(store.as_ref(), vec![notice("!stuck:dead.org", "later")]);
        let performer = StandIn::new(&[("!stuck:dead.org", Script::NeverAnswers)]);
        let policy = Policy { retry_for: Duration::from_secs(60), ..Policy::default() };
        let running = start(&store, performer.clone(), policy);
        let performer_ = performer.clone();
        let took =
            until("the join set aside", Duration::from_secs(120), || store.failed_effects(10).unwrap().len() == 1)
                .await;
        assert!((Duration::from_secs(60)..Duration::from_secs(62)).contains(&took), "given up after {took:?}");
        let failed = store.failed_effects(10).unwrap();
        assert!(failed[0].reason.starts_with("still failing after 1m: 502"), "{failed:?}");
        // 0, 1, 3, 7, 15, 31 s and once more at the bound.
        let joins = performer_.in_room("!stuck:dead.org").iter().filter(|l| l.starts_with("join")).count();
        assert_eq!(joins, 7);
        // The lane goes on with what came after.
        until("the later notice", Duration::from_secs(1), || pending(&store).is_empty()).await;
        assert!(performer_.log().contains(&"later !stuck:dead.org".to_owned()));
        assert!(matches!(
            reports(&store)[..],
            [Input::EffectFailed { step: FailedStep::Join, no_answer: true, .. }, ..]
        ));
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_digest_part_set_aside_is_reported_with_the_items_it_carried() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let part = crate::engine::DigestPart {
            owner: ALICE.try_into().unwrap(),
            messages: vec![ruma::owned_event_id!("$m1:remote.org"), ruma::owned_event_id!("$m2:remote.org")],
            invites: vec![rid("!group:remote.org")],
        };
        let digest = |txn: &str, part: Option<crate::engine::DigestPart>| {
            let mut effect = notice("!control:x.org", txn);
            if let Effect::SendNotice { digest, .. } = &mut effect {
                *digest = part.map(Box::new);
            }
            effect
        };
        queue(store.as_ref(), vec![digest("digest0", Some(part.clone())), digest("digest1", None)]);
        // The homeserver never answers: both parts are set aside at the bound.
        let performer = StandIn::new(&[("!control:x.org", Script::Unreachable)]);
        let policy = Policy { retry_for: Duration::from_secs(60), ..Policy::default() };
        let running = start(&store, performer, policy);
        until("both parts set aside", Duration::from_secs(200), || pending(&store).is_empty()).await;
        assert_eq!(store.failed_effects(10).unwrap().len(), 2);
        // Only the part that carried items is reported, with them.
        assert_eq!(
            reports(&store),
            [Input::DigestPartFailed { owner: part.owner, messages: part.messages, invites: part.invites }]
        );
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_never_returns_is_bounded_too() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), hold("!r:slow.org"));
        queue(store.as_ref(), vec![join("!s:slow.org")]);
        let performer = StandIn::new(&[("!r:slow.org", Script::JoinsHang), ("!s:slow.org", Script::JoinsHang)]);
        let policy = Policy { retry_for: Duration::from_secs(300), ..Policy::default() };
        let running = start(&store, performer.clone(), policy);
        let took =
            until("both joins set aside", Duration::from_secs(400), || store.failed_effects(10).unwrap().len() == 2)
                .await;
        assert!((Duration::from_secs(300)..Duration::from_secs(302)).contains(&took), "given up after {took:?}");
        // At 0 and 2 min (each attempt runs out after 2 min), then at 4 min
        // for what is left until the bound.
        assert_eq!(performer.in_room("!s:slow.org"), ["join !s:slow.org"; 3]);
        let failed = store.failed_effects(10).unwrap();
        assert!(failed[0].reason.starts_with("still failing after 5m: no answer within"), "{failed:?}");
        until("the rest of the held room", Duration::from_secs(1), || pending(&store).is_empty()).await;
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_silence_means_no_join_in_that_room() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), hold("!r:x.org"));
        // A later decision about the room (the owner denies it) still happens.
        queue(store.as_ref(), vec![leave("!r:x.org")]);
        let performer = StandIn::new(&[("!r:x.org", Script::Refused)]);
        // Refused: the silence's push rule fails for good at once.
        let scripts = performer.clone();
        let running = start(&store, performer, day());
        until("everything finished", Duration::from_secs(5), || pending(&store).is_empty()).await;
        assert_eq!(scripts.in_room("!r:x.org"), ["put_push_rule !r:x.org", "leave !r:x.org"]);
        let failed = store.failed_effects(10).unwrap();
        assert_eq!(failed.len(), 5, "{failed:?}");
        assert!(failed[1].reason.starts_with("not done: the room's silence failed"), "{failed:?}");
        let got: Vec<(FailedStep, bool)> = reports(&store)
            .into_iter()
            .map(|i| match i {
                Input::EffectFailed { step, no_answer, room_id, .. } if room_id == "!r:x.org" => (step, no_answer),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [(FailedStep::Silence, false), (FailedStep::Join, false)]);
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silence_that_never_answers_means_no_join_either() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), hold("!r:dead.org"));
        let performer = StandIn::new(&[("!r:dead.org", Script::Unreachable)]);
        let policy = Policy { retry_for: Duration::from_secs(10), ..Policy::default() };
        let running = start(&store, performer.clone(), policy);
        until("everything finished", Duration::from_secs(30), || pending(&store).is_empty()).await;
        assert!(performer.log().iter().all(|l| l.starts_with("put_push_rule")), "{:?}", performer.log());
        assert_eq!(store.failed_effects(10).unwrap().len(), 4);
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_bound_of_lanes_are_in_flight() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        for n in 0..5 {
            queue(store.as_ref(), vec![join(&format!("!hang{n}:x.org"))]);
        }
        queue(store.as_ref(), vec![join("!fine:x.org")]);
        let scripts: Vec<(String, Script)> = (0..5).map(|n| (format!("!hang{n}:x.org"), Script::HangsOnce)).collect();
        let scripts: Vec<(&str, Script)> = scripts.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        let performer = StandIn::new(&scripts);
        let running = start(&store, performer.clone(), Policy { max_in_flight: 2, ..Policy::default() });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(performer.log().len(), 2, "{:?}", performer.log());
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn one_owner_cannot_take_every_place_in_flight() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // A stranger's flood of rooms for Alice, whose joins all hang...
        let rooms: Vec<String> = (0..100).map(|n| format!("!flood{n}:spam.org")).collect();
        for room in &rooms {
            queue(store.as_ref(), vec![join(room)]);
        }
        // ... queued before Bob's and the bot's work.
        let bob = Effect::Join { as_user: owned_user_id!("@bob:x.org"), room_id: rid("!b:x.org") };
        queue(store.as_ref(), vec![bob, notice("!control:x.org", "answer")]);
        let scripts: Vec<(&str, Script)> = rooms.iter().map(|r| (r.as_str(), Script::HangsOnce)).collect();
        let performer = StandIn::new(&scripts);
        let running = start(&store, performer.clone(), day());
        until("Bob's join and the answer", Duration::from_secs(5), || {
            let log = performer.log();
            log.contains(&"join !b:x.org".to_owned()) && log.contains(&"answer !control:x.org".to_owned())
        })
        .await;
        // Alice's share: at most her cap in flight, though places were free.
        let flood = performer.log().iter().filter(|l| l.ends_with(":spam.org")).count();
        assert_eq!(flood, Policy::default().max_in_flight_per_owner);
        running.trigger.fire();
        running.task.await.unwrap();
    }

    #[test]
    fn owners_take_turns_for_the_places_in_flight() {
        let alice = Share::Owner(ALICE.try_into().unwrap());
        let bob = Share::Owner(owned_user_id!("@bob:x.org"));
        let mut ready = Ready::default();
        for n in 0..5 {
            ready.push(&alice, Lane::Room(rid(&format!("!a{n}:x.org"))));
        }
        ready.push(&bob, Lane::Room(rid("!b0:x.org")));
        ready.push(&bob, Lane::Room(rid("!b1:x.org")));
        let mut started = Vec::new();
        while let Some(Lane::Room(room)) = ready.pop(3) {
            let share = if room.as_str().starts_with("!a") { &alice } else { &bob };
            ready.take(share);
            started.push(room.to_string());
        }
        assert_eq!(started, ["!a0:x.org", "!b0:x.org", "!a1:x.org", "!b1:x.org", "!a2:x.org"]);
        // A place given back lets Alice go on.
        ready.give(&alice);
        assert_eq!(ready.pop(3), Some(Lane::Room(rid("!a3:x.org"))));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_in_the_middle_of_retries_stops_at_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        queue(store.as_ref(), vec![join("!stuck:dead.org")]);
        queue(store.as_ref(), vec![join("!hang:x.org")]);
        let performer = StandIn::new(&[("!stuck:dead.org", Script::NeverAnswers), ("!hang:x.org", Script::HangsOnce)]);
        let running = start(&store, performer.clone(), day());
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(performer.log().len() > 3);
        running.trigger.fire();
        tokio::time::timeout(Duration::from_millis(1), running.task).await.expect("stopped at once").unwrap();
        // Nothing was set aside: both wait in the outbox for the next start.
        assert_eq!(pending(&store), [join("!stuck:dead.org"), join("!hang:x.org")]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_repeats_at_most_what_was_in_flight_and_loses_nothing() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let rooms: Vec<String> = (0..12).map(|n| format!("!r{n}:x.org")).collect();
        for room in &rooms {
            queue(store.as_ref(), hold(room));
            queue(store.as_ref(), vec![notice(room, &format!("reply{}", &room[2..room.len() - 6]))]);
        }
        let everything: Vec<String> =
            store.outbox_batch(u64::MAX, 10_000, false).unwrap().iter().map(|i| label(&i.effect)).collect();
        // Every third room's join is in flight when the process dies.
        let hanging: Vec<(&str, Script)> = rooms.iter().step_by(3).map(|r| (r.as_str(), Script::HangsOnce)).collect();
        let first = StandIn::new(&hanging);
        let running = start(&store, first.clone(), day());
        until("all but the hanging rooms done", Duration::from_secs(5), || pending(&store).len() == 4 * 5).await;
        // A crash: the executor is gone without a word, mid-way.
        running.task.abort();
        let _ = running.task.await;
        let in_flight: Vec<String> = pending(&store).iter().map(label).filter(|l| first.log().contains(l)).collect();
        assert_eq!(in_flight.len(), 4, "one silence per hanging room: {in_flight:?}");

        let second = StandIn::new(&[]);
        let running = start(&store, second.clone(), day());
        until("the rest done", Duration::from_secs(5), || pending(&store).is_empty()).await;
        let mut done: Vec<String> = first.log();
        done.extend(second.log());
        for effect in &everything {
            let times = done.iter().filter(|l| *l == effect).count();
            let may_repeat = in_flight.contains(effect);
            assert!(times == 1 || (may_repeat && times == 2), "{effect} done {times} times");
        }
        assert_eq!(store.stats().unwrap().effects_done as usize, everything.len());
        running.trigger.fire();
        running.task.await.unwrap();
    }
}
