//! `migrate`'s PostgreSQL side (see `store::copy`): every table exported as
//! neutral records, and imported in one transaction (the schema made in
//! it too), so that a copy that fails anywhere leaves the database as it
//! was. The copying connection holds [`RUNNING_LOCK`] exclusive: no
//! Gatekeeper runs on the database meanwhile, and none was running when
//! it started.

use postgres::types::ToSql;

use super::*;
use crate::store::copy::{self, COUNTERS, Kind, Records, Source, Target, u64_value};
use crate::store::policy_records::rule_key;

/// A PostgreSQL database being copied from or into, on a connection of
/// its own that holds [`RUNNING_LOCK`] exclusive.
pub struct PgCopy {
    client: postgres::Client,
    /// Inside the copy's transaction (begun by hand, so that the
    /// connection and the transaction live in one value).
    in_transaction: bool,
}

/// The tables the copy writes and checks, with their columns' types.
#[derive(Clone, Copy)]
enum Col {
    Bytes,
    Int,
    Bool,
    Text,
}

/// One value of a row being imported.
enum Cell {
    Bytes(Vec<u8>),
    Int(Option<i64>),
    Bool(bool),
    Text(String),
}

/// A column of a chunk of rows, bound as one array parameter.
enum Column {
    Bytes(Vec<Vec<u8>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<bool>),
    Text(Vec<String>),
}

impl Column {
    fn new(col: Col) -> Self {
        match col {
            Col::Bytes => Column::Bytes(Vec::new()),
            Col::Int => Column::Int(Vec::new()),
            Col::Bool => Column::Bool(Vec::new()),
            Col::Text => Column::Text(Vec::new()),
        }
    }

    fn push(&mut self, cell: Cell) -> Result<(), StoreError> {
        match (self, cell) {
            (Column::Bytes(c), Cell::Bytes(v)) => c.push(v),
            (Column::Int(c), Cell::Int(v)) => c.push(v),
            (Column::Bool(c), Cell::Bool(v)) => c.push(v),
            (Column::Text(c), Cell::Text(v)) => c.push(v),
            _ => return Err(StoreError::Backend("a copied row does not fit its table".into())),
        }
        Ok(())
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Column::Bytes(c) => c,
            Column::Int(c) => c,
            Column::Bool(c) => c,
            Column::Text(c) => c,
        }
    }
}

fn sql_type(col: Col) -> &'static str {
    match col {
        Col::Bytes => "bytea[]",
        Col::Int => "bigint[]",
        Col::Bool => "boolean[]",
        Col::Text => "text[]",
    }
}

/// Each kind's table and the columns the import fills.
fn table(kind: Kind) -> (&'static str, &'static [(&'static str, Col)]) {
    use Col::*;
    match kind {
        Kind::Txns => ("txns", &[("txn_id", Bytes), ("at_ms", Int), ("record", Bytes)]),
        Kind::Inbox => ("inbox", &[("seq", Int), ("internal", Bool), ("raw", Bytes)]),
        Kind::Outbox => ("outbox", &[("id", Int), ("mail", Bool), ("record", Bytes)]),
        Kind::Owners => ("owners", &[("user_id", Bytes), ("paused_until_ms", Int), ("record", Bytes)]),
        Kind::Rooms => ("rooms", &[("room_id", Bytes), ("owner", Bytes), ("held", Bool), ("record", Bytes)]),
        Kind::Contacts => {
            ("contacts", &[("owner", Bytes), ("subject", Bytes), ("allowed_until_ms", Int), ("record", Bytes)])
        }
        Kind::Strangers => ("strangers", &[("owner", Bytes), ("user_id", Bytes), ("record", Bytes)]),
        Kind::Deferred => (
            "deferred",
            &[("owner", Bytes), ("event_id", Bytes), ("received_ms", Int), ("denied_ms", Int), ("record", Bytes)],
        ),
        Kind::KeptCounts => ("kept_counts", &[("key", Bytes), ("count", Int)]),
        Kind::Waves => ("waves", &[("key", Bytes), ("expires_ms", Int), ("record", Bytes)]),
        Kind::PolicyLists => ("policy_lists", &[("room_id", Bytes), ("operator", Bool), ("record", Bytes)]),
        Kind::PolicyRules => (
            "policy_rules",
            &[("room_id", Bytes), ("kind", Bytes), ("state_key", Bytes), ("index_key", Bytes), ("record", Bytes)],
        ),
        Kind::Quarantine => ("quarantine", &[("seq", Int), ("at_ms", Int), ("record", Bytes)]),
        Kind::UsedLinks => ("used_links", &[("nonce", Bytes), ("expires_ms", Int)]),
        Kind::FailedEffects => ("failed_effects", &[("id", Int), ("record", Bytes)]),
        Kind::Seen => ("seen", &[("room_id", Bytes), ("record", Bytes)]),
        Kind::Connector => ("connector", &[("key", Bytes), ("value", Bytes)]),
        Kind::Counters => ("counters", &[("name", Text), ("value", Int)]),
        Kind::SyncPosition => ("sync_position", &[("position", Bytes)]),
    }
}

/// Tables of the schema that hold no record of their own: `migrate` makes
/// them, it does not copy them (a lease belongs to the Gatekeepers running
/// on a database, not to what it holds).
#[cfg(test)]
pub(crate) const NOT_COPIED: &[&str] = &["gatekeeper_schema", "gatekeeper_lease"];

#[cfg(test)]
pub(crate) fn copy_table(kind: Kind) -> &'static str {
    table(kind).0
}

/// An ID or a sequence number as `bigint`: one beyond its range cannot be
/// kept (clamping it would make two the same).
fn id(k: &[u8]) -> Result<i64, StoreError> {
    let n = u64_value(k)?;
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("ID {n} is beyond PostgreSQL's bigint")))
}

fn pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, &[0], b].concat()
}

/// A neutral record as its table's row; every record is decoded, for the
/// columns read out of it and so that a corrupt one stops the copy.
fn row(kind: Kind, k: &[u8], v: &[u8]) -> Result<Vec<Cell>, StoreError> {
    use Cell::*;
    let bytes = |b: &[u8]| Bytes(b.to_vec());
    Ok(match kind {
        Kind::Txns => {
            let TxnRecord::V1 { at_ms, .. } = records::decode("transaction", v)?;
            vec![bytes(k), Int(Some(big(at_ms))), bytes(v)]
        }
        Kind::Inbox => {
            let (internal, raw) = match v.split_first() {
                Some((b'I', raw)) => (true, raw),
                Some((b'H', raw)) => (false, raw),
                _ => return Err(StoreError::Corrupt("an inbox event without its source".into())),
            };
            vec![Int(Some(id(k)?)), Bool(internal), bytes(raw)]
        }
        Kind::Outbox => {
            let EffectRecord::V1(effect) = records::decode("effect", v)?;
            let effect: Effect = effect.into();
            vec![Int(Some(id(k)?)), Bool(effect.is_mail()), bytes(v)]
        }
        Kind::Owners => {
            let owner: OwnerState = records::decode::<OwnerRecord>("owner", v)?.into();
            vec![bytes(k), Int(owner.paused_until_ms.map(big)), bytes(v)]
        }
        Kind::Rooms => {
            let (room, owner) = copy::split_last(k)?;
            let held = matches!(decode_room(v)?, RoomState::Held(_));
            vec![bytes(room), bytes(owner), Bool(held), bytes(v)]
        }
        Kind::Contacts => {
            let (owner, subject) = copy::split_first(k)?;
            let until = match records::decode::<ContactRecord>("contact", v)?.into() {
                Contact::Allowed { until_ms: Some(u), .. } => Some(big(u)),
                _ => None,
            };
            vec![bytes(owner), bytes(subject), Int(until), bytes(v)]
        }
        Kind::Strangers => {
            let (owner, user) = copy::split_first(k)?;
            records::decode::<StrangerRecord>("stranger", v)?;
            vec![bytes(owner), bytes(user), bytes(v)]
        }
        Kind::Deferred => {
            let (owner, event) = copy::split_first(k)?;
            let d = decode_deferred(v)?;
            vec![bytes(owner), bytes(event), Int(Some(big(d.received_ms))), Int(d.denied_ms.map(big)), bytes(v)]
        }
        Kind::KeptCounts => vec![bytes(k), Int(Some(big(u64_value(v)?)))],
        Kind::Waves => {
            let wave: WaveRecord = records::decode::<WaveRecordV>("wave", v)?.into();
            vec![bytes(k), Int(Some(big(wave.expires_ms))), bytes(v)]
        }
        Kind::PolicyLists => {
            let list: PolicyList = records::decode::<PolicyListRecord>("policy list", v)?.into();
            if list.room_id.as_bytes() != k {
                return Err(StoreError::Corrupt("a policy list under another room's key".into()));
            }
            vec![bytes(k), Bool(list.operator), Bytes(records::encode(&PolicyListRecord::from(&list)))]
        }
        Kind::PolicyRules => {
            let (room, (rule_kind, state_key)) = copy::rule_key_parts(k)?;
            let rule: PolicyRule = records::decode::<RuleV1>("policy rule", v)?.into();
            let index = index_key(&rule);
            vec![
                bytes(room.as_bytes()),
                bytes(rule_kind.as_bytes()),
                bytes(state_key.as_bytes()),
                bytes(index.as_bytes()),
                bytes(v),
            ]
        }
        Kind::Quarantine => {
            let QuarantineRecord::V1 { at_ms, .. } = records::decode("quarantine", v)?;
            vec![Int(Some(id(k)?)), Int(Some(big(at_ms))), bytes(v)]
        }
        Kind::UsedLinks => vec![bytes(k), Int(Some(big(u64_value(v)?)))],
        Kind::FailedEffects => {
            records::decode::<FailedEffectRecord>("failed effect", v)?;
            vec![Int(Some(id(k)?)), bytes(v)]
        }
        Kind::Seen => {
            records::decode::<SeenRecord>("seen", v)?;
            vec![bytes(k), bytes(v)]
        }
        Kind::Connector => vec![bytes(k), bytes(v)],
        Kind::Counters => {
            let name = std::str::from_utf8(k).ok().filter(|n| COUNTERS.contains(n));
            let name = name.ok_or_else(|| StoreError::Corrupt("an unknown counter".into()))?;
            vec![Text(name.to_owned()), Int(Some(big(u64_value(v)?)))]
        }
        Kind::SyncPosition => vec![bytes(v)],
    })
}

/// Rows per statement: a few round trips for a large store, and
/// statements of a bounded size.
const CHUNK: usize = 1000;

impl PgCopy {
    fn connect(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let (config, tls) = parse_url(url, password, ca_file)?;
        let mut client = connect(&config, tls.as_ref())?;
        let alone: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&RUNNING_LOCK])?.get(0);
        if !alone {
            return Err(StoreError::Backend(
                "is in use: a Gatekeeper is running on it (it holds its lock), or another migrate is; \
                 stop it first"
                    .into(),
            ));
        }
        Ok(PgCopy { client, in_transaction: false })
    }

    /// A database to copy from: it must hold Gatekeeper's schema, of a
    /// version this binary knows (an older one is migrated first, as a
    /// start of Gatekeeper would).
    pub fn open_source(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let mut copy = Self::connect(url, password, ca_file)?;
        let exists: bool = copy.client.query_one("SELECT to_regclass('gatekeeper_schema') IS NOT NULL", &[])?.get(0);
        if !exists {
            return Err(StoreError::Backend("holds no Gatekeeper database (its schema is not there)".into()));
        }
        migrate(&mut copy.client)?;
        Ok(copy)
    }

    /// A database to copy into: checked and written by [`Target::begin`]
    /// and the rest, in one transaction.
    pub fn open_target(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        Self::connect(url, password, ca_file)
    }

    fn export_kind(&mut self, kind: Kind) -> Result<Records, StoreError> {
        let c = &mut self.client;
        let id = |r: &postgres::Row, i: usize| unbig(r.get(i)).to_be_bytes().to_vec();
        let two = |c: &mut postgres::Client, sql: &str| -> Result<Records, StoreError> {
            Ok(c.query(sql, &[])?.iter().map(|r| (r.get(0), r.get(1))).collect())
        };
        let three = |c: &mut postgres::Client, sql: &str| -> Result<Records, StoreError> {
            Ok(c.query(sql, &[])?.iter().map(|r| (pair(r.get(0), r.get(1)), r.get(2))).collect())
        };
        Ok(match kind {
            Kind::Txns => two(c, "SELECT txn_id, record FROM txns")?,
            Kind::Inbox => c
                .query("SELECT seq, internal, raw FROM inbox", &[])?
                .iter()
                .map(|r| {
                    let mut v = vec![if r.get(1) { b'I' } else { b'H' }];
                    v.extend_from_slice(r.get(2));
                    (id(r, 0), v)
                })
                .collect(),
            Kind::Outbox => {
                c.query("SELECT id, record FROM outbox", &[])?.iter().map(|r| (id(r, 0), r.get(1))).collect()
            }
            Kind::Owners => two(c, "SELECT user_id, record FROM owners")?,
            Kind::Rooms => three(c, "SELECT room_id, owner, record FROM rooms")?,
            Kind::Contacts => three(c, "SELECT owner, subject, record FROM contacts")?,
            Kind::Strangers => three(c, "SELECT owner, user_id, record FROM strangers")?,
            Kind::Deferred => three(c, "SELECT owner, event_id, record FROM deferred")?,
            Kind::KeptCounts => {
                c.query("SELECT key, count FROM kept_counts", &[])?.iter().map(|r| (r.get(0), id(r, 1))).collect()
            }
            Kind::Waves => two(c, "SELECT key, record FROM waves")?,
            // As one version-2 record, whichever version is stored.
            Kind::PolicyLists => c
                .query("SELECT room_id, record FROM policy_lists", &[])?
                .iter()
                .map(|r| {
                    let list: PolicyList = records::decode::<PolicyListRecord>("policy list", r.get(1))?.into();
                    Ok((r.get(0), records::encode(&PolicyListRecord::from(&list))))
                })
                .collect::<Result<_, StoreError>>()?,
            Kind::PolicyRules => c
                .query("SELECT room_id, kind, state_key, record FROM policy_rules", &[])?
                .iter()
                .map(|r| {
                    let slot = (text("a rule's type", r.get(1))?, text("a rule's state key", r.get(2))?);
                    Ok((rule_key(&text("a rule's list", r.get(0))?, &slot), r.get(3)))
                })
                .collect::<Result<_, StoreError>>()?,
            Kind::Quarantine => {
                c.query("SELECT seq, record FROM quarantine", &[])?.iter().map(|r| (id(r, 0), r.get(1))).collect()
            }
            Kind::UsedLinks => {
                c.query("SELECT nonce, expires_ms FROM used_links", &[])?.iter().map(|r| (r.get(0), id(r, 1))).collect()
            }
            Kind::FailedEffects => {
                c.query("SELECT id, record FROM failed_effects", &[])?.iter().map(|r| (id(r, 0), r.get(1))).collect()
            }
            Kind::Seen => two(c, "SELECT room_id, record FROM seen")?,
            Kind::Connector => two(c, "SELECT key, value FROM connector")?,
            Kind::Counters => c
                .query("SELECT name, value FROM counters WHERE name = ANY($1)", &[&&COUNTERS[..]])?
                .iter()
                .map(|r| (r.get::<_, String>(0).into_bytes(), id(r, 1)))
                .collect(),
            Kind::SyncPosition => {
                c.query("SELECT position FROM sync_position", &[])?.iter().map(|r| (Vec::new(), r.get(0))).collect()
            }
        })
    }
}

impl Source for PgCopy {
    fn export(&mut self, kind: Kind) -> Result<Records, StoreError> {
        self.export_kind(kind)
    }
}

impl Target for PgCopy {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("BEGIN")?;
        self.in_transaction = true;
        // The schema made in the copy's transaction: a failed copy leaves
        // not even that.
        migrate_in(&mut self.client)?;
        for kind in Kind::ALL {
            let (name, _) = table(kind);
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {name})");
            let any: bool = self.client.query_one(sql.as_str(), &[])?.get(0);
            if any {
                return Err(StoreError::Backend(format!(
                    "is not empty (its table {name} has rows): migrate copies into an empty database only"
                )));
            }
        }
        Ok(())
    }

    fn import(&mut self, kind: Kind, records: &Records) -> Result<(), StoreError> {
        if kind == Kind::SyncPosition && records.len() > 1 {
            return Err(StoreError::Corrupt("more than one sync position".into()));
        }
        let (name, cols) = table(kind);
        let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> =
            cols.iter().enumerate().map(|(i, (_, t))| format!("${}::{}", i + 1, sql_type(*t))).collect();
        let sql = format!("INSERT INTO {name} ({}) SELECT * FROM unnest({})", names.join(", "), arrays.join(", "));
        for chunk in records.chunks(CHUNK) {
            let mut columns: Vec<Column> = cols.iter().map(|(_, t)| Column::new(*t)).collect();
            for (k, v) in chunk {
                for (column, cell) in columns.iter_mut().zip(row(kind, k, v)?) {
                    column.push(cell)?;
                }
            }
            let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(Column::param).collect();
            self.client.execute(sql.as_str(), &params)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), StoreError> {
        // The sequences continue after every ID copied in: the inbox's past
        // the quarantine's too (its keys are inbox sequence numbers), the
        // outbox's past the failed effects' and the high-water mark.
        self.client.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('inbox', 'seq'), n) FROM \
               (SELECT greatest((SELECT max(seq) FROM inbox), (SELECT max(seq) FROM quarantine)) AS n) m \
               WHERE n > 0; \
             SELECT setval(pg_get_serial_sequence('outbox', 'id'), n) FROM \
               (SELECT greatest((SELECT max(id) FROM outbox), (SELECT max(id) FROM failed_effects), \
                 (SELECT value FROM counters WHERE name = '{K_OUTBOX_HIGH}')) AS n) m \
               WHERE n > 0; \
             INSERT INTO counters (name, value) SELECT '{K_QUARANTINE_LEN}', count(*) FROM quarantine;"
        ))?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.client.batch_execute("COMMIT")?;
        self.in_transaction = false;
        Ok(())
    }
}

impl Drop for PgCopy {
    fn drop(&mut self) {
        // Not committed: rolled back (closing the connection would too).
        if self.in_transaction {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

impl PgStore {
    /// The database a URL names, without its password, for messages.
    pub fn describe_url(url: &str) -> String {
        let Ok(config) = url.parse::<postgres::Config>() else { return "(a URL that does not parse)".into() };
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().map(|p| format!(":{p}")).unwrap_or_default();
        let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
        format!("{user}{host}{port}/{}", config.get_dbname().unwrap_or(""))
    }
}
