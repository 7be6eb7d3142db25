//! Writes that keep failing while reads go on answering: a full disk, a
//! role whose INSERT was revoked, a database made read-only under open
//! sessions. Reads alone (`/health/ready`'s) would say all is well while
//! nothing the homeserver sends can be stored: the store counts the write
//! transactions that failed in a row, and says so once they are more than
//! a blip (see [`crate::store::Store::writes_failing`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// Failed write transactions in a row before they are reported...
const IN_A_ROW: u32 = 3;
/// ...and for at least this long: one broken connection (dropped and made
/// again at the next call) is not a failing database.
const FOR_AT_LEAST: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct WriteStreak(Mutex<Streak>);

#[derive(Default)]
struct Streak {
    failed: u32,
    since: Option<Instant>,
    last: String,
    reported: bool,
}

impl WriteStreak {
    /// Counts the outcome of one write transaction. A write refused by the
    /// lease (a standby's) is no failure of the database, and not counted.
    pub(super) fn record<T>(&self, result: &Result<T, StoreError>) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) => {
                if s.reported {
                    tracing::info!(failed = s.failed, "the database stores writes again");
                }
                *s = Streak::default();
            }
            Err(StoreError::NotLeaseHolder(_)) => {}
            Err(e) => {
                s.failed = s.failed.saturating_add(1);
                s.since.get_or_insert_with(Instant::now);
                // Bounded: a database's message may quote a row's values.
                s.last = e.to_string().chars().take(300).collect();
                if !s.reported && failing(&s, Instant::now()).is_some() {
                    s.reported = true;
                    tracing::error!(
                        failed = s.failed,
                        error = %s.last,
                        "every write to the database fails (a full disk? a read-only database or role?) \
                         while reads answer: not ready until one succeeds"
                    );
                }
            }
        }
    }

    /// Failed write transactions in a row, for the metrics.
    pub(super) fn in_a_row(&self) -> u32 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).failed
    }

    /// Why the database is failing writes, once they have failed
    /// [`IN_A_ROW`] times in a row for at least [`FOR_AT_LEAST`].
    pub(super) fn failing(&self) -> Option<String> {
        failing(&self.0.lock().unwrap_or_else(|p| p.into_inner()), Instant::now())
    }
}

fn failing(s: &Streak, now: Instant) -> Option<String> {
    let since = s.since?;
    (s.failed >= IN_A_ROW && now.duration_since(since) >= FOR_AT_LEAST).then(|| {
        format!("{} write transactions in a row failed over {:?}; the last: {}", s.failed, now - since, s.last)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(n: u32, ago: Duration, now: Instant) -> Streak {
        Streak { failed: n, since: Some(now - ago), last: "disk full".into(), reported: false }
    }

    #[test]
    fn a_streak_is_reported_when_long_in_count_and_in_time() {
        let now = Instant::now() + Duration::from_secs(60);
        assert!(failing(&Streak::default(), now).is_none());
        assert!(failing(&failed(2, Duration::from_secs(60), now), now).is_none(), "two in a row: a blip");
        assert!(failing(&failed(50, Duration::from_secs(1), now), now).is_none(), "a burst within a second");
        let why = failing(&failed(3, Duration::from_secs(5), now), now).unwrap();
        assert!(why.contains("3 write transactions in a row") && why.contains("disk full"), "{why}");
    }

    #[test]
    fn a_success_ends_the_streak_and_the_lease_refusing_is_no_failure() {
        let w = WriteStreak::default();
        for _ in 0..5 {
            w.record::<()>(&Err(StoreError::Backend("no space left on device".into())));
        }
        w.record::<()>(&Err(StoreError::NotLeaseHolder("standing by".into())));
        assert_eq!(w.in_a_row(), 5);
        w.record(&Ok(()));
        assert_eq!(w.in_a_row(), 0);
        assert!(w.failing().is_none());
    }
}
