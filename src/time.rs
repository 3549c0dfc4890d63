//! [`UnixTime`]: a point in time as whole Unix seconds, checked once where
//! it enters (a request's field, a facade's date, a stored row, the clock)
//! and then held as this one type from the wire to the store.
//!
//! Times cross several representations — JSON numbers (`u64`, and up to
//! 2^53 exact in JavaScript clients), the store's signed 64-bit columns,
//! JWT claims, `jiff` timestamps, milliseconds for Crafter's clients. An
//! `as` cast between them turns a value out of one's range into a wrong
//! value of the other (2^63 seconds stored as a negative number: a
//! revocation that ends before it begins, a `notBefore` that is already
//! past). So every time is brought into one range, `0 ..= MAX` (late on
//! 9999-12-30, the last second `jiff` holds in every time zone, which every
//! other representation holds exactly, milliseconds included), and a value outside it is refused where it arrives, with the
//! field named.

use std::time::Duration;

/// A Unix time in whole seconds, from 1970-01-01T00:00:00Z to
/// 9999-12-30T22:00:00Z.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UnixTime(u64);

/// A time outside [`UnixTime`]'s range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a Unix time from 0 to {max} (9999-12-30T22:00:00Z) in whole seconds", max = UnixTime::MAX.0)]
pub struct OutOfRange;

impl UnixTime {
    /// 9999-12-30T22:00:00Z.
    pub const MAX: UnixTime = UnixTime(253_402_207_200);
    pub const EPOCH: UnixTime = UnixTime(0);

    /// Seconds since the epoch, if within range.
    pub const fn from_secs(secs: u64) -> Result<UnixTime, OutOfRange> {
        if secs <= Self::MAX.0 { Ok(UnixTime(secs)) } else { Err(OutOfRange) }
    }

    /// A signed count of seconds (a stored column), if within range.
    pub fn from_i64(secs: i64) -> Result<UnixTime, OutOfRange> {
        u64::try_from(secs).map_err(|_| OutOfRange).and_then(UnixTime::from_secs)
    }

    /// Milliseconds since the epoch (Crafter's clients), rounded up to the
    /// second (a token never ends earlier than asked), if within range.
    pub fn from_millis_ceil(ms: u64) -> Result<UnixTime, OutOfRange> {
        UnixTime::from_secs(ms.div_ceil(1000))
    }

    /// A `jiff` timestamp (parsed RFC 3339), if within range.
    pub fn from_timestamp(ts: jiff::Timestamp) -> Result<UnixTime, OutOfRange> {
        UnixTime::from_i64(ts.as_second())
    }

    /// The time a clock reads: the system's, which is within range for the
    /// next eight thousand years; clamped, never wrapped.
    pub fn clamped(secs: u64) -> UnixTime {
        UnixTime(secs.min(Self::MAX.0))
    }

    pub const fn secs(self) -> u64 {
        self.0
    }

    /// As a signed column: always exact (`MAX` < 2^63).
    pub const fn as_i64(self) -> i64 {
        // MAX < i64::MAX: no value of the range is out of i64's.
        self.0 as i64
    }

    /// As milliseconds: always exact (`MAX` × 1000 < 2^63).
    pub const fn millis(self) -> u64 {
        self.0 * 1000
    }

    /// `secs` later, if still within range.
    pub fn checked_add(self, secs: u64) -> Option<UnixTime> {
        self.0.checked_add(secs).and_then(|t| UnixTime::from_secs(t).ok())
    }

    /// `by` later, or [`UnixTime::MAX`].
    pub fn saturating_add(self, by: Duration) -> UnixTime {
        UnixTime::clamped(self.0.saturating_add(by.as_secs()))
    }

    /// `by` earlier, or the epoch.
    pub fn saturating_sub(self, by: Duration) -> UnixTime {
        UnixTime(self.0.saturating_sub(by.as_secs()))
    }

    /// Seconds from `earlier` to this time (0 if it is not later).
    pub fn secs_since(self, earlier: UnixTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// As a `jiff` timestamp, for rendering.
    pub fn timestamp(self) -> jiff::Timestamp {
        jiff::Timestamp::from_second(self.as_i64()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_representation_holds_the_range_exactly() {
        assert!(UnixTime::MAX.secs() < (1 << 53), "JavaScript's exact integers");
        assert_eq!(UnixTime::MAX.as_i64() as u64, UnixTime::MAX.secs());
        assert!(UnixTime::MAX.millis() < i64::MAX as u64);
        assert_eq!(UnixTime::MAX.timestamp().to_string(), "9999-12-30T22:00:00Z");
        assert_eq!(UnixTime::from_timestamp(UnixTime::MAX.timestamp()), Ok(UnixTime::MAX));
    }

    #[test]
    fn values_out_of_range_are_refused_wherever_they_come_from() {
        for bad in [UnixTime::MAX.secs() + 1, 1 << 53, 1 << 63, u64::MAX] {
            assert_eq!(UnixTime::from_secs(bad), Err(OutOfRange), "{bad}");
        }
        for bad in [-1, i64::MIN, i64::MAX, 1 << 62] {
            assert_eq!(UnixTime::from_i64(bad), Err(OutOfRange), "{bad}");
        }
        assert_eq!(UnixTime::from_i64(0), Ok(UnixTime::EPOCH));
        assert_eq!(UnixTime::from_millis_ceil(1_893_456_000_001), Ok(UnixTime(1_893_456_001)));
        assert_eq!(UnixTime::from_millis_ceil(u64::MAX), Err(OutOfRange));
        let before_epoch = jiff::Timestamp::from_second(-1).expect("ts");
        assert_eq!(UnixTime::from_timestamp(before_epoch), Err(OutOfRange));
    }

    #[test]
    fn arithmetic_stays_in_range() {
        assert_eq!(UnixTime::MAX.checked_add(1), None);
        assert_eq!(UnixTime::MAX.saturating_add(Duration::MAX), UnixTime::MAX);
        assert_eq!(UnixTime::EPOCH.saturating_sub(Duration::from_secs(5)), UnixTime::EPOCH);
        assert_eq!(UnixTime(10).secs_since(UnixTime(20)), 0);
        assert_eq!(UnixTime::clamped(u64::MAX), UnixTime::MAX);
    }
}
