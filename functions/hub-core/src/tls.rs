//! The TLS client configuration every outbound HTTPS connection shares: the SDK's calls to AWS,
//! the SNS signing-certificate fetches and the webhook deliveries.
//!
//! Trust roots are compiled in (Mozilla's, from `webpki-roots`) rather than read from the
//! system store. Reading and parsing the system store (`rustls-native-certs`: every PEM file of
//! `/etc/ssl/certs`, base64-decoded in constant time) was 17.5 million of the 20 million
//! instructions a function spent before its first `/next` (callgrind, BENCHMARKS.md "Instruction
//! counts"). The compiled-in anchors are already parsed: using them costs a copy of a slice.
//!
//! `AWS_CA_BUNDLE` names a PEM file to trust *instead*, as it does for the AWS CLI and boto3: a
//! private CA, or a TLS proxy in front of a local API (the benchmark's TLS cold path). A bundle
//! that is named but unreadable or empty is an error, never a silent fallback.

use crate::config::{ConfigError, ProcessEnv, Vars};
use rustls::client::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::sync::{Arc, OnceLock};

pub const CA_BUNDLE: &str = "AWS_CA_BUNDLE";

/// The trust roots of this process: `AWS_CA_BUNDLE`'s certificates when it is set, else the
/// compiled-in Mozilla roots. Read once.
pub fn roots() -> Result<Arc<RootCertStore>, ConfigError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, ConfigError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| roots_from(&ProcessEnv).map(Arc::new))
        .clone()
}

fn roots_from(vars: &impl Vars) -> Result<RootCertStore, ConfigError> {
    let Some(path) = vars.get(CA_BUNDLE) else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: CA_BUNDLE,
        reason,
    };
    let pem = std::fs::read(&path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
    let mut store = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| invalid(format!("{path}: {e}")))?;
        store
            .add(certificate)
            .map_err(|e| invalid(format!("{path}: {e}")))?;
    }
    if store.is_empty() {
        return Err(invalid(format!("{path} holds no certificate")));
    }
    Ok(store)
}

/// A client configuration on ring with [`roots`]: TLS 1.2 and 1.3, no client certificate.
pub fn client_config() -> Result<ClientConfig, ConfigError> {
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Invalid {
                name: CA_BUNDLE,
                reason: e.to_string(),
            })?
            .with_root_certificates(roots()?)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(bundle: Option<&str>) -> HashMap<String, String> {
        bundle
            .map(|path| HashMap::from([(CA_BUNDLE.to_owned(), path.to_owned())]))
            .unwrap_or_default()
    }

    #[test]
    fn without_a_bundle_the_compiled_in_roots_are_trusted() {
        let store = roots_from(&vars(None)).unwrap();
        assert_eq!(store.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(store.len() > 100, "Mozilla's root program has ~150 roots");
    }

    #[test]
    fn a_bundle_replaces_the_compiled_in_roots() {
        let dir = std::env::temp_dir().join(format!("hub-core-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bundle.pem");
        // Any certificate will do as a root: the store only parses its subject and key.
        let pem = include_str!("../../../events/keys/sns-test-cert.pem");
        std::fs::write(&path, pem).unwrap();
        let store = roots_from(&vars(path.to_str())).unwrap();
        assert_eq!(store.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_named_bundle_that_is_missing_or_empty_fails_closed() {
        let missing = roots_from(&vars(Some("/nonexistent/bundle.pem"))).unwrap_err();
        assert_eq!(missing.variable(), CA_BUNDLE);
        let dir = std::env::temp_dir().join(format!("hub-core-tls-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let empty = roots_from(&vars(path.to_str())).unwrap_err();
        assert!(empty.to_string().contains("no certificate"), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
