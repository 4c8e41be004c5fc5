//! Errors as HTTP responses: plain text on the gateway, kubo's JSON error
//! object on the RPC API.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lattice_store::StoreError;

/// A failed request: the status to answer with and a message naming the
/// problem in the user's terms.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Error {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Error {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A store failure, as the gateway reports it.
    pub(crate) fn from_store(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) | StoreError::NoSuchPath { .. } => StatusCode::NOT_FOUND,
            StoreError::Invalid(_) | StoreError::Car(_) => StatusCode::BAD_REQUEST,
            StoreError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            StoreError::Corrupt(_)
            | StoreError::Malformed(_)
            | StoreError::Io { .. }
            | StoreError::Db(_)
            | StoreError::Locked(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!("store error: {e}");
        }
        Self::new(status, e.to_string())
    }

    /// A store failure, as kubo reports failures of a command: `500`, except
    /// for an uploaded CAR that cannot be parsed (`400`).
    pub(crate) fn from_store_rpc(e: StoreError) -> Self {
        let status = match &e {
            StoreError::Car(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if matches!(
            e,
            StoreError::Corrupt(_)
                | StoreError::Io { .. }
                | StoreError::Db(_)
                | StoreError::Malformed(_)
        ) {
            tracing::warn!("store error: {e}");
        }
        Self::new(status, e.to_string())
    }

    /// A task that panicked or was cancelled.
    pub(crate) fn join(e: tokio::task::JoinError) -> Self {
        tracing::error!("store task failed: {e}");
        Self::internal(format!("internal error: store task failed: {e}"))
    }

    /// Kubo's error object: `{"Message", "Code", "Type": "error"}`, with
    /// `Code` 1 (client error) for `4xx` and 0 (normal error) otherwise, as
    /// go-ipfs-cmds maps them.
    pub(crate) fn into_kubo(self) -> Response {
        let code = if self.status.is_client_error() { 1 } else { 0 };
        let body = serde_json::json!({ "Message": self.message, "Code": code, "Type": "error" });
        let mut res = (self.status, body.to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

impl IntoResponse for Error {
    /// The gateway's form: the message as plain text.
    fn into_response(self) -> Response {
        let mut res = (self.status, format!("{}\n", self.message)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

/// Runs a store call on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<Result<T, StoreError>, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(Error::join)
}
