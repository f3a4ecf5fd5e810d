//! Vault endpoints of our own (vaultrs's do not fit).
//!
//! - `sys/health`: vaultrs 0.8's `ReadHealthResponse` requires a
//!   `performance_standby` field that OpenBao does not send, so
//!   `vaultrs::sys::health` fails to parse OpenBao's answer.
//! - `auth/token/lookup-self`: its answer contains the token itself (`id`);
//!   [`serde::de::IgnoredAny`] reads nothing of it, so the token is never
//!   copied into a value this crate holds.

use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use rustify::errors::ClientError;
use serde::Deserialize;

/// `GET /v1/sys/health?standbyok=true&perfstandbyok=true`: a standby node
/// answers reads, so it counts as healthy. Sealed gives 503, uninitialized 501.
#[derive(Debug)]
pub(crate) struct Health;

/// The part of the `sys/health` answer this crate reads.
#[derive(Debug, Deserialize)]
pub(crate) struct HealthResponse {
    #[serde(default)]
    pub(crate) initialized: bool,
    #[serde(default)]
    pub(crate) sealed: bool,
    #[serde(default)]
    pub(crate) version: Option<String>,
}

impl Endpoint for Health {
    type Response = HealthResponse;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        "/sys/health".to_owned()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }

    fn query(&self) -> Result<Option<String>, ClientError> {
        Ok(Some("standbyok=true&perfstandbyok=true".to_owned()))
    }
}

/// `GET /v1/auth/token/lookup-self`: succeeds when the client's token is valid.
#[derive(Debug)]
pub(crate) struct LookupSelf;

impl Endpoint for LookupSelf {
    type Response = serde::de::IgnoredAny;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        "/auth/token/lookup-self".to_owned()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

/// `POST /v1/{mount}/metadata/{path}` with only `max_versions`: raises how
/// many versions a KV secret keeps. vaultrs's `SetSecretMetadataRequest`
/// is not used because it may send its other fields as `null`; this body
/// holds the one field, so `cas_required`, `delete_version_after` and
/// `custom_metadata` keep their values.
#[derive(Debug)]
pub(crate) struct SetMaxVersions {
    pub(crate) mount: String,
    pub(crate) path: String,
    pub(crate) max_versions: u64,
}

impl Endpoint for SetMaxVersions {
    type Response = serde::de::IgnoredAny;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("/{}/metadata/{}", self.mount, self.path)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(Some(
            serde_json::json!({ "max_versions": self.max_versions })
                .to_string()
                .into_bytes(),
        ))
    }
}
