//! The store on PostgreSQL, for operators who run it already (and back it
//! up, replicate it and monitor it). The same semantics as the sled store:
//! every multi-row change is one database transaction, and what is
//! acknowledged to someone else is committed with synchronous commit before
//! the call returns. Records are the sled store's versioned serde records
//! (`records`, `policy_records`), as JSON bytes.
//!
//! One connection, behind a mutex: Gatekeeper's writes are serialised
//! anyway (the intake's order is the inbox's order), and a sequence's
//! values then follow commit order, which the inbox and the outbox rely on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use std::path::Path;
use std::time::Duration;

use postgres::GenericClient;
use postgres::config::SslMode;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

mod batch_reads;
mod batch_writes;
mod lease;
mod writes;

use super::policy_records::{PolicyListRecord, RuleV1};
use super::records::{
    self, ContactRecord, DeferredRecord, EffectRecord, FailedEffectRecord, OwnerRecord, QuarantineRecord, RoomRecord,
    SeenRecord, StrangerRecord, TxnRecord, WaveRecordV,
};
use super::*;
use crate::engine::policy::{PolicyList, PolicyRule, RulesRead, Slot, index_key};
use crate::engine::{
    Contact, Decision, Deferred, Due, Kept, RoomState, StateChange, StrangerState, Subject, WaveKey, WaveRecord,
};

/// The schema's migrations, in order: version `n` is the first `n` applied.
/// A migration is never edited once released; a change is a new one.
const MIGRATIONS: &[&str] =
    &[include_str!("pg_migrations/0001_initial.sql"), include_str!("pg_migrations/0002_lease.sql")];

/// The schema version this Gatekeeper knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The schema's advisory lock (any number: one that no one else is likely
/// to use; "gkschema" in ASCII). Every connection of a running Gatekeeper
/// holds it shared, for as long as it lives; a migration takes it alone.
/// So a newer Gatekeeper (a standby upgraded first, the usual order of a
/// rolling upgrade) migrates only once every older one has stopped, and an
/// older one never writes to a schema it does not know.
const MIGRATION_LOCK: i64 = 0x676b_7363_6865_6d61;

/// The advisory lock that says a Gatekeeper uses this database ("gkrunnin"
/// in ASCII): every connection a `PgStore` makes holds it shared, for as
/// long as the connection lives; `gatekeeper migrate` takes it exclusive,
/// so that neither starts while the other runs. (Not the active/standby
/// lease: a standby holds this one too.)
const RUNNING_LOCK: i64 = 0x676b_7275_6e6e_696e;

mod copy;
pub use copy::PgCopy;
#[cfg(test)]
pub(crate) use copy::{NOT_COPIED, copy_table};

const C_TRANSACTIONS: &str = "transactions";
const C_REPLAYS: &str = "replayed_transactions";
const C_RECEIVED: &str = "events_received";
const C_FOLLOW_UPS: &str = "follow_ups";
const C_PROCESSED: &str = "events_processed";
const C_QUARANTINED: &str = "events_quarantined";
const C_EFFECTS_DONE: &str = "effects_done";
const C_EFFECTS_FAILED: &str = "effects_failed";
const K_OUTBOX_HIGH: &str = "outbox_high_water";
/// Kept clamped to `bigint`'s range.
const K_TXN_HIGH: &str = "highest_transaction_number";
/// How many events the quarantine keeps, changed with every change to it,
/// so that its bound is enforced without counting rows each time.
const K_QUARANTINE_LEN: &str = "quarantine_len";
/// A row written only to make earlier asynchronous commits durable.
const K_FLUSH: &str = "flush";

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Backend(with_causes(&e))
    }
}

/// Milliseconds and IDs as PostgreSQL's `bigint`: beyond its range (a
/// sender's far-future timestamp) they are clamped, which keeps every
/// comparison the store makes with them.
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unbig(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn text(what: &str, b: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(b.to_vec()).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub struct PgStore {
    config: postgres::Config,
    /// Set when the URL asks for TLS (`sslmode=require`).
    tls: Option<super::pg_tls::Rustls>,
    /// The connection for everything but the intake; `None` after it
    /// broke: made again by the next call.
    main: Mutex<Option<Conn>>,
    /// The intake's own connection (made at its first use): acknowledging
    /// a transaction to the homeserver never waits behind a batch of
    /// decisions being written, as with sled. Their writes touch no row in
    /// common (the intake's counters are its own), so they never wait on
    /// each other's locks either. The homeserver's events keep their order:
    /// only this connection stores them, one transaction at a time.
    intake: Mutex<Option<Conn>>,
    /// Set by a write committed without waiting for its WAL to be flushed
    /// (the quarantine's): [`Store::flush`] then makes it durable.
    unflushed: AtomicBool,
    /// Set once the schema is this Gatekeeper's: from then on every new
    /// connection holds the schema's lock shared (see [`MIGRATION_LOCK`]).
    schema_ready: AtomicBool,
    /// Why this store writes no more: a connection made again found the
    /// schema changed (by a newer Gatekeeper, while none of this one's
    /// connections held the lock). Gatekeeper then stops.
    failed: Mutex<Option<String>>,
    /// The lease of an active Gatekeeper (or the wait of a standby), which
    /// fences every write.
    lease: lease::LeaseState,
    /// Write transactions failing in a row (see [`writes`]).
    writes: writes::WriteStreak,
}

/// The connection and the statements prepared on it: each statement is
/// parsed once per connection, then only bound and run (one round trip
/// instead of two).
struct Conn {
    client: postgres::Client,
    statements: HashMap<&'static str, postgres::Statement>,
}

type Prepared<'a> = RefCell<&'a mut HashMap<&'static str, postgres::Statement>>;

/// A connection or a transaction on it, with its prepared statements.
/// (`RefCell`s: [`Lookups`] reads through `&self`, the client needs `&mut`.)
struct Db<'a, C: GenericClient> {
    c: RefCell<&'a mut C>,
    statements: Prepared<'a>,
}

type Params<'p> = [&'p (dyn postgres::types::ToSql + Sync)];

impl<'a, C: GenericClient> Db<'a, C> {
    fn new(c: &'a mut C, statements: &'a mut HashMap<&'static str, postgres::Statement>) -> Self {
        Db { c: RefCell::new(c), statements: RefCell::new(statements) }
    }

    fn statement(&self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.borrow_mut().prepare(sql)?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&self, sql: &'static str, params: &Params<'_>) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().execute(&s, params)?)
    }

    fn query(&self, sql: &'static str, params: &Params<'_>) -> Result<Vec<postgres::Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().query(&s, params)?)
    }

    fn query_opt(&self, sql: &'static str, params: &Params<'_>) -> Result<Option<postgres::Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().query_opt(&s, params)?)
    }

    fn query_one(&self, sql: &'static str, params: &Params<'_>) -> Result<postgres::Row, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.c.borrow_mut().query_one(&s, params)?)
    }

    fn batch_execute(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.c.borrow_mut().batch_execute(sql)?)
    }

    fn one(&self, sql: &'static str, params: &Params<'_>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.query_opt(sql, params)?.map(|r| r.get(0)))
    }

    /// One stored record (`R`, named `what` in errors) as the engine's `T`.
    fn record<R, T>(&self, what: &str, sql: &'static str, params: &Params<'_>) -> Result<Option<T>, StoreError>
    where
        R: for<'de> serde::Deserialize<'de> + Into<T>,
    {
        self.one(sql, params)?.map(|b| records::decode::<R>(what, &b).map(Into::into)).transpose()
    }

    fn count(&self, key: &tally::Key) -> Result<u64, StoreError> {
        let row = self.query_opt("SELECT count FROM kept_counts WHERE key = $1", &[&key.encode()])?;
        Ok(row.map_or(0, |r| unbig(r.get(0))))
    }
}

impl PgStore {
    /// Connects, and brings the schema up to this Gatekeeper's version;
    /// refuses a database whose schema is newer.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, None, None)
    }

    /// [`PgStore::open`] with the password given apart from the URL, and
    /// the CA that signed the server's certificate (for `sslmode=require`).
    pub fn open_with(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let (config, tls) = parse_url(url, password, ca_file)?;
        let store = PgStore {
            config,
            tls,
            main: Mutex::new(None),
            intake: Mutex::new(None),
            unflushed: AtomicBool::new(false),
            schema_ready: AtomicBool::new(false),
            failed: Mutex::new(None),
            lease: lease::LeaseState::default(),
            writes: writes::WriteStreak::default(),
        };
        store.with_conn(&store.main, |conn| {
            migrate(&mut conn.client)?;
            hold_schema(&mut conn.client)?.map_err(StoreError::Backend)
        })?;
        store.schema_ready.store(true, Ordering::SeqCst);
        Ok(store)
    }

    /// Whether the database can be reached, and its schema's version, for
    /// `check-config`: connects, changes nothing.
    pub fn probe(url: &str, password: Option<&str>, ca_file: Option<&Path>) -> Result<String, StoreError> {
        let (config, tls) = parse_url(url, password, ca_file)?;
        let mut client = connect(&config, tls.as_ref())?;
        Ok(match schema_version(&mut client)? {
            None => format!("reachable, empty (the schema, version {SCHEMA_VERSION}, is made at the first start)"),
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::Backend(format!(
                    "reachable, but its schema is version {v}, newer than this Gatekeeper knows ({SCHEMA_VERSION})"
                )));
            }
            Some(v) if v < SCHEMA_VERSION => {
                format!("reachable, schema version {v} (migrated to {SCHEMA_VERSION} at the next start)")
            }
            Some(v) => format!("reachable, schema version {v}; {}", lease::describe(&mut client)?),
        })
    }

    /// Runs `f` on the connection, connecting again first if it broke.
    ///
    /// The synchronous client drives its connection on a runtime of its
    /// own, which tokio refuses to start on a thread that already runs
    /// async tasks: called from one, the call leaves the runtime first
    /// (`block_in_place`), or on a single-threaded runtime runs on a thread
    /// of its own. The pipeline calls from blocking threads.
    fn with_conn<T: Send>(
        &self,
        lane: &Mutex<Option<Conn>>,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            // On a worker (`/health/ready`, start-up, shutdown), the call
            // may wait for the connection behind a batch, or for a server
            // that does not answer: the worker hands its other tasks (the
            // intake's requests among them) to another thread first, and
            // the client's own runtime may start. On a blocking thread (the
            // pipeline's) this is the call itself, without a thread.
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.with_conn_here(lane, f))
            }
            Ok(_) => std::thread::scope(|s| s.spawn(|| self.with_conn_here(lane, f)).join())
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => self.with_conn_here(lane, f),
        }
    }

    fn with_conn_here<T>(
        &self,
        lane: &Mutex<Option<Conn>>,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = lane.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
            *guard = None;
            let mut client = connect(&self.config, self.tls.as_ref())?;
            hold_running_lock(&mut client)?;
            if self.schema_ready.load(Ordering::SeqCst)
                && let Err(why) = hold_schema(&mut client)?
            {
                tracing::error!(%why, "the database's schema changed under this Gatekeeper; it writes no more");
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                return Err(StoreError::Backend(why));
            }
            *guard = Some(Conn { client, statements: HashMap::new() });
        }
        let conn = guard.as_mut().expect("connected above");
        let result = f(conn);
        // A call can fail on a connection the server ended before the
        // client has noticed the end: asked once after an error, so that
        // the next call connects again instead of failing on it too.
        let broken = conn.client.is_closed()
            || (result.is_err() && conn.client.is_valid(std::time::Duration::from_secs(2)).is_err());
        if broken {
            *guard = None;
        }
        result
    }

    /// Statements on the connection, each its own transaction.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&Db<'_, postgres::Client>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.with_conn(&self.main, |conn| f(&Db::new(&mut conn.client, &mut conn.statements)))
    }

    /// Runs `f` in one transaction, committed (synchronously) if it
    /// returns `Ok`, rolled back otherwise.
    fn write<T: Send>(
        &self,
        f: impl FnOnce(&Db<'_, postgres::Transaction<'_>>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.write_on(&self.main, f)
    }

    /// [`PgStore::write`] on the intake's connection.
    fn write_intake<T: Send>(
        &self,
        f: impl FnOnce(&Db<'_, postgres::Transaction<'_>>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.write_on(&self.intake, f)
    }

    fn write_on<T: Send>(
        &self,
        lane: &Mutex<Option<Conn>>,
        f: impl FnOnce(&Db<'_, postgres::Transaction<'_>>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        let result = self.with_conn(lane, |conn| {
            let mut tx = conn.client.transaction()?;
            let out = {
                let db = Db::new(&mut tx, &mut conn.statements);
                self.lease.fence(&db)?;
                f(&db)?
            };
            tx.commit()?;
            Ok(out)
        });
        self.writes.record(&result);
        result
    }

    /// Reads that must agree with each other: one read-only transaction
    /// that sees one moment of the database.
    fn read_together<T: Send>(
        &self,
        f: impl FnOnce(&Db<'_, postgres::Transaction<'_>>) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.with_conn(&self.main, |conn| {
            let mut tx = conn
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let out = f(&Db::new(&mut tx, &mut conn.statements))?;
            tx.commit()?;
            Ok(out)
        })
    }
}

/// The connection's configuration, and TLS when the URL asks for it.
fn parse_url(
    url: &str,
    password: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<(postgres::Config, Option<super::pg_tls::Rustls>), StoreError> {
    // The parser's message names the part that is wrong, never the URL
    // itself, which may hold a password.
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        StoreError::Backend(format!("the database URL is not valid: {}", with_causes(&e)))
    })?;
    if let Some(p) = password {
        config.password(p);
    }
    bound_waits(&mut config);
    let tls = if config.get_ssl_mode() == SslMode::Require {
        Some(super::pg_tls::Rustls::new(ca_file).map_err(StoreError::Backend)?)
    } else {
        // `prefer` (the default) would take whatever certificate the server
        // shows (Debian's is self-signed): TLS only when asked for, verified.
        config.ssl_mode(SslMode::Disable);
        None
    };
    Ok((config, tls))
}

/// How long a connection attempt may take before it fails (the kernel's
/// default gives up after two minutes of unanswered SYNs).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive, on both ends: a peer that is gone (its host down, the
/// network cut) is noticed after about `IDLE + INTERVAL * RETRIES`, not
/// after the kernel's default two hours of silence.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is
/// given up (Linux; the kernel's default retransmits for about 15 minutes).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// The server ends a session left idle inside a transaction this long.
/// Gatekeeper's transactions never wait on anything but the database, so
/// only a client that died mid-transaction (its host lost, a network cut:
/// no FIN reaches the server) gets there; until then its row locks (the
/// homeserver's transaction ID, the inbox items of a batch) would stop a
/// standby that took over from writing the same rows.
const IDLE_IN_TRANSACTION: &str = "30s";

/// Bounds every wait on the network that the URL does not bound itself, so
/// that a dead server or a cut network fails a call within seconds (and the
/// next call connects again, to the server that took over), and asks for a
/// server that accepts writes (with several hosts in the URL: the primary,
/// not a hot standby that would refuse every write).
fn bound_waits(config: &mut postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // tokio-postgres's own default idle time is the kernel's two hours.
    if config.get_keepalives_idle() >= Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVE_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVE_RETRIES);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_target_session_attrs() == postgres::config::TargetSessionAttrs::Any {
        config.target_session_attrs(postgres::config::TargetSessionAttrs::ReadWrite);
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the connection drives the client's own runtime, which
        // tokio refuses on a thread that runs async tasks.
        let conns: Vec<Conn> = [&mut self.main, &mut self.intake, self.lease.connection_mut()]
            .into_iter()
            .filter_map(|lane| lane.get_mut().unwrap_or_else(|p| p.into_inner()).take())
            .collect();
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(move || drop(conns)).join();
        }
    }
}

fn connect(config: &postgres::Config, tls: Option<&super::pg_tls::Rustls>) -> Result<postgres::Client, StoreError> {
    let client = match tls {
        Some(tls) => config.connect(tls.clone()),
        None => config.connect(postgres::NoTls),
    };
    // The error says what failed (refused, the TLS handshake, the
    // password), never the password itself.
    let mut client =
        client.map_err(|e| StoreError::Backend(format!("connecting to PostgreSQL: {}", with_causes(&e))))?;
    // Whatever the server's default: nothing is acknowledged before its
    // commit is on disk. And the server's side of the keepalive and a bound
    // on a transaction left open: a Gatekeeper that dies with its host
    // releases what it held within seconds (see `IDLE_IN_TRANSACTION`).
    client.batch_execute(&format!(
        "SET synchronous_commit = on; SET application_name = 'gatekeeper'; \
         SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'; \
         SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; SET tcp_keepalives_count = {}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES
    ))?;
    Ok(client)
}

/// An error and what caused it (tokio-postgres says "error performing TLS
/// handshake" and keeps why in its source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The schema's version, `None` on a database Gatekeeper never used.
fn schema_version(client: &mut postgres::Client) -> Result<Option<i32>, StoreError> {
    let exists: bool = client.query_one("SELECT to_regclass('gatekeeper_schema') IS NOT NULL", &[])?.get(0);
    Ok(if exists { client.query_one("SELECT max(version) FROM gatekeeper_schema", &[])?.get(0) } else { None })
}

fn newer_schema(found: i32) -> StoreError {
    StoreError::Backend(format!(
        "the database's schema is version {found}, newer than this Gatekeeper knows ({SCHEMA_VERSION}): \
         it was used by a newer Gatekeeper; run that one (or a newer one) instead"
    ))
}

/// Takes the schema's lock shared for the connection's life (see
/// [`MIGRATION_LOCK`]), then checks that the schema is this Gatekeeper's:
/// the inner error says why not.
fn hold_schema(client: &mut postgres::Client) -> Result<Result<(), String>, StoreError> {
    // Its own statement, before the version is read: a statement reads
    // the database as it was when it started, before any wait for a lock.
    client.execute("SELECT pg_advisory_lock_shared($1)", &[&MIGRATION_LOCK])?;
    Ok(match schema_version(client)? {
        Some(SCHEMA_VERSION) => Ok(()),
        found => Err(format!(
            "the database's schema is version {}, not this Gatekeeper's ({SCHEMA_VERSION}): another Gatekeeper \
             migrated it; run that one's version",
            found.unwrap_or(0)
        )),
    })
}

/// How often a migration that waits for other Gatekeepers to stop tries
/// again.
const MIGRATION_POLL: Duration = Duration::from_secs(1);

fn migrate(client: &mut postgres::Client) -> Result<(), StoreError> {
    let mut said = false;
    loop {
        match schema_version(client)? {
            // Up to date (a standby starting beside the active one, or
            // another Gatekeeper starting at the same time migrated it).
            Some(SCHEMA_VERSION) => return Ok(()),
            // Refused at once, not after waiting for the newer ones to stop.
            Some(found) if found > SCHEMA_VERSION => return Err(newer_schema(found)),
            _ => {}
        }
        let mut tx = client.transaction()?;
        // Tried, not waited for in PostgreSQL's queue: a waiting request
        // for the lock alone would make every running Gatekeeper's next
        // connection wait behind it, for as long as the others run.
        let alone: bool = tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?.get(0);
        if alone {
            return migrate_alone(tx);
        }
        drop(tx);
        if !said {
            said = true;
            tracing::warn!(
                to = SCHEMA_VERSION,
                "another Gatekeeper runs on this database: its schema is migrated once every other one stops; \
                 waiting"
            );
        }
        std::thread::sleep(MIGRATION_POLL);
    }
}

/// The migrations this Gatekeeper knows that the database lacks, under
/// the schema's lock, taken alone.
fn migrate_alone(mut tx: postgres::Transaction<'_>) -> Result<(), StoreError> {
    migrate_to_known(&mut tx)?;
    tx.commit()?;
    Ok(())
}

/// Takes [`RUNNING_LOCK`] shared on a new connection: refused while
/// `gatekeeper migrate` copies this database.
fn hold_running_lock(client: &mut postgres::Client) -> Result<(), StoreError> {
    let held: bool = client.query_one("SELECT pg_try_advisory_lock_shared($1)", &[&RUNNING_LOCK])?.get(0);
    if !held {
        return Err(StoreError::Backend(
            "`gatekeeper migrate` is copying this database; start Gatekeeper once it is done".into(),
        ));
    }
    Ok(())
}

/// The schema made or brought up to date inside `migrate`'s copying
/// transaction, which holds [`RUNNING_LOCK`] alone: no Gatekeeper's
/// connection holds the schema's lock then, so it is taken at once.
fn migrate_in(tx: &mut impl GenericClient) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    migrate_to_known(tx)
}

/// Brings the schema up to this Gatekeeper's version inside `tx`, under
/// the schema's lock taken alone; refuses a newer one.
fn migrate_to_known(tx: &mut impl GenericClient) -> Result<(), StoreError> {
    tx.batch_execute("CREATE TABLE IF NOT EXISTS gatekeeper_schema (version integer NOT NULL)")?;
    let found: Option<i32> = tx.query_opt("SELECT max(version) FROM gatekeeper_schema", &[])?.and_then(|r| r.get(0));
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(newer_schema(found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        tx.batch_execute(sql)
            .map_err(|e| StoreError::Backend(format!("schema migration {}: {}", i + 1, with_causes(&e))))?;
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM gatekeeper_schema", &[])?;
        tx.execute("INSERT INTO gatekeeper_schema (version) VALUES ($1)", &[&SCHEMA_VERSION])?;
        tracing::info!(from = found, to = SCHEMA_VERSION, "database schema migrated");
    }
    Ok(())
}

/// Adds to running totals (distinct names in one call).
fn bump(tx: &Db<'_, impl GenericClient>, counts: &[(&str, i64)]) -> Result<(), StoreError> {
    let counts: Vec<_> = counts.iter().filter(|(_, by)| *by != 0).collect();
    if counts.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = counts.iter().map(|(n, _)| *n).collect();
    let by: Vec<i64> = counts.iter().map(|(_, b)| *b).collect();
    tx.execute(
        "INSERT INTO counters (name, value) SELECT * FROM unnest($1::text[], $2::bigint[]) \
         ON CONFLICT (name) DO UPDATE SET value = counters.value + EXCLUDED.value",
        &[&names, &by],
    )?;
    Ok(())
}

fn set_counter(tx: &Db<'_, impl GenericClient>, name: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&name, &value],
    )?;
    Ok(())
}

fn counter(c: &Db<'_, impl GenericClient>, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(c.query_opt("SELECT value FROM counters WHERE name = $1", &[&name])?.map(|r| r.get(0)))
}

/// Appends events to the inbox, in the order given.
fn push_inbox(tx: &Db<'_, impl GenericClient>, internal: &[bool], raw: &[&[u8]]) -> Result<(), StoreError> {
    if raw.is_empty() {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO inbox (internal, raw) \
         SELECT i, r FROM unnest($1::boolean[], $2::bytea[]) WITH ORDINALITY AS e(i, r, n) ORDER BY n",
        &[&internal, &raw],
    )?;
    Ok(())
}

/// Applies count changes (see `tally`), never below zero.
fn count_in(tx: &Db<'_, impl GenericClient>, deltas: Vec<(tally::Key, i64)>) -> Result<(), StoreError> {
    // One statement: the deltas summed per key first (a room that changes
    // inviter takes from and adds to its owner's count), as a row may be
    // changed once per statement.
    let mut summed: std::collections::BTreeMap<Vec<u8>, i64> = Default::default();
    for (key, delta) in deltas {
        *summed.entry(key.encode()).or_default() += delta;
    }
    summed.retain(|_, d| *d != 0);
    if summed.is_empty() {
        return Ok(());
    }
    let (keys, deltas): (Vec<Vec<u8>>, Vec<i64>) = summed.into_iter().unzip();
    tx.execute(
        "INSERT INTO kept_counts (key, count) \
         SELECT k, greatest(d, 0) FROM unnest($1::bytea[], $2::bigint[]) AS t(k, d) \
         ON CONFLICT (key) DO UPDATE SET count = greatest(kept_counts.count \
           + (SELECT d FROM unnest($1::bytea[], $2::bigint[]) AS u(k, d) WHERE u.k = EXCLUDED.key), 0)",
        &[&keys, &deltas],
    )?;
    Ok(())
}

fn decode_room(b: &[u8]) -> Result<RoomState, StoreError> {
    Ok(records::decode::<RoomRecord>("room", b)?.into())
}

fn decode_deferred(b: &[u8]) -> Result<Deferred, StoreError> {
    Ok(records::decode::<DeferredRecord>("deferred", b)?.into())
}

impl<C: GenericClient> Lookups for Db<'_, C> {
    fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
        self.query("SELECT record FROM rooms WHERE room_id = $1 ORDER BY owner", &[&room.as_bytes()])?
            .iter()
            .map(|r| decode_room(r.get(0)))
            .collect()
    }
    fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
        self.record::<OwnerRecord, _>("owner", "SELECT record FROM owners WHERE user_id = $1", &[&user.as_bytes()])
    }
    fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        let subject = subject.to_string();
        self.record::<ContactRecord, _>(
            "contact",
            "SELECT record FROM contacts WHERE owner = $1 AND subject = $2",
            &[&owner.as_bytes(), &subject.as_bytes()],
        )
    }
    fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
        self.record::<StrangerRecord, _>(
            "stranger",
            "SELECT record FROM strangers WHERE owner = $1 AND user_id = $2",
            &[&owner.as_bytes(), &user.as_bytes()],
        )
    }
    fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<Deferred>, StoreError> {
        match self.one(
            "SELECT record FROM deferred WHERE owner = $1 AND event_id = $2",
            &[&owner.as_bytes(), &event.as_bytes()],
        )? {
            Some(b) => Ok(Some(decode_deferred(&b)?)),
            None => Ok(None),
        }
    }
    fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        tally::kept(|k| self.count(k), owner, with)
    }
    fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
        self.record::<WaveRecordV, _>("wave", "SELECT record FROM waves WHERE key = $1", &[&records::wave_key(key)])
    }
    fn rooms_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<RoomState>>, StoreError> {
        batch_reads::rooms_of(self, rooms)
    }
    fn owners_of(&self, users: &[OwnedUserId]) -> Result<Vec<Option<OwnerState>>, StoreError> {
        batch_reads::owners_of(self, users)
    }
    fn contacts_of(&self, keys: &[(OwnedUserId, Subject)]) -> Result<Vec<Option<Contact>>, StoreError> {
        batch_reads::contacts_of(self, keys)
    }
    fn strangers_of(&self, keys: &[(OwnedUserId, OwnedUserId)]) -> Result<Vec<Option<StrangerState>>, StoreError> {
        batch_reads::strangers_of(self, keys)
    }
    fn kept_of(&self, keys: &[(OwnedUserId, Option<OwnedUserId>)]) -> Result<Vec<Kept>, StoreError> {
        batch_reads::kept_of(self, keys)
    }
    fn waves_of(&self, keys: &[WaveKey]) -> Result<Vec<Option<WaveRecord>>, StoreError> {
        batch_reads::waves_of(self, keys)
    }
    fn seen_events_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<OwnedEventId>>, StoreError> {
        batch_reads::seen_events_of(self, rooms)
    }
    fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError> {
        match self.one("SELECT record FROM seen WHERE room_id = $1", &[&room.as_bytes()])? {
            Some(b) => Ok(records::decode::<SeenRecord>("seen", &b)?.into()),
            None => Ok(Vec::new()),
        }
    }
    fn policy_list(&self, room: &RoomId) -> Result<Option<PolicyList>, StoreError> {
        self.record::<PolicyListRecord, _>(
            "policy list",
            "SELECT record FROM policy_lists WHERE room_id = $1",
            &[&room.as_bytes()],
        )
    }
    fn policy_rules(&self, room: &RoomId, read: &RulesRead) -> Result<Vec<(Slot, PolicyRule)>, StoreError> {
        let room = room.as_bytes();
        let rows = match read {
            RulesRead::None => return Ok(Vec::new()),
            RulesRead::Slot((kind, key)) => self.query(
                "SELECT kind, state_key, record FROM policy_rules WHERE room_id = $1 AND kind = $2 AND state_key = $3",
                &[&room, &kind.as_bytes(), &key.as_bytes()],
            )?,
            RulesRead::Naming(keys) => {
                let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
                self.query(
                    "SELECT kind, state_key, record FROM policy_rules WHERE room_id = $1 AND index_key = ANY($2) \
                     ORDER BY kind, state_key",
                    &[&room, &keys],
                )?
            }
            RulesRead::All => self.query(
                "SELECT kind, state_key, record FROM policy_rules WHERE room_id = $1 ORDER BY kind, state_key",
                &[&room],
            )?,
        };
        rows.iter()
            .map(|r| {
                let slot = (text("a rule's type", r.get(0))?, text("a rule's state key", r.get(1))?);
                Ok((slot, records::decode::<RuleV1>("policy rule", r.get(2))?.into()))
            })
            .collect()
    }
    fn operator_lists(&self) -> Result<Vec<OwnedRoomId>, StoreError> {
        self.query("SELECT room_id FROM policy_lists WHERE operator ORDER BY room_id", &[])?
            .iter()
            .map(|r| {
                OwnedRoomId::try_from(text("a list's room", r.get(0))?)
                    .map_err(|e| StoreError::Corrupt(format!("a list's room: {e}")))
            })
            .collect()
    }
}

impl Lookups for PgStore {
    fn rooms(&self, room: &RoomId) -> Result<Vec<RoomState>, StoreError> {
        self.with(|r| r.rooms(room))
    }
    fn owner(&self, user: &UserId) -> Result<Option<OwnerState>, StoreError> {
        self.with(|r| r.owner(user))
    }
    fn contact(&self, owner: &UserId, subject: &Subject) -> Result<Option<Contact>, StoreError> {
        self.with(|r| r.contact(owner, subject))
    }
    fn stranger(&self, owner: &UserId, user: &UserId) -> Result<Option<StrangerState>, StoreError> {
        self.with(|r| r.stranger(owner, user))
    }
    fn deferred(&self, owner: &UserId, event: &EventId) -> Result<Option<Deferred>, StoreError> {
        self.with(|r| r.deferred(owner, event))
    }
    fn kept(&self, owner: &UserId, with: Option<&UserId>) -> Result<Kept, StoreError> {
        self.with(|r| r.kept(owner, with))
    }
    fn wave(&self, key: &WaveKey) -> Result<Option<WaveRecord>, StoreError> {
        self.with(|r| r.wave(key))
    }
    fn seen_events(&self, room: &RoomId) -> Result<Vec<OwnedEventId>, StoreError> {
        self.with(|r| r.seen_events(room))
    }
    fn reads_in_batches(&self) -> bool {
        true
    }
    fn rooms_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<RoomState>>, StoreError> {
        self.with(|r| r.rooms_of(rooms))
    }
    fn owners_of(&self, users: &[OwnedUserId]) -> Result<Vec<Option<OwnerState>>, StoreError> {
        self.with(|r| r.owners_of(users))
    }
    fn contacts_of(&self, keys: &[(OwnedUserId, Subject)]) -> Result<Vec<Option<Contact>>, StoreError> {
        self.with(|r| r.contacts_of(keys))
    }
    fn strangers_of(&self, keys: &[(OwnedUserId, OwnedUserId)]) -> Result<Vec<Option<StrangerState>>, StoreError> {
        self.with(|r| r.strangers_of(keys))
    }
    fn kept_of(&self, keys: &[(OwnedUserId, Option<OwnedUserId>)]) -> Result<Vec<Kept>, StoreError> {
        self.with(|r| r.kept_of(keys))
    }
    fn waves_of(&self, keys: &[WaveKey]) -> Result<Vec<Option<WaveRecord>>, StoreError> {
        self.with(|r| r.waves_of(keys))
    }
    fn seen_events_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<Vec<OwnedEventId>>, StoreError> {
        self.with(|r| r.seen_events_of(rooms))
    }
    fn policy_list(&self, room: &RoomId) -> Result<Option<PolicyList>, StoreError> {
        self.with(|r| r.policy_list(room))
    }
    fn policy_rules(&self, room: &RoomId, read: &RulesRead) -> Result<Vec<(Slot, PolicyRule)>, StoreError> {
        self.with(|r| r.policy_rules(room, read))
    }
    fn operator_lists(&self) -> Result<Vec<OwnedRoomId>, StoreError> {
        self.with(|r| r.operator_lists())
    }
}

/// Applies one change that reaches beyond single rows, inside a batch's
/// transaction (the others are written together: see [`batch_writes`]).
fn apply_wide(tx: &Db<'_, impl GenericClient>, change: &StateChange) -> Result<(), StoreError> {
    match change {
        StateChange::ForgetOwnerData(owner) => {
            // Inside the batch's transaction: what the batch put before
            // goes too, what it puts after stays.
            let owner = owner.as_bytes();
            tx.execute("DELETE FROM contacts WHERE owner = $1", &[&owner])?;
            tx.execute("DELETE FROM strangers WHERE owner = $1", &[&owner])?;
            for row in tx.query("DELETE FROM deferred WHERE owner = $1 RETURNING record", &[&owner])? {
                count_in(tx, tally::message(Some(&decode_deferred(row.get(0))?), None))?;
            }
        }
        StateChange::RemovePolicyList(room) => {
            tx.execute("DELETE FROM policy_lists WHERE room_id = $1", &[&room.as_bytes()])?;
            tx.execute("DELETE FROM policy_rules WHERE room_id = $1", &[&room.as_bytes()])?;
        }
        other => return batch_writes::apply_all(tx, &[other]),
    }
    Ok(())
}

impl Store for PgStore {
    fn accept_transaction(&self, txn_id: &str, events: &[&[u8]], now_ms: u64) -> Result<Accepted, StoreError> {
        let digest = records::hex(&transaction_digest(events));
        let record = records::encode(&TxnRecord::V1 { at_ms: now_ms, digest: digest.clone(), events: events.len() });
        self.write_intake(|tx| {
            let key: [&(dyn postgres::types::ToSql + Sync); 3] = [&txn_id.as_bytes(), &big(now_ms), &record];
            // The usual case, a transaction not seen before: one statement.
            let fresh = tx.execute(
                "INSERT INTO txns (txn_id, at_ms, record) VALUES ($1, $2, $3) ON CONFLICT (txn_id) DO NOTHING",
                &key,
            )? == 1;
            let reused = !fresh;
            if reused {
                let row = tx.query_one("SELECT record FROM txns WHERE txn_id = $1 FOR UPDATE", &key[..1])?;
                let TxnRecord::V1 { digest: seen, .. } = records::decode("transaction", row.get(0))?;
                if seen == digest {
                    bump(tx, &[(C_REPLAYS, 1)])?;
                    return Ok(Accepted::Replay);
                }
                tx.execute("UPDATE txns SET at_ms = $2, record = $3 WHERE txn_id = $1", &key)?;
            }
            push_inbox(tx, &vec![false; events.len()], events)?;
            bump(tx, &[(C_TRANSACTIONS, 1), (C_RECEIVED, events.len() as i64)])?;
            if let Ok(n) = txn_id.parse::<u64>() {
                // Clamped to bigint's range: an ID past 2^63 reads as 2^63 - 1.
                tx.execute(
                    "INSERT INTO counters (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, EXCLUDED.value)",
                    &[&K_TXN_HIGH, &big(n)],
                )?;
            }
            Ok(if reused {
                Accepted::ReusedId { events: events.len() }
            } else {
                Accepted::New { events: events.len() }
            })
        })
    }

    fn highest_transaction_number(&self) -> Result<Option<u64>, StoreError> {
        self.with_conn(&self.intake, |conn| {
            Ok(counter(&Db::new(&mut conn.client, &mut conn.statements), K_TXN_HIGH)?.map(unbig))
        })
    }

    fn accept_sync(&self, since: Option<&str>, next_batch: &str, events: &[&[u8]]) -> Result<bool, StoreError> {
        self.write_intake(|tx| {
            let now: Option<Vec<u8>> =
                tx.query_opt("SELECT position FROM sync_position FOR UPDATE", &[])?.map(|r| r.get(0));
            if now.as_deref() != since.map(str::as_bytes) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO sync_position (position) VALUES ($1) \
                 ON CONFLICT (only_row) DO UPDATE SET position = EXCLUDED.position",
                &[&next_batch.as_bytes()],
            )?;
            push_inbox(tx, &vec![false; events.len()], events)?;
            bump(tx, &[(C_RECEIVED, events.len() as i64)])?;
            Ok(true)
        })
    }

    fn sync_position(&self) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            let row = c.query_opt("SELECT position FROM sync_position", &[])?;
            Ok(row.map(|r| String::from_utf8_lossy(r.get(0)).into_owned()))
        })
    }

    fn reset_sync_position(&self) -> Result<(), StoreError> {
        self.write(|tx| tx.execute("DELETE FROM sync_position", &[]).map(drop))
    }

    fn connector_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(|c| {
            Ok(c.query_opt("SELECT value FROM connector WHERE key = $1", &[&key.as_bytes()])?.map(|r| r.get(0)))
        })
    }

    fn set_connector_value(&self, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        self.write(|tx| {
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO connector (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    &[&key.as_bytes(), &v],
                )?,
                None => tx.execute("DELETE FROM connector WHERE key = $1", &[&key.as_bytes()])?,
            };
            Ok(())
        })
    }

    fn connector_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let len =
            i32::try_from(prefix.len()).map_err(|_| StoreError::Backend("connector key prefix too long".into()))?;
        self.with(|c| {
            let rows = c.query(
                "SELECT key, value FROM connector WHERE substring(key FROM 1 FOR $2) = $1 ORDER BY key",
                &[&prefix.as_bytes(), &len],
            )?;
            Ok(rows.iter().map(|r| (String::from_utf8_lossy(r.get(0)).into_owned(), r.get(1))).collect())
        })
    }

    fn inbox_batch_within(&self, limit_: usize, max_bytes: usize) -> Result<Vec<InboxItem>, StoreError> {
        // The bytes before each event, over the first `limit` only: an event
        // is read while those are under the bound (so the first always is).
        const WITHIN: &str = "SELECT seq, internal, raw FROM (
                SELECT seq, internal, raw, sum(octet_length(raw)) OVER (ORDER BY seq) - octet_length(raw) AS before
                FROM (SELECT seq, internal, raw FROM inbox ORDER BY seq LIMIT $1) first
            ) counted WHERE before < $2 ORDER BY seq";
        self.with(|c| {
            let rows = c.query(WITHIN, &[&limit(limit_), &limit(max_bytes)])?;
            Ok(rows.iter().map(|r| InboxItem { seq: unbig(r.get(0)), internal: r.get(1), raw: r.get(2) }).collect())
        })
    }

    // All look-ups in one read-only transaction, so that the snapshot is
    // consistent.
    fn snapshot(
        &self,
        room: Option<&RoomId>,
        users: &[OwnedUserId],
        related: Option<&EventId>,
    ) -> Result<Snapshot, StoreError> {
        self.read_together(|tx| assemble_snapshot(tx, room, users, related))
    }

    fn overview(&self, owner: &UserId) -> Result<OwnerOverview, StoreError> {
        let o = owner.as_bytes();
        self.read_together(|tx| {
            let mut overview = OwnerOverview::default();
            for r in tx.query("SELECT subject, record FROM contacts WHERE owner = $1 ORDER BY subject", &[&o])? {
                let subject: Subject =
                    text("contact", r.get(0))?.parse().map_err(|e| StoreError::Corrupt(format!("contact key: {e}")))?;
                overview.contacts.insert(subject, records::decode::<ContactRecord>("contact", r.get(1))?.into());
            }
            for r in tx.query("SELECT record FROM deferred WHERE owner = $1 ORDER BY event_id", &[&o])? {
                let d = decode_deferred(r.get(0))?;
                if d.denied_ms.is_some() { overview.denied.push(d) } else { overview.deferred.push(d) }
            }
            for r in tx.query("SELECT user_id, record FROM strangers WHERE owner = $1 ORDER BY user_id", &[&o])? {
                let st: StrangerState = records::decode::<StrangerRecord>("stranger", r.get(1))?.into();
                if counts_something(&st) {
                    let user = OwnedUserId::try_from(text("stranger", r.get(0))?)
                        .map_err(|e| StoreError::Corrupt(format!("stranger key: {e}")))?;
                    overview.strangers.insert(user, st);
                }
            }
            for r in tx.query("SELECT room_id, record FROM rooms WHERE owner = $1 AND held ORDER BY room_id", &[&o])? {
                let room = OwnedRoomId::try_from(text("room", r.get(0))?)
                    .map_err(|e| StoreError::Corrupt(format!("room key: {e}")))?;
                if let RoomState::Held(h) = decode_room(r.get(1))?
                    && h.owner == owner
                {
                    overview.held.insert(room, h);
                }
            }
            Ok(overview)
        })
    }

    fn commit_batch_seen(&self, decided: &[(u64, &Decision)], empty: &[u64], seen: &[Seen]) -> Result<(), StoreError> {
        self.write(|tx| {
            // Every item of the batch taken from the inbox in one statement;
            // those already gone were committed before.
            let seqs: Vec<i64> = empty.iter().chain(decided.iter().map(|(seq, _)| seq)).map(|s| big(*s)).collect();
            let mut present: std::collections::HashSet<u64> = std::collections::HashSet::new();
            if !seqs.is_empty() {
                for r in tx.query("DELETE FROM inbox WHERE seq = ANY($1) RETURNING seq", &[&seqs])? {
                    present.insert(unbig(r.get(0)));
                }
            }
            // The inbox items this write consumes: only their events are
            // remembered. Each once: the empty ones first, then each
            // decision whose item was there (a commit for an item that is
            // gone was made before: doing it again would queue its effects
            // twice).
            let mut consumed = std::collections::HashSet::new();
            for seq in empty {
                if present.remove(seq) {
                    consumed.insert(*seq);
                }
            }
            let (mut mail, mut effects, mut changes) = (Vec::new(), Vec::new(), Vec::new());
            for (seq, decision) in decided {
                if !present.remove(seq) {
                    continue;
                }
                consumed.insert(*seq);
                changes.extend(&decision.changes);
                mail.extend(decision.effects.iter().map(Effect::is_mail));
                effects.extend(decision.effects.iter().map(|e| records::encode(&EffectRecord::V1(e.into()))));
            }
            // Every decision's changes, in order, in a few statements.
            batch_writes::apply_all(tx, &changes)?;
            // The batch's effects in one statement, their IDs in order.
            if !effects.is_empty() {
                tx.execute(
                    "WITH put AS (INSERT INTO outbox (mail, record) \
                       SELECT m, r FROM unnest($1::boolean[], $2::bytea[]) WITH ORDINALITY AS e(m, r, n) ORDER BY n \
                       RETURNING id) \
                     INSERT INTO counters (name, value) SELECT $3, max(id) FROM put \
                     ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value, EXCLUDED.value)",
                    &[&mail, &effects, &K_OUTBOX_HIGH],
                )?;
            }
            bump(tx, &[(C_PROCESSED, consumed.len() as i64)])?;
            // The lists of the rooms noted, read, added to and written in
            // a statement each; a room this batch stopped tracking (or never
            // tracked) keeps no list.
            let noted: Vec<&Seen> = seen.iter().filter(|s| consumed.contains(&s.seq)).collect();
            if !noted.is_empty() {
                let rooms: Vec<OwnedRoomId> = noted
                    .iter()
                    .map(|s| s.room.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let ids: Vec<&[u8]> = rooms.iter().map(|r| r.as_bytes()).collect();
                let tracked: std::collections::HashSet<Vec<u8>> = tx
                    .query("SELECT DISTINCT room_id FROM rooms WHERE room_id = ANY($1)", &[&ids])?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let rooms: Vec<OwnedRoomId> = rooms.into_iter().filter(|r| tracked.contains(r.as_bytes())).collect();
                let stored = tx.seen_events_of(&rooms)?;
                let mut lists: std::collections::HashMap<&RoomId, Vec<OwnedEventId>> =
                    rooms.iter().map(|r| &**r).zip(stored).collect();
                for s in noted {
                    if let Some(list) = lists.get_mut(&*s.room) {
                        super::remember(list, &s.event);
                    }
                }
                if !lists.is_empty() {
                    let (ids, recs): (Vec<&[u8]>, Vec<Vec<u8>>) = lists
                        .iter()
                        .map(|(room, list)| (room.as_bytes(), records::encode(&SeenRecord::from(list.as_slice()))))
                        .unzip();
                    tx.execute(
                        "INSERT INTO seen (room_id, record) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                         ON CONFLICT (room_id) DO UPDATE SET record = EXCLUDED.record",
                        &[&ids, &recs],
                    )?;
                }
            }
            Ok(())
        })
    }

    fn seen_rooms(&self) -> Result<Vec<(OwnedRoomId, Vec<OwnedEventId>)>, StoreError> {
        self.with(|c| {
            c.query("SELECT room_id, record FROM seen ORDER BY room_id", &[])?
                .iter()
                .map(|r| {
                    let room = OwnedRoomId::try_from(text("seen", r.get(0))?)
                        .map_err(|e| StoreError::Corrupt(format!("seen key: {e}")))?;
                    Ok((room, records::decode::<SeenRecord>("seen", r.get(1))?.into()))
                })
                .collect()
        })
    }

    fn push_follow_ups(&self, follow_ups: &[FollowUp]) -> Result<(), StoreError> {
        if follow_ups.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let internal: Vec<bool> = follow_ups.iter().map(|f| f.internal).collect();
            let raw: Vec<&[u8]> = follow_ups.iter().map(|f| f.raw.as_slice()).collect();
            push_inbox(tx, &internal, &raw)?;
            bump(tx, &[(C_FOLLOW_UPS, follow_ups.len() as i64)])
        })
    }

    fn quarantine(&self, seq: u64, reason: &str, now_ms: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            // Not acknowledged to anyone: durable with the next flush, as
            // with sled, so that a flood of bad events is not a flood of
            // disk syncs.
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
            let Some(row) = tx.query_opt("DELETE FROM inbox WHERE seq = $1 RETURNING raw", &[&big(seq)])? else {
                return Ok(());
            };
            let raw: Vec<u8> = row.get(0);
            let record =
                QuarantineRecord::V1 { at_ms: now_ms, reason: reason.to_owned(), raw: super::quarantined_raw(&raw) };
            // Set aside and counted in one statement (the item's sequence
            // number was the inbox's: no other quarantined event has it).
            let counts = tx.query(
                "WITH put AS (INSERT INTO quarantine (seq, at_ms, record) VALUES ($1, $2, $3)) \
                 INSERT INTO counters (name, value) VALUES ($4, 1), ($5, 1) \
                 ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING name, value",
                &[&big(seq), &big(now_ms), &records::encode(&record), &C_QUARANTINED, &K_QUARANTINE_LEN],
            )?;
            let kept = counts.iter().find(|r| r.get::<_, &str>(0) == K_QUARANTINE_LEN).map_or(0, |r| r.get(1));
            // Beyond the bound the oldest go at once, in the same transaction.
            let excess = unbig(kept).saturating_sub(super::QUARANTINE_KEEP as u64);
            if excess > 0 {
                tx.execute(
                    "WITH gone AS (DELETE FROM quarantine \
                       WHERE seq IN (SELECT seq FROM quarantine ORDER BY seq LIMIT $1) RETURNING 1) \
                     UPDATE counters SET value = value - (SELECT count(*) FROM gone) WHERE name = $2",
                    &[&big(excess), &K_QUARANTINE_LEN],
                )?;
            }
            Ok(())
        })?;
        self.unflushed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn prune_quarantine(&self, before_ms: u64, keep: usize) -> Result<usize, StoreError> {
        self.write(|tx| {
            let old = tx.execute("DELETE FROM quarantine WHERE at_ms < $1", &[&big(before_ms)])?;
            let beyond = tx.execute(
                "DELETE FROM quarantine WHERE seq IN (SELECT seq FROM quarantine ORDER BY seq DESC OFFSET $1)",
                &[&limit(keep)],
            )?;
            // Counted again, exactly.
            let n: i64 = tx.query_one("SELECT count(*) FROM quarantine", &[])?.get(0);
            set_counter(tx, K_QUARANTINE_LEN, n)?;
            Ok((old + beyond) as usize)
        })
    }

    fn writes_failing(&self) -> Option<(u32, Option<String>)> {
        Some((self.writes.in_a_row(), self.writes.failing()))
    }

    fn failure(&self) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        failed.or_else(|| self.lease.lost().map(|reason| format!("the lease is lost: {reason}")))
    }

    fn lease(&self) -> Option<&dyn Lease> {
        Some(self)
    }

    fn flush(&self) -> Result<(), StoreError> {
        if !self.unflushed.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        // A synchronous commit waits for the WAL up to its own record,
        // which comes after every earlier commit's: those are durable too.
        self.write(|tx| set_counter(tx, K_FLUSH, 0)).inspect_err(|_| self.unflushed.store(true, Ordering::SeqCst))
    }

    fn outbox_after(&self, after: u64, up_to: u64, limit_: usize, mail: bool) -> Result<Vec<OutboxItem>, StoreError> {
        if after >= up_to {
            return Ok(Vec::new());
        }
        self.with(|c| {
            let rows = c.query(
                "SELECT id, record FROM outbox WHERE id > $1 AND id <= $2 AND mail = $3 ORDER BY id LIMIT $4",
                &[&big(after), &big(up_to), &mail, &limit(limit_)],
            )?;
            rows.iter()
                .map(|r| {
                    let EffectRecord::V1(record) = records::decode("effect", r.get(1))?;
                    Ok(OutboxItem { id: unbig(r.get(0)), effect: record.into() })
                })
                .collect()
        })
    }

    fn outbox_high_water(&self) -> Result<u64, StoreError> {
        self.with(|c| Ok(unbig(counter(c, K_OUTBOX_HIGH)?.unwrap_or(0))))
    }

    fn finish_effects(
        &self,
        finished: &[(u64, EffectOutcome)],
        follow_ups: &[FollowUp],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let Some((first, _)) = finished.first() else { return Ok(()) };
        self.write(|tx| {
            if tx.query_opt("SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", &[&big(*first)])?.is_none() {
                return Ok(());
            }
            let internal: Vec<bool> = follow_ups.iter().map(|f| f.internal).collect();
            let raw: Vec<&[u8]> = follow_ups.iter().map(|f| f.raw.as_slice()).collect();
            push_inbox(tx, &internal, &raw)?;
            let (mut done, mut failed) = (0, 0);
            for (id, outcome) in finished {
                let Some(row) = tx.query_opt("DELETE FROM outbox WHERE id = $1 RETURNING record", &[&big(*id)])? else {
                    continue;
                };
                match outcome {
                    EffectOutcome::Done => done += 1,
                    EffectOutcome::Failed(reason) => {
                        let EffectRecord::V1(effect) = records::decode("effect", row.get(0))?;
                        let record = FailedEffectRecord::V1 { at_ms: now_ms, reason: reason.clone(), effect };
                        tx.execute(
                            "INSERT INTO failed_effects (id, record) VALUES ($1, $2) \
                             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                            &[&big(*id), &records::encode(&record)],
                        )?;
                        failed += 1;
                    }
                }
            }
            bump(tx, &[(C_FOLLOW_UPS, follow_ups.len() as i64), (C_EFFECTS_DONE, done), (C_EFFECTS_FAILED, failed)])
        })
    }

    fn stats(&self) -> Result<Stats, StoreError> {
        let deferred = tally::Key { what: tally::What::Messages, owner: None, with: None };
        self.read_together(|tx| {
            let counters: std::collections::HashMap<String, i64> =
                tx.query("SELECT name, value FROM counters", &[])?.iter().map(|r| (r.get(0), r.get(1))).collect();
            let c = |name: &str| unbig(counters.get(name).copied().unwrap_or(0));
            // Counted: PostgreSQL counts an index quickly, and a count kept
            // by every write would be one more row every write contends on.
            let sizes = tx.query_one(
                "SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM outbox), (SELECT count(*) FROM owners)",
                &[],
            )?;
            let deferred_messages = tx.count(&deferred)?;
            let stats = Stats {
                transactions: c(C_TRANSACTIONS),
                replayed_transactions: c(C_REPLAYS),
                events_received: c(C_RECEIVED),
                follow_ups: c(C_FOLLOW_UPS),
                events_processed: c(C_PROCESSED),
                events_quarantined: c(C_QUARANTINED),
                effects_done: c(C_EFFECTS_DONE),
                effects_failed: c(C_EFFECTS_FAILED),
                inbox_pending: unbig(sizes.get(0)),
                outbox_pending: unbig(sizes.get(1)),
                owners: unbig(sizes.get(2)),
                deferred_messages,
            };
            Ok(stats)
        })
    }

    fn quarantined(&self, limit_: usize) -> Result<Vec<QuarantinedEvent>, StoreError> {
        self.with(|c| {
            c.query("SELECT seq, record FROM quarantine ORDER BY seq LIMIT $1", &[&limit(limit_)])?
                .iter()
                .map(|r| {
                    let QuarantineRecord::V1 { at_ms, reason, raw } = records::decode("quarantine", r.get(1))?;
                    Ok(QuarantinedEvent { seq: unbig(r.get(0)), at_ms, reason, raw })
                })
                .collect()
        })
    }

    fn failed_effects(&self, limit_: usize) -> Result<Vec<FailedEffect>, StoreError> {
        self.with(|c| {
            c.query("SELECT id, record FROM failed_effects ORDER BY id LIMIT $1", &[&limit(limit_)])?
                .iter()
                .map(|r| {
                    let FailedEffectRecord::V1 { at_ms, reason, effect } = records::decode("failed effect", r.get(1))?;
                    Ok(FailedEffect {
                        id: unbig(r.get(0)),
                        at_ms,
                        reason,
                        effect: records::effect_summary(&effect.into()),
                    })
                })
                .collect()
        })
    }

    fn owners(&self) -> Result<Vec<OwnerState>, StoreError> {
        self.with(|c| {
            c.query("SELECT record FROM owners ORDER BY user_id", &[])?
                .iter()
                .map(|r| Ok(records::decode::<OwnerRecord>("owner", r.get(0))?.into()))
                .collect()
        })
    }

    fn policy_lists(&self) -> Result<Vec<PolicyList>, StoreError> {
        self.with(|c| {
            c.query("SELECT record FROM policy_lists ORDER BY room_id", &[])?
                .iter()
                .map(|r| Ok(records::decode::<PolicyListRecord>("policy list", r.get(0))?.into()))
                .collect()
        })
    }

    fn prune_transactions(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.write(|tx| Ok(tx.execute("DELETE FROM txns WHERE at_ms < $1", &[&big(before_ms)])? as usize))
    }

    fn due(&self, now_ms: u64) -> Result<Due, StoreError> {
        self.with(|c| {
            let mut due = Due::default();
            let now = big(now_ms);
            for r in c.query(
                "SELECT owner, subject, record FROM contacts WHERE allowed_until_ms <= $1 ORDER BY owner, subject",
                &[&now],
            )? {
                // The column says when; the record, what (it is the truth).
                if let Contact::Allowed { until_ms: Some(until), .. } =
                    records::decode::<ContactRecord>("contact", r.get(2))?.into()
                    && until <= now_ms
                {
                    let owner = OwnedUserId::try_from(text("contact", r.get(0))?)
                        .map_err(|e| StoreError::Corrupt(format!("contact key: {e}")))?;
                    let subject: Subject = text("contact", r.get(1))?
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("contact key: {e}")))?;
                    due.expired.push((owner, subject));
                }
            }
            for r in c.query("SELECT record FROM owners WHERE paused_until_ms <= $1 ORDER BY user_id", &[&now])? {
                let owner: OwnerState = records::decode::<OwnerRecord>("owner", r.get(0))?.into();
                if owner.paused_until_ms.is_some_and(|u| u <= now_ms) {
                    due.unpause.push(owner);
                }
            }
            Ok(due)
        })
    }

    fn push_internal(&self, raw: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| push_inbox(tx, &[true], &[raw]))
    }

    fn use_link(&self, nonce: &str, expires_ms: u64, raw: &[u8]) -> Result<bool, StoreError> {
        self.write(|tx| {
            // The primary key decides between two uses at once, also from
            // two Gatekeepers: the second waits for the first to commit,
            // then inserts nothing.
            let fresh = tx.execute(
                "INSERT INTO used_links (nonce, expires_ms) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
                &[&nonce.as_bytes(), &big(expires_ms)],
            )?;
            if fresh == 0 {
                return Ok(false);
            }
            push_inbox(tx, &[true], &[raw])?;
            Ok(true)
        })
    }

    fn prune_deferred(&self, owner: &UserId, before_ms: u64, denied_before_ms: u64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let gone = tx.query(
                "DELETE FROM deferred WHERE owner = $1 AND (received_ms < $2 OR denied_ms < $3) RETURNING record",
                &[&owner.as_bytes(), &big(before_ms), &big(denied_before_ms)],
            )?;
            for row in &gone {
                count_in(tx, tally::message(Some(&decode_deferred(row.get(0))?), None))?;
            }
            Ok(gone.len())
        })
    }

    fn prune_waves(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.write(|tx| Ok(tx.execute("DELETE FROM waves WHERE expires_ms <= $1", &[&big(now_ms)])? as usize))
    }

    fn wave_records(&self) -> Result<usize, StoreError> {
        self.with(|c| Ok(c.query_one("SELECT count(*) FROM waves", &[])?.get::<_, i64>(0) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a database of its own, in the test process's PostgreSQL.
    fn fresh() -> (PgStore, ()) {
        let url = super::super::pg_test_server::Postgres::shared().create_database();
        (PgStore::open(&url).unwrap(), ())
    }

    crate::store_conformance!(fresh);

    #[test]
    fn opening_again_keeps_everything_and_migrates_nothing() {
        let url = super::super::pg_test_server::Postgres::shared().create_database();
        {
            let s = PgStore::open(&url).unwrap();
            s.accept_transaction("t1", &[br#"{"event_id":"$a"}"#, br#"{"event_id":"$b"}"#], 1).unwrap();
            let first = s.inbox_batch(1).unwrap().remove(0);
            s.commit(first.seq, &super::super::conformance::sample_decision()).unwrap();
        }
        let s = PgStore::open(&url).unwrap();
        assert_eq!(
            s.accept_transaction("t1", &[br#"{"event_id":"$a"}"#, br#"{"event_id":"$b"}"#], 2).unwrap(),
            Accepted::Replay
        );
        assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
        assert_eq!(s.outbox_batch(u64::MAX, 10, false).unwrap().len(), 2);
        assert_eq!(s.owners().unwrap().len(), 1);
        assert!(s.outbox_high_water().unwrap() > 0);
    }

    #[test]
    fn a_schema_newer_than_this_gatekeeper_is_refused_and_left_alone() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let s = PgStore::open(&url).unwrap();
        s.with(|c| c.batch_execute("UPDATE gatekeeper_schema SET version = version + 1")).unwrap();
        drop(s);
        match PgStore::open(&url) {
            Err(e) => assert!(e.to_string().contains("newer than this Gatekeeper knows"), "{e}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let v: i32 = c.query_one("SELECT version FROM gatekeeper_schema", &[]).unwrap().get(0);
        assert_eq!(v, SCHEMA_VERSION + 1, "not migrated down, not touched");
    }

    /// A newer Gatekeeper (a standby upgraded first, the usual order of a
    /// rolling upgrade) must not change the schema under one that runs: its
    /// migration needs the schema's lock alone, which a running one holds
    /// shared. Should it get there while none of this one's connections
    /// held it (all broken at once), this one writes nothing more and says
    /// why: Gatekeeper stops, and its next start refuses the newer schema.
    #[test]
    fn the_schema_is_not_migrated_under_a_running_gatekeeper() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let database = url.rsplit('/').next().unwrap().to_owned();
        let s = PgStore::open(&url).unwrap();
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        // What a newer Gatekeeper's migration does first.
        let mut newer = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let alone: bool = newer.query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK]).unwrap().get(0);
        assert!(!alone, "a migration could start under a running Gatekeeper");
        pg.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = 'gatekeeper'"
        ));
        // Granted once the ended sessions are gone.
        newer.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).unwrap();
        newer.batch_execute("UPDATE gatekeeper_schema SET version = version + 1").unwrap();
        newer.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).unwrap();
        assert_eq!(s.failure(), None);
        // The first call may meet the broken connection; the next connects again.
        let _maybe_broken = s.accept_transaction("t2", &[b"{}"], 2);
        let e = s.accept_transaction("t2", &[b"{}"], 2).unwrap_err().to_string();
        assert!(e.contains("not this Gatekeeper's"), "{e}");
        assert!(s.failure().is_some_and(|f| f.contains("another Gatekeeper migrated it")));
        let _maybe_broken = s.inbox_batch(10);
        assert!(s.inbox_batch(10).is_err(), "the other connection refuses too");
        let stored: i64 = newer.query_one("SELECT count(*) FROM inbox", &[]).unwrap().get(0);
        assert_eq!(stored, 1, "nothing written to a schema this Gatekeeper does not know");
    }

    /// A migration waiting for a running Gatekeeper to stop must not make
    /// that one's connections wait behind it: with one of them still open
    /// (holding the lock shared), the other is made again at once. (The
    /// database's version is set back to stand for a newer Gatekeeper's
    /// migration, which one binary cannot be.)
    #[test]
    fn a_waiting_migration_does_not_stop_a_running_gatekeepers_connections() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let s = PgStore::open(&url).unwrap();
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin.batch_execute("UPDATE gatekeeper_schema SET version = 0").unwrap();
        let migrating = std::thread::spawn({
            let url = url.clone();
            move || migrate(&mut postgres::Client::connect(&url, postgres::NoTls).unwrap())
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(!migrating.is_finished(), "it waits while this one runs");
        let intake: i32 =
            s.with_conn(&s.intake, |c| Ok(c.client.query_one("SELECT pg_backend_pid()", &[])?.get(0))).unwrap();
        pg.sql(&format!("SELECT pg_terminate_backend({intake})"));
        std::thread::sleep(Duration::from_millis(200));
        let start = std::time::Instant::now();
        // The first call may meet the broken connection; the next makes it
        // again (and finds a schema that is not its own: refused).
        let _maybe_broken = s.accept_transaction("t2", &[b"{}"], 2);
        assert!(s.accept_transaction("t2", &[b"{}"], 2).is_err());
        assert!(start.elapsed() < Duration::from_secs(5), "waited {:?}", start.elapsed());
        admin.batch_execute(&format!("UPDATE gatekeeper_schema SET version = {SCHEMA_VERSION}")).unwrap();
        migrating.join().unwrap().unwrap();
    }

    /// Gatekeepers starting together on an empty database: one migrates,
    /// the others find the schema up to date.
    #[test]
    fn gatekeepers_starting_together_migrate_once() {
        let url = super::super::pg_test_server::Postgres::shared().create_database();
        let stores: Vec<PgStore> = std::thread::scope(|scope| {
            let opening: Vec<_> = (0..3).map(|_| scope.spawn(|| PgStore::open(&url).unwrap())).collect();
            opening.into_iter().map(|h| h.join().unwrap()).collect()
        });
        stores[0].accept_transaction("t1", &[b"{}"], 1).unwrap();
        assert!(stores.iter().all(|s| s.inbox_batch(10).unwrap().len() == 1));
    }

    /// A standby of the same version starting beside the running one does
    /// not wait for it: the schema is up to date, nothing to migrate.
    #[test]
    fn a_second_gatekeeper_of_the_same_version_starts_beside_the_first() {
        let url = super::super::pg_test_server::Postgres::shared().create_database();
        let first = PgStore::open(&url).unwrap();
        first.accept_transaction("t1", &[b"{}"], 1).unwrap();
        let second = PgStore::open(&url).unwrap();
        assert_eq!(second.inbox_batch(10).unwrap().len(), 1);
        assert_eq!(first.inbox_batch(10).unwrap().len(), 1);
    }

    /// Keys and records may hold what `text` and `jsonb` refuse: a NUL.
    #[test]
    fn a_nul_in_an_event_a_key_or_a_state_key_is_kept() {
        let (s, ()) = fresh();
        let event = b"{\"event_id\":\"$n\",\"body\":\"a\\u0000b\",\"raw\":\"\x00\"}";
        s.accept_transaction("t\0nul", &[event], 1).unwrap();
        assert_eq!(s.inbox_batch(1).unwrap()[0].raw, event);
        assert_eq!(s.accept_transaction("t\0nul", &[event], 2).unwrap(), Accepted::Replay);
        s.set_connector_value("k\0", Some(b"\0")).unwrap();
        assert_eq!(s.connector_values("k").unwrap(), vec![("k\0".to_owned(), b"\0".to_vec())]);
    }

    /// Two threads using the same link at once: exactly one wins, and
    /// exactly one input is queued.
    #[test]
    fn a_link_is_used_once_by_concurrent_clicks() {
        let url = super::super::pg_test_server::Postgres::shared().create_database();
        let stores: Vec<PgStore> = (0..4).map(|_| PgStore::open(&url).unwrap()).collect();
        let wins: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .map(|s| {
                    scope.spawn(move || (0..10).filter(|i| s.use_link(&format!("n{i}"), 9, b"{}").unwrap()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 10);
        assert_eq!(stores[0].inbox_batch(100).unwrap().len(), 10);
    }

    /// Start-up, `/metrics` and shutdown use the store from async code: the
    /// synchronous client must neither panic there nor on being dropped.
    #[tokio::test]
    async fn usable_and_dropped_on_an_async_thread() {
        let url = super::super::pg_test_server::Postgres::shared().create_database();
        let s = PgStore::open(&url).unwrap();
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        assert_eq!(s.stats().unwrap().inbox_pending, 1);
        drop(s);
    }

    /// A connection the server ends (a restart, a failover, an operator's
    /// `pg_terminate_backend`) fails at most the call that meets it; the
    /// next call connects again, and nothing committed is lost.
    #[test]
    fn a_broken_connection_is_made_again() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let database = url.rsplit('/').next().unwrap().to_owned();
        let s = PgStore::open(&url).unwrap();
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        let ended = pg.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = 'gatekeeper'"
        ));
        assert_eq!(ended.trim(), "2", "the main connection and the intake's");
        let _maybe_failed = s.stats();
        assert_eq!(s.stats().unwrap().inbox_pending, 1);
        // The intake's too; a retry of the same transaction is at worst a replay.
        if s.accept_transaction("t2", &[b"{}"], 1).is_err() {
            assert!(s.accept_transaction("t2", &[b"{}"], 1).is_ok());
        }
        assert_eq!(s.inbox_batch(10).unwrap().len(), 2);
    }

    #[test]
    fn the_probe_says_what_it_finds_and_changes_nothing() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        assert!(PgStore::probe(&url, None, None).unwrap().contains("empty"));
        assert!(PgStore::probe(&url, None, None).unwrap().contains("empty"), "the probe made nothing");
        drop(PgStore::open(&url).unwrap());
        assert_eq!(
            PgStore::probe(&url, None, None).unwrap(),
            format!("reachable, schema version {SCHEMA_VERSION}; lease held by nobody (never taken yet)")
        );
        let nobody = format!("postgresql://postgres@127.0.0.1:{}/gk_nonexistent", pg.port);
        // The server's own words, not only "db error".
        let e = PgStore::probe(&nobody, None, None).unwrap_err().to_string();
        assert!(e.contains("\"gk_nonexistent\" does not exist"), "{e}");
    }

    /// A server (or database) whose default is `synchronous_commit = off`
    /// would acknowledge commits before they are on disk: Gatekeeper's
    /// sessions set it on, whatever the default.
    #[test]
    fn commits_are_synchronous_whatever_the_servers_default() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let database = url.rsplit('/').next().unwrap().to_owned();
        pg.sql(&format!("ALTER DATABASE {database} SET synchronous_commit = off"));
        let s = PgStore::open(&url).unwrap();
        let setting = s.with(|c| Ok(c.query_one("SHOW synchronous_commit", &[])?.get::<_, String>(0))).unwrap();
        assert_eq!(setting, "on");
        // The quarantine's own transactions are the exception, and only theirs.
        s.accept_transaction("t1", &[b"bad"], 1).unwrap();
        s.quarantine(s.inbox_batch(1).unwrap()[0].seq, "bad", 2).unwrap();
        s.flush().unwrap();
        let setting = s.with(|c| Ok(c.query_one("SHOW synchronous_commit", &[])?.get::<_, String>(0))).unwrap();
        assert_eq!(setting, "on");
    }

    /// The homeserver's transactions are acknowledged while a batch of
    /// decisions is being written (their own connection), as with sled.
    #[test]
    fn the_intake_does_not_wait_for_a_batch_being_written() {
        let (s, ()) = fresh();
        let s = &s;
        let (held, is_held) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                s.write(move |_| {
                    held.send(()).unwrap();
                    // At most this long, so that a failure fails, not hangs.
                    let _ = released.recv_timeout(std::time::Duration::from_secs(10));
                    Ok(())
                })
                .unwrap()
            });
            is_held.recv().unwrap();
            let start = std::time::Instant::now();
            assert_eq!(s.accept_transaction("t1", &[b"{}"], 1).unwrap(), Accepted::New { events: 1 });
            assert!(start.elapsed() < std::time::Duration::from_secs(5), "waited {:?}", start.elapsed());
            release.send(()).unwrap();
        });
        assert_eq!(s.inbox_batch(10).unwrap().len(), 1);
    }

    /// A server that dies or a network that is cut must fail a call within
    /// seconds (the next one connects again, to whichever server took
    /// over), not after the kernel's defaults (two minutes to connect, two
    /// hours of silence before a probe, 15 minutes of retransmissions).
    /// What the URL sets itself is kept. With several hosts, the one that
    /// accepts writes is taken, not a hot standby that refuses them all.
    #[test]
    fn waits_on_the_network_are_bounded_and_a_writable_server_is_asked_for() {
        use postgres::config::TargetSessionAttrs;
        let (c, _) = parse_url("postgresql://gk@db1,db2/gk", None, None).unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVE_INTERVAL));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVE_RETRIES));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        let (c, _) = parse_url(
            "postgresql://gk@db/gk?connect_timeout=3&keepalives_idle=60&tcp_user_timeout=7\
             &keepalives_interval=2&keepalives_retries=9",
            None,
            None,
        )
        .unwrap();
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(c.get_keepalives_interval(), Some(Duration::from_secs(2)));
        assert_eq!(c.get_keepalives_retries(), Some(9));
        // In seconds, unlike libpq's milliseconds.
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
    }

    /// A server that refuses every write (a hot standby, a primary made
    /// read-only) is not one to connect to: reads would go on answering
    /// (`/health/ready` says ready) while every write failed. Connecting
    /// fails instead, and says why.
    #[test]
    fn a_server_that_refuses_writes_is_not_connected_to() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let database = url.rsplit('/').next().unwrap().to_owned();
        let s = PgStore::open(&url).unwrap();
        assert_eq!(s.outbox_high_water().unwrap(), 0);
        pg.sql(&format!("ALTER DATABASE {database} SET default_transaction_read_only = on"));
        pg.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = 'gatekeeper'"
        ));
        let _maybe_broken = s.outbox_high_water();
        let e = s.outbox_high_water().unwrap_err().to_string();
        assert!(e.contains("does not allow writes"), "{e}");
    }

    /// A server that goes on answering reads but refuses every write on
    /// the sessions already open (here a role whose INSERT and UPDATE were
    /// revoked; a full disk is the same to Gatekeeper): once writes have
    /// failed in a row for a while the store says so (readiness turns
    /// 503), and the first write that succeeds again ends it.
    #[test]
    fn writes_failing_while_reads_answer_are_reported() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let url = pg.create_database();
        let owner = PgStore::open(&url).unwrap();
        let role = format!("gk_writer_{}", url.rsplit('/').next().unwrap());
        let grant = format!(
            "CREATE ROLE {role} LOGIN; GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
        );
        owner.with(|c| c.batch_execute(&grant)).unwrap();
        let s = PgStore::open(&url.replace("postgres@", &format!("{role}@"))).unwrap();
        s.accept_transaction("t0", &[b"{}"], 1).unwrap();
        assert_eq!(s.writes_failing(), Some((0, None)));

        let revoke = format!("REVOKE INSERT, UPDATE ON ALL TABLES IN SCHEMA public FROM {role}");
        owner.with(|c| c.batch_execute(&revoke)).unwrap();
        let start = std::time::Instant::now();
        let why = loop {
            assert!(s.accept_transaction(&format!("t{}", start.elapsed().as_millis()), &[b"{}"], 1).is_err());
            assert!(s.outbox_high_water().is_ok(), "reads go on answering");
            if let Some((_, Some(why))) = s.writes_failing() {
                break why;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "writes failing for 20 s went unreported");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(start.elapsed() >= Duration::from_secs(5), "a short streak is no failing database");
        assert!(why.contains("permission denied"), "{why}");
        assert!(s.failure().is_none(), "not a failure that stops Gatekeeper: a restart would meet the same");

        let grant_back = format!("GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}");
        owner.with(|c| c.batch_execute(&grant_back)).unwrap();
        s.accept_transaction("t-again", &[b"{}"], 1).unwrap();
        assert_eq!(s.writes_failing(), Some((0, None)));
    }

    /// The server's side of the same: a Gatekeeper whose host dies (no FIN
    /// reaches the server) in the middle of a transaction must not keep its
    /// row locks (the homeserver's transaction ID, a batch's inbox items)
    /// for the server's default two hours, which would stop a standby that
    /// took over from writing the same rows. Both connections say so.
    #[test]
    fn sessions_end_a_dead_clients_transaction_within_seconds() {
        let (s, ()) = fresh();
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        let settings = |lane: &Mutex<Option<Conn>>| -> Vec<String> {
            s.with_conn(lane, |conn| {
                let row = conn.client.query_one(
                    "SELECT current_setting('idle_in_transaction_session_timeout'), \
                     current_setting('tcp_keepalives_idle'), current_setting('tcp_keepalives_interval'), \
                     current_setting('tcp_keepalives_count')",
                    &[],
                )?;
                Ok((0..4).map(|i| row.get::<_, String>(i)).collect())
            })
            .unwrap()
        };
        for lane in [&s.main, &s.intake] {
            assert_eq!(settings(lane), ["30s", "10", "5", "3"]);
        }
    }

    /// `/health/ready` asks the store from async code, on a worker: while
    /// it waits for the connection (behind a batch being written, or for a
    /// server that does not answer), the runtime's other tasks (the
    /// homeserver's transactions, the other probes) must go on. With one
    /// worker, a task queued behind the waiting one runs at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_wait_for_the_database_does_not_stop_the_runtime() {
        let (s, ()) = fresh();
        let s = std::sync::Arc::new(s);
        let (held, is_held) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = {
            let s = s.clone();
            std::thread::spawn(move || {
                s.write(move |_| {
                    held.send(()).unwrap();
                    let _ = released.recv_timeout(std::time::Duration::from_secs(10));
                    Ok(())
                })
                .unwrap()
            })
        };
        is_held.recv().unwrap();
        let (started, has_started) = std::sync::mpsc::channel();
        let waiting = tokio::spawn({
            let s = s.clone();
            async move {
                started.send(()).unwrap();
                s.outbox_high_water()
            }
        });
        has_started.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (ran, has_run) = std::sync::mpsc::channel();
        tokio::spawn(async move { ran.send(()).unwrap() });
        let other_ran = has_run.recv_timeout(std::time::Duration::from_secs(3)).is_ok();
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 0);
        assert!(other_ran, "the runtime stood still while one task waited for the database");
    }

    fn encrypted(s: &PgStore) -> bool {
        s.with(|c| Ok(c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?.get(0))).unwrap()
    }

    /// `sslmode=require`: TLS, and the server's certificate verified
    /// against the CA given (a certificate from no trusted CA is refused).
    #[test]
    fn tls_when_the_url_asks_for_it_with_the_certificate_verified() {
        let pg = super::super::pg_test_server::Postgres::shared();
        let plain = pg.create_database();
        let url = format!("{plain}?sslmode=require");
        let s = PgStore::open_with(&url, None, Some(&pg.ca_file())).unwrap();
        assert!(encrypted(&s));
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        assert!(PgStore::probe(&url, None, Some(&pg.ca_file())).unwrap().starts_with("reachable"));
        // Not signed by a CA the system trusts: refused, and said so.
        let e = PgStore::open_with(&url, None, None).err().unwrap().to_string();
        assert!(e.contains("certificate"), "{e}");
        // Without sslmode=require: no TLS, whatever the server offers.
        assert!(!encrypted(&PgStore::open(&plain).unwrap()));
    }
}
