//! Code generated from `proto/latchkey/v1`: the floor of `grpc/`, which
//! every handler and the `latchkey watch` client import.

tonic::include_proto!("latchkey.v1");

/// The compiled protos, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/latchkey_descriptor.bin"));
