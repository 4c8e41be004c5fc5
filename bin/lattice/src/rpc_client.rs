//! A small Ethereum JSON-RPC client over HTTP, shared by the benchmarks (`bench rpc`,
//! `bench registry`) and the registry commands (`model deploy`, `model list`, `model info`):
//! calls and batches, the JSON quantity/data codecs, and EIP-1559 signing with a raw key.

use std::fmt;
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, U256, hex};
use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// A JSON-RPC client over a keep-alive HTTP connection pool.
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    http: reqwest::Client,
    url: String,
}

/// A JSON-RPC error answer (`{"code", "message", "data"}`) to one call, kept whole so callers
/// can decode revert data (`code` 3, `data` the revert bytes as hex).
#[derive(Debug, Clone)]
pub(crate) struct RpcError {
    /// The method called.
    pub(crate) method: String,
    /// The JSON-RPC error code.
    pub(crate) code: i64,
    /// The error message.
    pub(crate) message: String,
    /// The error's `data`, if any.
    pub(crate) data: Option<Value>,
}

impl RpcError {
    /// The `data` of the error as bytes, when it is `"0x…"` hex (revert data).
    pub(crate) fn data_bytes(&self) -> Option<Vec<u8>> {
        self.data
            .as_ref()
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (code {})", self.method, self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

impl Rpc {
    /// A client keeping up to `conns` idle connections open.
    pub(crate) fn new(url: &str, conns: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(conns.max(1))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .context("build HTTP client")?;
        Ok(Self {
            http,
            url: url.to_string(),
        })
    }

    /// The endpoint's URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// POSTs a JSON body and returns the parsed JSON answer.
    pub(crate) async fn post(&self, body: Vec<u8>) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {}", self.url))?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("read JSON-RPC response")?;
        if !status.is_success() {
            bail!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        serde_json::from_slice(&bytes).context("JSON-RPC response is not JSON")
    }

    /// One JSON-RPC call; a JSON-RPC error becomes an `Err` holding an [`RpcError`].
    pub(crate) async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
        )?;
        let answer = self.post(body).await?;
        if let Some(e) = answer.get("error") {
            return Err(RpcError {
                method: method.to_string(),
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_string),
                data: e.get("data").cloned(),
            }
            .into());
        }
        answer
            .get("result")
            .cloned()
            .ok_or_else(|| anyhow!("{method}: no result in {answer}"))
    }

    /// JSON-RPC batches of `chunk` calls at most, answers in call order; fails on any error.
    pub(crate) async fn batch(
        &self,
        calls: &[(&str, Value)],
        chunk: usize,
    ) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::with_capacity(calls.len());
        for part in calls.chunks(chunk.max(1)) {
            let reqs: Vec<Value> = part
                .iter()
                .enumerate()
                .map(|(i, (m, p))| json!({"jsonrpc": "2.0", "id": i, "method": m, "params": p}))
                .collect();
            let answer = self.post(serde_json::to_vec(&reqs)?).await?;
            for (i, r) in batch_answers(&answer, part.len())?.into_iter().enumerate() {
                out.push(r.map_err(|e| anyhow!("{}: {e}", part[i].0))?);
            }
        }
        Ok(out)
    }

    /// `eth_call` of `data` on `to` at the latest block, returning the output bytes.
    pub(crate) async fn eth_call(&self, to: Address, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let v = self
            .call("eth_call", call_params(to, data))
            .await
            .context("eth_call")?;
        hex_bytes(&v)
    }
}

/// `eth_call` params: `[{to, data}, "latest"]`.
pub(crate) fn call_params(to: Address, data: &[u8]) -> Value {
    json!([{"to": to, "data": hex::encode_prefixed(data)}, "latest"])
}

/// The `result` of one JSON-RPC answer, or its error message.
pub(crate) fn into_result(answer: &Value) -> Result<Value, String> {
    if let Some(e) = answer.get("error") {
        return Err(e
            .get("message")
            .map_or_else(|| e.to_string(), |m| m.to_string()));
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| format!("no result in {answer}"))
}

/// The answers of a batch of `n` calls with ids `0..n`, in id order.
pub(crate) fn batch_answers(
    answer: &Value,
    n: usize,
) -> anyhow::Result<Vec<Result<Value, String>>> {
    let Some(items) = answer.as_array() else {
        bail!("batch of {n} answered with a single object: {answer}");
    };
    let mut out = vec![Err("no answer for this id".to_string()); n];
    for item in items {
        let id = item
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < n)
            .with_context(|| format!("batch answer with bad id: {item}"))?;
        out[id] = into_result(item);
    }
    Ok(out)
}

/// A JSON quantity (`"0x…"`) as `u64`.
pub(crate) fn quantity(v: &Value) -> anyhow::Result<u64> {
    let s = v.as_str().with_context(|| format!("not a quantity: {v}"))?;
    u64::from_str_radix(s.trim_start_matches("0x"), 16).with_context(|| format!("bad quantity {s}"))
}

/// A JSON quantity (`"0x…"`) as `U256`.
pub(crate) fn quantity_u256(v: &Value) -> anyhow::Result<U256> {
    let s = v.as_str().with_context(|| format!("not a quantity: {v}"))?;
    s.parse::<U256>()
        .with_context(|| format!("bad quantity {s}"))
}

/// JSON `"0x…"` data as bytes.
pub(crate) fn hex_bytes(v: &Value) -> anyhow::Result<Vec<u8>> {
    let s = v.as_str().with_context(|| format!("not hex data: {v}"))?;
    hex::decode(s).with_context(|| format!("bad hex data {s}"))
}

/// The address of a secret key.
pub(crate) fn address_of(key: B256) -> anyhow::Result<Address> {
    Ok(alloy_signer_local::PrivateKeySigner::from_bytes(&key)
        .context("not a valid secp256k1 private key")?
        .address())
}

/// Signs `tx` with `key` and returns its EIP-2718 encoding and hash.
pub(crate) fn sign(key: B256, tx: TxEip1559) -> anyhow::Result<(Vec<u8>, B256)> {
    let sig = alloy_consensus::crypto::secp256k1::sign_message(key, tx.signature_hash())
        .context("sign")?;
    let env: TxEnvelope = tx.into_signed(sig).into();
    Ok((env.encoded_2718(), *env.tx_hash()))
}
