//! What the tests share: the harness that starts servers, request builders
//! and assertions, the caller-key interceptor, a database link that can be
//! cut, the captured logs, PostgreSQL clusters of a test's own, the programs some tests run and their processes.

pub mod bearer;
pub mod harness;
pub mod link;
pub mod logs;
pub mod postgres;
pub mod processes;
pub mod programs;
pub mod support;
