//! The child's environment: proxy variables, a CA bundle that trusts cordon's per-run CA,
//! placeholders where the agent expects its keys, and no real secret.

use crate::config::Config;
use crate::credentials::SourceSpec;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Proxy variables cordon sets (both cases: tools disagree on which they read).
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The user name in the proxy URL (the password is the per-run token).
pub const PROXY_USER: &str = "cordon";

/// The `Proxy-Authorization` value a client sends for the proxy URL with `token`.
pub fn proxy_authorization(token: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{PROXY_USER}:{token}"));
    http::HeaderValue::from_str(&format!("Basic {basic}")).expect("base64 is a valid header value")
}

/// A fresh per-run proxy token (128 random bits, hex).
pub fn proxy_token() -> Result<String, String> {
    crate::os::random_hex(16).map_err(|e| format!("the proxy token: {e}"))
}

/// Variables that would exempt destinations from the proxy; removed.
const NO_PROXY_VARS: &[&str] = &["NO_PROXY", "no_proxy"];

/// Variables naming a CA bundle, each read by some common client.
const CA_VARS: &[&str] = &[
    "SSL_CERT_FILE",       // OpenSSL, Go, Ruby, rustls-native-certs
    "REQUESTS_CA_BUNDLE",  // Python requests
    "CURL_CA_BUNDLE",      // curl
    "NODE_EXTRA_CA_CERTS", // Node.js (added to its built-in roots)
    "GIT_SSL_CAINFO",      // git
    "PIP_CERT",            // pip
    "AWS_CA_BUNDLE",       // AWS CLI and SDKs
    "HTTPLIB2_CA_CERTS",   // httplib2 (Google API clients)
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", // gcloud
    "NIX_SSL_CERT_FILE",
    "DENO_CERT",
    "CARGO_HTTP_CAINFO",
];

/// Where distributions keep the system's CA bundle, most common first.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

/// The CA bundle the user's tools trust today: `$SSL_CERT_FILE` if it names a readable
/// file, else the distribution's bundle; `None` when there is none.
pub fn system_bundle() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from) {
        if path.is_file() {
            return Some(path);
        }
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// Writes `dir/ca-bundle.pem`: the system bundle followed by cordon's CA certificate.
pub fn write_bundle(dir: &Path, system: Option<&Path>, ca_pem: &str) -> Result<PathBuf, String> {
    let mut bundle = match system {
        Some(path) => std::fs::read(path)
            .map_err(|e| format!("cannot read the system CA bundle {}: {e}", path.display()))?,
        None => Vec::new(),
    };
    if !bundle.is_empty() && !bundle.ends_with(b"\n") {
        bundle.push(b'\n');
    }
    bundle.extend_from_slice(ca_pem.as_bytes());
    let path = dir.join("ca-bundle.pem");
    std::fs::write(&path, bundle).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The child's environment, built from cordon's own. The proxy URL carries `token` as its
/// password: the proxy refuses requests without it, so only this command (and what it
/// starts) can use the proxy and the credentials it injects, not every local user.
pub fn child_env(
    inherited: impl Iterator<Item = (OsString, OsString)>,
    config: &Config,
    proxy: SocketAddr,
    token: &str,
    bundle: &Path,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = inherited.collect();
    for name in NO_PROXY_VARS {
        env.remove(&OsString::from(name));
    }
    // The real secrets cordon reads from its environment never reach the child.
    for spec in &config.credentials {
        if let SourceSpec::Env(var) = &spec.source {
            env.remove(&OsString::from(var));
        }
    }
    let url = format!("http://{PROXY_USER}:{token}@{proxy}");
    for name in PROXY_VARS {
        env.insert(name.into(), url.clone().into());
    }
    // Node.js 22.21+/24+ honour the proxy variables only when asked to.
    env.insert("NODE_USE_ENV_PROXY".into(), "1".into());
    for name in CA_VARS {
        env.insert(name.into(), bundle.as_os_str().to_owned());
    }
    for spec in &config.credentials {
        if let Some(var) = &spec.env {
            env.insert(var.into(), spec.placeholder.clone().into());
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let base = "version: 1\nagent: {name: t}\naudit: {path: /tmp/x.jsonl}\n";
        crate::config::parse(
            Path::new("t.yaml"),
            format!("{base}{yaml}").as_bytes(),
            &|_| Ok("v".to_owned()),
        )
        .expect("config")
    }

    #[test]
    fn secrets_leave_placeholders_arrive_and_no_proxy_is_cleared() {
        let config = config(
            "credentials:\n  openai:\n    source: {env: REAL_OPENAI}\n    env: OPENAI_API_KEY\n    inject: {header: Authorization, value: \"Bearer {secret}\"}\n",
        );
        let inherited = [
            ("REAL_OPENAI", "sk-real"),
            ("OPENAI_API_KEY", "sk-old"),
            ("NO_PROXY", "*"),
            ("no_proxy", "internal"),
            ("HTTPS_PROXY", "http://elsewhere:3128"),
            ("HOME", "/home/a"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = child_env(
            inherited,
            &config,
            "127.0.0.1:4000".parse().unwrap(),
            "t0k",
            Path::new("/run/b.pem"),
        );
        let get = |k: &str| env.get(&OsString::from(k)).map(|v| v.to_str().unwrap());
        assert_eq!(get("REAL_OPENAI"), None);
        assert_eq!(get("OPENAI_API_KEY"), Some("CORDON_PLACEHOLDER_OPENAI"));
        assert_eq!(get("NO_PROXY"), None);
        assert_eq!(get("no_proxy"), None);
        assert_eq!(get("HTTPS_PROXY"), Some("http://cordon:t0k@127.0.0.1:4000"));
        assert_eq!(get("all_proxy"), Some("http://cordon:t0k@127.0.0.1:4000"));
        assert_eq!(proxy_authorization("t0k"), "Basic Y29yZG9uOnQwaw==");
        assert_eq!(get("GIT_SSL_CAINFO"), Some("/run/b.pem"));
        assert_eq!(get("HOME"), Some("/home/a"));
    }
}
