//! A restore target from its text form, as `walshard restore` and `walshard-agent
//! restore-server` take it: a time (RFC 3339), a backup id, per-shard LSNs, or none (the latest).

use std::collections::BTreeMap;

use crate::names::BackupId;
use crate::plan::Target;

/// Why a restore target's text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The time is not RFC 3339 (or before 1970).
    #[error("to-time {text:?}: {reason} (RFC 3339, e.g. 2026-12-07T10:00:00Z)")]
    Time {
        /// The text given.
        text: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Not a backup id.
    #[error("backup {0:?}: not a backup id")]
    Backup(String),
    /// An item of the LSN list is not `shard=LSN`.
    #[error("to-lsn: {0:?} is not shard=LSN")]
    Lsn(String),
    /// More than one kind of target.
    #[error("give one of to-time, backup and to-lsn")]
    Several,
}

impl TargetError {
    /// A machine-readable code.
    pub fn code(&self) -> &'static str {
        "invalid-request"
    }
}

impl Target {
    /// The target the options name: a time, a backup, LSNs (`sh1=120,sh2=80`), or, with none,
    /// the latest point.
    pub fn from_options(
        to_time: Option<&str>,
        backup: Option<&str>,
        to_lsn: Option<&str>,
    ) -> Result<Target, TargetError> {
        match (to_time, backup, to_lsn) {
            (None, None, None) => Ok(Target::Latest),
            (Some(t), None, None) => parse_time(t).map(Target::Time),
            (None, Some(id), None) => BackupId::parse(id)
                .map(Target::Backup)
                .ok_or_else(|| TargetError::Backup(id.to_owned())),
            (None, None, Some(list)) => {
                let mut lsns = BTreeMap::new();
                for item in list.split(',').filter(|s| !s.is_empty()) {
                    let (shard, lsn) = item
                        .split_once('=')
                        .and_then(|(s, n)| {
                            Some((s.trim().to_owned(), n.trim().parse::<u64>().ok()?))
                        })
                        .ok_or_else(|| TargetError::Lsn(item.to_owned()))?;
                    lsns.insert(shard, lsn);
                }
                Ok(Target::Lsn(lsns))
            }
            _ => Err(TargetError::Several),
        }
    }
}

/// An RFC 3339 time in milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<crate::Millis, TargetError> {
    let bad = |reason: String| TargetError::Time {
        text: text.to_owned(),
        reason,
    };
    let at: jiff::Timestamp = text.parse().map_err(|e: jiff::Error| bad(e.to_string()))?;
    u64::try_from(at.as_millisecond()).map_err(|_| bad("before 1970".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_and_its_errors() {
        assert_eq!(Target::from_options(None, None, None), Ok(Target::Latest));
        assert_eq!(
            Target::from_options(Some("1970-01-01T00:00:01.5Z"), None, None),
            Ok(Target::Time(1500))
        );
        assert!(matches!(
            Target::from_options(None, Some("20261207T030000123Z"), None),
            Ok(Target::Backup(_))
        ));
        assert_eq!(
            Target::from_options(None, None, Some("sh1=12, sh2=3")),
            Ok(Target::Lsn(BTreeMap::from([
                ("sh1".into(), 12),
                ("sh2".into(), 3)
            ])))
        );
        assert!(matches!(
            Target::from_options(Some("yesterday"), None, None),
            Err(TargetError::Time { .. })
        ));
        assert!(matches!(
            Target::from_options(Some("1969-12-31T23:59:59Z"), None, None),
            Err(TargetError::Time { .. })
        ));
        assert_eq!(
            Target::from_options(None, Some("../x"), None),
            Err(TargetError::Backup("../x".into()))
        );
        assert_eq!(
            Target::from_options(None, None, Some("sh1")),
            Err(TargetError::Lsn("sh1".into()))
        );
        assert_eq!(
            Target::from_options(Some("x"), Some("y"), None),
            Err(TargetError::Several)
        );
    }
}
