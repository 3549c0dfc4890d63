//! The revocation feed: how an issuer hands its revocation set to
//! enforce-only gateways over HTTP, so that no sidecar needs a database
//! connection.
//!
//! `GET /v1/revocations[?cursor=C]` (api listener, feed-reader token)
//! answers a stream of JSON lines ([`FeedLine`]): a snapshot of every
//! revoked id, or — when `C` is a cursor this replica gave out and still
//! covers — only what was added since; then each revocation as it happens;
//! and a heartbeat every [`HEARTBEAT`] carrying the time the issuer's own
//! set was last confirmed complete. Cursors name the replica that issued
//! them, so one from another replica gets a snapshot.
//!
//! Each id comes with its token's expiry (`expiresAt`, in the same order;
//! `null` when not known), so a follower forgets it when the issuer does.
//!
//! [`follow`] is the subscriber: it applies the lines to its own set,
//! confirms the set with each (at the issuer's confirmation time, so an
//! issuer that is itself stale makes its followers stale too), treats
//! silence longer than [`SILENCE`] as a dead connection, and reconnects,
//! resuming from its cursor, to each configured URL in turn.
//!
//! It trusts none of its source's sizes: a line is read up to
//! [`MAX_LINE`] bytes and each byte is scanned once; an id is at most
//! [`MAX_ID`] bytes (no longer jti is ever verified, so none can be
//! revoked); the set holds at most `max_ids`. What it refuses is counted;
//! a line too long or malformed, or a set that is full, ends the
//! connection without confirming the set, so the gateway goes stale and
//! does what `revocation.when_stale` says instead of trusting a set it
//! could not complete.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Revocations;
use crate::time::UnixTime;

/// How often a feed says it is alive when nothing is revoked.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long a subscriber waits for a line before it reconnects.
pub const SILENCE: Duration = Duration::from_secs(1);
/// The largest line a subscriber accepts: a snapshot of about a million
/// ids with their expiries.
pub const MAX_LINE: usize = 64 * 1024 * 1024;
/// The longest id a subscriber accepts: the longest jti a token may carry
/// (and the issuer revokes).
pub const MAX_ID: usize = crate::token::MAX_JTI;

/// One line of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedLine {
    /// Every revoked id.
    Snapshot {
        cursor: String,
        ids: Vec<String>,
        /// Each id's token's expiry (Unix seconds; `null`: not known), in
        /// the order of `ids`. An issuer before this field sends none: its
        /// ids are held for good.
        #[serde(rename = "expiresAt", default, skip_serializing_if = "Vec::is_empty")]
        expires_at: Vec<Option<u64>>,
        #[serde(rename = "confirmedAt")]
        confirmed_at: u64,
    },
    /// Ids revoked since the previous line.
    Delta {
        cursor: String,
        ids: Vec<String>,
        #[serde(rename = "expiresAt", default, skip_serializing_if = "Vec::is_empty")]
        expires_at: Vec<Option<u64>>,
        #[serde(rename = "confirmedAt")]
        confirmed_at: u64,
    },
    /// Nothing new; the issuer's set was complete as of `confirmed_at`
    /// (Unix milliseconds).
    Heartbeat {
        cursor: String,
        #[serde(rename = "confirmedAt")]
        confirmed_at: u64,
    },
}

impl FeedLine {
    /// A snapshot (`resumed`: a delta, the catch-up after a cursor) of
    /// `held`, the ids with their expiries.
    pub fn of(resumed: bool, cursor: String, held: Vec<super::Held>, confirmed_at: u64) -> FeedLine {
        let (ids, expires_at): (Vec<String>, Vec<Option<u64>>) =
            held.into_iter().map(|(id, exp)| (id.to_string(), exp.map(UnixTime::secs))).unzip();
        if resumed {
            FeedLine::Delta { cursor, ids, expires_at, confirmed_at }
        } else {
            FeedLine::Snapshot { cursor, ids, expires_at, confirmed_at }
        }
    }

    /// The line as sent: JSON and a newline.
    pub fn encode(&self) -> Vec<u8> {
        // Strings and numbers always serialize.
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// A position in one replica's log: `<instance>:<index>`.
pub fn cursor(instance: &str, at: usize) -> String {
    format!("{instance}:{at}")
}

/// The log index a cursor names, if this replica (`instance`) gave it out
/// and it is not past the log's end.
pub fn resume_at(cursor: &str, instance: &str, len: usize) -> Option<usize> {
    let (inst, at) = cursor.rsplit_once(':')?;
    let at: usize = at.parse().ok()?;
    (inst == instance && at <= len).then_some(at)
}

/// Why a line could not be applied whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// `expiresAt` does not pair with `ids`.
    #[error("the feed sent a malformed line")]
    Malformed,
    #[error(transparent)]
    Full(#[from] super::SetFull),
}

/// Apply a line to `set`, which holds at most `max_ids` ids, at `now_ms`
/// (Unix milliseconds); its cursor. An id longer than [`MAX_ID`] (or
/// empty) is skipped and counted: no token with it is ever honoured. The
/// set is confirmed only when the whole line is in it.
pub fn apply(set: &Revocations, line: FeedLine, max_ids: usize, now_ms: u64) -> Result<String, ApplyError> {
    let (cursor, confirmed_at) = match line {
        FeedLine::Snapshot { cursor, ids, expires_at, confirmed_at }
        | FeedLine::Delta { cursor, ids, expires_at, confirmed_at } => {
            if !expires_at.is_empty() && expires_at.len() != ids.len() {
                set.refused(super::FeedRefusal::Malformed);
                return Err(ApplyError::Malformed);
            }
            for (i, id) in ids.iter().enumerate() {
                if id.is_empty() || id.len() > MAX_ID {
                    set.refused(super::FeedRefusal::IdTooLong);
                    continue;
                }
                // An expiry out of range is no expiry: held for good.
                let exp = expires_at.get(i).copied().flatten().and_then(|e| UnixTime::from_secs(e).ok());
                // Full: the set is not confirmed, and goes stale.
                set.revoke_within(id, exp, max_ids, UnixTime::clamped(now_ms / 1000))?;
            }
            (cursor, confirmed_at)
        }
        FeedLine::Heartbeat { cursor, confirmed_at } => (cursor, confirmed_at),
    };
    // Never trust a clock ahead of ours to make the set look fresher.
    set.confirm_at(confirmed_at.min(now_ms));
    Ok(cursor)
}

/// A stream cut into lines, each byte scanned once: a line that never
/// ends costs one pass over what arrived, never one per chunk, and ends
/// the stream at [`MAX_LINE`].
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    /// Where the next line starts.
    start: usize,
    /// Up to where `buf` is known to hold no newline.
    scanned: usize,
}

/// A line longer than the follower reads.
#[derive(Debug, PartialEq, Eq)]
struct LineTooLong;

impl Lines {
    /// Take in a chunk (first dropping the lines already taken).
    fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole line, without its newline; `None` until one has
    /// arrived.
    fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        match self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            Some(at) => {
                let end = self.scanned + at;
                if end - self.start > MAX_LINE {
                    return Err(LineTooLong);
                }
                let line = &self.buf[self.start..end];
                self.start = end + 1;
                self.scanned = self.start;
                Ok(Some(line))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() - self.start > MAX_LINE {
                    return Err(LineTooLong);
                }
                Ok(None)
            }
        }
    }
}

/// Where to follow a feed, the reader token to present, and how many ids
/// the set may hold.
#[derive(Clone)]
pub struct Source {
    pub urls: Vec<String>,
    /// PEM: the CAs the feed's certificate must chain to.
    pub ca: Option<Vec<u8>>,
    pub token: String,
    pub max_ids: usize,
}

/// Follow the feed at `source` into `set` until the task is aborted.
pub fn follow(source: Source, set: Arc<Revocations>) -> tokio::task::JoinHandle<()> {
    set.follow();
    tokio::spawn(async move {
        let client =
            match crate::tls::fetch_client(source.ca.as_deref(), reqwest::Client::builder().connect_timeout(SILENCE)) {
                Ok(c) => c,
                Err(e) => {
                    // Never followed: the set is never confirmed, and the
                    // gateway does what `when_stale` says.
                    tracing::error!(error = %e, "cannot follow the issuer feed");
                    return;
                }
            };
        let mut cursor: Option<String> = None;
        let mut reconnect = super::Reconnect::new(&set, "issuer feed");
        for url in source.urls.iter().cycle() {
            reconnect.attempt();
            let why = follow_once(&client, url, &source, &set, &mut cursor).await;
            reconnect.failed(&why).await;
        }
    })
}

/// Follow one URL until the stream fails; why it did.
async fn follow_once(
    client: &reqwest::Client,
    url: &str,
    source: &Source,
    set: &Revocations,
    cursor: &mut Option<String>,
) -> String {
    let mut req = client.get(url).bearer_auth(&source.token);
    if let Some(c) = cursor.as_deref() {
        req = req.query(&[("cursor", c)]);
    }
    let mut resp = match tokio::time::timeout(SILENCE, req.send()).await {
        Ok(Ok(r)) if r.status().is_success() => r,
        // The URL is the operator's config; it is not a secret but may be
        // long: say what failed, not where.
        Ok(Ok(r)) => return format!("the feed answered {}", r.status()),
        Ok(Err(e)) => return format!("request failed: {}", e.without_url()),
        Err(_) => return "no answer in time".into(),
    };
    let mut lines = Lines::default();
    let mut first = true;
    loop {
        let chunk = match tokio::time::timeout(SILENCE, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return "the feed ended".into(),
            Ok(Err(e)) => return format!("the feed broke: {}", e.without_url()),
            Err(_) => return "the feed fell silent".into(),
        };
        lines.push(&chunk);
        loop {
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(LineTooLong) => {
                    set.refused(super::FeedRefusal::LineTooLong);
                    return "a feed line is too long".into();
                }
            };
            let parsed: FeedLine = match serde_json::from_slice(line) {
                Ok(l) => l,
                Err(_) => {
                    set.refused(super::FeedRefusal::Malformed);
                    return "the feed sent a malformed line".into();
                }
            };
            if first && matches!(parsed, FeedLine::Heartbeat { .. }) {
                // The first line is always the snapshot or the catch-up.
                return "the feed did not start with the revocation set".into();
            }
            match apply(set, parsed, source.max_ids, set.now_ms()) {
                Ok(c) => *cursor = Some(c),
                // Not confirmed: the set goes stale, and the gateway does
                // what `when_stale` says.
                Err(e) => return e.to_string(),
            }
            if first {
                first = false;
                set.connected();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_resume_only_on_the_replica_that_gave_them_out() {
        assert_eq!(resume_at(&cursor("abc", 7), "abc", 9), Some(7));
        assert_eq!(resume_at(&cursor("abc", 9), "abc", 9), Some(9));
        assert_eq!(resume_at(&cursor("abc", 10), "abc", 9), None, "past the end: a snapshot");
        assert_eq!(resume_at(&cursor("xyz", 7), "abc", 9), None, "another replica's");
        for junk in ["", "abc", "abc:", "abc:-1", "abc:x", ":3"] {
            assert_eq!(resume_at(junk, "abc", 9), None, "{junk:?}");
        }
    }

    #[test]
    fn lines_round_trip_and_apply() {
        let set = Revocations::default();
        set.follow();
        let now = crate::clock::now_unix_ms();
        let line = FeedLine::Snapshot {
            cursor: "a:2".into(),
            ids: vec!["t1".into(), "t2".into()],
            expires_at: vec![Some(now / 1000 + 60), None],
            confirmed_at: 5,
        };
        let text = line.encode();
        assert_eq!(text.last(), Some(&b'\n'));
        let back: FeedLine = serde_json::from_slice(&text[..text.len() - 1]).expect("parses");
        assert_eq!(back, line);
        assert_eq!(apply(&set, back, 10, now), Ok("a:2".to_string()));
        assert!(set.is_revoked("t1") && set.is_revoked("t2") && set.is_loaded());
        // t1 is forgotten once its token expired (and the grace passed);
        // t2's expiry is not known: held.
        let after = now / 1000 + 60 + crate::revocation::EXPIRY_GRACE.as_secs() + 1;
        assert_eq!(set.sweep(UnixTime::clamped(after)), 1);
        assert!(!set.is_revoked("t1") && set.is_revoked("t2"));
        // A confirmation from the future counts as now, not later.
        apply(
            &set,
            FeedLine::Heartbeat { cursor: "a:2".into(), confirmed_at: u64::MAX },
            10,
            crate::clock::now_unix_ms(),
        )
        .expect("applies");
        assert!(set.staleness() < Duration::from_secs(1));
        // An issuer from before expiries: every id held for good.
        let old: FeedLine =
            serde_json::from_str(r#"{"type":"delta","cursor":"a:3","ids":["t3"],"confirmedAt":1}"#).expect("parses");
        apply(&set, old, 10, crate::clock::now_unix_ms()).expect("applies");
        assert_eq!(set.sweep(UnixTime::MAX), 0);
        assert!(
            serde_json::from_str::<FeedLine>(r#"{"type":"delta","cursor":"a:3","ids":[],"confirmedAt":1,"x":1}"#)
                .is_err()
        );
    }

    #[test]
    fn what_the_source_sends_is_bounded_and_counted() {
        let set = Revocations::default();
        set.follow();
        let line = |ids: Vec<String>, expires_at: Vec<Option<u64>>| FeedLine::Delta {
            cursor: "a:1".into(),
            ids,
            expires_at,
            confirmed_at: crate::clock::now_unix_ms(),
        };
        // Ids no token may carry: skipped and counted, the rest applied.
        let ids = vec!["ok".to_string(), String::new(), "x".repeat(MAX_ID + 1), "y".repeat(MAX_ID)];
        apply(&set, line(ids, vec![]), 10, crate::clock::now_unix_ms()).expect("applies");
        assert!(set.is_revoked("ok") && set.is_revoked(&"y".repeat(MAX_ID)) && set.len() == 2);
        assert_eq!(set.refusals(crate::revocation::FeedRefusal::IdTooLong), 2);
        // Expiries that do not pair with the ids: malformed, nothing applied.
        let bad = line(vec!["z".into()], vec![Some(1), Some(2)]);
        assert_eq!(apply(&set, bad, 10, crate::clock::now_unix_ms()), Err(ApplyError::Malformed));
        assert!(!set.is_revoked("z"));
        // Past the cap: refused, and the set is not confirmed.
        let before = set.confirmed_ms();
        let many = (0..20).map(|i| format!("t{i}")).collect();
        assert_eq!(
            apply(&set, line(many, vec![]), 10, crate::clock::now_unix_ms() + 5_000),
            Err(ApplyError::Full(crate::revocation::SetFull { max: 10 }))
        );
        assert_eq!(set.len(), 10);
        assert_eq!(set.confirmed_ms(), before, "a set it could not complete is not confirmed");
    }

    #[test]
    fn lines_are_cut_with_each_byte_scanned_once() {
        let mut lines = Lines::default();
        lines.push(b"{\"a\"");
        assert_eq!(lines.next_line(), Ok(None));
        lines.push(b":1}\n{\"b\":2}\n{\"c");
        assert_eq!(lines.next_line(), Ok(Some(&b"{\"a\":1}"[..])));
        assert_eq!(lines.next_line(), Ok(Some(&b"{\"b\":2}"[..])));
        assert_eq!(lines.next_line(), Ok(None));
        lines.push(b"\":3}\n");
        assert_eq!(lines.next_line(), Ok(Some(&b"{\"c\":3}"[..])));
        assert_eq!(lines.next_line(), Ok(None));
        // A line that never ends is refused past MAX_LINE, however it
        // arrives; what was scanned is not scanned again.
        let chunk = vec![b'x'; 1 << 20];
        let mut refused = false;
        for _ in 0..=(MAX_LINE >> 20) {
            lines.push(&chunk);
            assert!(lines.scanned <= lines.buf.len());
            if lines.next_line() == Err(LineTooLong) {
                refused = true;
                break;
            }
            assert_eq!(lines.scanned, lines.buf.len(), "everything that arrived was scanned, once");
        }
        assert!(refused, "a line longer than MAX_LINE is refused");
    }
}
