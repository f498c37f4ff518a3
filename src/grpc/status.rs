//! The one table from domain errors to gRPC statuses.
//!
//! Clients get a code and a message written for them, and a
//! `google.rpc.ErrorInfo` with a stable reason (domain `latchkey`) they can
//! branch on without reading the message; INVALID_ARGUMENT also carries
//! `google.rpc.BadRequest` with every bad field, and a rate bound's
//! RESOURCE_EXHAUSTED a `google.rpc.RetryInfo` saying when to retry. Internal details (database
//! errors, bugs) go to the log and never into a status.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::shared::error::{Error, Outage, Reason};

/// The ErrorInfo domain of every latchkey error.
pub const DOMAIN: &str = "latchkey";

/// A status with its ErrorInfo.
pub fn with_reason(code: Code, message: impl Into<String>, reason: Reason) -> Status {
    let details = ErrorDetails::with_error_info(reason.as_str(), DOMAIN, []);
    Status::with_error_details(code, message, details)
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let reason = error.reason();
        match error {
            Error::InvalidArgument(violations) => {
                let message = Error::InvalidArgument(violations.clone()).to_string();
                let mut details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                details.set_error_info(reason.as_str(), DOMAIN, []);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { resource, .. } => {
                with_reason(Code::NotFound, format!("{resource} not found"), reason)
            }
            Error::AlreadyExists(_, message) => with_reason(Code::AlreadyExists, message, reason),
            Error::FailedPrecondition(_, message) => {
                with_reason(Code::FailedPrecondition, message, reason)
            }
            Error::ResourceExhausted(_, message) => {
                with_reason(Code::ResourceExhausted, message, reason)
            }
            Error::PermissionDenied(_, message) => {
                with_reason(Code::PermissionDenied, message, reason)
            }
            Error::RateLimited {
                message,
                retry_after,
                ..
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.set_error_info(reason.as_str(), DOMAIN, []);
                Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            Error::Unauthenticated(message) => with_reason(Code::Unauthenticated, message, reason),
            Error::Unavailable(outage, source) => {
                // A state the replica knows of (the database down, its disk
                // full, read-only) is logged once, when it begins and ends
                // (store/db.rs), not by every request it refuses.
                if outage == Outage::Transient {
                    tracing::warn!(error = ?source.to_string(), "storage unavailable");
                } else {
                    tracing::debug!(error = ?source.to_string(), ?outage, "storage unavailable");
                }
                let message = match outage {
                    Outage::Transient | Outage::Down => {
                        "storage is unavailable; nothing was changed, retry later"
                    }
                    Outage::DiskFull => {
                        "the database's disk is full; nothing was changed, retry later"
                    }
                    Outage::ReadOnly => {
                        "the database accepts no writes; nothing was changed, retry later"
                    }
                };
                with_reason(Code::Unavailable, message, reason)
            }
            Error::Cancelled => with_reason(
                Code::Cancelled,
                "the request was cancelled before it was decided",
                reason,
            ),
            Error::Internal(source) => {
                tracing::error!(error = ?source.to_string(), "internal error");
                with_reason(Code::Internal, "internal error", reason)
            }
        }
    }
}
