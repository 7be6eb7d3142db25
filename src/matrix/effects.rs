//! Engine effects -> client-server API calls, as the appservice: the bot
//! itself, or an owner by identity assertion. Look-ups return what they
//! found as follow-ups for the engine.

use ruma::api::client::config::get_global_account_data;
use ruma::api::client::context::get_context;
use ruma::api::client::membership::{get_member_events, joined_members, joined_rooms};
use ruma::api::client::message::get_message_events;
use ruma::api::client::profile::get_display_name;
use ruma::api::client::push::{RuleKind, delete_pushrule, get_pushrules_all, set_pushrule, set_pushrule_enabled};
use ruma::api::client::state::get_state_event_for_key;
use ruma::api::client::tag::{create_tag, delete_tag};
use ruma::api::client::{membership, message};
use ruma::events::room::message::RoomMessageEventContent;
use ruma::events::tag::TagInfo;
use ruma::events::{GlobalAccountDataEventType, Mentions, StateEventType};
use ruma::push::{
    Action, EventMatchConditionData, NewConditionalPushRule, NewPushRule, PushCondition, SoundTweakValue, Tweak,
};
use ruma::{EventId, OwnedRoomId, OwnedUserId, RoomId, UserId, uint};
use serde_json::{Value, json};

use super::client::{ClientError, HsClient};
use crate::engine::{Effect, PushRule, RuleActions};
use crate::pipeline::executor::{PerformError, Performer};
use crate::pipeline::translate::Internal;
use crate::store::FollowUp;

pub fn classify(e: ClientError) -> PerformError {
    if e.is_transient() { PerformError::Transient(e.to_string()) } else { PerformError::Permanent(e.to_string()) }
}

fn gone(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 404, .. })
}

fn internal(result: &Internal) -> FollowUp {
    FollowUp { internal: true, raw: serde_json::to_vec(result).expect("look-up results serialize") }
}

/// How many of the owner's rooms one look-up of shared rooms reads (one
/// request each): a stranger's card is worth a few requests, not a scan of
/// an account in thousands of rooms.
const MAX_ROOMS_SHARED: usize = 100;

/// Owners hold many rooms; looking at more than this many at opt-in would
/// make the opt-in slow for little gain (m.direct's rooms are read first).
const MAX_ROOMS_SCANNED: usize = 300;

/// What the owner sent that may make a two-person room theirs: creating it,
/// or writing in it (see `is_owner_speaking`).
const OWNER_SPOKE_TYPES: [&str; 4] = ["m.room.create", "m.room.message", "m.room.encrypted", "m.sticker"];

/// How many of the owner's newest events in a room are looked at: enough
/// to see past Gatekeeper's own notices in their name.
const OWNER_EVENTS_READ: u32 = 20;

/// Whether an event the owner sent (one of `OWNER_SPOKE_TYPES`) is the
/// owner speaking: not a notice (Gatekeeper's reply is one, sent in the
/// owner's name), and not encrypted by Gatekeeper's own device.
fn is_owner_speaking(event: &Value, own_device: Option<&ruma::DeviceId>) -> bool {
    match event["type"].as_str() {
        Some("m.room.create") | Some("m.sticker") => true,
        Some("m.room.message") => event["content"]["msgtype"].as_str() != Some("m.notice"),
        // Read loosely: `device_id` is deprecated in megolm events but still
        // sent; the owner's own devices are the only ones that could forge it.
        Some("m.room.encrypted") => {
            own_device.is_none_or(|own| event["content"]["device_id"].as_str() != Some(own.as_str()))
        }
        _ => false,
    }
}

/// Whether a join rule's content lets someone join without any member
/// letting them in: `public`, and `restricted`/`knock_restricted`, whose
/// condition is a membership elsewhere (a public space is enough). Any
/// other or malformed rule makes joining need an invitation, as the
/// authorization rules read it.
fn is_public(content: &str) -> bool {
    serde_json::from_str::<Value>(content)
        .is_ok_and(|c| matches!(c["join_rule"].as_str(), Some("public" | "restricted" | "knock_restricted")))
}

/// An owner's two-person rooms, sorted at opt-in.
#[derive(Debug, Default)]
struct Imported {
    /// The other member of rooms the owner created or wrote in.
    users: Vec<OwnedUserId>,
    /// Rooms the owner never answered in, with the other member.
    strangers: Vec<(OwnedRoomId, OwnedUserId)>,
}

/// The timeline events the engine reads from a backfill.
const BACKFILL_TYPES: [&str; 3] = ["m.room.message", "m.room.encrypted", "m.room.redaction"];

/// Events per page of a read forward.
pub const FORWARD_PAGE: u32 = 100;

/// A page of timeline events (in the order given) as inputs: only the
/// kinds the engine reads, not those already redacted (nothing is left of
/// them to keep), with the `room_id` that `/messages` leaves out. The
/// events stay raw JSON (ruma's `Raw`): deserializing them into ruma's
/// types and back could drop what the engine reads.
fn timeline_follow_ups<'a>(
    chunk: impl Iterator<Item = &'a ruma::serde::Raw<ruma::events::AnyTimelineEvent>>,
    room: &RoomId,
) -> Vec<FollowUp> {
    chunk
        .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
        .filter(|e| e["type"].as_str().is_some_and(|t| BACKFILL_TYPES.contains(&t)))
        .filter(|e| e["unsigned"]["redacted_because"].is_null())
        .map(|mut e| {
            e["room_id"] = json!(room.as_str());
            FollowUp { internal: false, raw: serde_json::to_vec(&e).expect("JSON re-serializes") }
        })
        .collect()
}

/// Always an `override` rule: a `room` rule would not silence a mention,
/// and the invite rules must come before the server's own override rules
/// (both seen with Synapse, NOTES.md).
fn new_push_rule(rule: &PushRule) -> NewPushRule {
    let conditions = rule
        .conditions
        .iter()
        .map(|m| PushCondition::EventMatch(EventMatchConditionData::new(m.key.clone(), m.pattern.clone())))
        .collect();
    let actions = match rule.actions {
        RuleActions::Silent => vec![],
        RuleActions::Quiet => vec![Action::Notify],
        RuleActions::Ring => vec![Action::Notify, Action::SetTweak(Tweak::Sound(SoundTweakValue::Default))],
    };
    NewPushRule::Override(NewConditionalPushRule::new(rule.rule_id.clone(), conditions, actions))
}

/// The rule as ruma's request; `before` only when asked, so that the
/// same rule can be put again without its anchor.
fn set_push_rule_request(rule: &PushRule, with_before: bool) -> set_pushrule::v3::Request {
    let mut request = set_pushrule::v3::Request::new(new_push_rule(rule));
    if with_before {
        request.before = rule.before.clone();
    }
    request
}

/// The room IDs of m.direct's lists, skipping any that are not.
fn direct_room_ids(value: &Value) -> impl Iterator<Item = OwnedRoomId> + '_ {
    value
        .as_object()
        .into_iter()
        .flat_map(|map| map.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|r| OwnedRoomId::try_from(r.as_str()?).ok())
}

impl HsClient {
    async fn put_push_rule(&self, owner: &UserId, rule: &PushRule) -> Result<(), ClientError> {
        if rule.before.is_some() {
            match self.send(set_push_rule_request(rule, true), Some(owner)).await {
                // The anchor rule is gone (the owner removed it): still add ours.
                Err(e) if gone(&e) => {}
                other => return other.map(drop),
            }
        }
        self.send(set_push_rule_request(rule, false), Some(owner)).await.map(drop)
    }

    /// The owner's two-person rooms, read at opt-in: the other member is a
    /// contact where the owner created the room or wrote in it, and a
    /// stranger whose room is held again where they never did (joining a
    /// stranger's DM is not consent: after `stop` the owner is still in
    /// every room Gatekeeper held). Rooms m.direct names come first, so the
    /// usual DMs are read even past the scan's bound.
    async fn import_contacts(&self, owner: &UserId) -> Result<Imported, ClientError> {
        let mut direct_rooms: Vec<OwnedRoomId> = Vec::new();
        let direct = get_global_account_data::v3::Request::new(owner.to_owned(), GlobalAccountDataEventType::Direct);
        match self.send(direct, Some(owner)).await {
            // Read loosely (a JSON object's values), not as ruma's
            // DirectEventContent: one malformed entry must not lose the rest.
            Ok(response) => {
                if let Ok(content) = serde_json::from_str::<Value>(response.account_data.json().get()) {
                    direct_rooms.extend(direct_room_ids(&content));
                }
            }
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e),
        }
        let joined = self.send(joined_rooms::v3::Request::new(), Some(owner)).await?.joined_rooms;
        let joined_set: std::collections::BTreeSet<&OwnedRoomId> = joined.iter().collect();
        let mut order: Vec<OwnedRoomId> = direct_rooms.into_iter().filter(|r| joined_set.contains(r)).collect();
        order.extend(joined.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        order.retain(|r| seen.insert(r.clone()));

        let mut imported = Imported::default();
        for room in order.into_iter().take(MAX_ROOMS_SCANNED) {
            let Ok(members) = self.send(joined_members::v3::Request::new(room.clone()), Some(owner)).await else {
                continue;
            };
            if members.joined.len() != 2 || !members.joined.contains_key(owner) {
                continue;
            }
            let Some(other) = members.joined.into_keys().find(|u| u != owner) else { continue };
            match self.owner_spoke(owner, &room).await {
                Ok(true) => imported.users.push(other),
                Ok(false) => imported.strangers.push((room, other)),
                // Unreadable history: neither trusted nor held.
                Err(e) if !e.is_transient() => {}
                Err(e) => return Err(e),
            }
        }
        imported.users.sort();
        imported.users.dedup();
        Ok(imported)
    }

    /// Whether `owner` created `room` or wrote in it, from their newest
    /// such events, found by the homeserver's own filter.
    async fn owner_spoke(&self, owner: &UserId, room: &RoomId) -> Result<bool, ClientError> {
        let mut request = get_message_events::v3::Request::backward(room.to_owned());
        request.limit = OWNER_EVENTS_READ.into();
        request.filter.senders = Some(vec![owner.to_owned()]);
        request.filter.types = Some(OWNER_SPOKE_TYPES.iter().map(|t| (*t).to_owned()).collect());
        let page = self.send(request, Some(owner)).await?;
        Ok(page
            .chunk
            .iter()
            .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
            .any(|e| e["sender"].as_str() == Some(owner.as_str()) && is_owner_speaking(&e, self.own_device())))
    }

    async fn backfill(&self, owner: &UserId, room: &RoomId) -> Result<Vec<FollowUp>, ClientError> {
        let mut request = get_message_events::v3::Request::backward(room.to_owned());
        request.limit = uint!(100);
        let page = self.send(request, Some(owner)).await?;
        let mut follow_ups = timeline_follow_ups(page.chunk.iter().rev(), room);
        follow_ups.push(self.room_info(owner, room).await?);
        Ok(follow_ups)
    }

    /// Whether `owner` and `with` are the room's only members (joined or
    /// invited), just before a reply meant for a two-person room is sent;
    /// if not, the follow-up that says so instead of the reply. The
    /// member list is the homeserver's, whatever the invite claimed.
    pub async fn not_two_people(
        &self,
        owner: &UserId,
        room: &RoomId,
        with: &UserId,
    ) -> Result<Option<FollowUp>, ClientError> {
        let members = self.send(get_member_events::v3::Request::new(room.to_owned()), Some(owner)).await?;
        // Read loosely: a member event that does not parse is still someone.
        let present: std::collections::BTreeSet<String> = members
            .chunk
            .iter()
            .filter_map(|raw| serde_json::from_str::<Value>(raw.json().get()).ok())
            .filter(|e| matches!(e["content"]["membership"].as_str(), Some("join" | "invite")))
            .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
            .collect();
        let expected: std::collections::BTreeSet<String> = [owner.as_str().to_owned(), with.as_str().to_owned()].into();
        if present == expected {
            return Ok(None);
        }
        let room_id = room.to_owned();
        Ok(Some(internal(&Internal::NotTwoPeople { owner: owner.to_owned(), room_id, members: present.len() as u32 })))
    }

    /// Reads `room` forward, as `as_user` (the bot when `None`), from just
    /// after `from`, an event Gatekeeper has: at most `pages` pages of
    /// [`FORWARD_PAGE`] events, oldest first, as inputs like the homeserver's
    /// own. Whatever the homeserver never delivered is among them; what it
    /// did deliver is skipped when decided (the processor's seen events).
    pub async fn read_forward(
        &self,
        as_user: Option<&UserId>,
        room: &RoomId,
        from: &EventId,
        pages: usize,
    ) -> Result<Vec<FollowUp>, ClientError> {
        let mut context = get_context::v3::Request::new(room.to_owned(), from.to_owned());
        context.limit = uint!(0);
        let Some(mut token) = self.send(context, as_user).await?.end else { return Ok(Vec::new()) };
        let mut follow_ups = Vec::new();
        for _ in 0..pages {
            let mut request = get_message_events::v3::Request::forward(room.to_owned()).from(token.clone());
            request.limit = FORWARD_PAGE.into();
            let page = self.send(request, as_user).await?;
            follow_ups.extend(timeline_follow_ups(page.chunk.iter(), room));
            match page.end {
                // The end of the room is a page without an `end` (or an empty one).
                Some(end) if !page.chunk.is_empty() && end != token => token = end,
                _ => break,
            }
        }
        Ok(follow_ups)
    }

    /// The held room's name and size, for the owner's list.
    pub async fn room_info(&self, owner: &UserId, room: &RoomId) -> Result<FollowUp, ClientError> {
        let members = self.send(joined_members::v3::Request::new(room.to_owned()), Some(owner)).await?;
        let count = members.joined.len() as u32;
        let name = self.room_name(owner, room).await?;
        Ok(internal(&Internal::RoomInfo { owner: owner.to_owned(), room_id: room.to_owned(), name, members: count }))
    }

    /// A room's name as `owner` reads it; `None` when it has none.
    async fn room_name(&self, owner: &UserId, room: &RoomId) -> Result<Option<String>, ClientError> {
        let request =
            get_state_event_for_key::v3::Request::new(room.to_owned(), StateEventType::RoomName, String::new());
        match self.send(request, Some(owner)).await {
            // Read loosely: a name that is not a string is no name, not an
            // error to retry.
            Ok(response) => Ok(serde_json::from_str::<Value>(response.event_or_content.get())
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_owned))
                .filter(|n| !n.is_empty())),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The rooms `user` was let into and is joined to with `owner`, read as
    /// the owner: the owner's rooms (Gatekeeper's held rooms and `except`
    /// apart: those carry Gatekeeper's silence rule), then the user's
    /// membership in each, up to [`MAX_ROOMS_SHARED`] rooms, then the join
    /// rule of those the user is in (see [`Self::let_in`]). (MSC2666's
    /// `/mutual_rooms` would be one request, but its `user_id` parameter
    /// collides with the appservice's identity assertion: Synapse refuses
    /// the request.)
    async fn shared_rooms(&self, owner: &UserId, user: &UserId, except: &RoomId) -> Result<FollowUp, ClientError> {
        let joined = self.send(joined_rooms::v3::Request::new(), Some(owner)).await?.joined_rooms;
        let rules = self.send(get_pushrules_all::v3::Request::new(), Some(owner)).await?.global;
        let held: std::collections::BTreeSet<&str> = rules
            .override_
            .iter()
            .map(|r| r.rule_id.as_str())
            .filter(|id| id.starts_with(crate::engine::rules::HELD_PREFIX))
            .collect();
        let candidates: Vec<&OwnedRoomId> = joined
            .iter()
            .filter(|r| r.as_str() != except.as_str())
            .filter(|r| !held.contains(crate::engine::rules::held_room_id(r.as_str()).as_str()))
            .collect();
        let complete = candidates.len() <= MAX_ROOMS_SHARED;
        let mut found = Vec::new();
        for room in candidates.into_iter().take(MAX_ROOMS_SHARED) {
            let request =
                get_state_event_for_key::v3::Request::new(room.clone(), StateEventType::RoomMember, user.to_string());
            match self.send(request, Some(owner)).await {
                Ok(response) => {
                    let joined = serde_json::from_str::<Value>(response.event_or_content.get())
                        .is_ok_and(|v| v["membership"].as_str() == Some("join"));
                    if joined {
                        found.push(room);
                    }
                }
                // Never a member, or a room the owner cannot read: not shared.
                Err(ClientError::Http { status: 403 | 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Only for the rooms the user is in: at most as many reads again.
        let mut let_in = Vec::with_capacity(found.len());
        for room in found {
            if self.let_in(owner, room).await? {
                let_in.push(room);
            }
        }
        let found = let_in;
        let mut names = Vec::new();
        for room in found.iter().take(crate::engine::texts::SHARED_NAMES) {
            names.push(match self.room_name(owner, room).await {
                Ok(name) => name,
                // A room the owner cannot read the name of is unnamed here.
                Err(ClientError::Http { status: 403, .. }) => None,
                Err(e) => return Err(e),
            });
        }
        Ok(internal(&Internal::SharedRooms {
            owner: owner.to_owned(),
            room_id: except.to_owned(),
            names,
            count: found.len() as u32,
            complete,
        }))
    }

    /// Whether whoever is joined to `room` was let in by its members, read
    /// as `owner`: not when anyone may join it (join rule `public`, or
    /// `restricted` to members of a room that may itself be public), as a
    /// room a stranger joined on their own (a public room of the owner's,
    /// a ban list they follow) says nothing of them, and the card's shared
    /// rooms are a sign of trust a stranger must not be able to make. A
    /// knock is let in by an invitation: counted.
    async fn let_in(&self, owner: &UserId, room: &RoomId) -> Result<bool, ClientError> {
        let request =
            get_state_event_for_key::v3::Request::new(room.to_owned(), StateEventType::RoomJoinRules, String::new());
        match self.send(request, Some(owner)).await {
            Ok(response) => Ok(!is_public(response.event_or_content.get())),
            // No join rule at all: the spec's authorization rules let
            // someone join uninvited only where the rule is `public` (or a
            // `restricted` condition is met), so none does here; Synapse's
            // `event_auth` reads a missing rule as `invite`.
            Err(e) if gone(&e) => Ok(true),
            // A rule the owner cannot read: nothing to trust.
            Err(ClientError::Http { status: 403, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The user's display name, as the bot (profiles are public).
    async fn display_name(&self, user: &UserId) -> Result<Option<String>, ClientError> {
        // The deprecated endpoint, not `get_profile_field`: that one fails on
        // `{"displayname": null}`, which would make an unset name an error
        // retried forever (matrix-sdk keeps `get_avatar_url` for the same
        // reason). The path and the answer are the same.
        #[allow(deprecated)]
        let request = get_display_name::v3::Request::new(user.to_owned());
        match self.send(request, None).await {
            Ok(response) => Ok(response.displayname),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Performer for HsClient {
    async fn perform(&self, effect: &Effect) -> Result<Vec<FollowUp>, PerformError> {
        let done = Ok(Vec::new());
        match effect {
            Effect::Join { as_user, room_id } => {
                let req = membership::join_room_by_id::v3::Request::new(room_id.clone());
                self.send(req, Some(as_user)).await.map_err(classify)?;
                done
            }
            Effect::Leave { as_user, room_id, reason } => {
                let mut req = membership::leave_room::v3::Request::new(room_id.clone());
                req.reason = reason.clone();
                match self.send(req, Some(as_user)).await {
                    Ok(_) => done,
                    // Already out of the room (a repeat after a crash, or the
                    // invite was withdrawn): the goal is reached.
                    Err(ClientError::Http { status: 403 | 404, .. }) => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::SendNotice { as_user, room_id, txn_id, body, html, only_with, urgent, .. } => {
                if let Some(with) = only_with
                    && let Some(not_sent) = self.not_two_people(as_user, room_id, with).await.map_err(classify)?
                {
                    return Ok(vec![not_sent]);
                }
                let mut content = RoomMessageEventContent::notice_html(body.clone(), html.clone());
                // Gatekeeper's messages never ping anyone.
                content.mentions = Some(Mentions::new());
                let req = if *urgent {
                    // Marked, so that the owner's urgent push rule rings for it.
                    let mut value =
                        serde_json::to_value(&content).map_err(|e| PerformError::Permanent(e.to_string()))?;
                    value[crate::engine::rules::URGENT_KEY] = json!(crate::engine::rules::URGENT_VALUE);
                    let raw =
                        serde_json::value::to_raw_value(&value).map_err(|e| PerformError::Permanent(e.to_string()))?;
                    message::send_message_event::v3::Request::new_raw(
                        room_id.clone(),
                        txn_id.as_str().into(),
                        "m.room.message".into(),
                        ruma::serde::Raw::from_json(raw),
                    )
                } else {
                    message::send_message_event::v3::Request::new(room_id.clone(), txn_id.as_str().into(), &content)
                        .map_err(|e| PerformError::Permanent(e.to_string()))?
                };
                self.send(req, Some(as_user)).await.map_err(classify)?;
                done
            }
            Effect::PutPushRule { owner, rule } => {
                self.put_push_rule(owner, rule).await.map_err(classify)?;
                done
            }
            Effect::EnablePushRule { owner, rule_id, enabled } => {
                let req = set_pushrule_enabled::v3::Request::new(RuleKind::Override, rule_id.clone(), *enabled);
                match self.send(req, Some(owner)).await {
                    Ok(_) => done,
                    // The rule is gone (an opt-out came first): nothing to switch.
                    Err(e) if gone(&e) => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::DeletePushRule { owner, rule_id, .. } => {
                let req = delete_pushrule::v3::Request::new(RuleKind::Override, rule_id.clone());
                match self.send(req, Some(owner)).await {
                    Ok(_) => done,
                    Err(e) if gone(&e) => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::SetTag { owner, room_id, tag, present } => {
                let result = if *present {
                    let req = create_tag::v3::Request::new(owner.clone(), room_id.clone(), tag.clone(), TagInfo::new());
                    self.send(req, Some(owner)).await.map(drop)
                } else {
                    let req = delete_tag::v3::Request::new(owner.clone(), room_id.clone(), tag.clone());
                    self.send(req, Some(owner)).await.map(drop)
                };
                match result {
                    Ok(_) => done,
                    Err(e) if gone(&e) && !present => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::FetchProfile { user } => {
                let displayname = self.display_name(user).await.map_err(classify)?;
                Ok(vec![internal(&Internal::Profile { user: user.clone(), displayname })])
            }
            Effect::ImportContacts { owner } => {
                let Imported { users, strangers } = self.import_contacts(owner).await.map_err(classify)?;
                tracing::info!(
                    %owner,
                    contacts = users.len(),
                    strangers = strangers.len(),
                    "existing direct chats read: contacts allowed, strangers' rooms held"
                );
                Ok(vec![internal(&Internal::Contacts { owner: owner.clone(), users, strangers })])
            }
            Effect::Backfill { owner, room_id } => self.backfill(owner, room_id).await.map_err(classify),
            Effect::LookUpShared { owner, user, room_id } => {
                Ok(vec![self.shared_rooms(owner, user, room_id).await.map_err(classify)?])
            }
            Effect::Native(native) => self.perform_native(native).await,
            Effect::FollowList { as_user, owner, target } => {
                self.follow_list(as_user, owner.as_ref(), target, target).await
            }
            Effect::CreateList { as_user, owner } => self.create_list(as_user, owner).await,
            Effect::PutPolicyRule { as_user, room_id, kind, entity, reason, present } => {
                self.put_policy_rule(as_user, room_id, *kind, entity, reason.as_deref(), *present).await
            }
            // Nothing outside: the engine looks at the owner's pending
            // strangers in a decision of its own.
            Effect::CheckPending { owner } => Ok(vec![internal(&Internal::CheckPending { owner: owner.clone() })]),
            // E-mail runs on its own lane (crate::email); never here.
            Effect::SendEmail { .. } => {
                Err(PerformError::Permanent("e-mail is not sent by the Matrix connector".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use ruma::api::auth_scheme::SendAccessToken;
    use ruma::api::{AppserviceUserIdentity, OutgoingRequestAppserviceExt, SupportedVersions};
    use ruma::{room_id, user_id};

    use super::*;
    use crate::engine::Match;

    const BASE: &str = "https://hs.example";

    /// What `HsClient::send` puts on the wire for `request` as `as_user`.
    fn wire<R>(request: R, as_user: Option<&UserId>) -> (http::Method, String, Option<Value>)
    where
        R: OutgoingRequestAppserviceExt,
        for<'a> R::Authentication: ruma::api::auth_scheme::AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> R::PathBuilder: ruma::api::path_builder::PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
    {
        let versions = SupportedVersions::from_parts(&["v1.11".to_owned()], &Default::default());
        let identity = as_user.map(AppserviceUserIdentity::new).unwrap_or_default();
        let http: http::Request<Vec<u8>> = request
            .try_into_http_request_with_identity(BASE, SendAccessToken::Always("t"), identity, Cow::Owned(versions))
            .unwrap();
        assert_eq!(http.headers()[http::header::AUTHORIZATION], "Bearer t");
        let body = (!http.body().is_empty()).then(|| serde_json::from_slice(http.body()).unwrap());
        (http.method().clone(), http.uri().to_string(), body)
    }

    fn rule(actions: RuleActions, before: Option<&str>) -> PushRule {
        PushRule {
            rule_id: "gk.allow.0123abcd".into(),
            conditions: vec![Match::new("type", "m.room.member"), Match::new("sender", "@*:spam.example")],
            actions,
            before: before.map(str::to_owned),
        }
    }

    /// The body Gatekeeper sent before ruma's request types, written out.
    fn body_sent_before(actions: Value) -> Value {
        json!({
            "conditions": [
                {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
                {"kind": "event_match", "key": "sender", "pattern": "@*:spam.example"},
            ],
            "actions": actions,
        })
    }

    #[test]
    fn a_push_rule_is_put_with_the_same_body_as_before_for_every_kind_of_action() {
        let owner = user_id!("@o:x.org");
        let path = "https://hs.example/_matrix/client/v3/pushrules/global/override/gk.allow.0123abcd";
        for (actions, expected) in [
            (RuleActions::Silent, json!([])),
            (RuleActions::Quiet, json!(["notify"])),
            (RuleActions::Ring, json!(["notify", {"set_tweak": "sound", "value": "default"}])),
        ] {
            let with_anchor = rule(actions, Some("gk.hold.invites"));
            let (method, uri, body) = wire(set_push_rule_request(&with_anchor, true), Some(owner));
            assert_eq!(method, http::Method::PUT);
            assert_eq!(uri, format!("{path}?before=gk.hold.invites&user_id=%40o%3Ax.org"));
            assert_eq!(body, Some(body_sent_before(expected.clone())), "{actions:?} with before");

            // The fallback when the anchor is gone, and a rule without one.
            for request in
                [set_push_rule_request(&with_anchor, false), set_push_rule_request(&rule(actions, None), true)]
            {
                let (method, uri, body) = wire(request, Some(owner));
                assert_eq!(method, http::Method::PUT);
                assert_eq!(uri, format!("{path}?user_id=%40o%3Ax.org"));
                assert_eq!(body, Some(body_sent_before(expected.clone())), "{actions:?} without before");
            }
        }
    }

    /// What a page read back becomes: only the kinds the engine reads, in
    /// the order given, redacted ones left out, each with its room.
    #[test]
    fn a_page_of_timeline_events_becomes_inputs_with_their_room() {
        let raw = |v: Value| ruma::serde::Raw::from_json(serde_json::value::to_raw_value(&v).unwrap());
        let chunk = [
            raw(json!({"type": "m.room.message", "event_id": "$1", "content": {"body": "a"}})),
            raw(json!({"type": "m.room.member", "event_id": "$2", "state_key": "@x:y.org", "content": {}})),
            raw(json!({"type": "m.room.message", "event_id": "$3", "content": {},
                "unsigned": {"redacted_because": {"type": "m.room.redaction"}}})),
            raw(json!({"type": "m.room.redaction", "event_id": "$4", "redacts": "$3", "content": {}})),
            raw(json!({"type": "m.room.encrypted", "event_id": "$5", "content": {}})),
        ];
        let room = room_id!("!r:x.org");
        let inputs: Vec<Value> = timeline_follow_ups(chunk.iter(), room)
            .into_iter()
            .map(|f| {
                assert!(!f.internal, "read from the homeserver, never a look-up result");
                serde_json::from_slice(&f.raw).unwrap()
            })
            .collect();
        let ids: Vec<&str> = inputs.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["$1", "$4", "$5"]);
        assert!(inputs.iter().all(|e| e["room_id"] == "!r:x.org"));
    }

    #[test]
    fn typed_requests_reach_the_endpoints_the_hand_built_paths_did() {
        let o = user_id!("@o:x.org");
        let room = room_id!("!r:x.org");
        let v3 = "https://hs.example/_matrix/client/v3";
        let as_o = "user_id=%40o%3Ax.org";
        let tag = |present| {
            let req = if present {
                wire(
                    create_tag::v3::Request::new(o.into(), room.into(), "m.lowpriority".into(), TagInfo::new()),
                    Some(o),
                )
            } else {
                wire(delete_tag::v3::Request::new(o.into(), room.into(), "m.lowpriority".into()), Some(o))
            };
            (req.0, req.1, req.2)
        };
        let mut messages = get_message_events::v3::Request::backward(room.into());
        messages.limit = uint!(100);
        let mut forward = get_message_events::v3::Request::forward(room.into()).from("t1-2".to_owned());
        forward.limit = FORWARD_PAGE.into();
        let mut context = get_context::v3::Request::new(room.into(), ruma::owned_event_id!("$e"));
        context.limit = uint!(0);
        #[allow(deprecated)]
        let profile = get_display_name::v3::Request::new(o.into());
        let cases = [
            (
                wire(set_pushrule_enabled::v3::Request::new(RuleKind::Override, "gk.control".into(), false), Some(o)),
                (http::Method::PUT, format!("{v3}/pushrules/global/override/gk.control/enabled?{as_o}")),
                Some(json!({"enabled": false})),
            ),
            (
                wire(delete_pushrule::v3::Request::new(RuleKind::Override, "gk.control".into()), Some(o)),
                (http::Method::DELETE, format!("{v3}/pushrules/global/override/gk.control?{as_o}")),
                // ruma gives every request but a GET a JSON body; the hand-built
                // DELETEs had none. The homeserver reads neither.
                Some(json!({})),
            ),
            (
                tag(true),
                (http::Method::PUT, format!("{v3}/user/@o:x.org/rooms/!r:x.org/tags/m.lowpriority?{as_o}")),
                Some(json!({})),
            ),
            (
                tag(false),
                (http::Method::DELETE, format!("{v3}/user/@o:x.org/rooms/!r:x.org/tags/m.lowpriority?{as_o}")),
                Some(json!({})),
            ),
            (wire(profile, None), (http::Method::GET, format!("{v3}/profile/@o:x.org/displayname")), None),
            (
                wire(get_global_account_data::v3::Request::new(o.into(), GlobalAccountDataEventType::Direct), Some(o)),
                (http::Method::GET, format!("{v3}/user/@o:x.org/account_data/m.direct?{as_o}")),
                None,
            ),
            (
                wire(joined_rooms::v3::Request::new(), Some(o)),
                (http::Method::GET, format!("{v3}/joined_rooms?{as_o}")),
                None,
            ),
            (
                wire(joined_members::v3::Request::new(room.into()), Some(o)),
                (http::Method::GET, format!("{v3}/rooms/!r:x.org/joined_members?{as_o}")),
                None,
            ),
            (
                wire(
                    get_state_event_for_key::v3::Request::new(room.into(), StateEventType::RoomName, String::new()),
                    Some(o),
                ),
                (http::Method::GET, format!("{v3}/rooms/!r:x.org/state/m.room.name/?{as_o}")),
                None,
            ),
            (
                wire(messages, Some(o)),
                (http::Method::GET, format!("{v3}/rooms/!r:x.org/messages?dir=b&limit=100&{as_o}")),
                None,
            ),
            (
                wire(forward, Some(o)),
                (http::Method::GET, format!("{v3}/rooms/!r:x.org/messages?from=t1-2&dir=f&limit=100&{as_o}")),
                None,
            ),
            (wire(context, None), (http::Method::GET, format!("{v3}/rooms/!r:x.org/context/$e?limit=0")), None),
        ];
        for ((method, uri, body), (expected_method, expected_uri), expected_body) in cases {
            assert_eq!((&method, &uri), (&expected_method, &expected_uri));
            assert_eq!(body, expected_body, "{method} {uri}");
        }
    }

    /// A public rule lets anyone join, and a restricted one anyone in a
    /// room it names (a public space will do), as the authorization rules
    /// read them; a knock needs an invitation.
    #[test]
    fn only_a_public_or_restricted_join_rule_lets_anyone_in() {
        for rule in ["public", "restricted", "knock_restricted"] {
            assert!(is_public(&format!(r#"{{"join_rule": "{rule}", "allow": []}}"#)), "{rule}");
        }
        for rule in [
            r#"{"join_rule": "invite"}"#,
            r#"{"join_rule": "knock"}"#,
            r#"{"join_rule": "Public"}"#,
            r#"{"join_rule": ["public"]}"#,
            r#"{}"#,
            "not JSON",
        ] {
            assert!(!is_public(rule), "{rule}");
        }
    }

    /// Gatekeeper's reply in the owner's name (a notice, or in client mode
    /// encrypted by its own device) is not the owner answering a stranger;
    /// anything else the owner sent there is.
    #[test]
    fn only_what_the_owner_wrote_themselves_makes_a_room_theirs() {
        let own: ruma::OwnedDeviceId = "GATEKEEPER".into();
        let notice = json!({"type": "m.room.message", "content": {"msgtype": "m.notice", "body": "auto"}});
        let text = json!({"type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"}});
        let ours = json!({"type": "m.room.encrypted", "content": {"device_id": "GATEKEEPER"}});
        let theirs = json!({"type": "m.room.encrypted", "content": {"device_id": "PHONE"}});
        let created = json!({"type": "m.room.create", "content": {}});
        assert!(!is_owner_speaking(&notice, None));
        assert!(is_owner_speaking(&text, None));
        assert!(is_owner_speaking(&created, Some(&own)));
        assert!(!is_owner_speaking(&ours, Some(&own)));
        assert!(is_owner_speaking(&theirs, Some(&own)));
        // The appservice never encrypts: whatever is encrypted is the owner's.
        assert!(is_owner_speaking(&ours, None));
        assert!(!is_owner_speaking(&json!({"type": "m.room.member"}), None));
    }
}
