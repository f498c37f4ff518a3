//! Who is calling, as far as the handlers need to know: a name to record as
//! the issuer of a password.

use tonic::Request;

/// The authenticated caller of a request, put into the request's
/// extensions by the layer that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
}

/// The caller's name, or "anonymous" where no caller was established.
pub fn name_of<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| "anonymous".to_owned(), |caller| caller.name.clone())
}
