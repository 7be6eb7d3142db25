//! The engine's Matrix-native effects as client-server calls, the same in
//! both modes: a state event kept equal to what the engine says (the
//! MSC4332 commands), abuse reports, and the owner's invite filter
//! (MSC4155) read and edited. What is read from the homeserver is bounded
//! here before the engine sees it.

use http::Method;
use ruma::{OwnedServerName, OwnedUserId, UserId};
use serde_json::{Value, json};

use super::client::{ClientError, HsClient, encode};
use super::effects::classify;
use crate::engine::Subject;
use crate::engine::native::{FilterSeen, MAX_FILTER_ENTRIES, NativeEffect, ReportVia};
use crate::pipeline::executor::PerformError;
use crate::pipeline::translate::Internal;
use crate::store::FollowUp;

/// The invite filter as the Matrix spec has it since v1.18 (MSC4380):
/// only `default_action`. Where it is set, a homeserver reads it and not
/// MSC4155's.
pub const STABLE_FILTER: &str = "m.invite_permission_config";
/// MSC4155's filter, with lists of users and servers: the one Gatekeeper
/// mirrors the owner's blocks into.
pub const MSC4155_FILTER: &str = "org.matrix.msc4155.invite_permission_config";

/// An entry longer than a user ID can be is not read (Synapse skips them too).
const MAX_ENTRY: usize = 255;

const CLIENT: &str = "/_matrix/client/v3";

fn not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 404, .. })
}

/// The homeserver does not know the endpoint.
fn unrecognized(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 404 | 405, errcode, .. } if errcode == "M_UNRECOGNIZED")
        || matches!(e, ClientError::Http { status: 405, .. })
}

fn follow_up(result: &Internal) -> FollowUp {
    FollowUp { internal: true, raw: serde_json::to_vec(result).expect("look-up results serialize") }
}

fn account_data_path(user: &UserId, kind: &str) -> String {
    format!("{CLIENT}/user/{}/account_data/{}", encode(user.as_str()), encode(kind))
}

impl HsClient {
    /// Account data of `kind`, as `user`; `None` when there is none.
    async fn account_data(&self, user: &UserId, kind: &str) -> Result<Option<Value>, ClientError> {
        match self.json(Method::GET, &account_data_path(user, kind), Some(user), None).await {
            Ok(value) => Ok(Some(value)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The room's state event, as `as_user`; `None` when there is none.
    async fn state(&self, as_user: &UserId, room: &str, kind: &str, key: &str) -> Result<Option<Value>, ClientError> {
        let path = format!("{CLIENT}/rooms/{}/state/{}/{}", encode(room), encode(kind), encode(key));
        match self.json(Method::GET, &path, Some(as_user), None).await {
            Ok(value) => Ok(Some(value)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn put_state(
        &self,
        as_user: &UserId,
        room: &str,
        kind: &str,
        key: &str,
        content: &Value,
    ) -> Result<(), ClientError> {
        let path = format!("{CLIENT}/rooms/{}/state/{}/{}", encode(room), encode(kind), encode(key));
        self.json(Method::PUT, &path, Some(as_user), Some(content)).await.map(drop)
    }

    /// The state event made to hold `content`, sent only when it does not
    /// already; where `as_user` may not send it, `grant_as` lowers the
    /// level the event type needs to `as_user`'s first.
    async fn keep_state(
        &self,
        as_user: &UserId,
        grant_as: Option<&UserId>,
        room: &str,
        kind: &str,
        key: &str,
        content: &Value,
    ) -> Result<(), ClientError> {
        if self.state(as_user, room, kind, key).await?.as_ref() == Some(content) {
            return Ok(());
        }
        match self.put_state(as_user, room, kind, key, content).await {
            Err(ClientError::Http { status: 403, .. }) if grant_as.is_some() => {
                let owner = grant_as.expect("checked");
                let levels = self.state(owner, room, "m.room.power_levels", "").await?.unwrap_or_else(|| json!({}));
                if let Some(granted) = granted(&levels, as_user, kind) {
                    self.put_state(owner, room, "m.room.power_levels", "", &granted).await?;
                }
                self.put_state(as_user, room, kind, key, content).await
            }
            other => other,
        }
    }

    /// The user report where the homeserver has it; their latest held
    /// message's report where it does not, or where the user is on another
    /// server (a homeserver's admins see a remote user only through what
    /// reached their rooms; Synapse files user reports of them nowhere).
    async fn report(
        &self,
        owner: &UserId,
        user: &UserId,
        event: Option<&(ruma::OwnedRoomId, ruma::OwnedEventId)>,
        reason: &str,
    ) -> Result<ReportVia, ClientError> {
        let body = json!({ "reason": reason });
        let path = format!("{CLIENT}/users/{}/report", encode(user.as_str()));
        let by_user = match self.json(Method::POST, &path, Some(owner), Some(&body)).await {
            Ok(_) => true,
            Err(e) if unrecognized(&e) => false,
            Err(e) => return Err(e),
        };
        let remote = user.server_name() != owner.server_name();
        let by_event = match event {
            Some((room, event)) if !by_user || remote => {
                let path = format!("{CLIENT}/rooms/{}/report/{}", encode(room.as_str()), encode(event.as_str()));
                match self.json(Method::POST, &path, Some(owner), Some(&body)).await {
                    Ok(_) => true,
                    // Gone, or not visible to the owner any more.
                    Err(e) if not_found(&e) => false,
                    Err(e) => return Err(e),
                }
            }
            _ => false,
        };
        Ok(match (by_user, by_event) {
            (true, true) => ReportVia::UserAndEvent,
            (true, false) => ReportVia::User,
            (false, true) => ReportVia::Event,
            (false, false) => ReportVia::Nothing,
        })
    }

    async fn read_invite_filter(&self, owner: &UserId) -> Result<FilterSeen, ClientError> {
        let stable = self.account_data(owner, STABLE_FILTER).await?;
        let unstable = self.account_data(owner, MSC4155_FILTER).await?;
        Ok(filter_seen(stable.as_ref(), unstable.as_ref()))
    }

    async fn edit_invite_filter(&self, owner: &UserId, add: &[Subject], remove: &[Subject]) -> Result<(), ClientError> {
        let current = self.account_data(owner, MSC4155_FILTER).await?;
        if let Some(edited) = edited(current.as_ref(), add, remove) {
            self.json(Method::PUT, &account_data_path(owner, MSC4155_FILTER), Some(owner), Some(&edited)).await?;
        }
        Ok(())
    }

    pub async fn perform_native(&self, effect: &NativeEffect) -> Result<Vec<FollowUp>, PerformError> {
        match effect {
            NativeEffect::PutState { as_user, grant_as, room_id, event_type, state_key, content } => {
                let content: Value =
                    serde_json::from_str(content).map_err(|e| PerformError::Permanent(e.to_string()))?;
                self.keep_state(as_user, grant_as.as_deref(), room_id.as_str(), event_type, state_key, &content)
                    .await
                    .map_err(classify)?;
                Ok(Vec::new())
            }
            NativeEffect::Report { owner, user, event, reason, seed } => {
                let via = self.report(owner, user, event.as_ref(), reason).await.map_err(classify)?;
                tracing::info!(%owner, %user, via = via.as_str(), "reported to the homeserver's admins");
                let result = Internal::Reported {
                    owner: owner.clone(),
                    user: user.clone(),
                    via: via.as_str().to_owned(),
                    seed: seed.clone(),
                };
                Ok(vec![follow_up(&result)])
            }
            NativeEffect::ReadInviteFilter { owner } => {
                let seen = self.read_invite_filter(owner).await.map_err(classify)?;
                Ok(vec![follow_up(&Internal::InviteFilter { owner: owner.clone(), seen: seen.into() })])
            }
            NativeEffect::EditInviteFilter { owner, add, remove } => {
                self.edit_invite_filter(owner, add, remove).await.map_err(classify)?;
                Ok(Vec::new())
            }
        }
    }
}

/// The power levels with `kind` sendable at `user`'s level; `None` when
/// it is already.
fn granted(levels: &Value, user: &UserId, kind: &str) -> Option<Value> {
    let level = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    let mine =
        levels["users"].get(user.as_str()).and_then(level).or_else(|| level(&levels["users_default"])).unwrap_or(0);
    let needed = levels["events"].get(kind).and_then(level).or_else(|| level(&levels["state_default"])).unwrap_or(50);
    if needed <= mine {
        return None;
    }
    let mut out = levels.clone();
    if !out.is_object() {
        out = json!({});
    }
    if !out["events"].is_object() {
        out["events"] = json!({});
    }
    out["events"][kind] = json!(mine);
    Some(out)
}

/// A glob that matches everyone: only `*`s around an `@` or `:`.
fn matches_everyone(entry: &str) -> bool {
    matches!(entry.replace('*', "").as_str(), "" | "@" | "@:" | ":")
}

fn has_glob(entry: &str) -> bool {
    entry.contains(['*', '?'])
}

/// What the engine needs of the owner's filters: whether one blocks
/// everyone, and the exact users and servers blocked and allowed in
/// MSC4155's lists, at most [`MAX_FILTER_ENTRIES`] entries read in all.
pub fn filter_seen(stable: Option<&Value>, unstable: Option<&Value>) -> FilterSeen {
    let mut seen = FilterSeen { stable_present: stable.is_some(), ..FilterSeen::default() };
    if stable.is_some_and(|v| v["default_action"] == "block") {
        seen.blocks_all = true;
    }
    let Some(unstable) = unstable else { return seen };
    let mut budget = MAX_FILTER_ENTRIES;
    let mut entries = |field: &str| -> Vec<String> {
        let Some(list) = unstable[field].as_array() else { return Vec::new() };
        if list.len() > budget {
            seen.truncated = true;
        }
        let taken: Vec<String> = list
            .iter()
            .take(budget)
            .filter_map(Value::as_str)
            .filter(|e| !e.is_empty() && e.len() <= MAX_ENTRY)
            .map(str::to_owned)
            .collect();
        budget = budget.saturating_sub(list.len().min(budget));
        taken
    };
    let (blocked_users, blocked_servers) = (entries("blocked_users"), entries("blocked_servers"));
    let (allowed_users, allowed_servers) = (entries("allowed_users"), entries("allowed_servers"));
    seen.blocks_all |= blocked_users.iter().chain(&blocked_servers).any(|e| matches_everyone(e));
    let exact = |users: &[String], servers: &[String]| -> Vec<Subject> {
        let users = users.iter().filter(|e| !has_glob(e)).filter_map(|e| OwnedUserId::try_from(e.as_str()).ok());
        let servers =
            servers.iter().filter(|e| !has_glob(e)).filter_map(|e| OwnedServerName::try_from(e.as_str()).ok());
        users.map(Subject::User).chain(servers.map(Subject::Server)).collect()
    };
    seen.blocked = exact(&blocked_users, &blocked_servers);
    seen.allowed = exact(&allowed_users, &allowed_servers);
    seen
}

/// The MSC4155 filter with `add` blocked and `remove` no longer, everything
/// else in it kept as it was; `None` when that changes nothing.
pub fn edited(current: Option<&Value>, add: &[Subject], remove: &[Subject]) -> Option<Value> {
    let mut out = match current {
        Some(v) if v.is_object() => v.clone(),
        _ => json!({}),
    };
    let entry = |s: &Subject| match s {
        Subject::User(u) => ("blocked_users", u.to_string()),
        Subject::Server(s) => ("blocked_servers", s.to_string()),
    };
    let mut changed = false;
    for subject in add {
        let (field, value) = entry(subject);
        if !out[field].is_array() {
            out[field] = json!([]);
        }
        let list = out[field].as_array_mut().expect("an array");
        if !list.iter().any(|v| v.as_str() == Some(value.as_str())) {
            list.push(json!(value));
            changed = true;
        }
    }
    for subject in remove {
        let (field, value) = entry(subject);
        if let Some(list) = out[field].as_array_mut() {
            let before = list.len();
            list.retain(|v| v.as_str() != Some(value.as_str()));
            changed |= list.len() != before;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(s: &str) -> Subject {
        Subject::User(s.try_into().unwrap())
    }

    fn server(s: &str) -> Subject {
        Subject::Server(s.try_into().unwrap())
    }

    #[test]
    fn the_filter_is_read_for_exact_entries_and_a_block_of_everyone() {
        let unstable = json!({
            "blocked_users": ["@spam:evil.org", "@*:glob.org", "not a user", 7, "x".repeat(300)],
            "blocked_servers": ["evil.org", "*.bad.org"],
            "allowed_users": ["@friend:x.org"],
            "ignored_users": ["@ignored:x.org"],
        });
        let seen = filter_seen(None, Some(&unstable));
        assert_eq!(seen.blocked, [user("@spam:evil.org"), server("evil.org")]);
        assert_eq!(seen.allowed, [user("@friend:x.org")]);
        assert!(!seen.blocks_all && !seen.stable_present && !seen.truncated);
        for everyone in [json!({"blocked_servers": ["*"]}), json!({"blocked_users": ["@*:*"]})] {
            assert!(filter_seen(None, Some(&everyone)).blocks_all, "{everyone}");
        }
        let stable = json!({"default_action": "block"});
        let seen = filter_seen(Some(&stable), None);
        assert!(seen.blocks_all && seen.stable_present);
        assert!(!filter_seen(Some(&json!({"default_action": "allow"})), None).blocks_all);
        // Not a JSON object, or lists that are not lists: nothing, no error.
        assert_eq!(filter_seen(None, Some(&json!("x"))), FilterSeen::default());
        assert_eq!(filter_seen(None, Some(&json!({"blocked_users": "@a:b.org"}))), FilterSeen::default());
    }

    #[test]
    fn at_most_ten_thousand_entries_are_read() {
        let many: Vec<String> = (0..MAX_FILTER_ENTRIES + 5).map(|i| format!("@u{i}:x.org")).collect();
        let seen = filter_seen(None, Some(&json!({"blocked_users": many, "blocked_servers": ["evil.org"]})));
        assert_eq!(seen.blocked.len(), MAX_FILTER_ENTRIES);
        assert!(seen.truncated);
    }

    #[test]
    fn an_edit_keeps_everything_else_and_writes_only_a_change() {
        let current = json!({
            "blocked_users": ["@mine:x.org"],
            "allowed_servers": ["friends.org"],
            "ignored_users": ["@quiet:x.org"],
        });
        let added = edited(Some(&current), &[user("@spam:evil.org"), server("evil.org")], &[]).unwrap();
        assert_eq!(
            added,
            json!({
                "blocked_users": ["@mine:x.org", "@spam:evil.org"],
                "blocked_servers": ["evil.org"],
                "allowed_servers": ["friends.org"],
                "ignored_users": ["@quiet:x.org"],
            })
        );
        // Again: nothing to write.
        assert_eq!(edited(Some(&added), &[user("@spam:evil.org")], &[]), None);
        let removed = edited(Some(&added), &[], &[user("@spam:evil.org"), server("evil.org")]).unwrap();
        assert_eq!(removed["blocked_users"], json!(["@mine:x.org"]));
        assert_eq!(removed["blocked_servers"], json!([]));
        assert_eq!(edited(None, &[], &[user("@a:x.org")]), None);
        assert_eq!(edited(None, &[user("@a:x.org")], &[]).unwrap(), json!({"blocked_users": ["@a:x.org"]}));
    }

    #[test]
    fn the_bot_is_let_send_its_commands_only_where_it_may_not() {
        let bot: &UserId = "@gk:x.org".try_into().unwrap();
        let kind = crate::engine::native::COMMANDS_EVENT_TYPE;
        let levels = json!({"users": {"@o:x.org": 100}, "state_default": 50, "events": {"m.room.name": 50}});
        let granted = granted(&levels, bot, kind).unwrap();
        assert_eq!(granted["events"][kind], 0);
        assert_eq!(granted["events"]["m.room.name"], 50);
        assert_eq!(granted["users"], levels["users"]);
        let trusted = json!({"users": {"@o:x.org": 100, "@gk:x.org": 100}, "state_default": 50});
        assert_eq!(super::granted(&trusted, bot, kind), None);
    }
}
