//! Who is calling, as established by the authentication layer for the
//! handlers: they read the caller's name to record it as the actor.

use tonic::Request;

use crate::domain::audit::event::Actor;
pub use crate::domain::callers::model::Caller;
use crate::domain::tenants::model::Reach;

/// The caller's name. The authentication layer puts a caller on every
/// request that reaches a handler needing one; "unauthenticated" marks the
/// open methods that need none.
pub fn name_of<T>(request: &Request<T>) -> String {
    request.extensions().get::<Caller>().map_or_else(
        || "unauthenticated".to_owned(),
        |caller| caller.name.clone(),
    )
}

/// The caller as the audit trail records who acted: its name and tenant.
pub fn actor_of<T>(request: &Request<T>) -> Actor {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| Actor::system("unauthenticated"), Caller::actor)
}

/// Which accounts the caller reaches (`domain::tenants`). A request
/// without one reaches nothing: a missing scope fails closed.
pub fn reach_of<T>(request: &Request<T>) -> Reach {
    request
        .extensions()
        .get::<Reach>()
        .cloned()
        .unwrap_or_else(Reach::nothing)
}

/// The caller's role; `None` on the open methods.
pub fn role_of<T>(request: &Request<T>) -> Option<crate::domain::callers::model::Role> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.role)
}
