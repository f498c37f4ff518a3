//! What the tests share: the harness that starts servers, request builders
//! and assertions, the caller-key interceptor, a database link that can be
//! cut, and the captured logs.

pub mod bearer;
pub mod harness;
pub mod link;
pub mod logs;
pub mod support;
