//! The TLS mode: a throw-away certificate authority and a server certificate made at start-up
//! with `rcgen`, and the rustls server configuration that presents it.
//!
//! The CA certificate (PEM) is what a client is told to trust: `SSL_CERT_FILE` for the Rust
//! SDK's HTTPS client (rustls-native-certs reads it instead of the system store),
//! `--ca-bundle` or `AWS_CA_BUNDLE` for the AWS CLI. Crypto is aws-lc-rs, the provider the
//! SDK's default HTTPS client already builds.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority and a server certificate it signed.
pub(crate) struct Certs {
    /// The CA certificate in PEM: the one a client must trust.
    pub ca_pem: String,
    /// The server's rustls configuration (certificate chain and key).
    pub server: Arc<rustls::ServerConfig>,
}

/// Makes a CA and a server certificate for `names` (DNS names) and `ips`.
pub(crate) fn make(names: &[String], ips: &[IpAddr]) -> Result<Certs, String> {
    fn err(what: &'static str) -> impl Fn(rcgen::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let ca_key = KeyPair::generate().map_err(err("generating the CA key"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err("CA parameters"))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fake-lightsail test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err("signing the CA"))?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(err("generating the server key"))?;
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(err("parameters"))?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("localhost", String::as_str),
    );
    for n in names {
        let dns = n
            .clone()
            .try_into()
            .map_err(|e| format!("{n:?} is no DNS name: {e}"))?;
        leaf.subject_alt_names.push(SanType::DnsName(dns));
    }
    for ip in ips {
        leaf.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    // What strict verifiers (webpki, OpenSSL's X509_STRICT) look for in a server certificate.
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf
        .signed_by(&key, &issuer)
        .map_err(err("signing the server certificate"))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| format!("the server certificate: {e}"))?;
    // HTTP/1.1 only, as the rest of the fake; a client offering h2 too falls back to it.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certs {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_pem_and_names_must_be_dns_names() {
        let c = make(&["localhost".into()], &["127.0.0.1".parse().unwrap()]).unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(c.server.alpn_protocols, [b"http/1.1".to_vec()]);
        let bad = make(&["bücher.test".into()], &[]).err().unwrap();
        assert!(bad.contains("no DNS name"), "{bad}");
    }
}
