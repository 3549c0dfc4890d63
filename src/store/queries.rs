//! Every statement a write runs and every row decoder, shared by the
//! stores' reads (`sql.rs`) and the writer's batches (`writer.rs`): a leaf
//! of the store that imports neither.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{
    JtiRevocation, RegistrationRecord, StoreError, TokenForm, TokenRecord, kind_str, parse_kind, parse_role, role_str,
};
use crate::time::UnixTime;

// Column lists as macros so every statement is a `&'static str` (sqlx only
// takes dynamic SQL through an explicit audit).
macro_rules! token_columns {
    () => {
        "id, name, description, kind, role, master, application, subject, grants, form, secret_hash, \
         not_before, expires_at, parent_id, lineage, created_by, created_at, revoked_at, external_id"
    };
}

macro_rules! reg_columns {
    () => {
        "id, secret_hash, name, role, grants, lifetime_secs, expires_at, created_by, created_at, used_at, redeemed_token, \
         lineage, expires_cap, revoked_at"
    };
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A time column: checked into range on the way out (a row written out of
/// range — as once by an unchecked cast — is corrupt, never a wrong time).
pub(super) fn time_at(row: &AnyRow, column: &'static str) -> Result<UnixTime, StoreError> {
    UnixTime::from_i64(row.try_get::<i64, _>(column)?).map_err(|_| corrupt(column))
}

/// A nullable time column, checked likewise.
pub(super) fn time_or_null(row: &AnyRow, column: &'static str) -> Result<Option<UnixTime>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?.map(|t| UnixTime::from_i64(t).map_err(|_| corrupt(column))).transpose()
}

/// A nullable time as its column holds it.
pub(super) fn column(t: Option<UnixTime>) -> Option<i64> {
    t.map(UnixTime::as_i64)
}

pub(super) fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let role: String = row.try_get("role")?;
    let form: String = row.try_get("form")?;
    let lineage: String = row.try_get("lineage")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        kind: parse_kind(&kind).ok_or_else(|| corrupt("kind"))?,
        role: parse_role(&role).ok_or_else(|| corrupt("role"))?,
        master: row.try_get::<i64, _>("master")? != 0,
        application: row.try_get("application")?,
        subject: row.try_get("subject")?,
        grants: row.try_get("grants")?,
        form: TokenForm::parse(&form).ok_or_else(|| corrupt("form"))?,
        secret_hash: row.try_get("secret_hash")?,
        not_before: time_or_null(row, "not_before")?,
        expires_at: time_or_null(row, "expires_at")?,
        parent_id: row.try_get("parent_id")?,
        lineage: serde_json::from_str(&lineage).map_err(|_| corrupt("lineage"))?,
        created_by: row.try_get("created_by")?,
        created_at: time_at(row, "created_at")?,
        revoked_at: time_or_null(row, "revoked_at")?,
        external_id: row.try_get("external_id")?,
    })
}

pub(super) fn registration_from_row(row: &AnyRow) -> Result<RegistrationRecord, StoreError> {
    let role: String = row.try_get("role")?;
    let lineage: String = row.try_get("lineage")?;
    Ok(RegistrationRecord {
        lineage: serde_json::from_str(&lineage).map_err(|_| corrupt("lineage"))?,
        expires_cap: time_or_null(row, "expires_cap")?,
        revoked_at: time_or_null(row, "revoked_at")?,
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        name: row.try_get("name")?,
        role: parse_role(&role).ok_or_else(|| corrupt("role"))?,
        grants: row.try_get("grants")?,
        lifetime_secs: row
            .try_get::<Option<i64>, _>("lifetime_secs")?
            .map(|l| u64::try_from(l).map_err(|_| corrupt("lifetime_secs")))
            .transpose()?,
        expires_at: time_at(row, "expires_at")?,
        created_by: row.try_get("created_by")?,
        created_at: time_at(row, "created_at")?,
        used_at: time_or_null(row, "used_at")?,
        redeemed_token: row.try_get("redeemed_token")?,
    })
}

/// Insert a token unless its id, name or external id is taken: the rows
/// inserted (0 on a conflict).
pub(crate) async fn insert_token_in<'c, E>(exec: E, t: &TokenRecord) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let lineage = serde_json::to_string(&t.lineage).map_err(|_| corrupt("lineage"))?;
    let done = sqlx::query(concat!(
        "INSERT INTO tokens (",
        token_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT DO NOTHING"
    ))
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.description)
    .bind(kind_str(t.kind))
    .bind(role_str(t.role))
    .bind(i64::from(t.master))
    .bind(&t.application)
    .bind(&t.subject)
    .bind(&t.grants)
    .bind(t.form.as_str())
    .bind(&t.secret_hash)
    .bind(column(t.not_before))
    .bind(column(t.expires_at))
    .bind(&t.parent_id)
    .bind(lineage)
    .bind(&t.created_by)
    .bind(t.created_at.as_i64())
    .bind(column(t.revoked_at))
    .bind(&t.external_id)
    .execute(exec)
    .await?;
    Ok(done.rows_affected())
}

/// Record the revocation of a jti this store has no token for; `false`
/// if it was revoked already.
pub(crate) async fn revoke_jti_in<'e, E>(executor: E, r: &JtiRevocation) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "INSERT INTO revoked_jtis (jti, issuer, expires_at, revoked_at, revoked_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(&r.jti)
    .bind(&r.issuer)
    .bind(column(r.expires_at))
    .bind(r.revoked_at.as_i64())
    .bind(&r.revoked_by)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Insert a registration token unless its id or secret is taken: the rows
/// inserted (0 on a conflict).
pub(crate) async fn insert_registration_in<'e, E>(executor: E, r: &RegistrationRecord) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(concat!(
        "INSERT INTO registration_tokens (",
        reg_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING"
    ))
    .bind(&r.id)
    .bind(&r.secret_hash)
    .bind(&r.name)
    .bind(role_str(r.role))
    .bind(&r.grants)
    .bind(r.lifetime_secs.map(|l| i64::try_from(l).map_err(|_| corrupt("lifetime_secs"))).transpose()?)
    .bind(r.expires_at.as_i64())
    .bind(&r.created_by)
    .bind(r.created_at.as_i64())
    .bind(column(r.used_at))
    .bind(&r.redeemed_token)
    .bind(serde_json::to_string(&r.lineage).map_err(|_| corrupt("lineage"))?)
    .bind(column(r.expires_cap))
    .bind(column(r.revoked_at))
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}
