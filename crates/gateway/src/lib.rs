//! HTTP serving of a node's [`lattice_store::Store`].
//!
//! **Owns** the HTTP face of a node, on one [`axum::Router`]:
//! - an IPFS gateway under `/ipfs/{cid}[/{path}]`: the trustless response
//!   types (`?format=raw` / `application/vnd.ipld.raw` for one block,
//!   `?format=car` / `application/vnd.ipld.car` for a CAR v1 stream with
//!   `dag-scope` and `entity-bytes`), and the path-gateway deserialized
//!   responses (file bytes with single and multiple `Range`s, ETags and
//!   `If-None-Match`, folder listings or their `index.html`);
//! - a subset of the Kubo RPC API under `/api/v0/` (`add`, `cat`,
//!   `block/{get,put,stat}`, `pin/{add,ls,rm}`, `dag/{export,import}`,
//!   `version`, `id`), POST only, with kubo's JSON shapes so that the npm
//!   `kubo-rpc-client` and `curl` scripts written for kubo work unchanged.
//!
//! **Never** serves a byte that was not verified against its CID: every
//! block, file byte and CAR section comes from the store's read APIs
//! ([`Store::block`], [`Store::cat`], [`Store::export_car`]), which check
//! hashes before they hand data out; identity CIDs carry their own bytes.
//! A failure in the middle of a streamed response aborts the connection
//! rather than completing a response with unverified or missing data.
//! **Never** writes the store except through its APIs (imports, block puts,
//! CAR imports, pins), and never buffers a whole file or CAR in memory:
//! uploads are streamed into the synchronous importer through a bounded
//! channel, and downloads are streamed out the same way.
//!
//! Store calls are synchronous (redb, file I/O, hashing), so every one runs
//! in [`tokio::task::spawn_blocking`].
//!
//! Main items: [`router`], [`serve`], [`Limits`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use lattice_store::Store;

mod car;
mod error;
mod gateway;
mod identity;
mod mime;
mod range;
mod rpc;
mod stream;
mod util;

// Used by the integration tests in `tests/`, not by the unit tests.
#[cfg(test)]
use reqwest as _;

/// Bounds on what one request may ask of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted (Kubo RPC `add`, `block/put`,
    /// `dag/import`); bigger bodies get `413 Payload Too Large`.
    pub max_body: usize,
    /// Most byte ranges honoured in one `Range` header; more get `416`.
    pub max_range_count: usize,
    /// Longest CID string accepted; longer ones get `400`.
    pub max_cid_len: usize,
    /// Longest request path accepted (`/ipfs/…` and RPC `arg`s); longer
    /// ones get `400`.
    pub max_path_len: usize,
}

impl Default for Limits {
    /// 1 GiB bodies, 16 ranges, 200-character CIDs, 4096-byte paths.
    fn default() -> Self {
        Self {
            max_body: 1 << 30,
            max_range_count: 16,
            max_cid_len: 200,
            max_path_len: 4096,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) limits: Limits,
    pub(crate) identity: tokio::sync::OnceCell<identity::Identity>,
}

pub(crate) type SharedState = Arc<AppState>;

/// The gateway and Kubo RPC routes over `store`, bounded by `limits`.
pub fn router(store: Arc<Store>, limits: Limits) -> Router {
    let state: SharedState = Arc::new(AppState {
        store,
        limits,
        identity: tokio::sync::OnceCell::new(),
    });
    Router::new()
        .route(
            "/ipfs/{*rest}",
            axum::routing::get(gateway::handle).head(gateway::handle),
        )
        .route("/api/v0/{*cmd}", axum::routing::any(rpc::handle))
        .fallback(util::not_found)
        .layer(DefaultBodyLimit::max(limits.max_body))
        .with_state(state)
}

/// Serves [`router`] on `listener` until the listener fails. To stop on a
/// signal, race this future against it (for example in `tokio::select!`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    limits: Limits,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the IPFS gateway on /ipfs and the Kubo RPC API on /api/v0");
    }
    axum::serve(listener, router(store, limits)).await
}
