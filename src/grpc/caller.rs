//! Who is calling, as established by the authentication layer for the
//! handlers: they read the caller's name to record it as the actor.

use tonic::Request;

pub use crate::domain::callers::model::Caller;

/// The caller's name. The authentication layer puts a caller on every
/// request that reaches a handler needing one; "unauthenticated" marks the
/// open methods that need none.
pub fn name_of<T>(request: &Request<T>) -> String {
    request.extensions().get::<Caller>().map_or_else(
        || "unauthenticated".to_owned(),
        |caller| caller.name.clone(),
    )
}

/// The caller's role; `None` on the open methods.
pub fn role_of<T>(request: &Request<T>) -> Option<crate::domain::callers::model::Role> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.role)
}
