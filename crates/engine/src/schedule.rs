//! When digests are due: once per local day at the owner's chosen time, in
//! the owner's time zone, correctly across daylight-saving changes. Pure:
//! time comes in as milliseconds, zones from the bundled tz database.

use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{TimeZone, TimeZoneDatabase};

/// 08:00, the default digest time, as minutes after midnight.
pub const DEFAULT_MINUTE: u16 = 8 * 60;

/// The owner's zone; UTC when unset (or, defensively, unknown).
pub fn zone(name: Option<&str>) -> TimeZone {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    name.and_then(|n| DB.get_or_init(TimeZoneDatabase::bundled).get(n).ok()).unwrap_or(TimeZone::UTC)
}

fn local_date(ms: u64, tz: &TimeZone) -> Date {
    Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH).to_zoned_datetime(tz.clone()).date()
}

/// The digest time on a local date. In a spring-forward gap the slot moves
/// past the gap; in a fall-back overlap it is the first of the two.
fn slot_on(date: Date, tz: &TimeZone, minute: u16) -> u64 {
    let (h, m) = ((minute / 60) as i8, (minute % 60) as i8);
    date.at(h, m, 0, 0).to_zoned_datetime(tz.clone()).map(|z| z.timestamp().as_millisecond().max(0) as u64).unwrap_or(0)
}

/// The latest slot at or before `now_ms`.
pub fn latest_slot(now_ms: u64, tz: &TimeZone, minute: u16) -> u64 {
    let today = local_date(now_ms, tz);
    let slot = slot_on(today, tz, minute);
    if slot <= now_ms { slot } else { today.yesterday().map_or(0, |d| slot_on(d, tz, minute)) }
}

/// The first slot strictly after `after_ms`: when the timer should look next.
pub fn next_due(after_ms: u64, tz: &TimeZone, minute: u16) -> u64 {
    let day = local_date(after_ms, tz);
    let slot = slot_on(day, tz, minute);
    if slot > after_ms { slot } else { day.tomorrow().map_or(u64::MAX, |d| slot_on(d, tz, minute)) }
}

/// The slot to send a digest for now, if any: the latest one that has
/// passed and was not handled yet. After days of downtime this is one slot,
/// so missed digests are caught up once, never once per missed day.
pub fn due_slot(last_slot_ms: Option<u64>, since_ms: u64, now_ms: u64, tz: &TimeZone, minute: u16) -> Option<u64> {
    let latest = latest_slot(now_ms, tz, minute);
    (latest > last_slot_ms.unwrap_or(since_ms)).then_some(latest)
}

/// A time for people, in the owner's zone: `Tue 25 Nov, 19:52`.
pub fn local_time(ms: u64, tz: &TimeZone) -> String {
    Timestamp::from_millisecond(ms as i64)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone())
        .strftime("%a %-d %b, %H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        s.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    fn iso(ms: u64) -> String {
        Timestamp::from_millisecond(ms as i64).unwrap().to_string()
    }

    #[test]
    fn one_slot_per_local_day_at_the_owners_time() {
        let tz = zone(Some("Europe/Berlin"));
        // 08:00 in Berlin (CET, UTC+1) is 07:00 UTC.
        assert_eq!(iso(next_due(ms("2026-11-25T05:00:00Z"), &tz, 480)), "2026-11-25T07:00:00Z");
        assert_eq!(iso(next_due(ms("2026-11-25T07:00:00Z"), &tz, 480)), "2026-11-26T07:00:00Z");
        assert_eq!(iso(latest_slot(ms("2026-11-25T06:59:59Z"), &tz, 480)), "2026-11-24T07:00:00Z");
        assert_eq!(iso(latest_slot(ms("2026-11-25T07:00:00Z"), &tz, 480)), "2026-11-25T07:00:00Z");
        let utc = zone(None);
        assert_eq!(iso(next_due(ms("2026-11-25T08:00:00Z"), &utc, DEFAULT_MINUTE)), "2026-11-26T08:00:00Z");
        assert_eq!(zone(Some("Not/AZone")), TimeZone::UTC);
    }

    #[test]
    fn daylight_saving_gaps_and_overlaps() {
        let tz = zone(Some("Europe/Berlin"));
        // Summer time: 08:00 CEST is 06:00 UTC, across the spring change.
        assert_eq!(iso(next_due(ms("2026-03-28T07:00:00Z"), &tz, 480)), "2026-03-29T06:00:00Z");
        // 02:30 does not exist on 29 March: the digest comes right after the gap.
        assert_eq!(iso(next_due(ms("2026-03-28T12:00:00Z"), &tz, 150)), "2026-03-29T01:30:00Z");
        // 02:30 happens twice on 25 October: once, at the first.
        let first = next_due(ms("2026-10-24T12:00:00Z"), &tz, 150);
        assert_eq!(iso(first), "2026-10-25T00:30:00Z");
        assert_eq!(iso(next_due(first, &tz, 150)), "2026-10-26T01:30:00Z");
        // New York's change on a different day: 08:00 EST is 13:00 UTC.
        let ny = zone(Some("America/New_York"));
        assert_eq!(iso(next_due(ms("2026-11-01T12:30:00Z"), &ny, 480)), "2026-11-01T13:00:00Z");
    }

    #[test]
    fn due_once_then_not_again_and_catch_up_after_downtime_is_one_digest() {
        let tz = zone(Some("Europe/Berlin"));
        let since = ms("2026-11-20T10:00:00Z");
        // Opted in after today's slot: nothing due until tomorrow's.
        assert_eq!(due_slot(None, since, ms("2026-11-20T12:00:00Z"), &tz, 480), None);
        let first = due_slot(None, since, ms("2026-11-21T07:00:01Z"), &tz, 480).unwrap();
        assert_eq!(iso(first), "2026-11-21T07:00:00Z");
        // Handled: not due again the same day, also after a restart.
        assert_eq!(due_slot(Some(first), since, ms("2026-11-21T20:00:00Z"), &tz, 480), None);
        // Down from the 22nd to the 25th at noon: one digest, for the 25th.
        let caught_up = due_slot(Some(first), since, ms("2026-11-25T11:00:00Z"), &tz, 480).unwrap();
        assert_eq!(iso(caught_up), "2026-11-25T07:00:00Z");
        assert_eq!(due_slot(Some(caught_up), since, ms("2026-11-25T11:00:00Z"), &tz, 480), None);
    }

    #[test]
    fn local_times_read_well() {
        assert_eq!(local_time(ms("2026-11-25T19:52:00Z"), &zone(Some("Europe/Berlin"))), "Wed 25 Nov, 20:52");
    }
}
