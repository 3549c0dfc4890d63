//! [`TokenService`]: every token this gateway mints, and every revocation,
//! goes through here, in one order — the authority rules
//! (`policy::issuance`, `policy::narrow`), the secret (signed, sized, or
//! generated), the store, then the in-memory mirror the proxy reads (other
//! replicas hear of it from the store). Handlers and facades translate
//! their wire formats to a [`NewToken`], a [`NarrowRequest`] or a
//! [`RevokeTarget`] and back, calling one typed method for each way of
//! minting;
//! they decide nothing about authority themselves.

pub mod bootstrap;
mod error;
pub mod input;

use std::sync::Arc;

use opentelemetry::KeyValue;

pub use error::{ErrorKind, ServiceError};

use crate::audit::{Action, ActionEvent, ActionKind};
use crate::policy::AccessRule;
use crate::policy::Manifest;
use crate::policy::issuance::RegistrationLimits;
use crate::policy::issuance::{self, Authority, RegistrationWanted, Wanted};
use crate::policy::narrow::{Simplified, child_expiry, narrow_detailed, narrow_simplified};
use crate::policy::tenant::TenantPermission;
use crate::store::{
    JtiRevocation, Mirror, RedeemError, RegistrationRecord, Store, StoreError, TokenFilter, TokenForm, TokenRecord,
};
use crate::time::UnixTime;
use crate::token::claims::{Claims, WireRule, encode_grants};
use crate::token::keys::random_id;
use crate::token::reference;
use crate::token::sign::Signing;
use crate::token::{Grant, Role, TokenKind};
use crate::trace;

/// A new token as every way of creating one describes it.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// Unique among live tokens when present.
    pub name: Option<String>,
    pub subject: String,
    pub description: String,
    pub application: Option<String>,
    pub role: Role,
    pub master: bool,
    pub rules: Vec<AccessRule>,
    pub tenants: Vec<TenantPermission>,
    pub not_before: UnixTime,
    /// `None`: never expires (reference forms only).
    pub expires_at: Option<UnixTime>,
    pub form: NewForm,
    /// Extra JWT claims a facade's clients read.
    pub extra_claims: serde_json::Map<String, serde_json::Value>,
    /// The thumbprint of the client certificate it is bound to (RFC 8705).
    pub bound_to: Option<[u8; 32]>,
}

impl NewToken {
    /// A user token for `subject` with nothing granted yet, valid from
    /// `now`.
    pub fn user(subject: impl Into<String>, form: NewForm, now: UnixTime) -> Self {
        NewToken {
            name: None,
            subject: subject.into(),
            description: String::new(),
            application: None,
            role: Role::User,
            master: false,
            rules: Vec::new(),
            tenants: Vec::new(),
            not_before: now,
            expires_at: None,
            form,
            extra_claims: Default::default(),
            bound_to: None,
        }
    }
}

/// The form of a new token's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewForm {
    /// A JWT signed with the active key.
    Jwt,
    /// A random `ngr_…` secret; the store keeps its hash.
    Reference,
    /// A reference token whose secret is this client-chosen id (Crafter's
    /// access tokens, whose id is the credential).
    External(String),
    /// A reference token whose secret only its holder knows: the service
    /// gets its SHA-256 and never the secret (the operator's first admin
    /// credential). Minted, it hands back no secret (an empty string).
    Digest([u8; 32]),
}

/// How a narrowed token is to be cut from its parent.
#[derive(Clone, Debug)]
pub enum Narrowing {
    /// MetaApi's simplified form: applications, roles, resources.
    Simplified(Simplified),
    /// Explicit rules, each within the parent's.
    Detailed(Vec<AccessRule>),
}

/// What a token exchange may do, as the subject token's issuer says: the
/// clients whose tokens may be exchanged (`None`: none), the subject's
/// client, and the ids of the subject's rules to keep (its `scope`;
/// `None`: all).
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    pub clients: Option<&'a [String]>,
    pub client: Option<&'a str>,
    pub keep: Option<&'a [String]>,
}

/// A registration token to hand out.
#[derive(Clone, Debug)]
pub struct NewRegistration {
    /// The name of the access token it yields.
    pub name: String,
    pub role: Role,
    /// Seconds it may wait to be redeemed.
    pub ttl: u64,
    /// Seconds the token it yields lives; `None`: never expires.
    pub lifetime: Option<u64>,
}

/// A narrowing asked for: of the token `token` (`None`: the caller
/// itself). Any token narrows itself; another token only on the terms of
/// `issuance::may_narrow` (a master, or a non-master admin within its
/// lineage), and only while it is live.
#[derive(Clone, Debug)]
pub struct NarrowRequest {
    pub token: Option<String>,
    pub narrowing: Narrowing,
    /// Tenant permissions the child keeps (within the parent's); `None`:
    /// none.
    pub tenants: Option<Vec<TenantPermission>>,
    pub validity_hours: Option<f64>,
    /// Bind the child to this client certificate (its thumbprint). A
    /// child of a bound token is bound to its parent's certificate
    /// whatever this says: narrowing never drops a binding, nor moves it.
    pub bind_to: Option<[u8; 32]>,
}

/// A token minted: its secret, shown this once, and its record.
#[derive(Debug)]
pub struct MintedToken {
    pub secret: String,
    pub record: TokenRecord,
}

/// A registration token minted: its secret, shown this once, and its
/// record.
#[derive(Debug)]
pub struct MintedRegistration {
    pub secret: String,
    pub record: RegistrationRecord,
}

/// What to revoke.
#[derive(Clone, Debug)]
pub enum RevokeTarget {
    /// A token this gateway issued, by id (its jti).
    Id(String),
    /// A live token by name.
    Name(String),
    /// A token by its client-chosen id (Crafter); the id is free again after.
    ExternalId(String),
    /// Any token by jti, another issuer's included: held until `expires_at`.
    Jti { jti: String, issuer: String, expires_at: Option<UnixTime> },
    /// An unredeemed registration token, by id.
    Registration(String),
}

/// A token's state as the proxy enforces it: its own revocation, or an
/// ancestor's, counts as much as its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenState {
    Live,
    Expired,
    /// Revoked at `at` (when known), itself (`by: None`) or with the
    /// ancestor `by`.
    Revoked {
        at: Option<UnixTime>,
        by: Option<String>,
    },
}

impl TokenState {
    /// `live`, `expired` or `revoked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TokenState::Live => "live",
            TokenState::Expired => "expired",
            TokenState::Revoked { .. } => "revoked",
        }
    }

    pub fn is_live(&self) -> bool {
        *self == TokenState::Live
    }
}

/// A token as shown to a manager: its record and its effective state.
#[derive(Clone, Debug)]
pub struct Shown {
    pub record: TokenRecord,
    pub state: TokenState,
}

/// A revocation done: the id, and whether it was new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    pub id: String,
    pub newly: bool,
}

/// How a minted token stands in its family.
struct Origin {
    kind: TokenKind,
    lineage: Vec<String>,
    parent_id: Option<String>,
    created_by: Option<String>,
}

impl Origin {
    /// An access token of no family, made on `created_by`'s word.
    fn first(created_by: String) -> Self {
        Origin { kind: TokenKind::Access, lineage: Vec::new(), parent_id: None, created_by: Some(created_by) }
    }
}

/// Who an audited action was for.
enum Caller<'a> {
    Token(&'a Grant),
    Named(String),
    None,
}

/// What the service works by, compiled from config into each snapshot:
/// one call reads one `Settings` from start to end.
#[derive(Debug)]
pub struct Settings {
    pub manifest: Arc<Manifest>,
    /// The active key; `None` when this gateway cannot sign now.
    pub signing: Option<Signing>,
    pub registration: RegistrationLimits,
    pub max_token_bytes: usize,
    /// The `iss` of every trusted issuer (whose jtis may be revoked).
    pub issuers: Vec<String>,
}

/// Where the service finds the settings in force, the time, and where it
/// reports what it did: the runtime, in the process.
pub trait Host: Send + Sync + 'static {
    /// The settings in force now (for calls made without a request: the
    /// first start's tokens).
    fn settings(&self) -> Arc<Settings>;
    /// The time tokens are minted and judged by.
    fn now(&self) -> UnixTime;
    /// Count and audit one operation.
    fn record(&self, event: ActionEvent);
}

/// The token service. Its settings (signing keys, manifest, limits,
/// issuers) are the ones in force when each call starts: a reload
/// changes them for the next call, never half-way through one.
pub struct TokenService {
    store: Option<Store>,
    host: Arc<dyn Host>,
    mirror: Arc<Mirror>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").finish_non_exhaustive()
    }
}

/// A stored token as the authority model sees it.
fn authority_target(record: &TokenRecord) -> issuance::Target<'_> {
    issuance::Target { id: &record.id, master: record.master, lineage: &record.lineage }
}

/// A token the caller may not see is, to it, no token at all.
fn not_visible(e: issuance::IssuanceError) -> ServiceError {
    match e {
        issuance::IssuanceError::OutOfReach | issuance::IssuanceError::MasterRequired => {
            ServiceError::not_found("no token with this id")
        }
        other => other.into(),
    }
}

fn random(n: usize) -> Result<String, ServiceError> {
    random_id(n).map_err(|_| ServiceError::internal("no randomness available"))
}

/// A mint's span says the id of what it minted.
fn minted(done: &Result<MintedToken, ServiceError>) -> Vec<KeyValue> {
    done.as_ref().map(|m| vec![KeyValue::new("narrowgate.token_id", m.record.id.clone())]).unwrap_or_default()
}

impl TokenService {
    /// The service of `host`'s settings, writing to `store` (if any) and
    /// keeping `mirror` — the one the proxy reads — current.
    pub fn new(host: Arc<dyn Host>, store: Option<Store>, mirror: Arc<Mirror>) -> Self {
        TokenService { store, host, mirror }
    }

    /// The time tokens are minted and judged by.
    pub fn now(&self) -> UnixTime {
        self.host.now()
    }

    /// The settings in force (for calls made without a request: the first
    /// start's tokens).
    pub fn settings(&self) -> Arc<Settings> {
        self.host.settings()
    }

    /// The store it keeps tokens in (what else keeps state beside them,
    /// the console's sessions, uses it too).
    pub fn backing_store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    fn store(&self) -> Result<&Store, ServiceError> {
        self.store.as_ref().ok_or_else(|| StoreError::Unavailable("this gateway has no token store".into()).into())
    }

    // Each way of minting, audited as one action. Under `snap`, the
    // settings in force that also authenticated the caller: one policy
    // decides the whole call.

    /// An access token, asked for by a token with management authority
    /// (the native API, Crafter's facade).
    pub async fn create(&self, snap: &Settings, by: Arc<Grant>, token: NewToken) -> Result<MintedToken, ServiceError> {
        let done = trace::child("token.create", self.create_inner(snap, &by, token), minted).await;
        self.audit_mint(Action::Mint, ActionKind::Create, Caller::Token(&by), done.as_ref().map(|m| &m.record.id));
        done
    }

    /// A child of a token, asked for by `by` (see [`NarrowRequest`]).
    pub async fn narrow(
        &self,
        snap: &Settings,
        by: Arc<Grant>,
        req: NarrowRequest,
    ) -> Result<MintedToken, ServiceError> {
        let now = self.now();
        let done = async {
            let parent = match &req.token {
                Some(id) if !issuance::is_record(&by, id) => self.narrowable(&by, id, now).await?,
                _ => by.clone(),
            };
            if parent.bound_to.is_some() && req.bind_to.is_some_and(|b| Some(b) != parent.bound_to) {
                return Err(ServiceError::bad(
                    "bindToClientCertificate",
                    "the token is bound to another certificate; its children stay bound to that one",
                ));
            }
            let req = NarrowRequest { bind_to: parent.bound_to.or(req.bind_to), ..req };
            self.narrow_inner(snap, &parent, req, now).await
        };
        let done = trace::child("token.narrow", done, minted).await;
        self.audit_mint(Action::Mint, ActionKind::Narrow, Caller::Token(&by), done.as_ref().map(|m| &m.record.id));
        done
    }

    /// An RFC 8693 token exchange: `subject` — a verified token of any
    /// issuer the gateway trusts, an identity provider's included — cut
    /// into a narrowgate token as `req` asks, never wider than it (nor
    /// than the rules `exchange.keep` names), never outliving it, and in
    /// its lineage, so revoking its `jti` revokes what it was exchanged
    /// for. Only if its issuer lets its client's tokens be exchanged.
    pub async fn exchange(
        &self,
        snap: &Settings,
        subject: Arc<Grant>,
        exchange: Exchange<'_>,
        req: NarrowRequest,
    ) -> Result<MintedToken, ServiceError> {
        let now = self.now();
        let done = async {
            issuance::may_exchange(exchange.clients, exchange.client)?;
            let parent = match exchange.keep {
                None => subject.clone(),
                Some(ids) => {
                    let rules: Arc<[AccessRule]> =
                        subject.rules.iter().filter(|r| ids.iter().any(|id| **id == *r.id)).cloned().collect();
                    if rules.is_empty() {
                        return Err(ServiceError::widen("scope", "the token holds none of these scopes' grants"));
                    }
                    Arc::new(Grant { rules, ..(*subject).clone() })
                }
            };
            if parent.bound_to.is_some() && req.bind_to.is_some_and(|b| Some(b) != parent.bound_to) {
                return Err(ServiceError::bad(
                    "bindToClientCertificate",
                    "the token is bound to another certificate; what it is exchanged for stays bound to that one",
                ));
            }
            let req = NarrowRequest { token: None, bind_to: parent.bound_to.or(req.bind_to), ..req };
            self.narrow_inner(snap, &parent, req, now).await
        };
        let done = trace::child("token.exchange", done, minted).await;
        self.audit_mint(
            Action::Mint,
            ActionKind::Exchange,
            Caller::Token(&subject),
            done.as_ref().map(|m| &m.record.id),
        );
        done
    }

    /// A single-use registration token.
    pub async fn create_registration(
        &self,
        snap: &Settings,
        by: Arc<Grant>,
        registration: NewRegistration,
    ) -> Result<MintedRegistration, ServiceError> {
        let done =
            trace::child("token.register", self.register(snap, &by, registration, self.now()), |_| Vec::new()).await;
        self.audit_mint(
            Action::Mint,
            ActionKind::Registration,
            Caller::Token(&by),
            done.as_ref().map(|m| &m.record.id),
        );
        done
    }

    /// The access token a registration token fixed; no other credential.
    pub async fn redeem(&self, secret: &str) -> Result<MintedToken, ServiceError> {
        let done = trace::child("token.redeem", self.redeem_inner(secret, self.now()), minted).await;
        self.audit_mint(Action::Redeem, ActionKind::Registration, Caller::None, done.as_ref().map(|m| &m.record.id));
        done
    }

    /// A token for an application that proved its configured secret
    /// (ProdManager's facade); its rules are the configured ones.
    pub async fn application_token(
        &self,
        snap: &Settings,
        application: &str,
        token: NewToken,
    ) -> Result<MintedToken, ServiceError> {
        let by = format!("prodmanager:{application}");
        let origin = Origin::first(by.clone());
        let done = trace::child("token.create", self.issue(snap, token, origin, self.now()), minted).await;
        self.audit_mint(Action::Mint, ActionKind::Application, Caller::Named(by), done.as_ref().map(|m| &m.record.id));
        done
    }

    /// What a newly created store starts with (bootstrap, Crafter defaults).
    pub async fn first_start(&self, snap: &Settings, token: NewToken) -> Result<MintedToken, ServiceError> {
        let origin = Origin::first("bootstrap".into());
        let done = self.issue(snap, token, origin, self.now()).await;
        let by = Caller::Named("bootstrap".into());
        self.audit_mint(Action::Mint, ActionKind::FirstStart, by, done.as_ref().map(|m| &m.record.id));
        done
    }

    fn audit_mint(&self, action: Action, kind: ActionKind, by: Caller<'_>, done: Result<&String, &ServiceError>) {
        let (by, by_subject) = match by {
            Caller::Token(g) => (Some(g.token_id.to_string()), Some(g.subject.to_string())),
            Caller::Named(name) => (Some(name), None),
            Caller::None => (None, None),
        };
        self.audit(ActionEvent {
            action,
            kind: Some(kind),
            result: done.map_or_else(|e| e.code(), |_| "ok"),
            by,
            by_subject,
            target: done.ok().cloned(),
            config_hash: None,
        });
    }

    fn audit(&self, event: ActionEvent) {
        self.host.record(event);
    }

    async fn create_inner(&self, snap: &Settings, by: &Grant, token: NewToken) -> Result<MintedToken, ServiceError> {
        let bounds = issuance::mint_access(
            by,
            &Wanted { role: token.role, master: token.master, expires_at: token.expires_at, tenants: &token.tenants },
        )?;
        // Nobody grants more than it holds, nor what the manifest does not
        // know. (No rules at all is within anyone's.)
        if !token.rules.is_empty() {
            narrow_detailed(&by.rules, &token.rules, &snap.manifest)?;
        }
        let origin = Origin {
            kind: TokenKind::Access,
            lineage: bounds.lineage,
            parent_id: None,
            created_by: Some(by.lineage_id().into_owned()),
        };
        self.issue(snap, token, origin, self.now()).await
    }

    /// The token `id` as a parent `by` may narrow: visible to it, live
    /// (not revoked, nor any ancestor, nor expired), and its grant.
    async fn narrowable(&self, by: &Grant, id: &str, now: UnixTime) -> Result<Arc<Grant>, ServiceError> {
        let record = self.store()?.token(id).await?.ok_or_else(|| ServiceError::not_found("no token with this id"))?;
        issuance::may_narrow(by, &authority_target(&record)).map_err(not_visible)?;
        if !self.state_of(&record, now).is_live() {
            return Err(ServiceError::not_live());
        }
        crate::store::mirror::grant_of(&record, &self.mirror.issuer)
            .map(Arc::new)
            .ok_or_else(|| ServiceError::internal("the token's grant could not be read"))
    }

    async fn narrow_inner(
        &self,
        snap: &Settings,
        parent: &Grant,
        req: NarrowRequest,
        now: UnixTime,
    ) -> Result<MintedToken, ServiceError> {
        // `req.token` named the parent; `req.bind_to` is the child's binding.
        let NarrowRequest { narrowing, tenants, validity_hours, bind_to: bound_to, .. } = req;
        let rules = match &narrowing {
            Narrowing::Simplified(s) => narrow_simplified(&parent.rules, s, &snap.manifest)?,
            Narrowing::Detailed(rules) => narrow_detailed(&parent.rules, rules, &snap.manifest)?,
        };
        let tenants = issuance::narrowed_tenants(&parent.tenants, tenants.as_deref())?;
        let signing = snap.signing.as_ref().ok_or_else(ServiceError::signing_unavailable)?;
        let exp = child_expiry(parent.expires_at, now, validity_hours)?;
        // The default validity stays within the issuer's max_lifetime; an
        // explicit one beyond it is refused when signing.
        let exp = match (validity_hours, signing.max_lifetime_secs) {
            (None, Some(max)) => exp.min(now.saturating_add(std::time::Duration::from_secs(max))),
            _ => exp,
        };
        let mut token = NewToken::user(parent.subject.to_string(), NewForm::Jwt, now);
        token.rules = rules;
        token.tenants = tenants;
        token.not_before = now;
        token.expires_at = Some(exp);
        token.bound_to = bound_to;
        let origin = Origin {
            kind: TokenKind::Narrowed,
            lineage: issuance::descent(parent),
            parent_id: Some(parent.lineage_id().into_owned()),
            created_by: Some(parent.lineage_id().into_owned()),
        };
        self.issue(snap, token, origin, now).await
    }

    async fn register(
        &self,
        snap: &Settings,
        by: &Grant,
        r: NewRegistration,
        now: UnixTime,
    ) -> Result<MintedRegistration, ServiceError> {
        let store = self.store()?;
        let bounds = issuance::mint_registration(
            by,
            &RegistrationWanted { role: r.role, ttl: r.ttl, lifetime: r.lifetime },
            &snap.registration,
            now,
        )?;
        if store.token_by_name(&r.name).await?.is_some_and(|t| t.revoked_at.is_none()) {
            return Err(ServiceError::conflict("name"));
        }
        let (id, secret) =
            (random(16)?, reference::new_secret().ok_or_else(|| ServiceError::internal("no randomness"))?);
        let secret = format!("{}{}", reference::REGISTRATION_PREFIX, &secret[reference::PREFIX.len()..]);
        // The yielded token gets the creator's rules and tenant permissions:
        // nobody hands out more.
        let rules: Vec<WireRule> = by.rules.iter().map(WireRule::from_rule).collect();
        let record = RegistrationRecord {
            id,
            secret_hash: reference::hash(&secret).to_vec(),
            name: r.name,
            role: r.role,
            // The creator's binding too: a registration never drops one.
            grants: encode_grants(&rules, &by.tenants, by.bound_to.as_ref()),
            lifetime_secs: r.lifetime,
            expires_at: bounds.expires_at,
            created_by: Some(by.lineage_id().into_owned()),
            created_at: now,
            used_at: None,
            redeemed_token: None,
            lineage: bounds.lineage,
            expires_cap: bounds.yield_cap,
            revoked_at: None,
        };
        trace::child("store.write", store.insert_registration(&record), |_| Vec::new()).await?;
        tracing::info!(registration.id = %record.id, created_by = %by.token_id, "created a registration token");
        Ok(MintedRegistration { secret, record })
    }

    async fn redeem_inner(&self, presented: &str, now: UnixTime) -> Result<MintedToken, ServiceError> {
        if !presented.starts_with(reference::REGISTRATION_PREFIX) {
            return Err(ServiceError::bad("token", "not a registration token"));
        }
        let store = self.store()?;
        let (id, secret) =
            (random(16)?, reference::new_secret().ok_or_else(|| ServiceError::internal("no randomness"))?);
        let hash = reference::hash(&secret);
        let revocations = self.mirror.revocations.clone();
        let redeemed = store
            .redeem(&reference::hash(presented), now, move |reg| {
                // Revoked with its creator: refused, and left unused.
                if reg.lineage.iter().any(|l| revocations.is_revoked(l)) {
                    return Err(RedeemError::Revoked);
                }
                let expires_at = issuance::redeemed_expiry(now, reg.lifetime_secs, reg.expires_cap);
                Ok(TokenRecord {
                    id,
                    name: Some(reg.name.clone()),
                    description: String::new(),
                    kind: TokenKind::Access,
                    role: reg.role,
                    master: false,
                    application: None,
                    subject: reg.name.clone(),
                    grants: reg.grants.clone(),
                    form: TokenForm::Reference,
                    secret_hash: Some(hash.to_vec()),
                    not_before: Some(now),
                    expires_at,
                    parent_id: None,
                    lineage: reg.lineage.clone(),
                    created_by: reg.created_by.clone(),
                    created_at: now,
                    revoked_at: None,
                    external_id: None,
                })
            })
            .await;
        let record = match redeemed {
            Ok(r) => r,
            Err(RedeemError::Unknown) => return Err(ServiceError::not_found("unknown registration token")),
            Err(RedeemError::Used) => return Err(ServiceError::already_redeemed()),
            Err(RedeemError::Expired) => return Err(ServiceError::registration_expired()),
            Err(RedeemError::Revoked) => return Err(ServiceError::registration_revoked()),
            Err(RedeemError::Store(StoreError::Conflict(_))) => return Err(ServiceError::conflict("name")),
            Err(RedeemError::Store(e)) => return Err(e.into()),
        };
        self.publish(&record, Some(hash));
        tracing::info!(token.jti = %record.id, "redeemed a registration token");
        Ok(MintedToken { secret, record })
    }

    /// Make the secret, record the token, and make it usable here at once.
    async fn issue(
        &self,
        snap: &Settings,
        t: NewToken,
        origin: Origin,
        now: UnixTime,
    ) -> Result<MintedToken, ServiceError> {
        let jti = random(16)?;
        if t.expires_at.is_none() && t.form == NewForm::Jwt {
            return Err(ServiceError::bad(
                "expiresAt",
                "a JWT needs an expiry; a token that never expires uses the reference form",
            ));
        }
        let mut claims = Claims {
            iss: self.mirror.issuer.clone(),
            sub: t.subject.clone(),
            aud: None,
            exp: t.expires_at.map(UnixTime::secs),
            nbf: Some(t.not_before.secs()),
            iat: now.secs(),
            jti: jti.clone(),
            name: t.name.clone(),
            kind: origin.kind,
            role: t.role,
            master: t.master,
            access_rules: t.rules.iter().map(WireRule::from_rule).collect(),
            tenant_permissions: t.tenants,
            lineage: origin.lineage.clone(),
            cnf: t.bound_to.as_ref().map(crate::token::claims::Confirmation::of),
            extra: t.extra_claims,
        };
        let (secret, secret_hash, form, external_id) = match t.form {
            NewForm::Jwt => {
                let signing = snap.signing.as_ref().ok_or_else(ServiceError::signing_unavailable)?;
                let token = signing.sign(&mut claims)?;
                // Never issue what the proxy would refuse as too large.
                issuance::fits(token.len(), snap.max_token_bytes)?;
                (token, None, TokenForm::Jwt, None)
            }
            NewForm::Reference => {
                let secret = reference::new_secret().ok_or_else(|| ServiceError::internal("no randomness"))?;
                let h = reference::hash(&secret);
                (secret, Some(h), TokenForm::Reference, None)
            }
            NewForm::External(id) => {
                let h = reference::hash(&id);
                (id.clone(), Some(h), TokenForm::Reference, Some(id))
            }
            NewForm::Digest(h) => (String::new(), Some(h), TokenForm::Reference, None),
        };
        let record = TokenRecord {
            id: jti.clone(),
            name: t.name,
            description: t.description,
            kind: origin.kind,
            role: t.role,
            master: t.master,
            application: t.application,
            subject: t.subject,
            grants: encode_grants(&claims.access_rules, &claims.tenant_permissions, t.bound_to.as_ref()),
            form,
            secret_hash: secret_hash.map(|h| h.to_vec()),
            not_before: Some(t.not_before),
            expires_at: t.expires_at,
            parent_id: origin.parent_id,
            lineage: origin.lineage,
            created_by: origin.created_by,
            created_at: now,
            revoked_at: None,
            external_id,
        };
        match (&self.store, origin.kind) {
            (Some(store), _) => match trace::child("store.write", store.insert_token(&record), |_| Vec::new()).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) if record.external_id.is_some() => {
                    return Err(ServiceError::conflict("id"));
                }
                // Never hand out a token the store does not know: fail closed.
                Err(e) => return Err(e.into()),
            },
            // Without a store, a narrowed JWT stands on its signature (and
            // its lineage is revoked with its parent's); nothing else may.
            (None, TokenKind::Narrowed) => {}
            (None, _) => return Err(self.store().err().unwrap_or_else(|| ServiceError::internal("no store"))),
        }
        self.publish(&record, secret_hash);
        tracing::info!(
            token.jti = %jti,
            kind = crate::store::kind_str(record.kind),
            created_by = record.created_by.as_deref().unwrap_or("-"),
            "minted a token"
        );
        Ok(MintedToken { secret, record })
    }

    /// A reference token is usable on this replica's proxy at once.
    fn publish(&self, record: &TokenRecord, hash: Option<[u8; 32]>) {
        let Some(h) = hash else { return };
        match crate::store::mirror::grant_of(record, &self.mirror.issuer) {
            Some(grant) => self.mirror.references.insert(h, grant),
            None => tracing::warn!(token.jti = %record.id, "a reference token's grant could not be built"),
        }
    }

    /// Revoke `target` on `by`'s authority: in force here at once, on other
    /// replicas through the store, on followers through the feed.
    pub async fn revoke(&self, snap: &Settings, by: &Grant, target: RevokeTarget) -> Result<Revoked, ServiceError> {
        let kind = match &target {
            RevokeTarget::Id(_) => ActionKind::Id,
            RevokeTarget::Name(_) => ActionKind::Name,
            RevokeTarget::ExternalId(_) => ActionKind::ExternalId,
            RevokeTarget::Jti { .. } => ActionKind::Jti,
            RevokeTarget::Registration(_) => ActionKind::Registration,
        };
        // The target as far as it is not a credential: a Crafter id is one.
        let named = match &target {
            RevokeTarget::Id(id) | RevokeTarget::Registration(id) => Some(id.clone()),
            RevokeTarget::Jti { jti, .. } => Some(jti.clone()),
            RevokeTarget::Name(_) | RevokeTarget::ExternalId(_) => None,
        };
        let revoked = trace::child("token.revoke", self.revoke_inner(snap, by, target), |r| {
            r.as_ref().map(|r| vec![KeyValue::new("narrowgate.token_id", r.id.clone())]).unwrap_or_default()
        })
        .await;
        self.audit(ActionEvent {
            action: Action::Revoke,
            kind: Some(kind),
            result: revoked.as_ref().map_or_else(ServiceError::code, |_| "ok"),
            by: Some(by.token_id.to_string()),
            by_subject: Some(by.subject.to_string()),
            target: revoked.as_ref().ok().map(|r| r.id.clone()).or(named),
            config_hash: None,
        });
        revoked
    }

    async fn revoke_inner(&self, snap: &Settings, by: &Grant, target: RevokeTarget) -> Result<Revoked, ServiceError> {
        let store = self.store()?;
        let now = self.now();
        let record = match &target {
            RevokeTarget::Id(id) => store.token(id).await?,
            RevokeTarget::Name(name) => store.token_by_name(name).await?,
            RevokeTarget::ExternalId(id) => store.token_by_external_id(id).await?,
            RevokeTarget::Jti { jti, issuer, expires_at } => {
                if !snap.issuers.contains(issuer) {
                    return Err(ServiceError::bad("issuer", "not the iss of any issuer this gateway trusts"));
                }
                match store.token(jti).await? {
                    Some(own) => Some(own),
                    None => {
                        // A token this store has no record of is in no
                        // one's lineage here: a master's to revoke.
                        if issuance::manager(by)? != Authority::Master {
                            return Err(issuance::IssuanceError::MasterRequired.into());
                        }
                        let r = JtiRevocation {
                            jti: jti.clone(),
                            issuer: issuer.clone(),
                            expires_at: *expires_at,
                            revoked_at: now,
                            revoked_by: Some(by.token_id.to_string()),
                        };
                        let newly = trace::child("store.write", store.revoke_jti(&r), |_| Vec::new()).await?;
                        self.mirror.revocations.revoke(jti, *expires_at);
                        tracing::info!(token.jti = %jti, "revoked another issuer's token");
                        return Ok(Revoked { id: jti.clone(), newly });
                    }
                }
            }
            RevokeTarget::Registration(id) => {
                issuance::manager(by)?;
                // Its lineage is the one the token it yields gets: a
                // non-master revokes only its own (and its descendants').
                let reg = store.registration(id).await?;
                let reach = reg.as_ref().map(|r| {
                    issuance::may_act_on(by, &issuance::Target { id: &r.id, master: false, lineage: &r.lineage })
                });
                if !matches!(reach, Some(Ok(_)))
                    || !trace::child("store.write", store.revoke_registration(id, now), |_| Vec::new()).await?
                {
                    return Err(ServiceError::not_found("no unredeemed registration token with this id"));
                }
                tracing::info!(registration.id = %id, "revoked a registration token");
                return Ok(Revoked { id: id.clone(), newly: true });
            }
        };
        let Some(record) = record else {
            issuance::manager(by)?;
            return Err(ServiceError::not_found(
                "no such token here; another issuer's token is revoked with POST /v1/revocations (jti and issuer)",
            ));
        };
        issuance::may_act_on(by, &authority_target(&record))?;
        let newly = trace::child("store.write", store.revoke(&record.id, now), |_| Vec::new()).await?;
        self.mirror.revocations.revoke(&record.id, record.expires_at);
        if matches!(target, RevokeTarget::ExternalId(_)) {
            // Crafter re-creates a deleted token with the same id.
            store.forget_secret(&record.id).await?;
        }
        tracing::info!(token.jti = %record.id, "revoked a token");
        Ok(Revoked { id: record.id, newly })
    }

    /// The tokens matching `filter` that `by` may see (a master: all; a
    /// non-master admin: itself and its lineage), with their effective
    /// state.
    pub async fn list(&self, by: &Grant, filter: &TokenFilter) -> Result<Vec<Shown>, ServiceError> {
        self.manager_for(Action::List, by)?;
        let within = issuance::visible_lineage(by)?.map(std::borrow::Cow::into_owned);
        let filter = TokenFilter { within_lineage_of: within, ..filter.clone() };
        let records = self.store()?.list_tokens(&filter).await?;
        Ok(self.shown(records).await)
    }

    /// One token by id, if `by` may see it, with its effective state.
    pub async fn show(&self, by: &Grant, id: &str) -> Result<Shown, ServiceError> {
        self.manager_for(Action::Show, by)?;
        let record = self.store()?.token(id).await?.ok_or_else(|| ServiceError::not_found("no token with this id"))?;
        // A token out of reach is one the caller is not told of.
        issuance::may_act_on(by, &authority_target(&record)).map_err(not_visible)?;
        self.shown(vec![record]).await.into_iter().next().ok_or_else(|| ServiceError::internal("shown nothing"))
    }

    /// A live token by its client-chosen id, or all of them (Crafter),
    /// as far as `by` may see them.
    pub async fn external(&self, by: &Grant, id: Option<&str>) -> Result<Vec<TokenRecord>, ServiceError> {
        self.manager_for(Action::List, by)?;
        let store = self.store()?;
        let found = match id {
            Some(id) => store.token_by_external_id(id).await?.into_iter().collect(),
            None => store.external_tokens().await?,
        };
        Ok(found.into_iter().filter(|r| issuance::may_act_on(by, &authority_target(r)).is_ok()).collect())
    }

    /// Records with their effective state: revoked if they or an ancestor
    /// are in the revocation set the proxy enforces (the ancestor's
    /// revocation time read once per ancestor), else expired or live.
    async fn shown(&self, records: Vec<TokenRecord>) -> Vec<Shown> {
        let now = self.now();
        let mut ancestors: std::collections::HashMap<String, Option<UnixTime>> = Default::default();
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let mut state = self.state_of(&record, now);
            if let TokenState::Revoked { at: at @ None, by: Some(ancestor) } = &mut state {
                if !ancestors.contains_key(ancestor) {
                    let when = match &self.store {
                        Some(store) => store.token(ancestor).await.ok().flatten().and_then(|a| a.revoked_at),
                        None => None,
                    };
                    ancestors.insert(ancestor.clone(), when);
                }
                *at = ancestors.get(ancestor).copied().flatten();
            }
            out.push(Shown { record, state });
        }
        out
    }

    /// A token's effective state at `now`, as the proxy would judge it.
    fn state_of(&self, record: &TokenRecord, now: UnixTime) -> TokenState {
        let revocations = &self.mirror.revocations;
        if record.revoked_at.is_some() || revocations.is_revoked(&record.id) {
            return TokenState::Revoked { at: record.revoked_at, by: None };
        }
        if let Some(ancestor) = record.lineage.iter().find(|a| revocations.is_revoked(a)) {
            return TokenState::Revoked { at: None, by: Some(ancestor.clone()) };
        }
        match record.expires_at {
            Some(e) if e <= now => TokenState::Expired,
            _ => TokenState::Live,
        }
    }

    /// Who issued `grant`: its creator's name (or id) as the store records
    /// it, else the token's `iss`.
    pub async fn issuer_of(&self, grant: &Grant) -> String {
        let Some(store) = self.store.as_ref().filter(|_| grant.minted_here) else { return grant.issuer.to_string() };
        let creator = match store.token(&grant.token_id).await {
            Ok(Some(record)) => record.created_by,
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "whoami: the store could not say who issued the token");
                None
            }
        };
        let Some(creator) = creator else { return grant.issuer.to_string() };
        match store.token(&creator).await {
            Ok(Some(c)) => c.name.unwrap_or(creator),
            _ => creator,
        }
    }

    /// The caller's authority to manage tokens, or why it has none (a
    /// refusal is audited as a failed management call).
    pub fn manager(&self, by: &Grant) -> Result<Authority, ServiceError> {
        self.manager_for(Action::Manage, by)
    }

    fn manager_for(&self, action: Action, by: &Grant) -> Result<Authority, ServiceError> {
        issuance::manager(by).map_err(|e| {
            let e = ServiceError::from(e);
            self.audit(ActionEvent {
                action,
                kind: None,
                result: e.code(),
                by: Some(by.token_id.to_string()),
                by_subject: Some(by.subject.to_string()),
                target: None,
                config_hash: None,
            });
            e
        })
    }
}
