//! Client mode's intake: the owner's sync, reduced to the events the engine
//! reads, in the same JSON an appservice transaction carries. Each
//! response's events and the position after them are stored in one durable
//! write, so a crash re-reads a response whole or not at all.

use std::time::Duration;

use matrix_sdk::config::{SyncSettings, SyncToken};
use matrix_sdk::deserialized_responses::{TimelineEvent, TimelineEventKind};
use matrix_sdk::store::{StateStoreDataKey, StateStoreDataValue};
use matrix_sdk::sync::SyncResponse;
use ruma::api::client::filter::{FilterDefinition, RoomEventFilter, RoomFilter};
use ruma::api::client::sync::sync_events::v3::Filter;
use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;
use ruma::{RoomId, UserId};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::pipeline::Shared;
use crate::pipeline::translate::Internal;
use crate::store::Store;

/// Undecryptable events waiting for their keys, by `utd/<room>\u{1f}<event>`.
const UTD_PREFIX: &str = "utd/";
/// Keys that have not come in a week will not come.
const UTD_PATIENCE_MS: u64 = 7 * 86_400_000;
const EVENT_TYPES: [&str; 4] = ["m.room.member", "m.room.message", "m.room.encrypted", "m.room.redaction"];

/// The timeline's types the engine reads: the above, and the ban rules of
/// policy lists the owner's account follows (their changes come as state
/// events in the list's timeline).
fn read_types() -> impl Iterator<Item = &'static str> {
    EVENT_TYPES.into_iter().chain(crate::engine::policy::RULE_TYPES.iter().map(|(t, _)| *t))
}

/// Long-poll time of one sync request.
const POLL: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn filter(timeline_limit: u32) -> Filter {
    let mut timeline = RoomEventFilter::default();
    timeline.limit = Some(timeline_limit.into());
    timeline.types = Some(read_types().map(str::to_owned).collect());
    let mut room = RoomFilter::default();
    room.timeline = timeline;
    let mut def = FilterDefinition::default();
    def.room = room;
    Filter::FilterDefinition(def)
}

/// Responses of a device's own catch-up at most: Synapse hands out 100
/// to-device messages per response.
const PRIME_ROUNDS: usize = 20;

/// The position matrix-sdk last processed a sync up to (its own, stored
/// apart from Gatekeeper's shared one).
async fn sdk_position(sdk: &matrix_sdk::Client) -> Result<Option<String>, matrix_sdk::StoreError> {
    let value = sdk.state_store().get_kv_data(StateStoreDataKey::SyncToken).await?;
    Ok(value.and_then(StateStoreDataValue::into_sync_token))
}

/// Whether matrix-sdk threw a response away unread: it drops one whose
/// `next_batch` is the position it last processed ("the same response
/// twice"), yet `sync_once` still hands back that `next_batch`. Asked from
/// an older position (or from none), such an answer carried events the
/// SDK read once already, under another position of Gatekeeper's: after a
/// crash between the SDK storing its position and Gatekeeper storing its
/// own, a takeover whose catch-up did not finish, or a login's sync.
/// Accepting it would skip them for good. Asked from that very position,
/// nothing happened: nothing was lost.
pub fn dropped_as_repeat(since: Option<&str>, sdk_before: Option<&str>, next_batch: &str) -> bool {
    sdk_before == Some(next_batch) && since != Some(next_batch)
}

/// The long-poll time of a sync asked again after a dropped answer
/// (`repeats` of them in a row), else `usual`. Synapse caches a sync's
/// answer for a while by its request (position, filter, timeout…): the same
/// request again would get the same answer, however far the position moved
/// meanwhile. A timeout of its own for each makes each a new request; it
/// costs no wait, as the homeserver answers at once when there is news, and
/// there is (the message the device sent itself).
fn again_after(repeats: u32, usual: Duration) -> Duration {
    if repeats == 0 { usual } else { Duration::from_millis(repeats.into()) }
}

/// Moves the homeserver's position on, with a message to this device
/// itself: the next sync then ends past the SDK's own position, and the SDK
/// processes it.
async fn move_on(sdk: &matrix_sdk::Client) -> Result<(), matrix_sdk::Error> {
    let (Some(user), Some(device)) = (sdk.user_id(), sdk.device_id()) else { return Ok(()) };
    let content = serde_json::value::to_raw_value(&json!({})).expect("JSON serializes");
    let to_self = [(DeviceIdOrAllDevices::DeviceId(device.to_owned()), ruma::serde::Raw::from_json(content))];
    let messages = [(user.to_owned(), to_self.into_iter().collect())].into_iter().collect();
    let request = send_event_to_device::v3::Request::new_raw(
        "org.gatekeeper.caught_up".into(),
        ruma::TransactionId::new(),
        messages,
    );
    sdk.send(request).await?;
    Ok(())
}

/// This device's own catch-up, before it syncs from the shared position
/// after another device (or none) was active. A sync from nothing tells
/// its SDK of every room: those joined while another device synced are
/// unknown to it otherwise until something happens in them. And it takes
/// the to-device messages queued for this device while it stood by (the
/// room keys of what the other device sent among them), which a sync from
/// the shared position would have the homeserver drop unseen: it deletes a
/// device's to-device messages up to the `since` it syncs from.
pub async fn prime(sdk: &matrix_sdk::Client) -> Result<(), matrix_sdk::Error> {
    let mut token: Option<String> = None;
    let mut repeats = 0;
    for _ in 0..PRIME_ROUNDS {
        let before = sdk_position(sdk).await?;
        let from = token.clone().map_or(SyncToken::NoToken, SyncToken::Specific);
        let settings = SyncSettings::new().token(from).timeout(again_after(repeats, Duration::ZERO)).filter(filter(1));
        let response = sdk.sync_once(settings).await?;
        // The login's sync (which reads no room) may have ended where this
        // one does: the rooms would stay unknown.
        if dropped_as_repeat(token.as_deref(), before.as_deref(), &response.next_batch) {
            move_on(sdk).await?;
            repeats += 1;
            continue;
        }
        if response.to_device.is_empty() {
            break;
        }
        token = Some(response.next_batch);
    }
    // Saves the first sync from the shared position a round: it would end
    // where this one did when nothing happened since, and be dropped (which
    // `run` recognises and mends the same way, so a failure here is not
    // fatal).
    move_on(sdk).await
}

/// Publishes a new device's keys (matrix-sdk sends them before any sync),
/// reading no room: another Gatekeeper active on the account then shares
/// the keys of what it sends with this one, which may take over from it.
pub async fn publish_keys(sdk: &matrix_sdk::Client) -> Result<(), matrix_sdk::Error> {
    let mut def = FilterDefinition::default();
    def.room.rooms = Some(Vec::new());
    let settings =
        SyncSettings::new().token(SyncToken::NoToken).timeout(Duration::ZERO).filter(Filter::FilterDefinition(def));
    sdk.sync_once(settings).await.map(drop)
}

/// Why the sync loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEnd {
    Shutdown,
    /// The access token is no longer valid: nothing more can be done.
    SessionEnded,
}

/// Syncs until shutdown. The first sync only sets the starting point:
/// what happened before Gatekeeper was set up is not answered.
pub async fn run(
    sdk: matrix_sdk::Client,
    owner: ruma::OwnedUserId,
    shared: Shared,
    synced: watch::Sender<bool>,
) -> SyncEnd {
    let Shared { store, clock, wake, mut shutdown, .. } = shared;
    let mut backoff = Duration::from_secs(1);
    // The first request of a run catches up without waiting for news, so
    // that readiness means "caught up", not "something happened".
    let mut catching_up = true;
    // Answers dropped by matrix-sdk in a row (see `dropped_as_repeat`).
    let mut repeats = 0;
    loop {
        if shutdown.is_set() {
            return SyncEnd::Shutdown;
        }
        let since = match store.sync_position() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading the sync position failed; will retry");
                shutdown.sleep(backoff).await;
                continue;
            }
        };
        let settings = match &since {
            Some(token) => SyncSettings::new()
                .token(token.clone())
                .timeout(again_after(repeats, if catching_up { Duration::ZERO } else { POLL }))
                .filter(filter(100)),
            // The starting point needs no history; from nothing, not from
            // the SDK's own last position (`prime`'s, or the login's).
            None => SyncSettings::new()
                .token(SyncToken::NoToken)
                .timeout(again_after(repeats, Duration::ZERO))
                .filter(filter(1)),
        };
        let sdk_before = match sdk_position(&sdk).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "reading matrix-sdk's sync position failed; will retry");
                shutdown.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let asked_from = since.clone();
        let response = tokio::select! {
            r = sdk.sync_once(settings) => r,
            _ = shutdown.wait() => return SyncEnd::Shutdown,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) if matches!(e.client_api_error_kind(), Some(ruma::api::error::ErrorKind::UnknownToken(_))) => {
                tracing::error!(
                    "the homeserver ended this device's session (was the device removed?); \
                     run `gatekeeper logout`, then `gatekeeper login` to start again"
                );
                return SyncEnd::SessionEnded;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "sync failed; will retry");
                shutdown.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        // From nothing, a dropped answer loses nothing: a first sync's
        // events are not decided anyway (and a device that can never send
        // to itself must still start).
        if asked_from.is_some() && dropped_as_repeat(asked_from.as_deref(), sdk_before.as_deref(), &response.next_batch)
        {
            // Nothing is stored: the same position is asked from again,
            // once the homeserver's has moved past the SDK's.
            tracing::warn!(
                since = asked_from.as_deref().unwrap_or("none"),
                next_batch = %response.next_batch,
                repeats,
                retry_in = ?backoff,
                "matrix-sdk had read this sync already and dropped it; moving the position on to read it again"
            );
            if let Err(e) = move_on(&sdk).await {
                tracing::warn!(error = %e, "moving the sync position on failed; will retry");
            }
            // Always after a pause: the homeserver may cap an answer at a
            // position (a hundred to-device messages waiting) that the
            // message to itself does not move, until another stream does;
            // asking at once again would only hammer it.
            shutdown.sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            repeats += 1;
            continue;
        }
        repeats = 0;
        backoff = Duration::from_secs(1);
        catching_up = false;
        let (events, undecryptable) = match since {
            Some(_) => inbox_events(&response, &owner),
            None => (Vec::new(), Vec::new()),
        };
        let first = since.is_none();
        let now = clock.now_ms();
        let (s, next, to_store) = (store.clone(), response.next_batch.clone(), events);
        let result = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = to_store.iter().map(Vec::as_slice).collect();
            s.accept_sync(since.as_deref(), &next, &refs).map(|stored| (stored, refs.len()))
        })
        .await;
        match result {
            Ok(Ok((true, count))) => {
                crate::metrics::METRICS.transactions.inc();
                if first {
                    tracing::info!("first sync: starting from now; what came before is not answered");
                }
                if count > 0 {
                    wake.notify_one();
                }
            }
            Ok(Ok((false, _))) => tracing::warn!("the sync position moved under us; reading again"),
            Ok(Err(e)) => {
                // Nothing was stored: the same response is asked for again.
                tracing::error!(error = %e, "storing synced events failed; will retry");
                shutdown.sleep(backoff).await;
                continue;
            }
            Err(e) => tracing::error!(error = %e, "sync storage task died"),
        }
        // The owner's apps changed their invite filter (or this is the
        // first sync, which carries it): read again what it says.
        if response.account_data.iter().any(|e| {
            e.get_field::<String>("type").ok().flatten().is_some_and(|t| {
                [crate::matrix::native::STABLE_FILTER, crate::matrix::native::MSC4155_FILTER].contains(&t.as_str())
            })
        }) {
            let refresh = crate::pipeline::translate::Internal::Refresh { owner: owner.clone() };
            // A follow-up, counted so: every input is an event received or
            // a follow-up.
            let queued = serde_json::to_vec(&refresh)
                .map(|raw| store.push_follow_ups(&[crate::store::FollowUp { internal: true, raw }]));
            match queued {
                Ok(Ok(())) => wake.notify_one(),
                Ok(Err(e)) => tracing::warn!(error = %e, "queueing a read of the invite filter failed"),
                Err(e) => tracing::warn!(error = %e, "queueing a read of the invite filter failed"),
            }
        }
        for (room, event) in &undecryptable {
            let key = utd_key(room, event);
            if let Err(e) = store.set_connector_value(&key, Some(now.to_string().as_bytes())) {
                tracing::warn!(error = %e, "remembering an undecryptable event failed");
            }
        }
        if !response.to_device.is_empty() {
            retry_decryption(&sdk, store.as_ref(), &wake, now).await;
        }
        synced.send_replace(true);
    }
}

fn utd_key(room: &RoomId, event: &ruma::EventId) -> String {
    format!("{UTD_PREFIX}{room}\u{1f}{event}")
}

/// Events that could not be decrypted before are tried again now that keys
/// came in; the ones that open go back through the engine.
async fn retry_decryption(sdk: &matrix_sdk::Client, store: &dyn Store, wake: &Notify, now_ms: u64) {
    let pending = match store.connector_values(UTD_PREFIX) {
        Ok(p) => p,
        Err(e) => return tracing::warn!(error = %e, "reading undecryptable events failed"),
    };
    for (key, since) in pending {
        let Some((room, event)) = key[UTD_PREFIX.len()..].split_once('\u{1f}') else { continue };
        let since: u64 = String::from_utf8_lossy(&since).parse().unwrap_or(0);
        let (Ok(room_id), Ok(event_id)) = (<&RoomId>::try_from(room), <&ruma::EventId>::try_from(event)) else {
            let _ = store.set_connector_value(&key, None);
            continue;
        };
        let Some(room) = sdk.get_room(room_id) else { continue };
        match room.event(event_id, None).await {
            Ok(TimelineEvent { kind: TimelineEventKind::Decrypted(d), .. }) => {
                let Ok(mut value) = serde_json::from_str::<Value>(d.event.json().get()) else { continue };
                value["room_id"] = json!(room_id.as_str());
                let item = Internal::Decrypted { event: value };
                let raw = serde_json::to_vec(&item).expect("look-up results serialize");
                if store.push_internal(&raw).is_ok() {
                    tracing::info!(%room_id, %event_id, "a late key opened an encrypted message");
                    let _ = store.set_connector_value(&key, None);
                    wake.notify_one();
                }
            }
            _ if now_ms.saturating_sub(since) > UTD_PATIENCE_MS => {
                let _ = store.set_connector_value(&key, None);
            }
            _ => {}
        }
    }
}

/// The events of one sync response the engine may read, as appservice-style
/// JSON (with `room_id`), plus the undecryptable ones to try again later.
pub fn inbox_events(
    response: &SyncResponse,
    owner: &UserId,
) -> (Vec<Vec<u8>>, Vec<(ruma::OwnedRoomId, ruma::OwnedEventId)>) {
    let mut out = Vec::new();
    let mut undecryptable = Vec::new();
    for (room_id, invited) in &response.rooms.invited {
        let stripped: Vec<Value> =
            invited.invite_state.events.iter().filter_map(|e| serde_json::from_str(e.json().get()).ok()).collect();
        if let Some(event) = invite_event(room_id, &stripped, owner) {
            out.push(serde_json::to_vec(&event).expect("JSON re-serializes"));
        }
    }
    let timelines = response
        .rooms
        .joined
        .iter()
        .map(|(room, update)| (room, &update.timeline))
        .chain(response.rooms.left.iter().map(|(room, update)| (room, &update.timeline)));
    for (room_id, timeline) in timelines {
        if timeline.limited {
            tracing::debug!(%room_id, "sync timeline was limited; older events of this gap are not read");
        }
        for event in &timeline.events {
            if let TimelineEventKind::UnableToDecrypt { utd_info, .. } = &event.kind {
                tracing::info!(%room_id, reason = ?utd_info.reason, "an encrypted message could not be decrypted yet");
                if let Some(id) = event.event_id() {
                    undecryptable.push((room_id.clone(), id));
                }
            }
            if let Some(event) = with_room_id(event.kind.raw().json().get(), room_id) {
                out.push(event);
            }
        }
    }
    (out, undecryptable)
}

/// A timeline event (decrypted where the SDK could) with `room_id` set, as
/// the engine's translator expects; `None` for types it never reads.
pub fn with_room_id(json: &str, room_id: &RoomId) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_str(json).ok()?;
    let kind = value["type"].as_str()?;
    if !read_types().any(|t| t == kind) {
        return None;
    }
    value["room_id"] = json!(room_id.as_str());
    serde_json::to_vec(&value).ok()
}

/// The owner's invite, rebuilt from the stripped state a sync gives for it:
/// the member event itself, with the rest of the stripped state under
/// `unsigned.invite_room_state` as an appservice sees it.
///
/// Who invited is read from the genuine invite event only. The homeserver
/// puts the inviting server's `invite_room_state` first (unverified: a
/// remote server writes whatever it likes there, member events for the
/// owner "sent" by anyone included) and the invite event itself last, with
/// its event ID. So the inviter is the *last* stripped member event for the
/// owner with membership `invite`, and where the sync gives that event's ID
/// it is used. Otherwise a stable ID is derived, so the same invite read
/// twice is recognised as one.
pub fn invite_event(room_id: &RoomId, stripped: &[Value], owner: &UserId) -> Option<Value> {
    let member = stripped.iter().rev().find(|e| {
        e["type"] == "m.room.member"
            && e["state_key"] == owner.as_str()
            && e["content"]["membership"] == "invite"
            && e["sender"].is_string()
    })?;
    let event_id = match member["event_id"].as_str() {
        Some(id) if id.starts_with('$') => id.to_owned(),
        _ => {
            let mut h = Sha256::new();
            h.update(room_id.as_bytes());
            h.update([0]);
            h.update(member["sender"].as_str().unwrap_or_default().as_bytes());
            h.update([0]);
            h.update(member["origin_server_ts"].to_string().as_bytes());
            let hex: String = h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("$gk-invite-{hex}")
        }
    };
    Some(json!({
        "type": "m.room.member",
        "event_id": event_id,
        "room_id": room_id.as_str(),
        "sender": member["sender"],
        "state_key": owner.as_str(),
        "origin_server_ts": member["origin_server_ts"].as_u64().unwrap_or(0),
        "content": member["content"],
        "unsigned": {"invite_room_state": stripped},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::{room_id, user_id};

    #[test]
    fn an_answer_ending_where_the_sdk_already_was_from_an_older_position_was_dropped() {
        // The SDK read up to s9, Gatekeeper stored only s5: the answer from
        // s5 ends at s9, and its events were thrown away.
        assert!(dropped_as_repeat(Some("s5"), Some("s9"), "s9"));
        // The login's sync ended at s9; a sync from nothing ends there too.
        assert!(dropped_as_repeat(None, Some("s9"), "s9"));
        // Nothing happened since the position asked from: nothing lost.
        assert!(!dropped_as_repeat(Some("s9"), Some("s9"), "s9"));
        // The answer ends past the SDK's position: the SDK processed it.
        assert!(!dropped_as_repeat(Some("s5"), Some("s9"), "s10"));
        assert!(!dropped_as_repeat(None, None, "s1"));
        assert!(!dropped_as_repeat(Some("s5"), None, "s9"));
    }

    #[test]
    fn each_sync_asked_again_is_a_new_request() {
        assert_eq!(again_after(0, POLL), POLL);
        assert_eq!(again_after(0, Duration::ZERO), Duration::ZERO);
        let timeouts: Vec<Duration> = (1..5).map(|n| again_after(n, Duration::ZERO)).collect();
        assert!(timeouts.iter().all(|t| *t != Duration::ZERO && *t < Duration::from_secs(1)), "{timeouts:?}");
        let distinct: std::collections::BTreeSet<_> = timeouts.iter().collect();
        assert_eq!(distinct.len(), timeouts.len());
    }

    fn stripped() -> Vec<Value> {
        vec![
            json!({"type": "m.room.name", "state_key": "", "sender": "@s:x.org", "content": {"name": "Hi"}}),
            json!({"type": "m.room.member", "state_key": "@s:x.org", "sender": "@s:x.org",
                   "content": {"membership": "join", "displayname": "Stranger"}}),
            json!({"type": "m.room.member", "state_key": "@o:x.org", "sender": "@s:x.org",
                   "content": {"membership": "invite", "is_direct": true}}),
        ]
    }

    #[test]
    fn an_invite_from_stripped_state_reads_like_the_appservice_event() {
        let room = room_id!("!r:x.org");
        let event = invite_event(room, &stripped(), user_id!("@o:x.org")).unwrap();
        let raw = serde_json::to_vec(&event).unwrap();
        let input = crate::pipeline::translate::translate(&raw, false).unwrap().unwrap();
        let crate::engine::Input::Member { meta, target, is_direct, room_name, sender_name, .. } = input else {
            panic!("not a member input: {input:?}")
        };
        assert_eq!(
            (meta.sender.as_str(), target.as_str(), meta.room_id.as_str()),
            ("@s:x.org", "@o:x.org", "!r:x.org")
        );
        assert!(is_direct);
        assert_eq!(room_name.as_deref(), Some("Hi"));
        assert_eq!(sender_name.as_deref(), Some("Stranger"));
        // Read twice, the same invite has the same ID; another room's differs.
        let again = invite_event(room, &stripped(), user_id!("@o:x.org")).unwrap();
        assert_eq!(event["event_id"], again["event_id"]);
        let other = invite_event(room_id!("!q:x.org"), &stripped(), user_id!("@o:x.org")).unwrap();
        assert_ne!(event["event_id"], other["event_id"]);
    }

    /// An invite as Synapse's `/sync` gives it, read through matrix-sdk's
    /// types: the inviting server's `invite_room_state` first (here forged:
    /// it names the owner's friend as the inviter), the genuine invite event
    /// last.
    fn synced_invite(room: &RoomId, forged: Vec<Value>, genuine: Value) -> Vec<Value> {
        let mut events = forged;
        events.push(genuine);
        let invited: ruma::api::client::sync::sync_events::v3::InvitedRoom =
            serde_json::from_value(json!({"invite_state": {"events": events}})).unwrap();
        let mut response = SyncResponse::default();
        response.rooms.invited.insert(room.to_owned(), invited);
        let (events, undecryptable) = inbox_events(&response, user_id!("@o:x.org"));
        assert!(undecryptable.is_empty());
        events.iter().map(|raw| serde_json::from_slice(raw).unwrap()).collect()
    }

    #[test]
    fn the_inviter_is_the_genuine_invite_event_not_the_forged_stripped_state() {
        let room = room_id!("!r:evil.org");
        let forged = vec![
            json!({"type": "m.room.name", "state_key": "", "sender": "@friend:x.org", "content": {"name": "Hi"}}),
            json!({"type": "m.room.member", "state_key": "@o:x.org", "sender": "@friend:x.org",
                   "content": {"membership": "invite", "is_direct": true}}),
            json!({"type": "m.room.member", "state_key": "@friend:x.org", "sender": "@friend:x.org",
                   "content": {"membership": "join", "displayname": "Friend"}}),
        ];
        let genuine = json!({"type": "m.room.member", "state_key": "@o:x.org", "sender": "@s:evil.org",
                             "event_id": "$genuine", "origin_server_ts": 7,
                             "content": {"membership": "invite", "is_direct": true},
                             "unsigned": {"age": 3}});
        let events = synced_invite(room, forged, genuine);
        assert_eq!(events.len(), 1, "{events:?}");
        let raw = serde_json::to_vec(&events[0]).unwrap();
        let input = crate::pipeline::translate::translate(&raw, false).unwrap().unwrap();
        let crate::engine::Input::Member { meta, target, .. } = input else { panic!("not a member input: {input:?}") };
        assert_eq!((meta.sender.as_str(), target.as_str()), ("@s:evil.org", "@o:x.org"));
        assert_eq!((meta.event_id.as_str(), meta.ts_ms), ("$genuine", 7));
    }

    #[test]
    fn a_forged_invite_alone_is_still_read_by_its_last_member_event() {
        // Without a genuine event after it (no homeserver sends that), the
        // last member event for the owner is the one read, never the first.
        let room = room_id!("!r:x.org");
        let mut state = stripped();
        state.push(json!({"type": "m.room.member", "state_key": "@o:x.org", "sender": "@later:x.org",
                          "content": {"membership": "invite"}}));
        let event = invite_event(room, &state, user_id!("@o:x.org")).unwrap();
        assert_eq!(event["sender"], "@later:x.org");
    }

    #[test]
    fn no_invite_for_someone_else_or_without_one() {
        let room = room_id!("!r:x.org");
        assert!(invite_event(room, &stripped(), user_id!("@other:x.org")).is_none());
        assert!(invite_event(room, &stripped()[..2], user_id!("@o:x.org")).is_none());
    }

    #[test]
    fn timeline_events_get_their_room_and_others_are_skipped() {
        let room = room_id!("!r:x.org");
        let msg = r#"{"type":"m.room.message","event_id":"$1","sender":"@s:x.org","origin_server_ts":5,
                      "content":{"msgtype":"m.text","body":"hello"}}"#;
        let raw = with_room_id(msg, room).unwrap();
        let input = crate::pipeline::translate::translate(&raw, false).unwrap().unwrap();
        assert_eq!(input.room_id().unwrap().as_str(), "!r:x.org");
        // The room ID a sender wrote into an event is not trusted.
        let forged = msg.replace(r#""type""#, r#""room_id":"!elsewhere:x.org","type""#);
        let raw = with_room_id(&forged, room).unwrap();
        assert_eq!(
            crate::pipeline::translate::translate(&raw, false).unwrap().unwrap().room_id().unwrap().as_str(),
            "!r:x.org"
        );
        assert!(with_room_id(r#"{"type":"m.reaction","content":{}}"#, room).is_none());
        assert!(with_room_id("not json", room).is_none());
    }
}
