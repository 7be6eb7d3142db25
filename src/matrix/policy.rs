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

use super::client::{ClientError, HsClient, size};
use super::effects::classify;
use crate::engine::policy::{MAX_RULES_PER_LIST, RuleKind};
use crate::pipeline::executor::PerformError;
use crate::pipeline::translate::{Internal, RuleRead};
use crate::store::FollowUp;

/// Reads at most this many rule events of one list's state (the engine
/// keeps at most [`MAX_RULES_PER_LIST`]; a few more let it count the rest).
const READ_AT_MOST: usize = MAX_RULES_PER_LIST + 1_000;

/// The most bytes of a list's state read when it is followed. The state
/// is whatever the list's admins (anyone, for a list the owner found
/// somewhere) put there, read at every start for the operator's lists:
/// 10,000 rules of some 300 bytes are 3 MB, and the room's members come
/// with it (some 500 bytes each: thousands of followers fit).
pub const LIST_STATE_LIMIT: usize = 8 * 1024 * 1024;

/// Just an event's type, the rest of it skipped unread.
#[derive(serde::Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Option<std::borrow::Cow<'a, str>>,
}

/// The rule state events of a list's state, read loosely: whatever does
/// not read as a rule's fields is left for the engine to refuse. Only the
/// type of the other events is read, and nothing past [`READ_AT_MOST`] rules.
pub fn rules_of<'a>(state: impl IntoIterator<Item = &'a serde_json::value::RawValue>) -> Vec<RuleRead> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    state
        .into_iter()
        .filter(|raw| {
            serde_json::from_str::<TypeOnly>(raw.get())
                .is_ok_and(|e| e.event_type.is_some_and(|t| RuleKind::of(&t).is_some()))
        })
        // A rule's whole event, at most the 64 KiB of any event.
        .filter_map(|raw| serde_json::from_str::<Value>(raw.get()).ok())
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
        // Taken before the state is asked for: a rule event the engine
        // applies after this may be missing from what is read.
        let read_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let answer = |room_id, rules, error| {
            let asked = asked.to_owned();
            let result =
                Internal::ListRead { owner: owner.cloned(), asked, room_id, rules, error, read_ms: Some(read_ms) };
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
        let request = get_state_events::v3::Request::new(room_id.clone());
        let state = match self.send_capped(request, Some(as_user), LIST_STATE_LIMIT).await {
            Ok(state) => state,
            Err(ClientError::TooLarge { limit }) => {
                // Left joined, like any list (a list room is never left):
                // its later rule events are not read for a list not followed.
                tracing::warn!(%room_id, limit, "a ban list's state is too large to read");
                let why = format!("the list's state is larger than {}", size(limit));
                return answer(None, Vec::new(), Some(why));
            }
            Err(e) => return refused(e),
        };
        let rules = rules_of(state.room_state.iter().map(|e| e.json()));
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
    use crate::matrix::client::stub::{Answer, serve};
    use crate::secret::Secret;

    /// A list's state past [`LIST_STATE_LIMIT`] (here one that never ends)
    /// is refused for good with the reason the owner hears; nothing of it
    /// is kept.
    #[tokio::test]
    async fn a_list_whose_state_is_too_large_is_not_followed_and_the_owner_hears_why() {
        let base = serve(|line| match line.starts_with("POST") {
            true => Answer::Body(br#"{"room_id": "!huge:x.org"}"#.to_vec()),
            false => Answer::Endless(
                [
                    &br#"[{"type": "m.policy.rule.user", "state_key": "a", "content": {"entity": "@a:x.org"}}"#[..],
                    &[b' '; 64 * 1024],
                ]
                .concat(),
            ),
        })
        .await;
        let client = HsClient::new(&base, Secret::new("as_token")).unwrap();
        let (bot, owner) = (ruma::owned_user_id!("@gk:x.org"), ruma::owned_user_id!("@o:x.org"));
        let call = client.follow_list(&bot, Some(&owner), "#huge:x.org", "#huge:x.org");
        let found = tokio::time::timeout(std::time::Duration::from_secs(60), call).await.expect("the read stops");
        let found = found.expect("answered, not retried");
        assert_eq!(found.len(), 1);
        let read: Internal = serde_json::from_slice(&found[0].raw).unwrap();
        let Internal::ListRead { owner: Some(who), room_id, rules, error, .. } = read else { panic!("{read:?}") };
        assert_eq!((who, room_id, rules), (owner, None, Vec::new()));
        assert_eq!(error.as_deref(), Some("the list's state is larger than 8 MiB"));
    }

    #[test]
    fn a_lists_rules_are_read_loosely_and_other_state_is_not() {
        let state = [
            json!({"type": "m.room.create", "state_key": "", "content": {}}),
            json!({"type": "m.policy.rule.user", "state_key": "r1",
                   "content": {"entity": "@spam:*", "recommendation": "m.ban", "reason": "spam"}}),
            json!({"type": "m.policy.rule.server", "state_key": "r2", "content": {"entity": 5}}),
            json!({"type": "m.policy.rule.user", "content": {"entity": "@x:y"}}),
        ];
        let raw: Vec<Box<serde_json::value::RawValue>> =
            state.iter().map(|e| serde_json::value::to_raw_value(e).unwrap()).collect();
        let rules = rules_of(raw.iter().map(|r| &**r));
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert_eq!(rules[0].entity.as_deref(), Some("@spam:*"));
        assert_eq!(rules[1].entity, None);
    }
}
