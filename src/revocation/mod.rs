//! Following a revocation set from elsewhere: an issuer's feed over HTTP
//! ([`feed`], for enforce-only gateways) or another replica's PostgreSQL
//! notifications; both reconnect through [`Reconnect`].
//!
//! The set itself ([`Revocations`], in [`set`]: revoked ids, checked on
//! every request for the token and each of its ancestors, never cached
//! with the grant) is part of the store's in-memory mirror
//! (`store::mirror`), which this layer sits below. When it is
//! followed, the follower confirms it every time it hears from its source;
//! how long ago that was is the set's staleness, and [`Staleness`] says
//! what the gateway does when it grows too large.

pub mod feed;
mod set;

use std::time::Duration;

pub use set::{EXPIRY_GRACE, FeedRefusal, Held, Revocations, SetFull, Staleness};

/// A follower's reconnection back-off: from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(400));

/// A follower's reconnection loop, shared by every source: call
/// [`Reconnect::attempt`] before connecting, and [`Reconnect::failed`] when
/// the connection ends; it logs (the first failure after being connected
/// as a warning, the rest quietly), marks the feed down, judges staleness,
/// and waits a short, growing back-off. The set stays as it was meanwhile
/// (revocations are never taken back).
pub struct Reconnect<'a> {
    set: &'a Revocations,
    source: &'static str,
    backoff: Duration,
    reported: bool,
    connects_before: u64,
}

impl<'a> Reconnect<'a> {
    /// `source` names the source in logs.
    pub fn new(set: &'a Revocations, source: &'static str) -> Self {
        Reconnect { set, source, backoff: BACKOFF.0, reported: false, connects_before: 0 }
    }

    /// A connection attempt begins (it calls [`Revocations::connected`]
    /// once it has resynced).
    pub fn attempt(&mut self) {
        self.connects_before = self.set.connects();
    }

    /// The attempt ended, for `why`: wait before the next.
    pub async fn failed(&mut self, why: &str) {
        self.set.feed_down();
        if self.set.connects() != self.connects_before {
            // It had connected: this failure is news.
            self.backoff = BACKOFF.0;
            self.reported = false;
        }
        if self.reported {
            tracing::debug!(source = self.source, error = %why, "revocation feed still down");
        } else {
            tracing::warn!(source = self.source, error = %why, "revocation feed interrupted; reconnecting");
            self.reported = true;
        }
        // Judged here too, so crossing max_staleness is logged while down.
        let _ = self.set.is_stale();
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF.1);
    }
}
