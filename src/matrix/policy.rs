//! Following a ban list (a moderation policy room): joined as the bot (in
//! client mode the owner's own account, whose token this client carries),
//! its rules read from the room's state, and what was found handed back to
//! the engine. Later changes arrive as the room's state events, through
//! transactions or the sync.

use ruma::api::client::membership::join_room_by_id_or_alias;
use ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use ruma::api::client::state::{get_state_events, send_state_event};
use ruma::events::StateEventType;
use ruma::serde::Raw;
use ruma::{OwnedRoomOrAliasId, RoomId, UserId};
use serde_json::{Value, json};

use super::client::{ClientError, HsClient};
use super::effects::classify;
use crate::engine::policy::{MAX_RULES_PER_LIST, RuleKind};
use crate::pipeline::executor::PerformError;
use crate::pipeline::translate::{Internal, RuleRead};
use crate::store::FollowUp;

/// Reads at most this many rule events of one list's state (the engine
/// keeps at most [`MAX_RULES_PER_LIST`]; a few more let it count the rest).
const READ_AT_MOST: usize = MAX_RULES_PER_LIST + 1_000;

/// The rule state events of a list's state, read loosely: whatever does
/// not read as a rule's fields is left for the engine to refuse.
pub fn rules_of(state: &[Value]) -> Vec<RuleRead> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    state
        .iter()
        .filter(|e| e["type"].as_str().is_some_and(|t| RuleKind::of(t).is_some()))
        .filter_map(|e| {
            Some(RuleRead {
                event_type: e["type"].as_str()?.to_owned(),
                state_key: e["state_key"].as_str()?.to_owned(),
                entity: text(&e["content"]["entity"]),
                recommendation: text(&e["content"]["recommendation"]),
                reason: text(&e["content"]["reason"]),
            })
        })
        .take(READ_AT_MOST)
        .collect()
}

impl HsClient {
    /// Joins `target` as `as_user`, reads its rules, and answers with
    /// `Internal::ListRead` (as `asked`: what the owner typed, or
    /// `policy::REREAD`); a refusal for good (no such alias, not allowed to
    /// join) is answered too, so the owner hears why.
    pub async fn follow_list(
        &self,
        as_user: &UserId,
        owner: Option<&ruma::OwnedUserId>,
        target: &str,
        asked: &str,
    ) -> Result<Vec<FollowUp>, PerformError> {
        let answer = |room_id, rules, error| {
            let result = Internal::ListRead { owner: owner.cloned(), asked: asked.to_owned(), room_id, rules, error };
            Ok(vec![FollowUp { internal: true, raw: serde_json::to_vec(&result).expect("look-up results serialize") }])
        };
        let refused = |e: ClientError| match classify(e) {
            PerformError::Permanent(why) => answer(None, Vec::new(), Some(why)),
            transient => Err(transient),
        };
        let Ok(room) = OwnedRoomOrAliasId::try_from(target) else {
            return answer(None, Vec::new(), Some("not a room alias or ID".to_owned()));
        };
        let joined = match self.send(join_room_by_id_or_alias::v3::Request::new(room), Some(as_user)).await {
            Ok(joined) => joined,
            Err(e) => return refused(e),
        };
        let room_id = joined.room_id;
        let state = match self.send(get_state_events::v3::Request::new(room_id.clone()), Some(as_user)).await {
            Ok(state) => state,
            Err(e) => return refused(e),
        };
        let events: Vec<Value> =
            state.room_state.iter().filter_map(|e| serde_json::from_str(e.json().get()).ok()).collect();
        let rules = rules_of(&events);
        tracing::info!(%room_id, rules = rules.len(), "ban list joined and read");
        answer(Some(room_id), rules, None)
    }
}

impl HsClient {
    /// Makes the public policy room for `owner`'s blocks as `as_user` (the
    /// bot, which invites the owner; in client mode the owner), and
    /// answers with `Internal::ListCreated`. Made again if a crash comes
    /// between making it and recording it: an empty room is left behind.
    pub async fn create_list(
        &self,
        as_user: &UserId,
        owner: &ruma::OwnedUserId,
    ) -> Result<Vec<FollowUp>, PerformError> {
        let mut request = CreateRoom::new();
        request.preset = Some(RoomPreset::PublicChat);
        request.name = Some(format!("Ban list of {owner}"));
        request.topic = Some(format!(
            "The accounts and servers {owner} blocks, kept current by Gatekeeper. Follow it from a Gatekeeper              (`subscribe <this room>`), Draupnir or Meowlnir."
        ));
        // Power levels as the preset makes them: overriding `users` would
        // drop the creator's own power in older room versions, and naming
        // the creator is refused in version 12.
        if as_user != owner {
            request.invite = vec![owner.clone()];
        }
        let created = self.send(request, Some(as_user)).await.map_err(classify)?;
        tracing::info!(room_id = %created.room_id, %owner, "shared ban list made");
        let result = Internal::ListCreated { owner: owner.clone(), room_id: created.room_id };
        Ok(vec![FollowUp { internal: true, raw: serde_json::to_vec(&result).expect("look-up results serialize") }])
    }

    /// Publishes (or withdraws, with empty content) one rule of a shared
    /// list, in the slot `rule:<entity>`: one per subject, as Draupnir names them.
    pub async fn put_policy_rule(
        &self,
        as_user: &UserId,
        room: &RoomId,
        kind: RuleKind,
        entity: &str,
        reason: Option<&str>,
        present: bool,
    ) -> Result<Vec<FollowUp>, PerformError> {
        let content = if present {
            json!({"entity": entity, "recommendation": "m.ban", "reason": reason.unwrap_or("")})
        } else {
            json!({})
        };
        let body = Raw::from_json(serde_json::value::to_raw_value(&content).expect("JSON"));
        let event_type = StateEventType::from(kind.event_type());
        // Not the entity itself: a state key that is a user ID other than
        // the sender's is refused (it would be that user's own state).
        let state_key = format!("rule:{entity}");
        let request = send_state_event::v3::Request::new_raw(room.to_owned(), event_type, state_key, body);
        self.send(request, Some(as_user)).await.map_err(classify)?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_lists_rules_are_read_loosely_and_other_state_is_not() {
        let state = vec![
            json!({"type": "m.room.create", "state_key": "", "content": {}}),
            json!({"type": "m.policy.rule.user", "state_key": "r1",
                   "content": {"entity": "@spam:*", "recommendation": "m.ban", "reason": "spam"}}),
            json!({"type": "m.policy.rule.server", "state_key": "r2", "content": {"entity": 5}}),
            json!({"type": "m.policy.rule.user", "content": {"entity": "@x:y"}}),
        ];
        let rules = rules_of(&state);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(rules[0].entity.as_deref(), Some("@spam:*"));
        assert_eq!(rules[1].entity, None);
    }
}
