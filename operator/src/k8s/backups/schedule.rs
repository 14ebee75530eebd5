//! When scheduled base backups are due (pure): `spec.backup.schedule` is a cron expression in
//! UTC; a backup is due for the latest occurrence after the last one started (or after the
//! database was created) and not after now. Occurrences missed while no operator ran are not
//! made up one by one: only the latest of them is started.

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use k8s_openapi::jiff::Timestamp;

/// At most this many occurrences are walked to find the latest due one (a schedule every second
/// missed for a day is 86,400; past the bound, the last one walked is taken).
const MAX_WALK: usize = 200_000;

fn to_chrono(t: Timestamp) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t.as_millisecond()).single()
}

fn from_chrono(t: DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::from_millisecond(t.timestamp_millis()).ok()
}

/// The occurrence a backup is due for now: the latest one after `since` and at or before
/// `now`; `None` when there is none.
pub fn due(cron: &Cron, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let start = to_chrono(since)?;
    let end = to_chrono(now)?;
    cron.iter_after(start)
        .take(MAX_WALK)
        .take_while(|t| *t <= end)
        .last()
        .and_then(from_chrono)
}

/// The first occurrence after `now`.
pub fn next(cron: &Cron, now: Timestamp) -> Option<Timestamp> {
    let now = to_chrono(now)?;
    cron.find_next_occurrence(&now, false)
        .ok()
        .and_then(from_chrono)
}

/// An occurrence as the suffix of its backup's name, `YYYYMMDDHHMMSS` (UTC).
pub fn stamp(at: Timestamp) -> String {
    at.strftime("%Y%m%d%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use walshard_k8s_api::spec::backup::parse_schedule;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_latest_missed_occurrence_is_due_once() {
        let daily = parse_schedule("0 3 * * *").unwrap();
        let created = t("2026-12-01T12:00:00Z");
        assert_eq!(due(&daily, created, t("2026-12-02T02:59:59Z")), None);
        assert_eq!(
            due(&daily, created, t("2026-12-02T03:00:00Z")),
            Some(t("2026-12-02T03:00:00Z"))
        );
        // Down for three days: only the latest occurrence is due.
        assert_eq!(
            due(&daily, created, t("2026-12-05T10:00:00Z")),
            Some(t("2026-12-05T03:00:00Z"))
        );
        // Once started, the same occurrence is not due again.
        let started = t("2026-12-05T03:00:00Z");
        assert_eq!(due(&daily, started, t("2026-12-05T10:00:00Z")), None);
        assert_eq!(
            next(&daily, t("2026-12-05T10:00:00Z")),
            Some(t("2026-12-06T03:00:00Z"))
        );
        assert_eq!(stamp(started), "20261205030000");
    }

    #[test]
    fn schedules_with_seconds() {
        let every_30s = parse_schedule("*/30 * * * * *").unwrap();
        let since = t("2026-12-01T00:00:10Z");
        assert_eq!(
            due(&every_30s, since, t("2026-12-01T00:01:05Z")),
            Some(t("2026-12-01T00:01:00Z"))
        );
        assert_eq!(
            next(&every_30s, t("2026-12-01T00:01:05Z")),
            Some(t("2026-12-01T00:01:30Z"))
        );
    }
}
