//! The identities a verified TLS client certificate asserts: its subject
//! common names and its subject alternative names (DNS names, email
//! addresses, URIs). rustls has already checked the chain against the
//! configured client CA before a request gets here.

use tonic::transport::server::TlsConnectInfo;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::transport::GuardedInfo;

/// The identities of the request's client certificate; empty without one.
pub fn of_request<B>(request: &http::Request<B>) -> Vec<String> {
    let Some(certs) = request
        .extensions()
        .get::<TlsConnectInfo<GuardedInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
    else {
        return Vec::new();
    };
    certs
        .first()
        .map_or_else(Vec::new, |leaf| of_certificate(leaf.as_ref()))
}

pub fn of_certificate(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut identities: Vec<String> = certificate
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(value)
                | GeneralName::RFC822Name(value)
                | GeneralName::URI(value) => {
                    identities.push((*value).to_owned());
                }
                _ => {}
            }
        }
    }
    identities
}
