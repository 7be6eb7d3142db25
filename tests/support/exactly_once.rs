//! The end of a scenario that killed Gatekeeper again and again while
//! strangers wrote (the crash loop, failover): one set of checks that
//! nothing was lost and nothing done twice, so that both scenarios hold
//! Gatekeeper to the same promise.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{Client, eventually};

/// What the strangers did, and where Gatekeeper can be asked about it.
pub struct ExactlyOnce<'a> {
    /// The `/metrics` URL of the Gatekeeper that works the backlog off.
    pub metrics: String,
    /// Whom the strangers wrote to, and who answers them.
    pub owner: &'a str,
    /// Each stranger and the room they wrote in.
    pub strangers: Vec<(&'a Client, &'a str)>,
    /// The messages the strangers sent and did not take back.
    pub expected: usize,
}

impl ExactlyOnce<'_> {
    /// Waits (up to `timeout`) until every message is captured and every
    /// queue is empty, then checks that every stranger got exactly one
    /// reply, as Synapse shows their rooms: never two, and none lost to a
    /// crash. How many strangers got how many replies, for the report.
    pub async fn settled_and_answered_once(&self, timeout: Duration) -> BTreeMap<usize, usize> {
        let expected = self.expected;
        eventually("every stranger message captured and every effect done", timeout, || {
            let url = self.metrics.clone();
            async move {
                let s = reqwest::get(&url).await.ok()?.text().await.ok()?;
                let value = |name: &str| {
                    s.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                };
                let settled = value("gatekeeper_deferred_messages")? as usize == expected
                    && value("gatekeeper_inbox_pending")? == 0.0
                    && value("gatekeeper_outbox_pending")? == 0.0;
                settled.then_some(())
            }
        })
        .await;
        let mut replies = BTreeMap::new();
        let mut wrong = Vec::new();
        for (stranger, room) in &self.strangers {
            let notices = stranger.notices_from(room, self.owner).await;
            *replies.entry(notices.len()).or_insert(0) += 1;
            if notices.len() != 1 {
                wrong.push(format!("{}: {notices:?}", stranger.user_id));
            }
        }
        assert!(wrong.is_empty(), "replies per stranger: {replies:?}; not one: {wrong:#?}");
        replies
    }

    /// Checks the store (`gatekeeper inspect`, the process stopped): each
    /// stranger's room held, every message captured once, nothing set
    /// aside as unreadable, no effect given up on, and every input (event
    /// or follow-up) processed once.
    pub fn check_store(&self, report: &Value) {
        let owner = &report["owners"][0];
        assert_eq!(owner["held_rooms"], self.strangers.len(), "{report}");
        assert_eq!(owner["captured_messages"], self.expected, "{report}");
        let stats = &report["stats"];
        assert_eq!(stats["events_quarantined"], 0, "{report}");
        assert_eq!(stats["effects_failed"], 0, "{report}");
        let count = |name: &str| stats[name].as_u64().unwrap_or_else(|| panic!("no {name} in {stats}"));
        assert_eq!(
            count("events_received") + count("follow_ups"),
            count("events_processed"),
            "every input processed once: {stats}"
        );
    }
}
