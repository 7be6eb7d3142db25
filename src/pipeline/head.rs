//! The top-level fields of a homeserver event that say whom it concerns,
//! read without decoding the rest (its content above all): the processor
//! and its prefetch read the same.

/// An event's head: any field may be missing or unreadable as an ID.
#[derive(serde::Deserialize)]
pub(super) struct Head<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) event_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) room_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) sender: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) state_key: Option<std::borrow::Cow<'a, str>>,
}

impl Head<'_> {
    /// The event's room and ID.
    pub(super) fn ids(&self) -> Option<(ruma::OwnedRoomId, ruma::OwnedEventId)> {
        Some((self.room_id.as_deref()?.try_into().ok()?, self.event_id.as_deref()?.try_into().ok()?))
    }
}
