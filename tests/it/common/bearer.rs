//! The caller key on every request, as `authorization: Bearer <key>`, the
//! way grpcurl's `-H` sends it. The one such interceptor of the tests and
//! of the benchmarks (`benches/timing.rs` and `benches/load` include this
//! file with `#[path]`), so it uses nothing but tonic.

use tonic::metadata::errors::InvalidMetadataValue;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;

/// Sends a caller key with every request; the default sends none.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// Fails if the key cannot be a header value.
    pub fn new(key: &str) -> Result<Self, InvalidMetadataValue> {
        Ok(Self(Some(format!("Bearer {key}").parse()?)))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}
