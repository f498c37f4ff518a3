//! Integration tests: the real server over real gRPC.
