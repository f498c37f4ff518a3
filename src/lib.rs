//! latchkey: a gRPC identity backend for app passwords.
//!
//! Layers, outermost first: `grpc` (thin handlers, protobuf ↔ domain, the
//! one error table), `domain` (the rules; no tonic, no SQL), `store`
//! (sea-orm). `app` wires them together and serves on a listener it is
//! given; `config` and `telemetry` set the process up. `watch_cli` is a
//! client: `latchkey watch`, printing the change feed for scripts;
//! `scan_cli` is `latchkey scan`, finding app passwords in files offline.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod scan_cli;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod watch_cli;
