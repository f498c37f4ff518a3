//! The change feed pushed as signed webhooks (`[[webhooks]]`): each target
//! gets every feed event of its types, in feed order, one per request, as
//! a CloudEvent signed the Standard Webhooks way, at least once.
//!
//! Every replica runs a deliverer per target; a lease in the target's
//! cursor row makes one of them at a time deliver, and the cursor (the
//! feed place delivered through) is written after each 2xx. So a restart,
//! or another replica taking over, carries on after the last event
//! recorded as delivered; an event is delivered twice only when the
//! target's 2xx was not recorded (the process stopped or lost the lease
//! between the answer and the cursor's write, or the answer itself was
//! lost), and then it is the same event, with the same `webhook-id`, right
//! after the one before it.
//!
//! Owns: the targets' settings and their checks, the CloudEvent and its
//! signature (`model`), the cursor and lease it needs stored (`store`),
//! and the deliverer (`service`). The HTTP client is the wiring's
//! ([`service::Post`]).

pub mod model;
pub mod service;
pub mod store;

pub use model::{SigningKey, Target, WebhookTarget};
pub use service::{Deliverer, Post, TargetCounts, WebhookStats, Webhooks};
pub use store::WebhookStore;
