//! `gatekeeper migrate`: copies a whole store from one backend to another
//! (sled ⇄ PostgreSQL, or either to a fresh one of its own kind), then
//! reads the copy back and checks it, kind by kind.
//!
//! Both backends keep the same versioned records (`records`,
//! `policy_records`); they differ in how they lay them out (sled: trees,
//! indexes and whole transactions; PostgreSQL: tables, columns read out of
//! the records, sequences). So each backend exports every record as
//! `(kind, key, bytes)` in one neutral form, and imports that form into its
//! own layout, rebuilding its indexes, sizes and ID counters. The neutral
//! keys and values are described with [`Kind`].
//!
//! Refused, with nothing written: a target that holds anything, a store a
//! Gatekeeper runs on (sled: its file lock; PostgreSQL: the advisory lock
//! every Gatekeeper holds, see `pg_store::RUNNING_LOCK`), a schema newer
//! than this binary knows, and a record that does not decode. The copy is
//! one PostgreSQL transaction, or a sled directory made beside the target
//! and renamed into place once checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::StoreError;

/// What `migrate` copies: every kind of record either store keeps. Keys
/// and values in the neutral form both backends export and import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Accepted transaction IDs (replay markers): ID → `TxnRecord`.
    Txns,
    /// Events waiting to be decided: sequence number (u64, big-endian) →
    /// `H` (from the homeserver) or `I` (Gatekeeper's own), then the raw event.
    Inbox,
    /// Effects waiting to be carried out: ID (u64 BE) → `EffectRecord`.
    Outbox,
    /// User ID → `OwnerRecord`.
    Owners,
    /// `room \0 owner` → `RoomRecord` (held rooms, control rooms).
    Rooms,
    /// `owner \0 subject` → `ContactRecord`.
    Contacts,
    /// `owner \0 user` → `StrangerRecord`.
    Strangers,
    /// Kept (captured) messages: `owner \0 event` → `DeferredRecord`.
    Deferred,
    /// The counts of held rooms and kept messages: tally key → u64 BE.
    KeptCounts,
    /// `records::wave_key` → `WaveRecordV`.
    Waves,
    /// Followed ban lists: room → `PolicyListRecord` (version 2, counts inside).
    PolicyLists,
    /// Their rules: `policy_records::rule_key` → `RuleV1`.
    PolicyRules,
    /// Inbox sequence number (u64 BE) → `QuarantineRecord`.
    Quarantine,
    /// Used single-use web links: nonce → expiry (u64 BE).
    UsedLinks,
    /// Outbox ID (u64 BE) → `FailedEffectRecord`.
    FailedEffects,
    /// The events consumed last per tracked room: room → `SeenRecord`.
    Seen,
    /// The connector's own values: key → value.
    Connector,
    /// Running totals and marks ([`COUNTERS`]): name → u64 BE.
    Counters,
    /// Client mode's sync position: the empty key → the position.
    SyncPosition,
}

impl Kind {
    pub const ALL: [Kind; 19] = [
        Kind::Txns,
        Kind::Inbox,
        Kind::Outbox,
        Kind::Owners,
        Kind::Rooms,
        Kind::Contacts,
        Kind::Strangers,
        Kind::Deferred,
        Kind::KeptCounts,
        Kind::Waves,
        Kind::PolicyLists,
        Kind::PolicyRules,
        Kind::Quarantine,
        Kind::UsedLinks,
        Kind::FailedEffects,
        Kind::Seen,
        Kind::Connector,
        Kind::Counters,
        Kind::SyncPosition,
    ];

    /// What the report calls it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Txns => "transaction IDs (replay markers)",
            Kind::Inbox => "inbox events",
            Kind::Outbox => "outbox effects",
            Kind::Owners => "owners",
            Kind::Rooms => "rooms (held, control)",
            Kind::Contacts => "contacts",
            Kind::Strangers => "strangers",
            Kind::Deferred => "kept messages",
            Kind::KeptCounts => "kept counts",
            Kind::Waves => "wave records",
            Kind::PolicyLists => "policy lists",
            Kind::PolicyRules => "policy rules",
            Kind::Quarantine => "quarantined events",
            Kind::UsedLinks => "used links",
            Kind::FailedEffects => "failed effects",
            Kind::Seen => "seen-event lists",
            Kind::Connector => "connector values",
            Kind::Counters => "counters",
            Kind::SyncPosition => "sync position",
        }
    }
}

/// The counters both stores keep under the same names. Sizes each keeps
/// for itself (sled's `inbox_len`, PostgreSQL's `quarantine_len`) are not
/// copied: the import makes them from what it writes.
pub const COUNTERS: [&str; 10] = [
    "transactions",
    "replayed_transactions",
    "events_received",
    "follow_ups",
    "events_processed",
    "events_quarantined",
    "effects_done",
    "effects_failed",
    "outbox_high_water",
    "highest_transaction_number",
];

/// One kind's records, `(key, value)`.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A store being copied from.
pub trait Source {
    /// Every record of `kind`, in the neutral form (any order).
    fn export(&mut self, kind: Kind) -> Result<Records, StoreError>;
}

/// A store being copied into: empty, checked by [`Target::begin`].
pub trait Target: Source {
    /// Refuses unless the target holds nothing; then starts the copy.
    fn begin(&mut self) -> Result<(), StoreError>;
    fn import(&mut self, kind: Kind, records: &Records) -> Result<(), StoreError>;
    /// Writes what the target keeps beside the records (sizes, indexes'
    /// markers, ID counters past every imported ID), after every kind.
    fn finish(&mut self) -> Result<(), StoreError>;
    /// Makes the copy durable and visible (commits, renames into place).
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Splits a neutral `a \0 b` key where `b` may hold NULs (an owner's
/// contact subject, an event ID): at the first NUL. User IDs hold none.
pub fn split_first(key: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let at =
        key.iter().position(|b| *b == 0).ok_or_else(|| StoreError::Corrupt("a pair key without its NUL".into()))?;
    Ok((&key[..at], &key[at + 1..]))
}

/// Splits `room \0 owner` at the last NUL: the owner (a user ID) holds none.
pub fn split_last(key: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let at =
        key.iter().rposition(|b| *b == 0).ok_or_else(|| StoreError::Corrupt("a pair key without its NUL".into()))?;
    Ok((&key[..at], &key[at + 1..]))
}

/// The room and slot of a rule's key (`policy_records::rule_key`).
pub fn rule_key_parts(key: &[u8]) -> Result<(String, crate::engine::policy::Slot), StoreError> {
    let corrupt = || StoreError::Corrupt("a ban-list rule's key".into());
    let mut rest = key.strip_prefix(&[super::policy_records::RULE_TAG]).ok_or_else(corrupt)?;
    let mut part = || -> Result<String, StoreError> {
        let len =
            usize::from(u16::from_be_bytes([*rest.first().ok_or_else(corrupt)?, *rest.get(1).ok_or_else(corrupt)?]));
        let text = std::str::from_utf8(rest.get(2..2 + len).ok_or_else(corrupt)?).map_err(|_| corrupt())?.to_owned();
        rest = &rest[2 + len..];
        Ok(text)
    };
    let (room, kind, state_key) = (part()?, part()?, part()?);
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok((room, (kind, state_key)))
}

/// Checks that a neutral record is one this Gatekeeper can read: its key's
/// shape and its record's version. A copy stops at the first that is not,
/// before anything is kept.
pub fn check(kind: Kind, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
    use super::policy_records::{PolicyListRecord, RuleV1};
    use super::records::{
        ContactRecord, DeferredRecord, EffectRecord, FailedEffectRecord, OwnerRecord, QuarantineRecord, RoomRecord,
        SeenRecord, StrangerRecord, TxnRecord, WaveRecordV, decode,
    };
    match kind {
        Kind::Txns => drop(decode::<TxnRecord>("transaction", v)?),
        Kind::Inbox => {
            u64_value(k)?;
            if !matches!(v.first(), Some(b'H' | b'I')) {
                return Err(StoreError::Corrupt("an inbox event without its source".into()));
            }
        }
        Kind::Outbox => {
            u64_value(k)?;
            decode::<EffectRecord>("effect", v)?;
        }
        Kind::Owners => drop(decode::<OwnerRecord>("owner", v)?),
        Kind::Rooms => {
            split_last(k)?;
            decode::<RoomRecord>("room", v)?;
        }
        Kind::Contacts => {
            split_first(k)?;
            decode::<ContactRecord>("contact", v)?;
        }
        Kind::Strangers => {
            split_first(k)?;
            decode::<StrangerRecord>("stranger", v)?;
        }
        Kind::Deferred => {
            split_first(k)?;
            decode::<DeferredRecord>("kept message", v)?;
        }
        Kind::KeptCounts | Kind::UsedLinks => drop(u64_value(v)?),
        Kind::Waves => drop(decode::<WaveRecordV>("wave", v)?),
        Kind::PolicyLists => {
            let list: crate::engine::policy::PolicyList = decode::<PolicyListRecord>("policy list", v)?.into();
            if list.room_id.as_bytes() != k {
                return Err(StoreError::Corrupt("a policy list under another room's key".into()));
            }
        }
        Kind::PolicyRules => {
            rule_key_parts(k)?;
            decode::<RuleV1>("policy rule", v)?;
        }
        Kind::Quarantine => {
            u64_value(k)?;
            decode::<QuarantineRecord>("quarantined event", v)?;
        }
        Kind::FailedEffects => {
            u64_value(k)?;
            decode::<FailedEffectRecord>("failed effect", v)?;
        }
        Kind::Seen => drop(decode::<SeenRecord>("seen events", v)?),
        Kind::Connector | Kind::SyncPosition => {}
        Kind::Counters => {
            if !std::str::from_utf8(k).is_ok_and(|n| COUNTERS.contains(&n)) {
                return Err(StoreError::Corrupt(format!("an unknown counter {:?}", String::from_utf8_lossy(k))));
            }
            u64_value(v)?;
        }
    }
    Ok(())
}

pub fn u64_value(v: &[u8]) -> Result<u64, StoreError> {
    v.try_into().map(u64::from_be_bytes).map_err(|_| StoreError::Corrupt(format!("a number of {} bytes", v.len())))
}

/// How many records of a kind, and a digest of them whatever their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub count: usize,
    digest: [u8; 32],
}

pub fn tally(records: &Records) -> Tally {
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = records.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for (k, v) in sorted {
        // Lengths first: no key's end can pass for the next value's start.
        h.update((k.len() as u64).to_be_bytes());
        h.update(k);
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    Tally { count: records.len(), digest: h.finalize().into() }
}

/// What was copied, kind by kind (each checked against the copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub counts: BTreeMap<Kind, usize>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Copied {} to {}; the copy was read back and matches, kind by kind:", self.from, self.to)?;
        for (kind, n) in &self.counts {
            writeln!(f, "  {:<34} {n:>10}", kind.label())?;
        }
        write!(f, "  {:<34} {:>10}", "records in all", self.counts.values().sum::<usize>())
    }
}

/// One side of a migration, as given on the command line.
#[derive(Clone)]
pub enum Location {
    Sled(PathBuf),
    Postgres { url: crate::secret::Secret, password: Option<crate::secret::Secret>, ca_file: Option<PathBuf> },
}

impl Location {
    /// `postgresql://…` (or `postgres://…`) is PostgreSQL, anything else a
    /// sled directory. `password` is for a URL that carries none.
    pub fn parse(arg: &str, password: Option<&crate::secret::Secret>, ca_file: Option<&Path>) -> Self {
        if arg.starts_with("postgresql://") || arg.starts_with("postgres://") {
            // The URL's own password wins (as database.url allows only one).
            let own = arg.parse::<postgres::Config>().is_ok_and(|c| c.get_password().is_some());
            Location::Postgres {
                url: crate::secret::Secret::new(arg.to_owned()),
                password: if own { None } else { password.cloned() },
                ca_file: ca_file.map(Path::to_path_buf),
            }
        } else {
            Location::Sled(PathBuf::from(arg))
        }
    }

    /// Said without the password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sled(path) => format!("the sled database at {}", path.display()),
            Location::Postgres { url, .. } => format!("PostgreSQL {}", super::PgStore::describe_url(url.expose())),
        }
    }
}

/// Copies everything at `from` into `to`, which must be empty, and checks
/// the copy. Nothing is written to `to` unless all of it is.
pub fn migrate(from: &Location, to: &Location) -> Result<Report, StoreError> {
    if let (Location::Sled(a), Location::Sled(b)) = (from, to)
        && (a == b || a.canonicalize().ok().zip(b.canonicalize().ok()).is_some_and(|(a, b)| a == b))
    {
        return Err(StoreError::Backend("the source and the target are the same database".into()));
    }
    if let (Location::Postgres { url: a, .. }, Location::Postgres { url: b, .. }) = (from, to)
        && super::PgStore::describe_url(a.expose()) == super::PgStore::describe_url(b.expose())
    {
        return Err(StoreError::Backend("the source and the target are the same database".into()));
    }
    let mut source = open_source(from)?;
    let mut target = open_target(to)?;
    target.begin().map_err(|e| in_target(to, e))?;
    let mut expected = BTreeMap::new();
    for kind in Kind::ALL {
        let records = source.export(kind).map_err(|e| in_source(from, kind, e))?;
        if kind == Kind::SyncPosition && records.len() > 1 {
            return Err(in_source(from, kind, StoreError::Corrupt("more than one sync position".into())));
        }
        for (k, v) in &records {
            check(kind, k, v).map_err(|e| importing(to, kind, e))?;
        }
        target.import(kind, &records).map_err(|e| importing(to, kind, e))?;
        expected.insert(kind, tally(&records));
    }
    target.finish().map_err(|e| in_target(to, e))?;
    // Read back before it is committed: a difference leaves nothing behind.
    let mut counts = BTreeMap::new();
    for (kind, want) in &expected {
        let found = tally(&target.export(*kind).map_err(|e| in_target(to, e))?);
        if found != *want {
            return Err(StoreError::Backend(format!(
                "checking the copy: {} differ ({} copied, {} read back); nothing was kept",
                kind.label(),
                want.count,
                found.count
            )));
        }
        counts.insert(*kind, found.count);
    }
    target.commit().map_err(|e| in_target(to, e))?;
    Ok(Report { from: from.describe(), to: to.describe(), counts })
}

fn in_source(at: &Location, kind: Kind, e: StoreError) -> StoreError {
    StoreError::Backend(format!("reading {} from {}: {e}", kind.label(), at.describe()))
}

fn importing(at: &Location, kind: Kind, e: StoreError) -> StoreError {
    StoreError::Backend(format!("copying {} into {} (nothing was kept): {e}", kind.label(), at.describe()))
}

fn in_target(at: &Location, e: StoreError) -> StoreError {
    StoreError::Backend(format!("{}: {e}", at.describe()))
}

fn open_source(at: &Location) -> Result<Box<dyn Source>, StoreError> {
    match at {
        Location::Sled(path) => {
            let present = std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false);
            if !present {
                return Err(StoreError::Backend(format!("there is no database at {}", path.display())));
            }
            let store = super::SledStore::open(path, 64).map_err(|e| running(at, e))?;
            Ok(Box::new(store))
        }
        Location::Postgres { url, password, ca_file } => Ok(Box::new(
            super::pg_store::PgCopy::open_source(
                url.expose(),
                password.as_ref().map(|p| p.expose()),
                ca_file.as_deref(),
            )
            .map_err(|e| in_target(at, e))?,
        )),
    }
}

fn open_target(at: &Location) -> Result<Box<dyn Target>, StoreError> {
    match at {
        Location::Sled(path) => Ok(Box::new(super::sled_store::SledTarget::new(path)?)),
        Location::Postgres { url, password, ca_file } => Ok(Box::new(
            super::pg_store::PgCopy::open_target(
                url.expose(),
                password.as_ref().map(|p| p.expose()),
                ca_file.as_deref(),
            )
            .map_err(|e| in_target(at, e))?,
        )),
    }
}

fn running(at: &Location, e: StoreError) -> StoreError {
    match e {
        StoreError::Locked { .. } => StoreError::Backend(format!(
            "{} is in use: a Gatekeeper is running on it (its lock is held); stop it first",
            at.describe()
        )),
        other => in_target(at, other),
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_event_id, owned_room_id, owned_user_id};

    use super::*;
    use crate::engine::policy::{PolicyList, PolicyRule, RuleKind};
    use crate::engine::{
        AllowSource, Contact, Deferred, Effect, HeldRoom, OwnerState, RoomState, StateChange, StrangerState, Subject,
        WaveKey, WaveRecord,
    };
    use crate::store::pg_store::PgCopy;
    use crate::store::pg_test_server::Postgres;
    use crate::store::{EffectOutcome, FollowUp, PgStore, Seen, SledStore, Store};

    const HELD: &str = "!held:example.org";

    fn kept_message(event: &str, denied_ms: Option<u64>) -> Deferred {
        Deferred {
            owner: owned_user_id!("@alice:example.org"),
            room_id: owned_room_id!("!held:example.org"),
            event_id: event.try_into().unwrap(),
            sender: owned_user_id!("@stranger:evil.example"),
            ts_ms: 10,
            received_ms: 11,
            msgtype: "m.text".into(),
            body: "a stranger's words, with a \0 in them".into(),
            html: Some("<b>x</b>".into()),
            media: None,
            encrypted: false,
            edited: false,
            digested: false,
            redacted_by: None,
            denied_ms,
        }
    }

    /// Fills a store, through the `Store` trait only, with every kind of
    /// record there is (see [`Kind`]), each of its variants that a
    /// backend lays out apart (a transaction partly consumed, events from
    /// the homeserver and Gatekeeper's own, mail and other effects, an
    /// operator's list, an allow with an end, a denied message).
    fn fill(s: &dyn Store) {
        let alice = owned_user_id!("@alice:example.org");
        let stranger = owned_user_id!("@stranger:evil.example");
        let held = RoomState::Held(HeldRoom::new(alice.clone(), stranger.clone(), true, 5));
        let list = owned_room_id!("!list:lists.org");
        let mut decision = crate::store::conformance::sample_decision();
        decision.changes.extend([
            StateChange::PutOwner(OwnerState {
                paused_until_ms: Some(99),
                policy_lists: vec![list.clone()],
                ..OwnerState::new(owned_user_id!("@bob:example.org"), owned_room_id!("!bobdm:example.org"), 3)
            }),
            StateChange::PutRoom(HELD.try_into().unwrap(), held),
            StateChange::PutContact {
                owner: alice.clone(),
                subject: Subject::User(owned_user_id!("@friend:example.org")),
                contact: Contact::Allowed { since_ms: 3, source: AllowSource::Imported, until_ms: Some(1_000) },
            },
            StateChange::PutContact {
                owner: alice.clone(),
                subject: Subject::Server("evil.example".try_into().unwrap()),
                contact: Contact::Blocked { since_ms: 4 },
            },
            StateChange::PutStranger {
                owner: alice.clone(),
                user: stranger.clone(),
                state: StrangerState { last_reply_ms: Some(9), ..Default::default() },
            },
            StateChange::PutDeferred(kept_message("$kept", None)),
            StateChange::PutDeferred(kept_message("$denied", Some(20))),
            StateChange::PutWave(
                WaveKey::Sender(stranger.clone()),
                WaveRecord { seen: vec![(alice.clone(), 10)], wave_ms: None, expires_ms: 100, day: vec![] },
            ),
            StateChange::PutPolicyList(PolicyList {
                operator: true,
                followers: [owned_user_id!("@bob:example.org")].into_iter().collect(),
                kept: 1,
                changed_ms: 7,
                ..PolicyList::new(list.clone(), "#list:lists.org".into())
            }),
            StateChange::PutPolicyRule {
                list,
                slot: ("m.policy.rule.user".into(), "a\0b".into()),
                rule: Some(PolicyRule {
                    kind: RuleKind::User,
                    entity: "@spam*:evil.example".into(),
                    takedown: false,
                    reason: Some("spam".into()),
                }),
            },
        ]);
        decision.effects.push(Effect::SendEmail {
            owner: alice.clone(),
            to: "a@example.org".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "<p>t</p>".into(),
            message_id: "<m@x>".into(),
            unsubscribe: None,
        });
        // A transaction of three events: one decided, one consumed with the
        // held room's event remembered, one left (partly consumed).
        let events: [&[u8]; 3] = [br#"{"event_id":"$1"}"#, br#"{"event_id":"$2"}"#, br#"{"event_id":"$3"}"#];
        s.accept_transaction("17", &events, 50).unwrap();
        assert_eq!(s.accept_transaction("17", &events, 51).unwrap(), crate::store::Accepted::Replay);
        let items = s.inbox_batch(3).unwrap();
        s.commit(items[0].seq, &decision).unwrap();
        let seen = Seen { seq: items[1].seq, room: HELD.try_into().unwrap(), event: owned_event_id!("$2") };
        s.commit_batch_seen(&[], &[items[1].seq], &[seen]).unwrap();
        // Set aside.
        s.accept_transaction("bad", &[b"not json"], 52).unwrap();
        let bad = s.inbox_batch(10).unwrap().pop().unwrap();
        s.quarantine(bad.seq, "not JSON", 53).unwrap();
        // Effects: one done with a follow-up, one failed, the rest pending.
        let out = s.outbox_batch(u64::MAX, 10, false).unwrap();
        let follow = FollowUp { internal: true, raw: br#"{"looked":"up"}"#.to_vec() };
        s.finish_effect(out[0].id, &EffectOutcome::Done, &[follow], 54).unwrap();
        s.finish_effect(out[1].id, &EffectOutcome::Failed("refused".into()), &[], 55).unwrap();
        s.use_link("nonce-1", 9_999, br#"{"link":"allow"}"#).unwrap();
        s.set_connector_value("control_room", Some(b"!dm:example.org")).unwrap();
        s.accept_sync(None, "s1", &[br#"{"event_id":"$sync"}"#]).unwrap();
        s.flush().unwrap();
    }

    fn sled_at(path: &Path) -> SledStore {
        SledStore::open(path, 4).unwrap()
    }

    fn export_all(source: &mut dyn Source) -> BTreeMap<Kind, Records> {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let mut r = source.export(k).unwrap();
                r.sort();
                (k, r)
            })
            .collect()
    }

    fn pg(url: &str) -> Location {
        Location::Postgres { url: crate::secret::Secret::new(url), password: None, ca_file: None }
    }

    fn pg_export(url: &str) -> BTreeMap<Kind, Records> {
        export_all(&mut PgCopy::open_source(url, None, None).unwrap())
    }

    /// What a running Gatekeeper reads, through the trait: the same on
    /// every store that holds the same records.
    fn seen_through_the_trait(s: &dyn Store) -> String {
        let alice = owned_user_id!("@alice:example.org");
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            s.stats().unwrap(),
            s.outbox_high_water().unwrap(),
            s.highest_transaction_number().unwrap(),
            s.sync_position().unwrap(),
            s.inbox_batch(100).unwrap(),
            s.outbox_batch(u64::MAX, 100, false).unwrap(),
            s.outbox_batch(u64::MAX, 100, true).unwrap(),
            s.quarantined(100).unwrap(),
            s.failed_effects(100).unwrap(),
            s.owners().unwrap(),
            s.policy_lists().unwrap(),
            s.overview(&alice).unwrap(),
            (s.connector_values("").unwrap(), s.seen_rooms().unwrap(), s.due(u64::MAX).unwrap(), s.wave_records()),
        )
    }

    /// The sled trees and how `migrate` carries each: a test that fails
    /// when a tree is added and not named here (and so, perhaps, not copied).
    const SLED_TREES: &[(&str, &str)] = &[
        ("txn_by_id", "Txns"),
        ("inbox_by_seq", "Inbox (transactions stored whole are copied as their events)"),
        ("inbox_done", "Inbox (which events of a stored transaction are consumed)"),
        ("outbox_by_id", "Outbox"),
        ("owner_by_user", "Owners"),
        ("room_by_id_owner", "Rooms"),
        ("contact_by_owner_user", "Contacts"),
        ("stranger_by_owner_user", "Strangers"),
        ("deferred_by_owner_event", "Deferred"),
        ("wave_by_key", "Waves"),
        ("policy_by_room", "PolicyLists, PolicyRules; index entries and marks rebuilt"),
        ("quarantine_by_seq", "Quarantine"),
        ("used_link_by_nonce", "UsedLinks"),
        ("failed_effect_by_id", "FailedEffects"),
        ("counters", "Counters, SyncPosition; sizes rebuilt"),
        ("connector", "Connector"),
        ("kept_by_key", "KeptCounts"),
        ("held_by_owner_room", "rebuilt from Rooms"),
        ("seen_by_room", "Seen"),
        ("room_by_id", "none: emptied into room_by_id_owner at every opening"),
        ("__sled__default", "none: sled's own, unused"),
    ];
    const ALWAYS_EMPTY: &[&str] = &["room_by_id", "__sled__default"];
    /// Laid out by how the records came (a transaction whole, and which of
    /// its events are consumed): compared as the events they hold.
    const LAYOUT: &[&str] = &["inbox_by_seq", "inbox_done"];

    #[test]
    fn sled_to_postgresql_and_back_keeps_every_record_of_every_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        // sled's ID generator jumps ahead at every opening: a database
        // opened a few times uses IDs a new one would only reach later,
        // as an operator's long-lived one does (so that the copy's IDs
        // going on past the copied ones is tested, not luck).
        for _ in 0..3 {
            drop(sled_at(&a));
        }
        fill(&sled_at(&a));
        let url = Postgres::shared().create_database();
        let there = migrate(&Location::Sled(a.clone()), &pg(&url)).unwrap();
        let back = migrate(&pg(&url), &Location::Sled(b.clone())).unwrap();
        assert_eq!(there.counts, back.counts);

        let (mut a, mut b) = (sled_at(&a), sled_at(&b));
        // Every kind, record for record, at each step; none left empty by
        // the filling (so a kind copied wrong cannot pass unseen).
        let original = export_all(&mut a);
        for (kind, records) in &original {
            assert!(!records.is_empty(), "the test fills no {kind:?}");
            assert_eq!(there.counts[kind], records.len(), "{kind:?}");
        }
        assert_eq!(pg_export(&url), original, "sled → PostgreSQL");
        assert_eq!(export_all(&mut b), original, "PostgreSQL → sled");

        // Every sled tree named above, filled, and byte for byte the same
        // after the round trip (the inbox's layout apart: compared above
        // as its events).
        let (trees_a, trees_b) = (super::super::sled_store::raw_trees(&a), super::super::sled_store::raw_trees(&b));
        let names = |t: &[(String, Records)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&trees_a), names(&trees_b));
        for (name, content) in &trees_a {
            assert!(SLED_TREES.iter().any(|(t, _)| t == name), "tree {name} is not known to migrate");
            assert_eq!(content.is_empty(), ALWAYS_EMPTY.contains(&name.as_str()), "tree {name} filled?");
        }
        for (t, _) in SLED_TREES {
            assert!(trees_a.iter().any(|(n, _)| n == t), "tree {t} is gone: update SLED_TREES");
        }
        for ((name, ra), (_, rb)) in trees_a.iter().zip(&trees_b) {
            if LAYOUT.contains(&name.as_str()) {
                continue;
            }
            let (ra, rb): (Records, Records) = match name.as_str() {
                // The copy's own: where sled's generated IDs start again;
                // the original's own: where its intake journal stands (the
                // copy starts a journal of its own).
                "counters" => (
                    ra.iter().filter(|(k, _)| k != b"journal_applied").cloned().collect(),
                    rb.iter().filter(|(k, _)| k != b"id_floor").cloned().collect(),
                ),
                _ => (ra.clone(), rb.clone()),
            };
            assert_eq!(ra, rb, "tree {name}");
        }

        // What Gatekeeper reads is the same on all three.
        let pg_store = PgStore::open(&url).unwrap();
        let seen = seen_through_the_trait(&a);
        assert_eq!(seen_through_the_trait(&pg_store), seen);
        assert_eq!(seen_through_the_trait(&b), seen);

        // New IDs come after every copied one, on both targets: no new
        // effect or event can take an old one's place.
        for s in [&b as &dyn Store, &pg_store] {
            let (inbox_max, high) =
                (s.inbox_batch(100).unwrap().iter().map(|i| i.seq).max().unwrap(), s.outbox_high_water().unwrap());
            let quarantined = s.quarantined(10).unwrap()[0].seq;
            s.push_internal(b"{}").unwrap();
            let newest = s.inbox_batch(100).unwrap().pop().unwrap();
            assert!(newest.seq > inbox_max && newest.seq > quarantined, "{} after {inbox_max}", newest.seq);
            s.commit(newest.seq, &crate::store::conformance::sample_decision()).unwrap();
            let ids: Vec<u64> = s.outbox_batch(u64::MAX, 100, false).unwrap().iter().map(|i| i.id).collect();
            assert!(s.outbox_high_water().unwrap() > high);
            assert!(ids.iter().filter(|id| **id > high).count() == 2, "{ids:?} after {high}");
        }
    }

    /// Every table of the schema is copied (or said not to be): a table
    /// added by a migration without a place in `migrate` fails here.
    #[test]
    fn every_postgresql_table_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fill(&sled_at(&a));
        let url = Postgres::shared().create_database();
        migrate(&Location::Sled(a), &pg(&url)).unwrap();
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let tables: Vec<String> = c
            .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let copied: Vec<&str> = Kind::ALL.iter().map(|k| super::super::pg_store::copy_table(*k)).collect();
        assert_eq!(tables.len(), copied.len() + super::super::pg_store::NOT_COPIED.len(), "{tables:?}");
        for t in &tables {
            assert!(
                copied.contains(&t.as_str()) || super::super::pg_store::NOT_COPIED.contains(&t.as_str()),
                "table {t} is not known to migrate"
            );
            let rows: i64 = c.query_one(format!("SELECT count(*) FROM {t}").as_str(), &[]).unwrap().get(0);
            assert!(rows > 0, "table {t} was left empty");
        }
    }

    /// A store that lived on PostgreSQL (its own sequence numbers, its
    /// record versions) arrives whole in sled, and sled's IDs go on past it.
    #[test]
    fn postgresql_to_sled_keeps_every_record() {
        let url = Postgres::shared().create_database();
        fill(&PgStore::open(&url).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("b");
        let report = migrate(&pg(&url), &Location::Sled(b.clone())).unwrap();
        let original = pg_export(&url);
        assert!(original.values().all(|r| !r.is_empty()));
        let mut b = sled_at(&b);
        assert_eq!(export_all(&mut b), original);
        assert_eq!(report.counts.values().sum::<usize>(), original.values().map(Vec::len).sum::<usize>());
        assert_eq!(seen_through_the_trait(&b), seen_through_the_trait(&PgStore::open(&url).unwrap()));
        let before = b.inbox_batch(100).unwrap().iter().map(|i| i.seq).max().unwrap();
        b.push_internal(b"{}").unwrap();
        assert!(b.inbox_batch(100).unwrap().pop().unwrap().seq > before);
        assert!(report.to_string().contains("kept messages"), "{report}");
    }

    /// The environment's password is for a URL without one; a URL's own
    /// is never replaced. Neither is ever shown.
    #[test]
    fn a_password_comes_from_the_url_or_else_the_environment() {
        let env = crate::secret::Secret::new("from-env");
        let password = |arg: &str| match Location::parse(arg, Some(&env), None) {
            Location::Postgres { password, .. } => password.map(|p| p.expose().to_owned()),
            Location::Sled(_) => panic!("{arg} read as sled"),
        };
        assert_eq!(password("postgresql://gk@db/gk").as_deref(), Some("from-env"));
        assert_eq!(password("postgresql://gk:own@db/gk"), None);
        let to = Location::parse("postgresql://gk:hunter2@db:5433/gk", None, None);
        assert_eq!(to.describe(), "PostgreSQL gk@db:5433/gk");
        assert!(matches!(Location::parse("./data", Some(&env), None), Location::Sled(_)));
    }

    fn err(r: Result<Report, StoreError>) -> String {
        r.expect_err("migrate went ahead").to_string()
    }

    #[test]
    fn a_target_that_holds_anything_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fill(&sled_at(&a));
        // PostgreSQL: copied once; a second copy is refused, the first kept.
        let url = Postgres::shared().create_database();
        migrate(&Location::Sled(a.clone()), &pg(&url)).unwrap();
        let first = pg_export(&url);
        let e = err(migrate(&Location::Sled(a.clone()), &pg(&url)));
        assert!(e.contains("is not empty"), "{e}");
        assert_eq!(pg_export(&url), first);
        // sled: a directory with anything in it.
        let b = dir.path().join("b");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("notes.txt"), "mine").unwrap();
        let e = err(migrate(&pg(&url), &Location::Sled(b.clone())));
        assert!(e.contains("is not empty"), "{e}");
        assert_eq!(std::fs::read_dir(&b).unwrap().count(), 1);
        assert!(!dir.path().join("b.migrating").exists());
        // An empty directory is fine (it is replaced by the copy).
        std::fs::remove_file(b.join("notes.txt")).unwrap();
        migrate(&pg(&url), &Location::Sled(b.clone())).unwrap();
        assert_eq!(export_all(&mut sled_at(&b)), first);
        // Copying a database onto itself.
        let e = err(migrate(&Location::Sled(a.clone()), &Location::Sled(a)));
        assert!(e.contains("the same database"), "{e}");
        let e = err(migrate(&pg(&url), &pg(&url)));
        assert!(e.contains("the same database"), "{e}");
    }

    #[test]
    fn a_store_a_gatekeeper_runs_on_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let running = sled_at(&a);
        fill(&running);
        let url = Postgres::shared().create_database();
        let e = err(migrate(&Location::Sled(a.clone()), &pg(&url)));
        assert!(e.contains("a Gatekeeper is running on it"), "{e}");
        drop(running);
        // PostgreSQL, as the source and as the target: the lock every
        // PgStore holds while it is open.
        let source = Postgres::shared().create_database();
        let gatekeeper = PgStore::open(&source).unwrap();
        fill(&gatekeeper);
        let e = err(migrate(&pg(&source), &Location::Sled(dir.path().join("b"))));
        assert!(e.contains("a Gatekeeper is running on it"), "{e}");
        assert!(!dir.path().join("b").exists());
        let target_gatekeeper = PgStore::open(&url).unwrap();
        let e = err(migrate(&Location::Sled(a.clone()), &pg(&url)));
        assert!(e.contains("a Gatekeeper is running on it"), "{e}");
        assert_eq!(target_gatekeeper.stats().unwrap(), crate::store::Stats::default(), "nothing written");
        drop((gatekeeper, target_gatekeeper));
        migrate(&pg(&source), &Location::Sled(dir.path().join("b"))).unwrap();
        // And the other way: while migrate holds a database, Gatekeeper
        // does not start on it.
        let copying = PgCopy::open_source(&source, None, None).unwrap();
        let e = PgStore::open(&source).err().expect("Gatekeeper started during a migration").to_string();
        assert!(e.contains("`gatekeeper migrate` is copying this database"), "{e}");
        drop(copying);
        PgStore::open(&source).unwrap();
    }

    #[test]
    fn a_newer_schema_a_missing_source_and_a_bad_record_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A source schema newer than this binary knows.
        let newer = Postgres::shared().create_database();
        fill(&PgStore::open(&newer).unwrap());
        let mut c = postgres::Client::connect(&newer, postgres::NoTls).unwrap();
        c.batch_execute("UPDATE gatekeeper_schema SET version = version + 1").unwrap();
        let e = err(migrate(&pg(&newer), &Location::Sled(dir.path().join("b"))));
        assert!(e.contains("newer than this Gatekeeper knows"), "{e}");
        // A target's newer schema too.
        let a = dir.path().join("a");
        fill(&sled_at(&a));
        let e = err(migrate(&Location::Sled(a.clone()), &pg(&newer)));
        assert!(e.contains("newer than this Gatekeeper knows"), "{e}");
        // Sources that are not there.
        let e = err(migrate(&Location::Sled(dir.path().join("nothing")), &Location::Sled(dir.path().join("c"))));
        assert!(e.contains("there is no database at"), "{e}");
        let empty = Postgres::shared().create_database();
        let e = err(migrate(&pg(&empty), &Location::Sled(dir.path().join("c"))));
        assert!(e.contains("holds no Gatekeeper database"), "{e}");
        // A record that does not decode: nothing kept, not even the schema.
        {
            let s = sled_at(&a);
            s.insert_raw_for_tests("owner_by_user", b"@mallory:example.org", b"{\"v\":\"99\"}");
        }
        let target = Postgres::shared().create_database();
        let e = err(migrate(&Location::Sled(a.clone()), &pg(&target)));
        assert!(e.contains("owners") && e.contains("nothing was kept"), "{e}");
        let mut t = postgres::Client::connect(&target, postgres::NoTls).unwrap();
        let made: bool = t.query_one("SELECT to_regclass('gatekeeper_schema') IS NOT NULL", &[]).unwrap().get(0);
        assert!(!made, "the schema was left behind");
        // Into sled: the staging directory goes too.
        let url = Postgres::shared().create_database();
        fill(&PgStore::open(&url).unwrap());
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.execute("INSERT INTO strangers (owner, user_id, record) VALUES ('@a:x', '@b:x', 'garbage')", &[]).unwrap();
        let e = err(migrate(&pg(&url), &Location::Sled(dir.path().join("d"))));
        assert!(e.contains("strangers"), "{e}");
        assert!(!dir.path().join("d").exists() && !dir.path().join("d.migrating").exists());
    }
}
