//! The one way Ghostworks builds an HTTP client. reqwest is built with rustls but without a
//! bundled crypto provider (the workspace uses ring, as sqlx and lettre do, rather than a second
//! C-built provider), so a client built before a process-wide provider is installed panics. This
//! builder installs ring first; clippy.toml forbids building a reqwest client any other way.

/// Installs ring as rustls' process-wide provider; later calls (or another provider already
/// installed) leave it as it is.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `reqwest::Client::builder()`, with the TLS provider installed.
#[allow(clippy::disallowed_methods)]
pub fn builder() -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
}

/// A client with reqwest's defaults (no timeouts: callers that need one use `builder`).
pub fn client() -> reqwest::Client {
    builder()
        .build()
        .expect("an HTTP client with default settings builds")
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_build_with_the_ring_provider() {
        super::client();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
