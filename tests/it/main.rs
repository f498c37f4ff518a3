//! Integration tests: the real server over real gRPC on an ephemeral port,
//! against SQLite and, where configured, PostgreSQL and MariaDB. One test
//! binary (every file under tests/ would otherwise link its own); add
//! modules here rather than files beside it.

mod harness;
mod support;
mod walk;
