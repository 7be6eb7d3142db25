//! Whether a message another Gatekeeper device may have sent is already out.
//!
//! Active and standby Gatekeepers share one store but each signs in as a
//! device of its own, and the homeserver scopes a transaction ID to the
//! device that sent it: when one takes over from another that was killed
//! between sending and recording the send, the same transaction ID from the
//! new device is a new message. So every message carries its effect's
//! transaction ID in its content ([`MARKER_KEY`]), and an effect inherited
//! from another device is first looked for among the owner's own events in
//! the room. Everything here is pure: the performer reads and writes.

use std::time::Duration;

use ruma::{DeviceId, OwnedDeviceId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The content key that names the effect a message carries out. Unstable
/// namespace: it means nothing to other clients.
pub const MARKER_KEY: &str = "org.gatekeeper.effect";

/// Where the store keeps which device sends, among the connector's values.
pub const SENDS_KEY: &str = "client.sends";

/// How long a message is held while an event of the owner's that the
/// device cannot read yet might be it: the room key is usually on its way
/// (to-device, with the next sync). Past this, a second reply is the lesser
/// evil than none (see `ARCHITECTURE.md`).
pub const UNREADABLE_WAIT: Duration = Duration::from_secs(5 * 60);

/// Which device carries out sends on this store, and the outbox items it
/// inherited: those up to `inherited_up_to` may have been sent by another
/// device before it (the others were decided while it held the lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum Sends {
    #[serde(rename = "1")]
    V1 { device: OwnedDeviceId, inherited_up_to: u64 },
}

/// The record a device writes as it starts sending, from the one it finds
/// (`None`: none, or unreadable) and the outbox's high water now. The same
/// device keeps what it inherited before (it may have died before getting
/// through it); another device inherits everything queued so far, which
/// covers all the earlier one inherited.
pub fn take_over(found: Option<Sends>, own: &DeviceId, high_water: u64) -> Sends {
    let inherited_up_to = match found {
        Some(Sends::V1 { device, inherited_up_to }) if device == own => inherited_up_to,
        _ => high_water,
    };
    Sends::V1 { device: own.to_owned(), inherited_up_to }
}

/// Whether sends were another device's before (or nobody's record says):
/// this device then catches up on its own first (`sync::prime`).
pub fn after_another(found: Option<&Sends>, own: &DeviceId) -> bool {
    !matches!(found, Some(Sends::V1 { device, .. }) if device == own)
}

/// What the owner's recent events in a room say of one effect's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The owner's account sent it already.
    Sent,
    /// Not among them, but some the device cannot decrypt (sent by another
    /// device) might be it.
    Unreadable,
    /// Not among them.
    NotSent,
}

/// Looks for `marker` among `events` (as read back, decrypted where the
/// device could). Only the owner's own account counts: anyone else in the
/// room can write the marker into their own messages, and must not be able
/// to stop a reply that way. Undecryptable events of the owner's count
/// only if another device sent them (its own it can always read).
pub fn look<'a>(events: impl IntoIterator<Item = &'a Value>, owner: &UserId, own: &DeviceId, marker: &str) -> Look {
    let mut unreadable = false;
    for event in events {
        if event["sender"].as_str() != Some(owner.as_str()) {
            continue;
        }
        match event["type"].as_str() {
            Some("m.room.message") if event["content"][MARKER_KEY].as_str() == Some(marker) => return Look::Sent,
            Some("m.room.encrypted") => unreadable |= event["content"]["device_id"].as_str() != Some(own.as_str()),
            _ => {}
        }
    }
    if unreadable { Look::Unreadable } else { Look::NotSent }
}

/// What to do with an inherited message, from what was found, how long
/// the device has waited for keys since it took over, and how long it may
/// ([`hold_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Record it as done without sending.
    Done,
    Send,
    /// Try again later: the event that may be it could become readable.
    Hold,
}

/// The wait is counted from the takeover, not per message: a lane goes in
/// order, so a wait per message would add up to one [`UNREADABLE_WAIT`]
/// for each inherited message queued in a room. The keys the device waits
/// for are those sent before it took over; they come within one wait or
/// not at all.
pub fn verdict(found: Look, waited: Duration, limit: Duration) -> Verdict {
    match found {
        Look::Sent => Verdict::Done,
        Look::NotSent => Verdict::Send,
        Look::Unreadable if waited >= limit => Verdict::Send,
        Look::Unreadable => Verdict::Hold,
    }
}

/// How long an inherited message is held at most, when the executor sets
/// an effect aside after retrying it for `retry_for`: within half of it, so
/// that a held message is sent while it is still retried (a held one set
/// aside would never be sent at all), whatever the configuration says.
pub fn hold_limit(retry_for: Duration) -> Duration {
    UNREADABLE_WAIT.min(retry_for / 2)
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, user_id};
    use serde_json::json;

    use super::*;

    const MARKER: &str = "gk.reply.0123456789abcdef0123456789abcdef";

    fn notice(sender: &str, marker: &str) -> Value {
        json!({"type": "m.room.message", "sender": sender,
            "content": {"msgtype": "m.notice", "body": "auto", MARKER_KEY: marker}})
    }

    fn encrypted(sender: &str, device: &str) -> Value {
        json!({"type": "m.room.encrypted", "sender": sender, "content": {"device_id": device, "ciphertext": "x"}})
    }

    #[test]
    fn only_the_owners_own_message_with_the_same_marker_counts_as_sent() {
        let (owner, own) = (user_id!("@o:x.org"), device_id!("GKB"));
        let mine = notice("@o:x.org", MARKER);
        assert_eq!(look([&mine], owner, own, MARKER), Look::Sent);
        // A stranger writes the marker into their own message: not ours.
        let forged = notice("@stranger:evil.org", MARKER);
        assert_eq!(look([&forged], owner, own, MARKER), Look::NotSent);
        // Another effect's message, and a marker of the wrong kind.
        let other = notice("@o:x.org", "gk.reply.ffff");
        let not_a_string = json!({"type": "m.room.message", "sender": "@o:x.org",
            "content": {"msgtype": "m.notice", "body": "x", MARKER_KEY: [MARKER]}});
        assert_eq!(look([&other, &not_a_string], owner, own, MARKER), Look::NotSent);
        // Found among others, whatever comes around it.
        assert_eq!(look([&forged, &other, &mine], owner, own, MARKER), Look::Sent);
        // A state event carrying the marker is no message.
        let state = json!({"type": "m.room.topic", "sender": "@o:x.org", "state_key": "",
            "content": {"topic": "t", MARKER_KEY: MARKER}});
        assert_eq!(look([&state], owner, own, MARKER), Look::NotSent);
        assert_eq!(look([], owner, own, MARKER), Look::NotSent);
    }

    #[test]
    fn an_undecryptable_event_of_the_owners_from_another_device_might_be_it() {
        let (owner, own) = (user_id!("@o:x.org"), device_id!("GKB"));
        let from_a = encrypted("@o:x.org", "GKA");
        assert_eq!(look([&from_a], owner, own, MARKER), Look::Unreadable);
        // Found after all: the marker wins.
        assert_eq!(look([&from_a, &notice("@o:x.org", MARKER)], owner, own, MARKER), Look::Sent);
        // The stranger's undecryptable events say nothing of ours, nor do
        // the device's own.
        let strangers = encrypted("@stranger:evil.org", "GKA");
        let own_one = encrypted("@o:x.org", "GKB");
        assert_eq!(look([&strangers, &own_one], owner, own, MARKER), Look::NotSent);
        // No device named: it could be any, another Gatekeeper's too.
        let unnamed = json!({"type": "m.room.encrypted", "sender": "@o:x.org", "content": {"ciphertext": "x"}});
        assert_eq!(look([&unnamed], owner, own, MARKER), Look::Unreadable);
    }

    #[test]
    fn an_unreadable_maybe_is_held_for_a_while_after_the_takeover_then_sent() {
        let limit = UNREADABLE_WAIT;
        let second = Duration::from_secs(1);
        assert_eq!(verdict(Look::Sent, Duration::ZERO, limit), Verdict::Done);
        assert_eq!(verdict(Look::Sent, limit * 2, limit), Verdict::Done);
        assert_eq!(verdict(Look::NotSent, Duration::ZERO, limit), Verdict::Send);
        assert_eq!(verdict(Look::Unreadable, Duration::ZERO, limit), Verdict::Hold);
        assert_eq!(verdict(Look::Unreadable, limit - second, limit), Verdict::Hold);
        assert_eq!(verdict(Look::Unreadable, limit, limit), Verdict::Send);
        // The wait is the takeover's, shared by every message after it: a
        // message reached once the wait is over goes out at once, not after
        // a wait of its own (K queued notices do not wait K times).
        assert_eq!(verdict(Look::Unreadable, limit + second, limit), Verdict::Send);
    }

    #[test]
    fn a_held_message_is_sent_before_the_executor_would_set_it_aside() {
        // The default retry bound (a day) leaves the wait as it is.
        assert_eq!(hold_limit(Duration::from_secs(86_400)), UNREADABLE_WAIT);
        assert_eq!(hold_limit(UNREADABLE_WAIT * 2), UNREADABLE_WAIT);
        // A bound below the wait: held for half of it, so the executor's
        // last tries (at its deadline) find the verdict turned to send.
        let short = Duration::from_secs(30);
        assert_eq!(hold_limit(short), Duration::from_secs(15));
        assert_eq!(verdict(Look::Unreadable, short, hold_limit(short)), Verdict::Send);
        assert_eq!(hold_limit(UNREADABLE_WAIT), UNREADABLE_WAIT / 2);
    }

    #[test]
    fn a_new_device_inherits_everything_queued_and_a_restart_keeps_what_it_inherited() {
        let (a, b) = (device_id!("GKA"), device_id!("GKB"));
        // The first start ever (or after an upgrade): all that is queued.
        assert_eq!(take_over(None, a, 7), Sends::V1 { device: a.to_owned(), inherited_up_to: 7 });
        // B takes over from A: all that is queued, A's inheritance included.
        let by_a = Sends::V1 { device: a.to_owned(), inherited_up_to: 7 };
        assert_eq!(take_over(Some(by_a), b, 40), Sends::V1 { device: b.to_owned(), inherited_up_to: 40 });
        // B restarts: only what it inherited, not what it queued itself.
        let by_b = Sends::V1 { device: b.to_owned(), inherited_up_to: 40 };
        assert!(after_another(None, a));
        assert!(after_another(Some(&by_b), a));
        assert!(!after_another(Some(&by_b), b));
        assert_eq!(take_over(Some(by_b.clone()), b, 90), by_b);
        // The record round-trips in its versioned form.
        let bytes = serde_json::to_vec(&by_b).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            json!({"v": "1", "device": "GKB", "inherited_up_to": 40})
        );
        assert_eq!(serde_json::from_slice::<Sends>(&bytes).unwrap(), by_b);
    }
}
