//! The verified-token cache.
//!
//! Bounded (TinyUFO: TinyLFU admission, S3-FIFO eviction), keyed by the
//! token's SHA-256: TinyUFO stores only a 64-bit hash, so each entry keeps
//! the whole digest and a hit is confirmed by comparing it, never by the
//! 64-bit hash alone — as exact as comparing the token, without keeping
//! the token (a JWT is most of an entry's size otherwise). The digest is
//! taken once per distinct token a thread sees in a row: a small
//! thread-local memo, checked by comparing the whole token, remembers the
//! last few (a connection sends the same token again and again). Entries
//! expire no later than the token. It caches grants, never decisions:
//! revocation and evaluation run on every request. Entries remember the
//! key generation they were verified under: when a key is withdrawn (the
//! [`KeyRing`](super::KeyRing) bumps the generation), every entry verified
//! before is a miss, so a withdrawn key stops working at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tinyufo::TinyUfo;

use super::grant::Grant;

struct Entry {
    /// SHA-256 of the token.
    digest: Digest,
    grant: Arc<Grant>,
    /// Unix seconds after which the entry must not be used.
    fresh_until: u64,
    /// The key generation it was verified under.
    generation: u64,
}

/// What a cache reports: its entries now, and what it evicted.
#[derive(Clone, Debug)]
pub struct CacheCounters {
    pub entries: prometheus::IntGauge,
    pub evictions: prometheus::IntCounter,
}

/// A bounded cache of verified grants.
pub struct GrantCache {
    inner: TinyUfo<u64, Arc<Entry>>,
    max_ttl_secs: u64,
    generation: Arc<AtomicU64>,
    counters: Option<CacheCounters>,
}

impl std::fmt::Debug for GrantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantCache").field("max_ttl_secs", &self.max_ttl_secs).finish_non_exhaustive()
    }
}

impl GrantCache {
    /// A cache of at most `capacity` grants, each kept at most `max_ttl_secs`.
    pub fn new(capacity: usize, max_ttl_secs: u64) -> Self {
        Self::with_generation(capacity, max_ttl_secs, Arc::default())
    }

    /// A cache whose entries are valid only while `generation` (a key
    /// ring's) is what it was when they were verified.
    pub fn with_generation(capacity: usize, max_ttl_secs: u64, generation: Arc<AtomicU64>) -> Self {
        let capacity = capacity.max(1);
        GrantCache { inner: TinyUfo::new_compact(capacity, capacity), max_ttl_secs, generation, counters: None }
    }

    /// Report entries and evictions in `counters` (a new cache starts the
    /// entry count again).
    pub fn counted(mut self, counters: CacheCounters) -> Self {
        counters.entries.set(0);
        self.counters = Some(counters);
        self
    }

    fn entries(&self, delta: i64) {
        if let Some(c) = &self.counters {
            c.entries.add(delta);
        }
    }

    /// The key generation now: read it before verifying, pass it to
    /// [`GrantCache::put_verified`].
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached grant for exactly this token, if fresh at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Grant>> {
        let digest = digest(token.as_bytes());
        let key = key_of(&digest);
        let entry = self.inner.get(&key)?;
        if entry.digest != digest {
            // Another token with the same 64 bits: a miss.
            return None;
        }
        if now >= entry.fresh_until || entry.generation != self.generation() {
            if self.inner.remove(&key).is_some() {
                self.entries(-1);
            }
            return None;
        }
        Some(entry.grant.clone())
    }

    /// Cache a grant verified at `now` under the current key generation.
    pub fn put(&self, token: &str, grant: Arc<Grant>, now: u64) {
        self.put_verified(token, grant, now, self.generation());
    }

    /// Cache a grant verified at `now` under key generation `generation`
    /// (read before verifying: a key withdrawn meanwhile makes it a miss).
    pub fn put_verified(&self, token: &str, grant: Arc<Grant>, now: u64, generation: u64) {
        let ttl_end = now.saturating_add(self.max_ttl_secs);
        let fresh_until = grant.expires_at.map_or(ttl_end, |exp| exp.min(ttl_end));
        if fresh_until <= now {
            return;
        }
        let digest = digest(token.as_bytes());
        let entry = Arc::new(Entry { digest, grant, fresh_until, generation });
        // What goes out — an older entry, or this one not admitted — is
        // what the full cache evicted.
        let evicted = self.inner.put(key_of(&digest), entry, 1).len();
        if let Some(c) = &self.counters {
            c.entries.add(1 - evicted as i64);
            c.evictions.inc_by(evicted as u64);
        }
    }
}

type Digest = [u8; 32];

/// TinyUFO's key: the digest's first 64 bits.
#[inline]
fn key_of(digest: &Digest) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_ne_bytes(first)
}

/// Memo slots per thread, and the longest token a slot keeps.
const MEMO_SLOTS: usize = 16;
const MEMO_MAX_TOKEN: usize = 2048;

thread_local! {
    /// The last tokens this thread digested, with their digests; a slot
    /// is chosen by the token's length and last bytes (a signature's:
    /// random), and trusted only when the whole token matches.
    static MEMO: std::cell::RefCell<[(Vec<u8>, Digest); MEMO_SLOTS]> =
        std::cell::RefCell::new(std::array::from_fn(|_| (Vec::new(), [0; 32])));
}

/// SHA-256 of `token`, from the thread's memo when it digested this very
/// token last in its slot.
fn digest(token: &[u8]) -> Digest {
    let mut tail = [0u8; 8];
    let n = token.len().min(8);
    tail[..n].copy_from_slice(&token[token.len() - n..]);
    let slot = (u64::from_ne_bytes(tail) ^ token.len() as u64) as usize % MEMO_SLOTS;
    MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else { return sha256(token) };
        let (kept, digest) = &mut memo[slot];
        if !kept.is_empty() && kept.as_slice() == token {
            return *digest;
        }
        let d = sha256(token);
        if token.len() <= MEMO_MAX_TOKEN {
            kept.clear();
            kept.extend_from_slice(token);
            *digest = d;
        }
        d
    })
}

fn sha256(token: &[u8]) -> Digest {
    let mut d = [0u8; 32];
    d.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token).as_ref());
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::testkit::{self, TestKey, payload};
    use crate::token::verify::Verifier;

    #[test]
    fn entries_expire_no_later_than_the_token() {
        let key = TestKey::es256("k");
        let verifier = Verifier::new(testkit::keyset(&[&key], testkit::issuer_policy()), 8192);
        let now = 1_800_000_000;
        let token = key.sign(&payload("a", now, 10, serde_json::json!([])));
        let grant = Arc::new(verifier.verify(&token, now).expect("valid"));
        let cache = GrantCache::new(16, 300);
        cache.put(&token, grant, now);
        assert!(cache.get(&token, now + 9).is_some());
        assert!(cache.get(&token, now + 10).is_none(), "served past the token's exp");
        assert!(cache.get(&token, now + 9).is_none(), "an expired entry is removed");
    }

    #[test]
    fn entries_live_at_most_the_max_ttl_and_match_the_whole_token() {
        let key = TestKey::es256("k");
        let verifier = Verifier::new(testkit::keyset(&[&key], testkit::issuer_policy()), 8192);
        let now = 1_800_000_000;
        let token = key.sign(&payload("a", now, 3600, serde_json::json!([])));
        let cache = GrantCache::new(16, 60);
        cache.put(&token, Arc::new(verifier.verify(&token, now).expect("valid")), now);
        assert!(cache.get(&token, now + 59).is_some());
        assert!(cache.get(&token, now + 60).is_none());
        cache.put(&token, Arc::new(verifier.verify(&token, now).expect("valid")), now);
        // A different token (here: one character changed) is a miss.
        let mut other = token.clone();
        let last = other.pop();
        other.push(if last == Some('A') { 'B' } else { 'A' });
        assert!(cache.get(&other, now).is_none());
    }

    #[test]
    fn tokens_sharing_a_memo_slot_keep_their_own_digests() {
        // Same length, same last bytes: the same memo slot, one after the
        // other, in both orders; an empty token is digested like any other.
        let a = "a".repeat(700) + "SIGNATURE";
        let b = "b".repeat(700) + "SIGNATURE";
        for (first, second) in [(&a, &b), (&b, &a), (&a, &a)] {
            assert_eq!(digest(first.as_bytes()), sha256(first.as_bytes()));
            assert_eq!(digest(second.as_bytes()), sha256(second.as_bytes()));
        }
        assert_eq!(digest(b""), sha256(b""));
        let long = "c".repeat(MEMO_MAX_TOKEN + 1);
        assert_eq!(digest(long.as_bytes()), sha256(long.as_bytes()));
        assert_eq!(digest(long.as_bytes()), sha256(long.as_bytes()));

        let key = TestKey::es256("k");
        let verifier = Verifier::new(testkit::keyset(&[&key], testkit::issuer_policy()), 8192);
        let now = crate::token::now_unix();
        let token = key.sign(&payload("a", now, 3600, serde_json::json!([])));
        let cache = GrantCache::new(16, 300);
        cache.put(&token, Arc::new(verifier.verify(&token, now).expect("valid")), now);
        // A token differing only before its last 8 bytes: same slot, a miss.
        let mut other = token.clone().into_bytes();
        other[10] = if other[10] == b'A' { b'B' } else { b'A' };
        let other = String::from_utf8(other).expect("ascii");
        assert!(cache.get(&other, now).is_none());
        assert!(cache.get(&token, now).is_some());
    }

    #[test]
    fn a_new_key_generation_makes_every_older_entry_a_miss() {
        let key = TestKey::es256("k1");
        let verifier = Verifier::new(testkit::keyset(&[&key], testkit::issuer_policy()), 8192);
        let generation = Arc::new(AtomicU64::new(0));
        let cache = GrantCache::with_generation(100, 300, generation.clone());
        let now = crate::token::now_unix();
        let token = key.sign(&payload("alice", now, 3600, serde_json::json!([])));
        let grant = Arc::new(verifier.verify(&token, now).expect("valid"));
        cache.put(&token, grant.clone(), now);
        assert!(cache.get(&token, now).is_some());
        generation.fetch_add(1, Ordering::AcqRel);
        assert!(cache.get(&token, now).is_none(), "verified under a withdrawn generation");
        // Verified before a withdrawal but stored after it: still a miss.
        let before = cache.generation();
        generation.fetch_add(1, Ordering::AcqRel);
        cache.put_verified(&token, grant, now, before);
        assert!(cache.get(&token, now).is_none());
    }
}
