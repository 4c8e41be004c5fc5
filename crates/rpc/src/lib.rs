//! The Ethereum JSON-RPC server of a Lattice node: HTTP and WebSocket on one
//! port, over a [`lattice_chain::Node`].
//!
//! **Owns** the wire side of the node: the `web3_*`, `net_*` and `eth_*`
//! methods with Ethereum's field names, hex quantities and error codes
//! (geth's wording where tools match on it), JSON-RPC batches, poll filters
//! (`eth_newFilter` …) and WebSocket subscriptions (`eth_subscribe`
//! `newHeads` / `logs` / `newPendingTransactions`), and the limits that keep
//! one client from exhausting the node ([`RpcConfig`]).
//!
//! **Never** writes chain state itself (transactions go through
//! [`lattice_chain::Node::submit_raw`], blocks are produced elsewhere), never
//! holds keys or signs (`eth_accounts` is empty, `eth_sendTransaction` does
//! not exist), and never answers a state query from the wrong block: a block
//! number or hash reads the state after that block (the node keeps every
//! block's overwritten values), `latest`/`pending`/`safe`/`finalized` read the
//! head, and a block past the head is "header not found". Blocks,
//! transactions, receipts and logs are served for every height.
//!
//! # Layout
//! - `server`: [`start`], [`RpcServer`], the method table;
//! - `eth`: the methods, one plain function each;
//! - `filters`: poll filters (a cursor into the chain, read on each poll);
//! - `pubsub`: WebSocket subscriptions fed by [`lattice_chain::Node::subscribe`];
//! - `convert`: chain records → `alloy-rpc-types-eth` response types;
//! - `params`: positional parameter parsing with geth's messages;
//! - `error`: [`RpcError`] and the JSON-RPC error objects.
//!
//! Main types: [`RpcConfig`], [`RpcServer`], [`RpcError`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod convert;
mod error;
mod eth;
mod filters;
mod params;
mod pubsub;
mod server;

pub use error::RpcError;
pub use jsonrpsee::Methods;
pub use server::{RpcConfig, RpcServer, start, start_with};
