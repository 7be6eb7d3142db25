//! After every start, and again after each of the homeserver's resends
//! (see `resends`), each held room and control room is read forward from
//! the events Gatekeeper has from it, so that a message the homeserver
//! never delivered is still decided, once.
//!
//! Synapse can strand an appservice transaction: created while it marks
//! the appservice down, it is sent only when the appservice is next down
//! (issue 13). The read after the start finds what was stranded before
//! it; the read after a resend, what the resend itself stranded (the
//! start-up ping begins one: a command sent as Gatekeeper came back).
//! What the read finds goes into the inbox like a backfill's events
//! (follow-ups from the homeserver, not internal), and the processor
//! decides each event of a tracked room once: what it decided before
//! (pushed and read, or read twice) is skipped by its ID
//! ([`Lookups::seen_events`](crate::store::Lookups::seen_events)).
//!
//! Each room is read from the oldest of the events it consumed last
//! ([`SEEN_PER_ROOM`](crate::store::SEEN_PER_ROOM) of them), not the
//! newest: a stranded event followed by a delivered one in the same room
//! is found too. What the read finds that was consumed (remembered when
//! the room's read began, or by the time it queues) is not queued
//! ([`unseen`]): the window of remembered events moves on, and the
//! processor alone would decide such an event again once it had left it.
//! A room that moved on by a whole window during its read is not queued
//! at all (what came between is in neither list). So that what the
//! homeserver delivers is remembered before the same events are read,
//! the first read waits for the resend the start-up ping begins, and
//! every read for the processor to empty the inbox.
//!
//! The work is bounded: a few rooms at a time, a page limit and a time
//! limit per room, in the background, so a room whose server does not
//! answer holds up nothing else.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::appservice::resends::Resends;
use crate::engine::RoomState;
use crate::matrix::HsClient;
use crate::pipeline::Shared;
use crate::store::{FollowUp, Store, StoreError};

/// Pages of [`FORWARD_PAGE`](crate::matrix::effects::FORWARD_PAGE) events
/// read per room at most.
pub const PAGES_PER_ROOM: usize = 10;
/// Rooms read at the same time.
pub const ROOMS_AT_ONCE: usize = 4;
/// A room's read that takes longer is given up (and logged).
pub const ROOM_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a read waits for the processor to empty the inbox first.
pub const DRAIN_WAIT: Duration = Duration::from_secs(60);
/// The read after the start waits for the resend the start-up ping begins;
/// with no ping by then (a homeserver without it), for this long.
pub const NO_PING_WAIT: Duration = Duration::from_secs(60);

/// One room to read: as whom (the bot when `None`), from which event (the
/// oldest remembered when planned; the read itself starts from the oldest
/// remembered when it begins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub room: OwnedRoomId,
    pub as_user: Option<OwnedUserId>,
    pub from: OwnedEventId,
}

/// What to read, from each room's events consumed last and what the room
/// is now: held rooms as their owner, control rooms as the bot, each from
/// the oldest event remembered. Rooms no longer held or controlled, held
/// rooms that could not be joined, and rooms with nothing remembered, are
/// not read.
pub fn plan(
    seen: Vec<(OwnedRoomId, Vec<OwnedEventId>)>,
    mut rooms: impl FnMut(&OwnedRoomId) -> Result<Vec<RoomState>, StoreError>,
) -> Result<Vec<Read>, StoreError> {
    let mut reads = Vec::new();
    for (id, events) in seen {
        let Some(from) = events.into_iter().next() else { continue };
        let records = rooms(&id)?;
        // One read serves every owner who holds the room: what it finds is
        // decided for each of them.
        let as_user = if records.iter().any(|r| matches!(r, RoomState::Control { .. })) {
            None
        } else {
            match records.into_iter().find_map(|r| match r {
                // A room the owner could not join cannot be read either.
                RoomState::Held(held) if held.unreadable.is_none() => Some(held.owner),
                _ => None,
            }) {
                Some(owner) => Some(owner),
                None => continue,
            }
        };
        reads.push(Read { room: id, as_user, from });
    }
    Ok(reads)
}

/// Reads every planned room forward after the start, then again after
/// each resend is over, until shutdown.
pub async fn run(shared: Shared, mut client: HsClient, resends: Arc<Resends>) {
    let mut shutdown = shared.shutdown.clone();
    if !client.wait_for_homeserver(&mut shutdown).await {
        return;
    }
    let client = Arc::new(client);
    // The first read waits for the resend the ping begins, so that what the
    // homeserver delivers meanwhile is consumed, and remembered, before
    // the same events are read: a room with more than the remembered
    // window of them would otherwise have some decided twice.
    if !resends.over_or_after(&mut shutdown, Some(NO_PING_WAIT)).await {
        return;
    }
    let mut after = "the start";
    loop {
        tokio::select! {
            () = read_all(&shared, &client, after) => {}
            _ = shutdown.wait() => return,
        }
        if !resends.over(&mut shutdown).await {
            return;
        }
        after = "the homeserver's resend";
    }
}

/// Reads every planned room forward and queues what it finds; returns when
/// all are read (or given up).
///
/// First the processor empties the inbox (or [`DRAIN_WAIT`] passes): what
/// the homeserver delivered is then among the events remembered, and the
/// read does not queue it a second time (see [`unseen`]).
async fn read_all(shared: &Shared, client: &Arc<HsClient>, after: &str) {
    let waited = tokio::time::Instant::now();
    loop {
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.stats()).await {
            Ok(Ok(stats)) if stats.inbox_pending == 0 => break,
            Ok(Ok(_)) if waited.elapsed() < DRAIN_WAIT => tokio::time::sleep(Duration::from_millis(250)).await,
            Ok(Ok(stats)) => {
                tracing::info!(waiting = stats.inbox_pending, "reading forward with the inbox not yet empty");
                break;
            }
            Ok(Err(e)) => return tracing::error!(error = %e, "reading forward after {after}: the store failed"),
            Err(e) => return tracing::error!(error = %e, "reading forward after {after}: the task died"),
        }
    }
    let store = shared.store.clone();
    let reads = match tokio::task::spawn_blocking(move || plan(store.seen_rooms()?, |r| store.rooms(r))).await {
        Ok(Ok(reads)) => reads,
        Ok(Err(e)) => return tracing::error!(error = %e, "reading forward after {after}: the store failed"),
        Err(e) => return tracing::error!(error = %e, "reading forward after {after}: the task died"),
    };
    let rooms = reads.len();
    tracing::info!(rooms, "reading held and control rooms forward after {after}, from the last events kept");
    let found = futures_util::stream::iter(reads)
        .map(|read| read_one(shared, client, read))
        .buffer_unordered(ROOMS_AT_ONCE)
        .fold(0usize, |sum, n| async move { sum + n })
        .await;
    tracing::info!(rooms, events = found, "rooms read forward after {after}");
}

/// Reads one room and queues what it found; how many events that was.
async fn read_one(shared: &Shared, client: &HsClient, read: Read) -> usize {
    let Read { room, as_user, .. } = read;
    // Remembered now, not when the reads were planned: the rooms before
    // this one may have taken minutes.
    let store: Arc<dyn Store> = shared.store.clone();
    let at_start = room.clone();
    let seen = match tokio::task::spawn_blocking(move || store.seen_events(&at_start)).await {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => {
            tracing::error!(%room, error = %e, "reading forward: the store failed");
            return 0;
        }
        Err(e) => {
            tracing::error!(%room, error = %e, "reading forward: the task died");
            return 0;
        }
    };
    let Some(from) = seen.first().cloned() else { return 0 };
    let result =
        tokio::time::timeout(ROOM_TIMEOUT, client.read_forward(as_user.as_deref(), &room, &from, PAGES_PER_ROOM)).await;
    let follow_ups = match result {
        Ok(Ok(follow_ups)) => follow_ups,
        Ok(Err(e)) => {
            tracing::warn!(%room, error = %e, "could not read the room forward");
            return 0;
        }
        Err(_) => {
            tracing::warn!(%room, timeout = ?ROOM_TIMEOUT, "reading the room forward took too long; given up");
            return 0;
        }
    };
    let store: Arc<dyn Store> = shared.store.clone();
    let read_room = room.clone();
    let queue = move || {
        // Consumed during the read, too: the processor went on meanwhile.
        let now = store.seen_events(&read_room)?;
        if seen.last().is_some_and(|newest| !now.contains(newest)) {
            // A whole window consumed during the read: what came between
            // is in neither list. The room is busy, so it is read again at
            // the next resend rather than guessed at.
            return Ok(None);
        }
        let follow_ups = unseen(follow_ups, seen.iter().chain(&now));
        if !follow_ups.is_empty() {
            store.push_follow_ups(&follow_ups)?;
        }
        Ok::<_, StoreError>(Some(follow_ups.len()))
    };
    match tokio::task::spawn_blocking(queue).await {
        Ok(Ok(None)) => {
            tracing::warn!(%room, "the room moved on by more than the events remembered while it was read; not queued");
            0
        }
        Ok(Ok(Some(0))) => 0,
        Ok(Ok(Some(n))) => {
            tracing::debug!(%room, events = n, "room read forward");
            shared.wake.notify_one();
            n
        }
        Ok(Err(e)) => {
            tracing::error!(%room, error = %e, "could not queue what was read forward");
            0
        }
        Err(e) => {
            tracing::error!(%room, error = %e, "queueing what was read forward: the task died");
            0
        }
    }
}

/// What a read found, less the events remembered as consumed: the window
/// of [`SEEN_PER_ROOM`](crate::store::SEEN_PER_ROOM) moves on with every
/// event consumed, so an event the read starts after may have left it by
/// the time what the read queued is decided, and would be decided again.
pub fn unseen<'e>(found: Vec<FollowUp>, seen: impl Iterator<Item = &'e OwnedEventId>) -> Vec<FollowUp> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        event_id: Option<std::borrow::Cow<'a, str>>,
    }
    let mut seen: std::collections::HashSet<String> = seen.map(|e| e.as_str().to_owned()).collect();
    found
        .into_iter()
        .filter(|f| match serde_json::from_slice::<Id<'_>>(&f.raw) {
            // Once, also when the homeserver's pages repeat it.
            Ok(Id { event_id: Some(id) }) => seen.insert(id.into_owned()),
            // Without an ID the processor cannot tell it apart either.
            _ => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ruma::{owned_event_id, owned_room_id, owned_user_id};

    use super::*;
    use crate::engine::{HeldRoom, Unreadable};

    #[test]
    fn held_rooms_are_read_as_their_owner_control_rooms_as_the_bot_from_the_oldest_event_kept() {
        let alice = owned_user_id!("@alice:example.org");
        let held = RoomState::Held(HeldRoom::new(alice.clone(), owned_user_id!("@s:remote.org"), true, 1));
        let seen = vec![
            (owned_room_id!("!held:remote.org"), vec![owned_event_id!("$h1"), owned_event_id!("$h2")]),
            (owned_room_id!("!control:example.org"), vec![owned_event_id!("$c1")]),
            (owned_room_id!("!pending:example.org"), vec![owned_event_id!("$p1")]),
            (owned_room_id!("!released:remote.org"), vec![owned_event_id!("$r1")]),
            (owned_room_id!("!nothing:remote.org"), vec![]),
            (owned_room_id!("!unjoined:remote.org"), vec![owned_event_id!("$u1")]),
        ];
        let unjoined = match held.clone() {
            RoomState::Held(h) => RoomState::Held(HeldRoom { unreadable: Some(Unreadable::NoAnswer), ..h }),
            other => other,
        };
        let reads = plan(seen, |room| {
            Ok(match room.as_str() {
                "!held:remote.org" | "!nothing:remote.org" => vec![held.clone()],
                "!control:example.org" => vec![RoomState::Control { owner: alice.clone() }],
                "!pending:example.org" => vec![RoomState::PendingControl { inviter: alice.clone(), invited_at_ms: 1 }],
                "!unjoined:remote.org" => vec![unjoined.clone()],
                _ => vec![],
            })
        })
        .unwrap();
        assert_eq!(
            reads,
            [
                Read {
                    room: owned_room_id!("!held:remote.org"),
                    as_user: Some(alice.clone()),
                    from: owned_event_id!("$h1")
                },
                Read { room: owned_room_id!("!control:example.org"), as_user: None, from: owned_event_id!("$c1") },
            ]
        );
    }

    #[test]
    fn what_a_read_finds_that_was_consumed_before_or_since_is_not_queued_again() {
        let event = |id: &str| FollowUp {
            internal: false,
            raw: format!(r#"{{"type":"m.room.message","event_id":"{id}","room_id":"!r:x.org"}}"#).into_bytes(),
        };
        // `$d` twice: the homeserver's pages may repeat an event.
        let found = vec![
            event("$a"),
            event("$b"),
            event("$c"),
            event("$d"),
            event("$d"),
            FollowUp { internal: false, raw: b"{}".to_vec() },
        ];
        let (planned, since) = (vec![owned_event_id!("$a"), owned_event_id!("$b")], vec![owned_event_id!("$c")]);
        let kept = unseen(found, planned.iter().chain(&since));
        let kept: Vec<&[u8]> = kept.iter().map(|f| f.raw.as_slice()).collect();
        assert_eq!(kept, [event("$d").raw.as_slice(), b"{}"]);
    }
}
