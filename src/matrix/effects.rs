//! Engine effects -> client-server API calls, as the appservice: the bot
//! itself, or an owner by identity assertion. Look-ups return what they
//! found as follow-ups for the engine.

use http::Method;
use ruma::api::client::{membership, message};
use ruma::events::Mentions;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::{OwnedUserId, RoomId, UserId};
use serde_json::{Value, json};

use super::client::{ClientError, HsClient, percent_encode as enc};
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

/// Owners hold many rooms; looking at more than this many at opt-in would
/// make the opt-in slow for little gain (m.direct covers the usual case).
const MAX_ROOMS_SCANNED: usize = 300;

fn rule_body(rule: &PushRule) -> Value {
    let conditions: Vec<Value> =
        rule.conditions.iter().map(|m| json!({"kind": "event_match", "key": m.key, "pattern": m.pattern})).collect();
    let actions = match rule.actions {
        RuleActions::Silent => json!([]),
        RuleActions::Quiet => json!(["notify"]),
        RuleActions::Ring => json!(["notify", {"set_tweak": "sound", "value": "default"}]),
    };
    json!({"conditions": conditions, "actions": actions})
}

impl HsClient {
    async fn put_push_rule(&self, owner: &UserId, rule: &PushRule) -> Result<(), ClientError> {
        let path = format!("/_matrix/client/v3/pushrules/global/override/{}", enc(&rule.rule_id));
        let body = rule_body(rule);
        if let Some(before) = &rule.before {
            let with_before = format!("{path}?before={}", enc(before));
            match self.send_json(Method::PUT, &with_before, Some(owner), Some(&body)).await {
                // The anchor rule is gone (the owner removed it): still add ours.
                Err(e) if gone(&e) => {}
                other => return other.map(drop),
            }
        }
        self.send_json(Method::PUT, &path, Some(owner), Some(&body)).await.map(drop)
    }

    async fn import_contacts(&self, owner: &UserId) -> Result<Vec<OwnedUserId>, ClientError> {
        let mut users: Vec<OwnedUserId> = Vec::new();
        let direct_path = format!("/_matrix/client/v3/user/{}/account_data/m.direct", enc(owner.as_str()));
        match self.send_json(Method::GET, &direct_path, Some(owner), None).await {
            Ok(Value::Object(map)) => users.extend(map.keys().filter_map(|k| OwnedUserId::try_from(k.as_str()).ok())),
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e),
        }
        // Two-person rooms are DMs too, whatever m.direct says.
        let joined = self.send_json(Method::GET, "/_matrix/client/v3/joined_rooms", Some(owner), None).await?;
        let rooms = joined["joined_rooms"].as_array().cloned().unwrap_or_default();
        for room in rooms.iter().filter_map(Value::as_str).take(MAX_ROOMS_SCANNED) {
            let path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room));
            let Ok(members) = self.send_json(Method::GET, &path, Some(owner), None).await else { continue };
            if let Some(map) = members["joined"].as_object()
                && map.len() == 2
            {
                users.extend(map.keys().filter_map(|k| OwnedUserId::try_from(k.as_str()).ok()).filter(|u| u != owner));
            }
        }
        users.sort();
        users.dedup();
        Ok(users)
    }

    async fn backfill(&self, owner: &UserId, room: &RoomId) -> Result<Vec<FollowUp>, ClientError> {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100", enc(room.as_str()));
        let page = self.send_json(Method::GET, &path, Some(owner), None).await?;
        let mut follow_ups: Vec<FollowUp> = page["chunk"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .rev()
            .filter(|e| matches!(e["type"].as_str(), Some("m.room.message" | "m.room.encrypted" | "m.room.redaction")))
            .map(|mut e| {
                // /messages omits room_id; the engine needs it.
                e["room_id"] = json!(room.as_str());
                FollowUp { internal: false, raw: serde_json::to_vec(&e).expect("JSON re-serializes") }
            })
            .collect();
        follow_ups.push(self.room_info(owner, room).await?);
        Ok(follow_ups)
    }

    /// The held room's name and size, for the owner's list.
    pub async fn room_info(&self, owner: &UserId, room: &RoomId) -> Result<FollowUp, ClientError> {
        let members_path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room.as_str()));
        let members = self.send_json(Method::GET, &members_path, Some(owner), None).await?;
        let count = members["joined"].as_object().map_or(0, |m| m.len()) as u32;
        let name_path = format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(room.as_str()));
        let name = match self.send_json(Method::GET, &name_path, Some(owner), None).await {
            Ok(v) => v["name"].as_str().map(str::to_owned).filter(|n| !n.is_empty()),
            Err(e) if gone(&e) => None,
            Err(e) => return Err(e),
        };
        Ok(internal(&Internal::RoomInfo { owner: owner.to_owned(), room_id: room.to_owned(), name, members: count }))
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
            Effect::SendNotice { as_user, room_id, txn_id, body, html } => {
                let mut content = RoomMessageEventContent::notice_html(body.clone(), html.clone());
                // Gatekeeper's messages never ping anyone.
                content.mentions = Some(Mentions::new());
                let req =
                    message::send_message_event::v3::Request::new(room_id.clone(), txn_id.as_str().into(), &content)
                        .map_err(|e| PerformError::Permanent(e.to_string()))?;
                self.send(req, Some(as_user)).await.map_err(classify)?;
                done
            }
            Effect::PutPushRule { owner, rule } => {
                self.put_push_rule(owner, rule).await.map_err(classify)?;
                done
            }
            Effect::EnablePushRule { owner, rule_id, enabled } => {
                let path = format!("/_matrix/client/v3/pushrules/global/override/{}/enabled", enc(rule_id));
                match self.send_json(Method::PUT, &path, Some(owner), Some(&json!({"enabled": enabled}))).await {
                    Ok(_) => done,
                    // The rule is gone (an opt-out came first): nothing to switch.
                    Err(e) if gone(&e) => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::DeletePushRule { owner, rule_id } => {
                let path = format!("/_matrix/client/v3/pushrules/global/override/{}", enc(rule_id));
                match self.send_json(Method::DELETE, &path, Some(owner), None).await {
                    Ok(_) => done,
                    Err(e) if gone(&e) => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::SetTag { owner, room_id, tag, present } => {
                let path = format!(
                    "/_matrix/client/v3/user/{}/rooms/{}/tags/{}",
                    enc(owner.as_str()),
                    enc(room_id.as_str()),
                    enc(tag)
                );
                let result = if *present {
                    self.send_json(Method::PUT, &path, Some(owner), Some(&json!({}))).await
                } else {
                    self.send_json(Method::DELETE, &path, Some(owner), None).await
                };
                match result {
                    Ok(_) => done,
                    Err(e) if gone(&e) && !present => done,
                    Err(e) => Err(classify(e)),
                }
            }
            Effect::FetchProfile { user } => {
                let path = format!("/_matrix/client/v3/profile/{}/displayname", enc(user.as_str()));
                let displayname = match self.send_json(Method::GET, &path, None, None).await {
                    Ok(v) => v["displayname"].as_str().map(str::to_owned),
                    Err(e) if gone(&e) => None,
                    Err(e) => return Err(classify(e)),
                };
                Ok(vec![internal(&Internal::Profile { user: user.clone(), displayname })])
            }
            Effect::ImportContacts { owner } => {
                let users = self.import_contacts(owner).await.map_err(classify)?;
                tracing::info!(%owner, contacts = users.len(), "existing direct chats imported as allowed");
                Ok(vec![internal(&Internal::Contacts { owner: owner.clone(), users })])
            }
            Effect::Backfill { owner, room_id } => self.backfill(owner, room_id).await.map_err(classify),
            // E-mail runs on its own lane (crate::email); never here.
            Effect::SendEmail { .. } => {
                Err(PerformError::Permanent("e-mail is not sent by the Matrix connector".into()))
            }
        }
    }
}
