//! The lease on PostgreSQL: who holds it is a session advisory lock on a
//! connection of its own, which PostgreSQL releases when that connection
//! ends (the process died, or the network between them did). Taking it
//! bumps the `epoch` of the one-row `gatekeeper_lease` table, and every
//! write transaction of the holder reads that row `FOR SHARE` first: a
//! write of an earlier holder either commits before the takeover's bump
//! (which waits for its row lock) or sees the new epoch and is refused —
//! never after it. So an old holder that wakes up (paused, cut off, its
//! lock long released) writes nothing more.

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::GenericClient;

use super::{Conn, Db, PgStore, connect, with_causes};
use crate::store::{Lease, StoreError};

/// The session advisory lock of the lease (any number no one else is
/// likely to use; "gkactive" in ASCII). Advisory locks are per database.
const LEASE_LOCK: i64 = 0x676b_6163_7469_7665;

#[derive(Default)]
pub(super) struct LeaseState {
    fence: Mutex<Fence>,
    /// The connection whose session holds the advisory lock: only the
    /// lease uses it, so that it lives exactly as long as the lease.
    connection: Mutex<Option<Conn>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Fence {
    /// No lease in use (the tools, the store's own tests): writes are not
    /// checked, as with sled.
    #[default]
    Off,
    /// Waiting to take it: every write is refused.
    Standby,
    /// Held, at this epoch: every write checks that it still is.
    Held(i64),
    /// Lost, for this reason: every write is refused, for good.
    Lost(String),
}

impl LeaseState {
    pub(super) fn connection_mut(&mut self) -> &mut Mutex<Option<Conn>> {
        &mut self.connection
    }

    fn get(&self) -> Fence {
        self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, fence: Fence) {
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = fence;
    }

    /// Marks the lease lost (the first reason stays) and returns the reason.
    fn lose(&self, reason: String) -> String {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if let Fence::Lost(first) = &*fence {
            return first.clone();
        }
        *fence = Fence::Lost(reason.clone());
        reason
    }

    /// Why the lease was lost, once it was.
    pub(super) fn lost(&self) -> Option<String> {
        match self.get() {
            Fence::Lost(reason) => Some(reason),
            _ => None,
        }
    }

    /// Run first in every write transaction: refuses it unless the lease
    /// is held (or not in use), and keeps the epoch row share-locked until
    /// the transaction ends, so that no takeover lands in the middle.
    pub(super) fn fence(&self, tx: &Db<'_, impl GenericClient>) -> Result<(), StoreError> {
        match self.get() {
            Fence::Off => Ok(()),
            Fence::Standby => {
                Err(StoreError::NotLeaseHolder("standing by: another Gatekeeper holds the lease".to_owned()))
            }
            Fence::Lost(reason) => Err(StoreError::NotLeaseHolder(reason)),
            Fence::Held(epoch) => {
                let now: i64 = tx.query_one("SELECT epoch FROM gatekeeper_lease FOR SHARE", &[])?.get(0);
                if now == epoch {
                    return Ok(());
                }
                Err(StoreError::NotLeaseHolder(self.lose(taken_over(now, epoch))))
            }
        }
    }
}

fn taken_over(now: i64, ours: i64) -> String {
    format!("another Gatekeeper took the lease over (epoch {now}; this one held epoch {ours})")
}

/// Runs `f` off tokio's threads: the synchronous client drives its
/// connection on a runtime of its own (see [`PgStore::with_conn`]).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    }
    f()
}

/// Who holds the lease, for `check-config`: the holder's name, since when
/// and at which epoch, or that nobody does (its advisory lock is free).
/// Reads only: `pg_locks` is readable by every role.
pub(super) fn describe(client: &mut postgres::Client) -> Result<String, postgres::Error> {
    // A bigint advisory key shows as its high and low halves.
    let row = client.query_one(
        "SELECT l.epoch, l.holder, \
           to_char(to_timestamp(l.taken_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"'), \
           EXISTS (SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.granted \
             AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND k.classid = ($1::bigint >> 32)::oid AND k.objid = ($1::bigint & 4294967295)::oid AND k.objsubid = 1) \
         FROM gatekeeper_lease l",
        &[&LEASE_LOCK],
    )?;
    let (epoch, holder, since, held): (i64, String, String, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    // The holder's name is this host's own and bounded by it, but the
    // column is free text: shown bounded.
    let holder: String = holder.chars().take(200).collect();
    Ok(match (held, epoch) {
        (true, _) => format!("lease held by {holder} since {since} (epoch {epoch})"),
        (false, 0) => "lease held by nobody (never taken yet)".to_owned(),
        (false, _) => format!("lease held by nobody (last taken by {holder} at {since}, epoch {epoch})"),
    })
}

impl Lease for PgStore {
    fn stand_by(&self) {
        let mut fence = self.lease.fence.lock().unwrap_or_else(|p| p.into_inner());
        if *fence == Fence::Off {
            *fence = Fence::Standby;
        }
    }

    fn try_take(&self, holder: &str) -> Result<Option<u64>, StoreError> {
        match self.lease.get() {
            Fence::Held(epoch) => return Ok(Some(epoch as u64)),
            // Whoever holds it now may have acted since: this process's
            // view of the work is stale. Only a new start takes it again.
            Fence::Lost(reason) => return Err(StoreError::NotLeaseHolder(reason)),
            Fence::Off | Fence::Standby => {}
        }
        blocking(|| {
            let mut guard = self.lease.connection.lock().unwrap_or_else(|p| p.into_inner());
            if guard.as_ref().is_none_or(|c| c.client.is_closed()) {
                *guard = None;
                let mut client = connect(&self.config, self.tls.as_ref())?;
                // Named apart, so that operators see which session holds it.
                client.batch_execute("SET application_name = 'gatekeeper lease'")?;
                *guard = Some(Conn { client, statements: HashMap::new() });
            }
            let client = &mut guard.as_mut().expect("connected above").client;
            let taken = (|| -> Result<Option<i64>, postgres::Error> {
                let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_LOCK])?.get(0);
                if !locked {
                    return Ok(None);
                }
                // Waits for the write transactions of an earlier holder
                // still running (their share locks on the row): each
                // commits before, or is refused after.
                let row = client.query_one(
                    "UPDATE gatekeeper_lease SET epoch = epoch + 1, holder = $1, \
                     taken_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint RETURNING epoch",
                    &[&holder],
                )?;
                Ok(Some(row.get(0)))
            })();
            match taken {
                Ok(None) => Ok(None),
                Ok(Some(epoch)) => {
                    self.lease.set(Fence::Held(epoch));
                    Ok(Some(epoch as u64))
                }
                Err(e) => {
                    // Ending the session releases a lock it may have taken.
                    *guard = None;
                    Err(StoreError::Backend(format!("taking the lease: {}", with_causes(&e))))
                }
            }
        })
    }

    fn check(&self) -> Result<(), String> {
        let epoch = match self.lease.get() {
            Fence::Held(epoch) => epoch,
            Fence::Lost(reason) => return Err(reason),
            Fence::Off | Fence::Standby => return Ok(()),
        };
        blocking(|| {
            let mut guard = self.lease.connection.lock().unwrap_or_else(|p| p.into_inner());
            let Some(conn) = guard.as_mut().filter(|c| !c.client.is_closed()) else {
                return Err(self.lease.lose("the lease's connection to PostgreSQL ended".to_owned()));
            };
            match conn.client.query_one("SELECT epoch FROM gatekeeper_lease", &[]) {
                Ok(row) if row.get::<_, i64>(0) == epoch => Ok(()),
                Ok(row) => Err(self.lease.lose(taken_over(row.get(0), epoch))),
                Err(e) => {
                    *guard = None;
                    Err(self.lease.lose(format!("the lease's connection to PostgreSQL failed: {}", with_causes(&e))))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::pg_test_server::Postgres;
    use crate::store::{Accepted, Store};

    /// Two Gatekeepers' stores on one database, both standing by.
    fn pair() -> (PgStore, PgStore) {
        let url = Postgres::shared().create_database();
        let (a, b) = (PgStore::open(&url).unwrap(), PgStore::open(&url).unwrap());
        a.stand_by();
        b.stand_by();
        (a, b)
    }

    fn refused<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
        match r {
            Err(StoreError::NotLeaseHolder(reason)) => reason,
            other => panic!("expected a write refused for want of the lease, got {other:?}"),
        }
    }

    /// Takes the lease, waiting for PostgreSQL to notice that the session
    /// holding it ended (a terminated backend goes within moments).
    fn take_within(s: &PgStore, holder: &str, within: Duration) {
        let start = Instant::now();
        while s.try_take(holder).unwrap().is_none() {
            assert!(start.elapsed() < within, "{holder} could not take the lease within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn one_holds_the_lease_and_the_other_can_write_nothing() {
        let (a, b) = pair();
        assert!(refused(a.accept_transaction("t0", &[b"{}"], 1)).contains("standing by"), "before taking it");
        assert_eq!(a.try_take("a").unwrap(), Some(1));
        assert!(b.try_take("b").unwrap().is_none(), "held by a");
        assert!(b.try_take("b").unwrap().is_none(), "still held by a");
        assert_eq!(a.accept_transaction("t1", &[b"{}"], 1).unwrap(), Accepted::New { events: 1 });
        refused(b.accept_transaction("t2", &[b"{}", b"{}"], 1));
        refused(b.push_internal(b"{}"));
        refused(b.set_connector_value("k", Some(b"v")));
        let seq = a.inbox_batch(1).unwrap()[0].seq;
        refused(b.commit_empty(&[seq]));
        let stats = a.stats().unwrap();
        assert_eq!((stats.transactions, stats.inbox_pending), (1, 1), "b changed nothing: {stats:?}");
        assert_eq!(a.connector_value("k").unwrap(), None);
        assert!(a.check().is_ok() && b.check().is_ok(), "a holds it, b waits");
        assert_eq!(a.failure(), None);
        a.commit_empty(&[seq]).unwrap();
        assert_eq!(b.stats().unwrap().inbox_pending, 0, "b reads what a wrote");
    }

    /// The holder's lock goes with its connection (a network cut, the
    /// server's `pg_terminate_backend`): the standby takes over, and the old
    /// holder, still running and still connected otherwise, can write
    /// nothing more — refused by the epoch, not by its own knowledge.
    #[test]
    fn a_takeover_fences_the_old_holder_off() {
        let pg = Postgres::shared();
        let (a, b) = pair();
        assert_eq!(a.try_take("a").unwrap(), Some(1));
        a.accept_transaction("t1", &[b"{}"], 1).unwrap();
        let database = a.config.get_dbname().unwrap().to_owned();
        let ended = pg.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = 'gatekeeper lease'"
        ));
        assert_eq!(ended.trim(), "1", "a's lease connection alone");
        take_within(&b, "b", Duration::from_secs(10));
        // a has not looked at its lease since: its next write finds out.
        let reason = refused(a.accept_transaction("t2", &[b"{}"], 2));
        assert!(reason.contains("took the lease over"), "{reason}");
        refused(a.push_internal(b"{}"));
        let stats = b.stats().unwrap();
        assert_eq!((stats.transactions, stats.inbox_pending), (1, 1), "the fenced writes changed nothing: {stats:?}");
        assert!(a.check().is_err() && a.failure().is_some(), "a knows it lost the lease");
        assert!(a.try_take("a").is_err(), "a lost lease is not taken again by the same process");
        assert_eq!(b.accept_transaction("t2", &[b"{}"], 2).unwrap(), Accepted::New { events: 1 });
        assert!(b.check().is_ok());
    }

    /// The holder's own check notices a lost connection before any write.
    #[test]
    fn the_holder_notices_its_lease_connection_ended() {
        let pg = Postgres::shared();
        let (a, _b) = pair();
        assert_eq!(a.try_take("a").unwrap(), Some(1));
        assert!(a.check().is_ok());
        let database = a.config.get_dbname().unwrap().to_owned();
        pg.sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND application_name = 'gatekeeper lease'"
        ));
        let start = Instant::now();
        while a.check().is_ok() {
            assert!(start.elapsed() < Duration::from_secs(10), "the ended connection went unnoticed");
            std::thread::sleep(Duration::from_millis(50));
        }
        refused(a.accept_transaction("t1", &[b"{}"], 1));
    }

    /// A holder that ends (its process killed) releases the lease with its
    /// session; the next takes it, at a later epoch.
    #[test]
    fn the_lease_passes_on_when_its_holder_goes() {
        let (a, b) = pair();
        assert_eq!(a.try_take("a").unwrap(), Some(1));
        assert!(b.try_take("b").unwrap().is_none());
        drop(a);
        take_within(&b, "b", Duration::from_secs(10));
        b.accept_transaction("t1", &[b"{}"], 1).unwrap();
        let epoch: i64 = b.with(|c| Ok(c.query_one("SELECT epoch FROM gatekeeper_lease", &[])?.get(0))).unwrap();
        assert_eq!(epoch, 2, "taken twice");
    }

    /// `check-config` says who holds the lease, and that nobody does once
    /// its holder is gone.
    #[test]
    fn the_probe_says_who_holds_the_lease() {
        let url = Postgres::shared().create_database();
        let probe = || PgStore::probe(&url, None, None).unwrap();
        let a = PgStore::open(&url).unwrap();
        assert!(probe().ends_with("lease held by nobody (never taken yet)"), "{}", probe());
        a.stand_by();
        assert_eq!(a.try_take("host-a pid 7").unwrap(), Some(1));
        let held = probe();
        assert!(held.contains("lease held by host-a pid 7 since 20") && held.ends_with("UTC (epoch 1)"), "{held}");
        drop(a);
        let start = Instant::now();
        while !probe().contains("held by nobody") {
            assert!(start.elapsed() < Duration::from_secs(10), "{}", probe());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(probe().contains("last taken by host-a pid 7 at 20") && probe().ends_with(", epoch 1)"), "{}", probe());
    }

    /// Without the lease in use (the tools, the conformance suite) writes
    /// are not fenced, as with sled.
    #[test]
    fn a_store_that_never_asks_for_the_lease_writes_unfenced() {
        let url = Postgres::shared().create_database();
        let s = PgStore::open(&url).unwrap();
        s.accept_transaction("t1", &[b"{}"], 1).unwrap();
        assert!(s.check().is_ok() && s.failure().is_none());
    }
}
