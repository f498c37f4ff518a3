//! Integration tests: the real server over real gRPC on an ephemeral port,
//! against SQLite and, where configured, PostgreSQL and MariaDB. One test
//! binary (every file under tests/ would otherwise link its own); add
//! modules here rather than files beside it. What the tests share (the
//! harness, request helpers, the cuttable link, the captured logs) is under
//! `common/`.

// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod adapters;
mod architecture;
mod attacks;
mod audit_trail;
mod backup;
mod bad_days;
mod callers;
mod cli;
mod common;
mod config;
mod connection_budget;
mod discovery;
mod dovecot_oauth2;
mod examples;
mod fail2ban;
mod failover;
mod faults;
mod feed_numbering;
mod front_door;
mod fuzz;
mod hash_pool;
mod issuers;
mod leak_reports;
mod leaks;
mod lifecycle;
mod limits;
mod memory_bound;
mod metrics;
mod notices;
mod oauth2;
mod pgbouncer;
mod proto_options;
mod proxies;
mod quickstart;
mod races;
mod refusals;
mod review;
mod secret_format;
mod secret_scanning;
mod secrets;
mod systemd;
mod tenants;
mod throttling;
mod tls;
mod transport;
mod usage;
mod verified_cache;
mod walk;
mod warm;
mod watch;
mod watch_cli;
mod webhooks;
