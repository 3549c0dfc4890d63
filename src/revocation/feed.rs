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
//! [`follow`] is the subscriber: it applies the lines to its own set,
//! confirms the set with each (at the issuer's confirmation time, so an
//! issuer that is itself stale makes its followers stale too), treats
//! silence longer than [`SILENCE`] as a dead connection, and reconnects,
//! resuming from its cursor, to each configured URL in turn.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Revocations;

/// How often a feed says it is alive when nothing is revoked.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long a subscriber waits for a line before it reconnects.
pub const SILENCE: Duration = Duration::from_secs(1);
/// The largest line a subscriber accepts (a snapshot of ~1M ids).
const MAX_LINE: usize = 64 * 1024 * 1024;

/// One line of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedLine {
    /// Every revoked id.
    Snapshot {
        cursor: String,
        ids: Vec<String>,
        #[serde(rename = "confirmedAt")]
        confirmed_at: u64,
    },
    /// Ids revoked since the previous line.
    Delta {
        cursor: String,
        ids: Vec<String>,
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

/// Apply a line to `set`; its cursor.
pub fn apply(set: &Revocations, line: FeedLine) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let (cursor, confirmed_at) = match line {
        FeedLine::Snapshot { cursor, ids, confirmed_at } | FeedLine::Delta { cursor, ids, confirmed_at } => {
            for id in &ids {
                set.revoke(id);
            }
            (cursor, confirmed_at)
        }
        FeedLine::Heartbeat { cursor, confirmed_at } => (cursor, confirmed_at),
    };
    // Never trust a clock ahead of ours to make the set look fresher.
    set.confirm_at(confirmed_at.min(now));
    cursor
}

/// Where to follow a feed, and the reader token to present.
#[derive(Clone)]
pub struct Source {
    pub urls: Vec<String>,
    pub token: String,
}

/// Follow the feed at `source` into `set` until the task is aborted.
pub fn follow(source: Source, set: Arc<Revocations>) -> tokio::task::JoinHandle<()> {
    set.follow();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .connect_timeout(SILENCE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let mut cursor: Option<String> = None;
        let mut reconnect = super::Reconnect::new(&set, "issuer feed");
        for url in source.urls.iter().cycle() {
            reconnect.attempt();
            let why = follow_once(&client, url, &source.token, &set, &mut cursor).await;
            reconnect.failed(&why).await;
        }
    })
}

/// Follow one URL until the stream fails; why it did.
async fn follow_once(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    set: &Revocations,
    cursor: &mut Option<String>,
) -> String {
    let mut req = client.get(url).bearer_auth(token);
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
    let mut buf: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let chunk = match tokio::time::timeout(SILENCE, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return "the feed ended".into(),
            Ok(Err(e)) => return format!("the feed broke: {}", e.without_url()),
            Err(_) => return "the feed fell silent".into(),
        };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let parsed: FeedLine = match serde_json::from_slice(&line[..end]) {
                Ok(l) => l,
                Err(_) => return "the feed sent a malformed line".into(),
            };
            if first && matches!(parsed, FeedLine::Heartbeat { .. }) {
                // The first line is always the snapshot or the catch-up.
                return "the feed did not start with the revocation set".into();
            }
            *cursor = Some(apply(set, parsed));
            if first {
                first = false;
                set.connected();
            }
        }
        if buf.len() > MAX_LINE {
            return "a feed line is too long".into();
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
        let line = FeedLine::Snapshot { cursor: "a:2".into(), ids: vec!["t1".into(), "t2".into()], confirmed_at: 5 };
        let text = line.encode();
        assert_eq!(text.last(), Some(&b'\n'));
        let back: FeedLine = serde_json::from_slice(&text[..text.len() - 1]).expect("parses");
        assert_eq!(back, line);
        assert_eq!(apply(&set, back), "a:2");
        assert!(set.is_revoked("t1") && set.is_revoked("t2") && set.is_loaded());
        // A confirmation from the future counts as now, not later.
        apply(&set, FeedLine::Heartbeat { cursor: "a:2".into(), confirmed_at: u64::MAX });
        assert!(set.staleness() < Duration::from_secs(1));
        assert!(
            serde_json::from_str::<FeedLine>(r#"{"type":"delta","cursor":"a:3","ids":[],"confirmedAt":1,"x":1}"#)
                .is_err()
        );
    }
}
