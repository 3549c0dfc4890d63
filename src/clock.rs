//! The time the gateway decides by: every expiry, not-before and lifetime
//! is judged against one [`Clock`], shared by the proxy and the token
//! service, and every timer whose passing changes a decision (the key
//! ring's refetch backoff, the revocation set's staleness) reads it too,
//! so a test moves it instead of waiting. Latency measurements and the
//! connection pools' idle timers read the system's monotonic clock
//! directly: no decision depends on them.
//!
//! The clock never goes back. The system's time may be stepped (by an
//! operator, by NTP after a bad start); stepped forward, the gateway
//! follows at once, which only ends tokens sooner; stepped back, it does
//! not follow, but goes on from where it was at the pace of the monotonic
//! clock until the system's time catches up — a token that has expired
//! stays expired, and a cached grant is never fresh again. How far ahead
//! of the system it is held is a metric and, when it changes, a warning.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The system clock, held from going back, and moved by offsets only a
/// test sets.
#[derive(Debug)]
pub struct Clock {
    /// What the monotonic readings are counted from.
    base: Instant,
    /// The most the system's time (in Unix milliseconds) has been ahead
    /// of the monotonic clock's milliseconds since `base`: the system's
    /// time, less any step back.
    ahead_ms: AtomicI64,
    /// A step back already warned of (the `ahead_ms` it was held at).
    warned_ms: AtomicI64,
    /// Milliseconds added to both time and the monotonic reading (a test's
    /// passing of time).
    offset_ms: AtomicI64,
    /// Milliseconds added to the system's time alone (a test's step of the
    /// system clock).
    stepped_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        let base = Instant::now();
        let ahead = i64::try_from(now_unix_ms()).unwrap_or(i64::MAX);
        Clock {
            base,
            ahead_ms: AtomicI64::new(ahead),
            warned_ms: AtomicI64::new(ahead),
            offset_ms: AtomicI64::new(0),
            stepped_ms: AtomicI64::new(0),
        }
    }
}

impl Clock {
    /// The current Unix time, in seconds.
    #[inline]
    pub fn now(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// The current Unix time, in milliseconds: the system's, unless it
    /// was stepped back (then where this clock was, moved on since).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        let (system, mono) = self.readings();
        let ahead = system.saturating_sub(mono);
        let held = self.ahead_ms.load(Ordering::Relaxed);
        let ahead = if ahead > held {
            let before = self.ahead_ms.fetch_max(ahead, Ordering::Relaxed);
            // A step back from here on is news again.
            self.warned_ms.fetch_max(ahead, Ordering::Relaxed);
            before.max(ahead)
        } else {
            if held - ahead > STEP_WARNING_MS {
                self.stepped_back(held, ahead);
            }
            held
        };
        let now = mono.saturating_add(ahead).saturating_add(self.offset_ms.load(Ordering::Relaxed));
        u64::try_from(now).unwrap_or(0)
    }

    /// The system's time, then the monotonic clock's milliseconds since
    /// `base`, in that order: a pause between the two readings makes the
    /// system look behind, never ahead, so it cannot ratchet this clock
    /// forward.
    #[inline]
    fn readings(&self) -> (i64, i64) {
        let system =
            i64::try_from(now_unix_ms()).unwrap_or(i64::MAX).saturating_add(self.stepped_ms.load(Ordering::Relaxed));
        let mono = i64::try_from(self.base.elapsed().as_millis()).unwrap_or(i64::MAX);
        (system, mono)
    }

    /// The system's own time (Unix milliseconds, with a test's offsets),
    /// for comparing with another machine's timestamps: those are on its
    /// clock, not on this one's held time.
    pub fn system_ms(&self) -> u64 {
        let (system, _) = self.readings();
        u64::try_from(system.saturating_add(self.offset_ms.load(Ordering::Relaxed))).unwrap_or(0)
    }

    /// Milliseconds on the monotonic clock (from an arbitrary start, far
    /// enough back that any age can be taken from a reading; moved forward
    /// with the clock by a test): for ages no step of the system's time may
    /// change.
    pub fn mono_ms(&self) -> u64 {
        let mono = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        mono.saturating_add(MONO_ORIGIN_MS).saturating_add_signed(self.offset_ms.load(Ordering::Relaxed))
    }

    /// How far ahead of the system's time this clock is held (after a step
    /// back), in milliseconds.
    pub fn held_ahead_ms(&self) -> u64 {
        let (system, mono) = self.readings();
        let held = self.ahead_ms.load(Ordering::Relaxed);
        u64::try_from(held.saturating_sub(system.saturating_sub(mono))).unwrap_or(0)
    }

    /// Said once for each step back of the system's time.
    #[cold]
    fn stepped_back(&self, held: i64, ahead: i64) {
        let warned = self.warned_ms.load(Ordering::Relaxed);
        if warned - ahead > STEP_WARNING_MS
            && self.warned_ms.compare_exchange(warned, ahead, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(
                behind_ms = held - ahead,
                "the system clock went back; the gateway keeps its own time, moving on from where it was, until the system's catches up (no token lives past its exp)"
            );
        }
    }

    /// The current time as a `SystemTime` (audit lines, `Retry-After`
    /// times).
    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }

    /// A monotonic reading for intervals and backoffs (it never steps back
    /// when the system's time is set), moved forward with the clock.
    pub fn instant(&self) -> Instant {
        let ahead = u64::try_from(self.offset_ms.load(Ordering::Relaxed)).unwrap_or(0);
        let now = Instant::now();
        now.checked_add(Duration::from_millis(ahead)).unwrap_or(now)
    }

    /// Move this clock forward by `by` (to the millisecond): what expires
    /// or backs off in that time has.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Step the system's time (as this clock reads it) by `by_ms`, forward
    /// or back, as setting the system clock would: time passes no faster.
    pub fn step_system(&self, by_ms: i64) {
        self.stepped_ms.fetch_add(by_ms, Ordering::Relaxed);
    }
}

/// Where [`Clock::mono_ms`] starts: about 35 years of milliseconds.
const MONO_ORIGIN_MS: u64 = 1 << 40;

/// Steps back smaller than this (NTP's corrections) are held without a
/// warning.
const STEP_WARNING_MS: i64 = 1000;

/// Seconds since the Unix epoch, from the system clock.
pub fn now_unix() -> u64 {
    now_unix_ms() / 1000
}

/// Milliseconds since the Unix epoch, from the system clock. A clock
/// before 1970 is broken; 0 makes every token look expired-checked against
/// 0, which fails closed for `exp`.
pub fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_follows_the_system_until_moved() {
        let clock = Clock::default();
        let before = now_unix();
        assert!((before..=before + 1).contains(&clock.now()));
        clock.advance(Duration::from_secs(3600));
        assert!((before + 3600..=before + 3601).contains(&clock.now()));
    }

    #[test]
    fn a_step_forward_is_followed_and_a_step_back_is_not() {
        let clock = Clock::default();
        let start = clock.now_ms();
        clock.step_system(3_600_000);
        let ahead = clock.now_ms();
        assert!(ahead >= start + 3_600_000, "a step forward is followed");
        clock.step_system(-3_600_000);
        let back = clock.now_ms();
        assert!(back >= ahead, "the clock went back: {back} < {ahead}");
        assert!(clock.held_ahead_ms() >= 3_590_000, "held ahead by {}", clock.held_ahead_ms());
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now_ms() >= back + 20, "time moves on while held");
        // Stepped back further than it went forward: still never back.
        clock.step_system(-7_200_000);
        assert!(clock.now_ms() >= back + 20);
        // The system catching up (here, stepped to where it was held):
        // followed again.
        clock.step_system(10_800_000 + 1_000);
        assert_eq!(clock.held_ahead_ms(), 0);
        assert!(clock.now_ms() >= start + 3_600_000 + 1_000);
    }

    #[test]
    fn every_reading_moves_with_the_clock_to_the_millisecond() {
        let clock = Clock::default();
        let (ms, instant) = (clock.now_ms(), clock.instant());
        clock.advance(Duration::from_millis(350));
        assert!(clock.now_ms() >= ms + 350);
        assert!(clock.instant().duration_since(instant) >= Duration::from_millis(350));
        let since = clock.system_time().duration_since(UNIX_EPOCH).expect("after 1970");
        assert!(u64::try_from(since.as_millis()).expect("ms") >= ms + 350);
    }
}
