//! `narrowgate webhook certs`: a CA and a serving certificate for the
//! webhook, for clusters without cert-manager. The API server trusts the
//! CA through the webhook configuration's `caBundle`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// What was made: PEM texts.
pub struct Made {
    pub ca_cert: String,
    pub cert: String,
    pub key: String,
}

/// The DNS names the API server may call a Service by.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_string(),
    ]
}

/// A CA and a certificate for `names` signed by it, valid for `days`
/// from yesterday (clock skew), all ECDSA P-256.
pub fn make(names: &[String], days: u32) -> anyhow::Result<Made> {
    use anyhow::Context;
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let ymd = |d: jiff::civil::Date| rcgen::date_time_ymd(d.year().into(), d.month() as u8, d.day() as u8);
    let from = ymd(today.yesterday().context("the date")?);
    anyhow::ensure!((1..=3650).contains(&days), "the validity must be 1 to 3650 days");
    let until = ymd(today.checked_add(jiff::Span::new().try_days(i64::from(days))?).context("the validity")?);

    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "narrowgate webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = (from, until);
    let ca_key = KeyPair::generate().context("a CA key")?;
    let ca_cert = ca.self_signed(&ca_key).context("the CA certificate")?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(names.to_vec()).context("the serving certificate's names")?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("narrowgate"));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    (leaf.not_before, leaf.not_after) = (from, until);
    let key = KeyPair::generate().context("a serving key")?;
    let cert = leaf.signed_by(&key, &issuer).context("the serving certificate")?;
    Ok(Made { ca_cert: ca_cert.pem(), cert: cert.pem(), key: key.serialize_pem() })
}

/// Write `made` into `dir` as `ca.crt`, `tls.crt` and `tls.key` (the key
/// readable by its owner only; the CA's key is not kept: renewing means
/// making a new pair and a new `caBundle`).
pub fn write(made: &Made, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_file(&dir.join("ca.crt"), made.ca_cert.as_bytes(), 0o644)?;
    write_file(&dir.join("tls.crt"), made.cert.as_bytes(), 0o644)?;
    write_file(&dir.join("tls.key"), made.key.as_bytes(), 0o600)
}

/// Write whole (a temporary file renamed), so a webhook watching the file
/// never reads half of it.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // A leftover from an interrupted run keeps its mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The `caBundle` value: the CA certificate's PEM, base64.
pub fn ca_bundle(made: &Made) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(made.ca_cert.as_bytes())
}
