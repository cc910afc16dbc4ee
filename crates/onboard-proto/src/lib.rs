//! Onboard's gRPC contract, package `onboard.v1`, generated at build time from `proto/`.
//!
//! The generated code is kept in this crate alone so that lint exceptions stay here; every
//! other crate uses it through [`v1`]. Messages that carry secrets have a hand-written `Debug`
//! that hides them (`redact.rs`). [`FILE_DESCRIPTOR_SET`] feeds server reflection, so
//! grpcurl and generated clients work without our `.proto` files.

/// Messages, clients (`*_client`) and servers (`*_server`) of `onboard.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    tonic::include_proto!("onboard.v1");
}

mod redact;
#[cfg(test)]
mod redacted;

/// The encoded `FileDescriptorSet` of every `onboard.v1` file and its imports, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("onboard_descriptor");

/// The fully qualified gRPC service names, as health checks and reflection list them.
pub const SERVICE_NAMES: &[&str] = &[
    "onboard.v1.Admin",
    "onboard.v1.Audit",
    "onboard.v1.Credentials",
    "onboard.v1.Invitations",
    "onboard.v1.Onboarding",
    "onboard.v1.Verification",
];
