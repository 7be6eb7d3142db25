//! The owner's recent decisions, kept so that `undo` can take them back:
//! on the owner's record, at most [`MAX_HISTORY`] of them, none older than
//! [`KEEP_MS`]. A deny's or block's captures stay in the store that long,
//! marked (`Deferred::denied_ms`), shown nowhere, then pruned.

use super::*;

/// How long a decision can be undone, and a denied sender's messages kept.
pub const KEEP_MS: u64 = 86_400_000;
/// Decisions remembered per owner.
pub const MAX_HISTORY: usize = 10;
/// Rooms an allow released that one decision remembers to hold again.
pub const MAX_ROOMS: usize = 50;
/// Subjects one decision remembers (`deny all` of a long list).
pub const MAX_SUBJECTS: usize = 500;

/// Whether `entry` can still be undone at `now_ms`.
pub fn live(entry: &Undo, now_ms: u64) -> bool {
    now_ms.saturating_sub(entry.at_ms) < KEEP_MS
}

/// The time a new decision of `owner`'s is remembered by: now, or just
/// after the last one, so that two decisions never share a stamp (a deny's
/// messages are found again by it).
pub fn stamp(owner: &OwnerState, now_ms: u64) -> u64 {
    owner.undo.last().map_or(now_ms, |u| now_ms.max(u.at_ms.saturating_add(1)))
}

/// `owner`'s record with `entry` remembered, the expired and the oldest
/// past [`MAX_HISTORY`] forgotten.
pub fn recorded(owner: &OwnerState, mut entry: Undo, now_ms: u64) -> OwnerState {
    entry.subjects.truncate(MAX_SUBJECTS);
    entry.rooms.truncate(MAX_ROOMS);
    let mut undo: Vec<Undo> = owner.undo.iter().filter(|u| live(u, now_ms)).cloned().collect();
    undo.push(entry);
    let excess = undo.len().saturating_sub(MAX_HISTORY);
    undo.drain(..excess);
    OwnerState { undo, ..owner.clone() }
}
