#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod blocking;
mod client;
pub mod config;
pub mod dotenv;
mod lifecycle;
pub mod migrate;
pub mod rewrap;

pub use client::{Kms, RETENTION_CHECK_INTERVAL};
pub use config::{KmsBuilder, KmsConfig, ProviderKind};

pub use kms_cache as cache;
pub use kms_circuit as circuit;
pub use kms_core as core;
pub use kms_core::{
    DataKey, Envelope, Error, Fingerprint, HealthStatus, IvLength, KeyId, KeyMaterial, KeyMetadata,
    KeyProvider, KeyVersion, LiveVersions, Result, Retry, VersionInfo, format,
};
/// Metrics, audit events and alerts (`kms::audit`, `kms::alert`) of the provider stack.
pub use kms_telemetry as telemetry;

/// The development provider (`KMS_PROVIDER=env`).
#[cfg(feature = "env")]
pub use kms_env as env;

/// The local keyring provider (`KMS_PROVIDER=file`).
#[cfg(feature = "file")]
pub use kms_file as file;

/// The AWS provider (`KMS_PROVIDER=aws`): SSM Parameter Store under a KMS key.
#[cfg(feature = "aws")]
pub use kms_aws as aws;
/// The HashiCorp Vault / OpenBao provider (`KMS_PROVIDER=vault`).
#[cfg(feature = "vault")]
pub use kms_vault as vault;

/// The Google Cloud Secret Manager provider (`KMS_PROVIDER=gcp`).
#[cfg(feature = "gcp")]
pub use kms_gcp as gcp;

/// The workspace README's examples, compiled and run as doctests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
