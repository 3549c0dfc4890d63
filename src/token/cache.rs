//! The verified-token cache.
//!
//! Bounded (TinyUFO: TinyLFU admission, S3-FIFO eviction), keyed by the whole
//! token: TinyUFO stores only a 64-bit hash, so each entry keeps the token
//! and a hit is confirmed by comparing it, never by hash alone. Entries
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
    token: Box<str>,
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
    hasher: ahash::RandomState,
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
        GrantCache {
            inner: TinyUfo::new(capacity, capacity),
            hasher: ahash::RandomState::new(),
            max_ttl_secs,
            generation,
            counters: None,
        }
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

    #[inline]
    fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    /// The cached grant for exactly this token, if fresh at `now`.
    pub fn get(&self, token: &str, now: u64) -> Option<Arc<Grant>> {
        let key = self.key(token);
        let entry = self.inner.get(&key)?;
        if *entry.token != *token {
            // A 64-bit hash collision: treat as a miss.
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
        let entry = Arc::new(Entry { token: token.into(), grant, fresh_until, generation });
        // What goes out — an older entry, or this one not admitted — is
        // what the full cache evicted.
        let evicted = self.inner.put(self.key(token), entry, 1).len();
        if let Some(c) = &self.counters {
            c.entries.add(1 - evicted as i64);
            c.evictions.inc_by(evicted as u64);
        }
    }
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
