//! What a client's header means to the gateway, compiled purely from
//! config: the closed lists of [`crate::http_names`] and the configured
//! header names, by folded name, and one pass over a request's names that
//! says what must be refused or stripped. The proxy acts on it
//! (`proxy::headers`).

use http::header::{self, HeaderMap, HeaderName};
use smallvec::SmallVec;

use super::{CredentialSource, Forwarding};
use crate::http_names::{CLIENT_HEADER_POLICY, CLIENT_HEADER_PREFIXES, Fingerprint, HeaderClass, fingerprint};
use crate::reason::Reason;

/// What a client's header means to the gateway: the closed lists of
/// [`crate::http_names`] plus the configured names, by folded name.
///
/// Names are compared by their folded fingerprint (length and hash), so a
/// header costs one pass over its bytes and a few integer compares. Two
/// different names can share a fingerprint only by a hash collision, and a
/// collision can only make a header *more* restricted (refused or stripped
/// as the listed name would be), never let a listed one through: every
/// spelling of a listed name has exactly its fingerprint.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    /// An open-addressed table of the listed names' fingerprints, indexed
    /// by the hash's top bits.
    slots: Box<[Option<(Fingerprint, Class)>]>,
    /// The listed prefixes' folded lengths and hashes ([`CLIENT_HEADER_PREFIXES`]).
    prefix_lens: [usize; PREFIXES],
    prefixes: [(u64, HeaderClass); PREFIXES],
}

const PREFIXES: usize = CLIENT_HEADER_PREFIXES.len();

/// log2 of the table's size: four times the listed names, or more.
const SLOT_BITS: u32 = 7;

/// A header's class, and whether it is a credential header besides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Policy(HeaderClass),
    /// A configured credential header in a spelling other than its own: an
    /// upstream that conflates spellings would read it as the credential.
    CredentialAlias,
}

fn slot_of(hash: u64) -> usize {
    (hash >> (64 - SLOT_BITS)) as usize
}

impl HeaderPolicy {
    /// The policy for this forwarding config and these credential sources.
    pub fn new(fwd: &Forwarding, credentials: &[CredentialSource]) -> Self {
        let mut slots: Box<[Option<(Fingerprint, Class)>]> = vec![None; 1 << SLOT_BITS].into();
        let mut add = |name: &str, class: Class| {
            let (fp, []) = fingerprint(name, []);
            let mut i = slot_of(fp.hash);
            loop {
                match &slots[i] {
                    // The first class a name is given stands (the closed
                    // lists come first).
                    Some((f, _)) if *f == fp => return,
                    Some(_) => i = (i + 1) & ((1 << SLOT_BITS) - 1),
                    None => {
                        slots[i] = Some((fp, class));
                        return;
                    }
                }
            }
        };
        for (name, class) in CLIENT_HEADER_POLICY {
            add(name, Class::Policy(*class));
        }
        let id = &fwd.identity;
        for name in id.names() {
            add(name.as_str(), Class::Policy(HeaderClass::Identity));
        }
        add(fwd.request_id.as_str(), Class::Policy(HeaderClass::Forwarding));
        for src in credentials {
            if let CredentialSource::Header(name) = src {
                add(name.as_str(), Class::CredentialAlias);
            }
        }
        let prefix_lens = CLIENT_HEADER_PREFIXES.map(|(p, _)| fingerprint(p, []).0.len);
        let prefixes = CLIENT_HEADER_PREFIXES.map(|(p, c)| (fingerprint(p, []).0.hash, c));
        HeaderPolicy { slots, prefix_lens, prefixes }
    }

    #[inline]
    fn class(&self, name: &HeaderName) -> Option<Class> {
        let (fp, prefix_hashes) = fingerprint(name.as_str(), self.prefix_lens);
        let mut i = slot_of(fp.hash);
        while let Some((f, class)) = &self.slots[i] {
            if *f == fp {
                return Some(*class);
            }
            i = (i + 1) & ((1 << SLOT_BITS) - 1);
        }
        self.prefixes
            .iter()
            .zip(prefix_hashes)
            .find(|((hash, _), got)| hash == got)
            .map(|((_, c), _)| Class::Policy(*c))
    }
}

/// What one pass over a request's header names found. Every header not
/// listed here passes to the upstream untouched.
#[derive(Debug, Default)]
pub struct Scan {
    /// Why the request must be refused for its headers, if it must.
    pub refusal: Option<Reason>,
    /// `Upgrade`, `Connection` or `HTTP2-Settings` is present: the upgrade
    /// rules have something to judge.
    pub upgrade_related: bool,
    pub(crate) classified: SmallVec<[(HeaderName, Class); 4]>,
}

impl HeaderPolicy {
    /// One pass over the request's header names: what must be refused, and
    /// what must be stripped before forwarding.
    pub fn scan(&self, headers: &HeaderMap) -> Scan {
        let mut scan = Scan::default();
        for name in headers.keys() {
            let Some(class) = self.class(name) else { continue };
            match class {
                Class::Policy(HeaderClass::OverridesMethod) => {
                    scan.refusal.get_or_insert(Reason::MethodOverride);
                }
                Class::Policy(HeaderClass::RewritesTarget) => {
                    scan.refusal.get_or_insert(Reason::TargetRewrite);
                }
                Class::Policy(HeaderClass::HopByHop) => {
                    scan.upgrade_related |=
                        name == header::UPGRADE || name == header::CONNECTION || name.as_str() == "http2-settings";
                }
                _ => {}
            }
            scan.classified.push((name.clone(), class));
        }
        scan
    }
}
