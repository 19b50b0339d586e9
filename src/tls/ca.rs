//! cordon's local CA: created once per install, reloaded from `ca.crt`/`ca.key` on every
//! start, signing one short-lived leaf per intercepted host.
//!
//! How a reloaded CA keeps issuing leaves that chain to the `ca.crt` on disk: rcgen 0.13 can
//! only sign with an issuer given as an rcgen `Certificate`, and can read one back from PEM
//! only with its `x509-parser` feature (about ten more crates, including nom and proc-macros,
//! for one read at start-up). cordon does without it: a leaf's link to its issuer is the
//! issuer's distinguished name (copied into the leaf's issuer field), the authority key
//! identifier (derived from the CA public key) and the signature (by the CA key). All three
//! follow from `ca.key` alone, because the CA's name is derived from its public key too
//! ("cordon local CA " + the first bytes of the key's SHA-256, so two installs differ).
//! Reloading rebuilds the issuer from the key, then proves the rebuilt issuer really matches
//! the `ca.crt` on disk by minting a probe leaf and verifying it with webpki against a root
//! store holding only that file. A CA that cordon did not make, or a cert/key mix-up, fails
//! there with a clear error instead of at the agent's first handshake.

use super::leaf::{Entry, LeafCache, DEFAULT_CAPACITY};
use super::{ring_provider, TlsError, PROTOCOL_VERSIONS};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use sha2::{Digest, Sha256};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CERT_FILE: &str = "ca.crt";
const KEY_FILE: &str = "ca.key";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// Leaves live a day: short enough that a leaked leaf is worth little, long enough that
/// re-minting (one signature) is rare.
const LEAF_VALIDITY: Duration = DAY;
/// Back-dating absorbs clock skew between cordon and the agent.
const LEAF_BACKDATE: Duration = Duration::from_secs(60 * 60);
/// The name the load-time self-check mints a probe leaf for; `.invalid` never resolves.
const PROBE_HOST: &str = "ca-check.cordon.invalid";

/// cordon's local certificate authority: signs short-lived leaves for intercepted hosts.
pub struct LocalCa {
    dir: PathBuf,
    created: bool,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    /// The issuer rebuilt from `ca.key` (see the module docs); only its name, key identifier
    /// method and key usages are used by rcgen when signing.
    issuer: rcgen::Certificate,
    issuer_key: KeyPair,
    /// The one key every leaf certifies: generating a key per host would cost far more than
    /// a signature, and the leaves are only ever presented by this process.
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn SigningKey>,
    provider: Arc<CryptoProvider>,
    cache: Mutex<LeafCache>,
    minted: AtomicU64,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of debug output; the fingerprint identifies the CA.
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads `ca.crt`/`ca.key` from `dir`, creating them (key mode 0600) if both are absent.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, TlsError> {
        LocalCa::load_or_create_with_capacity(dir, DEFAULT_CAPACITY)
    }

    fn load_or_create_with_capacity(dir: &Path, capacity: usize) -> Result<LocalCa, TlsError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let (ca_key, cert_pem, created) = match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => {
                let key = read_key(&key_path)?;
                let pem = std::fs::read_to_string(&cert_path)
                    .map_err(|e| TlsError(format!("{}: cannot read: {e}", cert_path.display())))?;
                (key, pem, false)
            }
            (false, false) => {
                let (key, pem) = create(dir, &cert_path, &key_path)?;
                (key, pem, true)
            }
            (true, false) => return Err(only_one(&key_path, &cert_path)),
            (false, true) => return Err(only_one(&cert_path, &key_path)),
        };
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            TlsError(format!(
                "{}: not a PEM certificate: {e}",
                cert_path.display()
            ))
        })?;
        let issuer = ca_params(&ca_key, SystemTime::now())
            .self_signed(&ca_key)
            .map_err(|e| TlsError(format!("{}: cannot use this key: {e}", key_path.display())))?;

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError(format!("cannot generate the leaf key: {e}")))?;
        let leaf_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_supported_type(&leaf_der)
            .map_err(|e| TlsError(format!("cannot use the leaf key: {e}")))?;

        let ca = LocalCa {
            dir: dir.to_path_buf(),
            created,
            cert_pem,
            cert_der,
            issuer,
            issuer_key: ca_key,
            leaf_key,
            leaf_signer,
            provider: ring_provider(),
            cache: Mutex::new(LeafCache::new(capacity)),
            minted: AtomicU64::new(0),
        };
        ca.check_matches_disk(&cert_path, &key_path)?;
        Ok(ca)
    }

    /// The CA certificate, PEM, for trust stores.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA certificate, DER, exactly as stored in `ca.crt`.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The directory holding `ca.crt` and `ca.key`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this call to `load_or_create` wrote a new CA (rather than loading one).
    pub fn created(&self) -> bool {
        self.created
    }

    /// SHA-256 of the CA certificate's DER, as colon-separated upper-case hex.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// How many leaf certificates this CA has signed (cache misses and re-mints).
    pub fn leaves_minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// How many hosts currently have a cached leaf.
    pub fn cached_leaves(&self) -> usize {
        self.lock_cache().len()
    }

    /// A leaf for `host` (DNS name or IP literal), minted once and cached until well before
    /// it expires. Never generates a key per host.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        self.leaf_at(host, SystemTime::now())
    }

    /// A server config for `host` that always presents its leaf and offers `alpn`, cached per
    /// host (rebuilt only when the leaf is re-minted or a different ALPN list is asked for).
    pub fn server_config(
        &self,
        host: &str,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.server_config_at(host, alpn, SystemTime::now())
    }

    fn server_config_at(
        &self,
        host: &str,
        alpn: &[&[u8]],
        now: SystemTime,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (name, san) = parse_host(host)?;
        let mut cache = self.lock_cache();
        let entry = self.usable_entry(&mut cache, name, &san, now)?;
        if let Some((cached_alpn, config)) = &entry.server {
            if cached_alpn
                .iter()
                .map(Vec::as_slice)
                .eq(alpn.iter().copied())
            {
                return Ok(config.clone());
            }
        }
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TlsError(format!("TLS server set-up: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(entry.key.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        entry.server = Some((config.alpn_protocols.clone(), config.clone()));
        Ok(config)
    }

    fn leaf_at(&self, host: &str, now: SystemTime) -> Result<Arc<CertifiedKey>, TlsError> {
        let (name, san) = parse_host(host)?;
        let mut cache = self.lock_cache();
        Ok(self.usable_entry(&mut cache, name, &san, now)?.key.clone())
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, LeafCache> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (entries are whole values), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached entry for `name`, minting (under the lock, so concurrent handshakes for a
    /// new host cost one signature, not one each) when absent or close to expiry.
    fn usable_entry<'c>(
        &self,
        cache: &'c mut LeafCache,
        name: String,
        san: &SanType,
        now: SystemTime,
    ) -> Result<&'c mut Entry, TlsError> {
        // Two lookups because returning the borrow from the first one would keep `cache`
        // borrowed on the minting path too.
        if cache.get_usable(&name, now).is_some() {
            return Ok(cache.get_usable(&name, now).expect("just checked"));
        }
        let der = self.mint(&name, san, now)?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            key: Arc::new(CertifiedKey::new(vec![der], self.leaf_signer.clone())),
            expires: now + LEAF_VALIDITY,
            server: None,
        };
        Ok(cache.insert(name, entry, now))
    }

    fn mint(
        &self,
        name: &str,
        san: &SanType,
        now: SystemTime,
    ) -> Result<CertificateDer<'static>, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // X.520 caps a common name at 64 characters; a longer DNS name lives in the SAN only
        // (which is all that clients check anyway).
        if name.len() <= 64 {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.subject_alt_names = vec![san.clone()];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, now - LEAF_BACKDATE, now + LEAF_VALIDITY);
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer, &self.issuer_key)
            .map_err(|e| TlsError(format!("cannot sign a leaf for {name}: {e}")))?;
        Ok(cert.der().clone())
    }

    /// Proves that leaves from the rebuilt issuer verify against the `ca.crt` on disk.
    fn check_matches_disk(&self, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).map_err(|e| {
            TlsError(format!(
                "{}: not a usable CA certificate: {e}",
                cert_path.display()
            ))
        })?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| TlsError(format!("{}: {e}", cert_path.display())))?;
        let (name, san) = parse_host(PROBE_HOST)?;
        let probe = self.mint(&name, &san, SystemTime::now())?;
        let server_name = ServerName::try_from(PROBE_HOST).expect("probe host is a DNS name");
        verifier
            .verify_server_cert(&probe, &[], &server_name, &[], UnixTime::now())
            .map_err(|e| {
                TlsError(format!(
                    "{} does not belong to {} (or was not made by cordon): certificates it \
                     signs would not verify ({e}); move both files away to start a new CA",
                    cert_path.display(),
                    key_path.display()
                ))
            })?;
        Ok(())
    }
}

/// Reads `dir/ca.crt` as PEM without touching the key (for `cordon ca export`, which may run
/// where the key is not readable); errors if it is absent or holds no certificate.
pub fn read_cert_pem(dir: &Path) -> Result<String, TlsError> {
    let path = dir.join(CERT_FILE);
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| TlsError(format!("{}: cannot read: {e}", path.display())))?;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError(format!("{}: not a PEM certificate: {e}", path.display())))?;
    Ok(pem)
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn exists(path: &Path) -> Result<bool, TlsError> {
    path.try_exists()
        .map_err(|e| TlsError(format!("{}: cannot check: {e}", path.display())))
}

fn only_one(missing: &Path, present: &Path) -> TlsError {
    TlsError(format!(
        "{} is missing but {} exists: restore it, or move both away to create a new CA",
        missing.display(),
        present.display()
    ))
}

fn read_key(path: &Path) -> Result<KeyPair, TlsError> {
    let file = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| TlsError(format!("{file}: cannot read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    // Group/other bits of any kind mean someone else could read (or swap) the key.
    if mode & 0o077 != 0 {
        return Err(TlsError(format!(
            "{file}: ca.key must not be readable by others (mode 0600); it is {mode:04o}"
        )));
    }
    let pem =
        std::fs::read_to_string(path).map_err(|e| TlsError(format!("{file}: cannot read: {e}")))?;
    KeyPair::from_pem(&pem).map_err(|e| TlsError(format!("{file}: not a PKCS#8 PEM key: {e}")))
}

fn create(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<(KeyPair, String), TlsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TlsError(format!("{}: cannot create: {e}", dir.display())))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError(format!("cannot generate the CA key: {e}")))?;
    let cert = ca_params(&key, SystemTime::now())
        .self_signed(&key)
        .map_err(|e| TlsError(format!("cannot self-sign the CA: {e}")))?;
    let pem = cert.pem();
    // The key first: a crash in between leaves "ca.crt is missing", which names the problem,
    // rather than a certificate nobody holds the key for.
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, pem.as_bytes(), 0o644)?;
    Ok((key, pem))
}

/// Writes a file that must not exist yet, with `mode` set as it is created: the key is never
/// readable by others, not even between creation and a chmod.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |e: std::io::Error| TlsError(format!("{}: cannot write: {e}", path.display()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)
}

/// The CA's parameters. Its name depends only on the key, which is what lets a reload
/// rebuild the issuer without parsing `ca.crt` (see the module docs).
fn ca_params(key: &KeyPair, now: SystemTime) -> CertificateParams {
    let digest = Sha256::digest(key.public_key_der());
    let suffix = crate::os::hex(&digest[..3]);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("cordon local CA {suffix}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cordon");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now - DAY, now + CA_VALIDITY);
    // The serial only matters for the certificate written at creation; a rebuilt issuer's
    // serial is never encoded anywhere.
    params.serial_number = random_serial().ok();
    params
}

/// Sets the validity window. rcgen takes `time::OffsetDateTime`; cordon has no direct `time`
/// dependency, so each instant is the epoch (from rcgen's own constructor) plus a std duration.
fn set_validity(params: &mut CertificateParams, from: SystemTime, until: SystemTime) {
    let since_epoch = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap_or_default();
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(from);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(until);
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| TlsError(format!("no randomness for a serial: {e}")))?;
    // Positive and full-length: RFC 5280 serials are positive integers of at most 20 octets.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The cache key and SAN for `host`: lower-cased DNS names, IP literals (IPv6 with or without
/// brackets) as IP addresses. Wildcards and malformed names are refused.
fn parse_host(host: &str) -> Result<(String, SanType), TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ip.to_string(), SanType::IpAddress(ip)));
    }
    let name = host.to_ascii_lowercase();
    let bad = || {
        TlsError(format!(
            "cannot mint a certificate for {host:?}: not a host name"
        ))
    };
    if name.contains('*') || name.ends_with('.') {
        return Err(bad());
    }
    match ServerName::try_from(name.as_str()) {
        Ok(ServerName::DnsName(_)) => {}
        _ => return Err(bad()),
    }
    let ia5 = name.clone().try_into().map_err(|_| bad())?;
    Ok((name, SanType::DnsName(ia5)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use std::sync::atomic::AtomicUsize;

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh directory under the system temp dir, unique across processes and calls.
    pub(crate) fn temp_dir(label: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "cordon-tls-{label}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A verifier trusting only the `ca.crt` read back from `dir`.
    fn verifier_for_disk(dir: &Path) -> Arc<rustls::client::WebPkiServerVerifier> {
        let der = CertificateDer::from_pem_file(dir.join(CERT_FILE)).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            ring_provider(),
        )
        .build()
        .unwrap()
    }

    fn verify(
        verifier: &rustls::client::WebPkiServerVerifier,
        leaf: &CertifiedKey,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(leaf.end_entity_cert()?, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn reloaded_ca_issues_leaves_that_verify_against_ca_crt_on_disk() {
        let dir = temp_dir("reload").join("ca");
        let first = LocalCa::load_or_create(&dir).unwrap();
        assert!(first.created());
        let pem = first.cert_pem();
        drop(first);

        let ca = LocalCa::load_or_create(&dir).unwrap();
        assert!(!ca.created(), "second call loads, never re-creates");
        assert_eq!(ca.cert_pem(), pem);
        let verifier = verifier_for_disk(&dir);

        let leaf = ca.leaf("api.example.com").unwrap();
        verify(&verifier, &leaf, "api.example.com").unwrap();
        let wrong = verify(&verifier, &leaf, "other.example.com").unwrap_err();
        assert!(
            matches!(wrong, rustls::Error::InvalidCertificate(_)),
            "{wrong:?}"
        );
        // SAN is exactly the host: no wildcard or parent domain coverage.
        assert!(verify(&verifier, &leaf, "x.api.example.com").is_err());

        let ip = ca.leaf("127.0.0.1").unwrap();
        verify(&verifier, &ip, "127.0.0.1").unwrap();
        assert!(verify(&verifier, &ip, "127.0.0.2").is_err());
        let v6 = ca.leaf("[::1]").unwrap();
        verify(&verifier, &v6, "::1").unwrap();
    }

    #[test]
    fn files_are_created_with_private_modes() {
        let dir = temp_dir("modes").join("nested").join("ca");
        LocalCa::load_or_create(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(CERT_FILE)) & 0o600, 0o600);
        let key = std::fs::read_to_string(dir.join(KEY_FILE)).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = temp_dir("loose");
        LocalCa::load_or_create(&dir).unwrap();
        let key = dir.join(KEY_FILE);
        for loose in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
            let err = LocalCa::load_or_create(&dir).unwrap_err().to_string();
            assert!(
                err.contains("ca.key must not be readable by others (mode 0600)"),
                "{err}"
            );
            assert!(err.contains(&key.display().to_string()), "{err}");
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        LocalCa::load_or_create(&dir).unwrap();
    }

    #[test]
    fn only_one_file_present_is_an_error_naming_the_missing_one() {
        let dir = temp_dir("half");
        LocalCa::load_or_create(&dir).unwrap();
        let cert = std::fs::read(dir.join(CERT_FILE)).unwrap();
        std::fs::remove_file(dir.join(CERT_FILE)).unwrap();
        let err = LocalCa::load_or_create(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} is missing", dir.join(CERT_FILE).display())),
            "{err}"
        );
        assert!(
            !dir.join(CERT_FILE).exists(),
            "nothing is re-created over half a CA"
        );

        std::fs::write(dir.join(CERT_FILE), cert).unwrap();
        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let err = LocalCa::load_or_create(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} is missing", dir.join(KEY_FILE).display())),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused_at_load() {
        let a = temp_dir("mix-a");
        let b = temp_dir("mix-b");
        let ca_a = LocalCa::load_or_create(&a).unwrap();
        let ca_b = LocalCa::load_or_create(&b).unwrap();
        assert_ne!(ca_a.cert_pem(), ca_b.cert_pem());
        assert_ne!(ca_a.fingerprint_sha256(), ca_b.fingerprint_sha256());
        std::fs::copy(b.join(CERT_FILE), a.join(CERT_FILE)).unwrap();
        let err = LocalCa::load_or_create(&a).unwrap_err().to_string();
        assert!(err.contains("does not belong to"), "{err}");
    }

    #[test]
    fn leaves_are_cached_per_host_and_share_one_key() {
        let ca = LocalCa::load_or_create(&temp_dir("cache")).unwrap();
        let leaf_public = ca.leaf_key.public_key_raw().to_vec();
        let first = ca.leaf("api.example.com").unwrap();
        let again = ca.leaf("API.Example.com").unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same host, same cached leaf");
        assert_eq!(ca.leaves_minted(), 1);

        let other = ca.leaf("files.example.com").unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(ca.leaves_minted(), 2);
        for leaf in [&first, &other] {
            let der = leaf.end_entity_cert().unwrap().as_ref();
            assert!(
                der.windows(leaf_public.len()).any(|w| w == leaf_public),
                "every leaf certifies the one leaf key"
            );
        }

        // Close to expiry the leaf is re-minted, still for the same key.
        let later = SystemTime::now() + LEAF_VALIDITY - Duration::from_secs(30 * 60);
        let renewed = ca.leaf_at("api.example.com", later).unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        assert_eq!(ca.leaves_minted(), 3);
        let der = renewed.end_entity_cert().unwrap().as_ref();
        assert!(der.windows(leaf_public.len()).any(|w| w == leaf_public));
        assert!(Arc::ptr_eq(
            &renewed,
            &ca.leaf_at("api.example.com", later).unwrap()
        ));
        assert_eq!(ca.leaves_minted(), 3);
    }

    #[test]
    fn full_cache_evicts_expiring_entries_first_then_half() {
        let ca = LocalCa::load_or_create_with_capacity(&temp_dir("evict"), 4).unwrap();
        let t0 = SystemTime::now();
        let later = t0 + LEAF_VALIDITY - Duration::from_secs(30 * 60);
        ca.leaf_at("old1.test", t0).unwrap();
        ca.leaf_at("old2.test", t0).unwrap();
        let fresh1 = ca.leaf_at("fresh1.test", later).unwrap();
        let fresh2 = ca.leaf_at("fresh2.test", later).unwrap();
        assert_eq!(ca.cached_leaves(), 4);

        ca.leaf_at("new.test", later).unwrap();
        assert_eq!(ca.cached_leaves(), 3, "the two expiring entries went first");
        assert!(Arc::ptr_eq(
            &fresh1,
            &ca.leaf_at("fresh1.test", later).unwrap()
        ));
        assert!(Arc::ptr_eq(
            &fresh2,
            &ca.leaf_at("fresh2.test", later).unwrap()
        ));

        ca.leaf_at("fill.test", later).unwrap();
        assert_eq!(ca.cached_leaves(), 4);
        let minted = ca.leaves_minted();
        ca.leaf_at("overflow.test", later).unwrap();
        assert_eq!(
            ca.cached_leaves(),
            3,
            "nothing expiring: half dropped, then one added"
        );
        assert_eq!(ca.leaves_minted(), minted + 1);
    }

    #[test]
    fn server_config_is_cached_per_host_and_alpn() {
        let ca = LocalCa::load_or_create(&temp_dir("server")).unwrap();
        let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
        let one = ca.server_config("api.example.com", alpn).unwrap();
        let two = ca.server_config("api.example.com", alpn).unwrap();
        assert!(Arc::ptr_eq(&one, &two));
        assert_eq!(
            one.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let h1 = ca.server_config("api.example.com", &[b"http/1.1"]).unwrap();
        assert_eq!(h1.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(ca.leaves_minted(), 1, "the leaf is shared across configs");
    }

    #[test]
    fn hosts_that_are_not_names_are_refused() {
        let ca = LocalCa::load_or_create(&temp_dir("names")).unwrap();
        for bad in ["", "*.example.com", "exa mple.com", "example.com.", "a/b"] {
            assert!(ca.leaf(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(ca.leaves_minted(), 0);
    }

    #[test]
    fn local_ca_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<LocalCa>();
    }
}
