//! The process's TLS crypto provider.
//!
//! Every HTTP client in the platform (object_store's S3 client, the OTLP exporter) is reqwest
//! with rustls built without a bundled provider (`rustls-no-provider`), so that the tree holds one
//! crypto stack (ring, which kube's client already uses) instead of also building aws-lc-rs from C. reqwest
//! then needs a process-wide default provider before it builds a client, or it panics; every
//! place that builds one calls [`install_crypto_provider`] first.

/// Installs ring as rustls's process-wide provider; idempotent (a second call is a no-op).
pub fn install_crypto_provider() {
    // `Err` means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
