//! [`RpcError`] (starting the server failed) and the JSON-RPC error objects
//! the methods answer with.

use std::fmt::Display;

use alloy_primitives::Bytes;
use jsonrpsee::types::ErrorObjectOwned;
use lattice_chain::ChainError;

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Binding or reading the listening socket failed.
    #[error("rpc server socket: {0}")]
    Io(#[from] std::io::Error),
    /// The method table could not be built (a bug: duplicate names).
    #[error("rpc method table: {0}")]
    Register(#[from] jsonrpsee::server::RegisterMethodError),
}

/// What a method returns.
pub(crate) type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// Generic server-side failure of a well-formed request (geth's `-32000`).
pub(crate) const SERVER_ERROR: i32 = -32000;
/// Malformed parameters.
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// The node failed underneath.
pub(crate) const INTERNAL_ERROR: i32 = -32603;
/// A query hit a configured limit (EIP-1474 "limit exceeded").
pub(crate) const LIMIT_EXCEEDED: i32 = -32005;
/// Execution reverted (geth's code for `eth_call` / `eth_estimateGas`).
pub(crate) const EXECUTION_REVERTED: i32 = 3;

pub(crate) fn invalid_params(msg: impl Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS, msg.to_string(), None::<()>)
}

pub(crate) fn server_error(msg: impl Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(SERVER_ERROR, msg.to_string(), None::<()>)
}

pub(crate) fn limit_exceeded(msg: impl Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(LIMIT_EXCEEDED, msg.to_string(), None::<()>)
}

pub(crate) fn internal(e: impl Display) -> ErrorObjectOwned {
    tracing::warn!(error = %e, "rpc: node failure");
    ErrorObjectOwned::owned(INTERNAL_ERROR, e.to_string(), None::<()>)
}

/// geth's revert error: code 3, the decoded reason in the message, the raw
/// revert data as hex in `data`.
pub(crate) fn reverted(reason: Option<&str>, data: &Bytes) -> ErrorObjectOwned {
    let message = match reason {
        Some(r) => format!("execution reverted: {r}"),
        None => "execution reverted".to_owned(),
    };
    ErrorObjectOwned::owned(EXECUTION_REVERTED, message, Some(data))
}

/// `?` on node reads inside methods.
pub(crate) trait OrInternal<T> {
    fn or_internal(self) -> RpcResult<T>;
}

impl<T> OrInternal<T> for Result<T, ChainError> {
    fn or_internal(self) -> RpcResult<T> {
        self.map_err(internal)
    }
}
