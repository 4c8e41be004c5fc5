//! The `lattice_*` JSON-RPC namespace, served beside `eth_*` on the node's port.
//!
//! | method | params | result |
//! |---|---|---|
//! | `lattice_listModels` | `[offset?, limit?]` | models in registration order |
//! | `lattice_getModel` | `[id \| name \| CID]` | the model, its versions, pin count, whether this node holds it |
//! | `lattice_putRequest` | `[{request} \| {document}]` | `{inputHash, cid}`: the request document stored here |
//! | `lattice_infer` | `[{model, request \| document, tx?, timeoutSecs?}]` | an answer: outputs + signed receipt |
//! | `lattice_getReceipt` | `[requestId]` | the request's answer so far |
//! | `lattice_verifyReceipt` | `[signedReceipt]` | signature, executor role and on-chain checks |
//! | `lattice_getRequest` | `[inputHash]` | the request document (base64) and its parsed form |
//!
//! `request` is a request object (`{"inputs": […], "file": "<base64>", "task": …}`), stored
//! as the node serializes it; `document` is the exact bytes (base64) a client hashed itself.
//! Without `tx`, `lattice_infer` answers free public models at once (request id 0); with
//! `tx` (a signed `requestInference` committing to the document's sha256) it checks and
//! simulates the transaction, submits it, and waits until an executor settles the request.
//!
//! Every node serves the read-only methods ([`read_methods`]: list, get, getRequest,
//! getReceipt, verifyReceipt) from its chain and store; `lattice_putRequest` and
//! `lattice_infer` need an executor ([`methods`]).

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, U256, hex};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonrpsee::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Params};
use lattice_runtime::Request;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::content;
use crate::error::ExecutorError;
use crate::executor::Executor;
use crate::reader::Reader;
use crate::receipt::SignedReceipt;
use crate::registry::{self, ModelView, status};

/// Most models one `lattice_listModels` call returns.
const MAX_LIST: u64 = 1000;
/// How long `lattice_infer` waits for a paid request by default.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);

type RpcResult<T> = Result<T, ErrorObjectOwned>;

fn rpc_error(e: ExecutorError) -> ErrorObjectOwned {
    let code = match e {
        ExecutorError::BadRequest(_)
        | ExecutorError::UnknownModel(_)
        | ExecutorError::UnknownRequest(_)
        | ExecutorError::BadReceipt(_) => -32602,
        _ => -32000,
    };
    ErrorObjectOwned::owned(code, e.to_string(), None::<()>)
}

fn invalid(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, msg.into(), None::<()>)
}

/// Positional params as a list (none = empty; a lone object = one param).
fn args(params: &Params<'_>) -> RpcResult<Vec<Value>> {
    if params.as_str().is_none() {
        return Ok(Vec::new());
    }
    match params
        .parse::<Value>()
        .map_err(|e| invalid(e.to_string()))?
    {
        Value::Array(v) => Ok(v),
        Value::Null => Ok(Vec::new()),
        other => Ok(vec![other]),
    }
}

fn u64_arg(v: Option<&Value>, name: &str, default: u64) -> RpcResult<u64> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| invalid(format!("{name}: not a count"))),
        Some(Value::String(s)) => {
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            };
            parsed.ok_or_else(|| invalid(format!("{name}: not a count: {s}")))
        }
        Some(other) => Err(invalid(format!("{name}: not a count: {other}"))),
    }
}

/// CID bytes as text (base32 for v1), hex for bytes that are not a CID, empty for none.
pub fn cid_text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    match cid::Cid::try_from(bytes) {
        Ok(c) => c.to_string(),
        Err(_) => hex::encode_prefixed(bytes),
    }
}

/// A model as the namespace shows it.
pub fn model_json(reader: &Reader, m: &ModelView) -> Value {
    let pins = registry::pin_count(reader.node(), &m.latestRootCid).ok();
    let available = cid::Cid::try_from(m.latestRootCid.as_ref())
        .ok()
        .and_then(|c| reader.store().has(&c).ok())
        .unwrap_or(false);
    json!({
        "id": m.id,
        "name": m.name,
        "owner": m.owner,
        "format": m.format,
        "architecture": m.architecture,
        "rootCid": cid_text(&m.rootCid),
        "latestRootCid": cid_text(&m.latestRootCid),
        "latestManifestCid": cid_text(&m.latestManifestCid),
        "latestVersion": m.latest.to_string(),
        "price": m.price.to_string(),
        "revenue": m.revenue.to_string(),
        "createdAt": m.createdAt,
        "active": m.active,
        "private": m.isPrivate,
        "pinCount": pins,
        "availableHere": available,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InferParams {
    model: String,
    #[serde(default)]
    request: Option<Request>,
    #[serde(default)]
    document: Option<String>,
    #[serde(default)]
    tx: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

/// The document bytes of `request` or base64 `document` (exactly one).
fn document_of(request: Option<Request>, document: Option<String>) -> RpcResult<Vec<u8>> {
    match (request, document) {
        (Some(r), None) => Ok(r.to_bytes()),
        (None, Some(d)) => BASE64
            .decode(d.as_bytes())
            .map_err(|e| invalid(format!("document: not base64: {e}"))),
        _ => Err(invalid(
            "pass exactly one of `request` (an object) and `document` (base64 bytes)",
        )),
    }
}

/// The whole namespace over `executor` (its reader's methods too), to merge into the
/// node's RPC server.
pub fn methods(executor: Arc<Executor>) -> jsonrpsee::Methods {
    let mut all: jsonrpsee::Methods = read_methods(Arc::clone(executor.reader())).into();
    let mut m = RpcModule::new(executor);
    register_executor(&mut m).unwrap_or_else(|e| panic!("lattice_* method names collide: {e}"));
    all.merge(m)
        .unwrap_or_else(|e| panic!("lattice_* method names collide: {e}"));
    all
}

/// The read-only methods, for a node without an executor.
pub fn read_methods(reader: Arc<Reader>) -> RpcModule<Arc<Reader>> {
    let mut m = RpcModule::new(reader);
    register_reads(&mut m).unwrap_or_else(|e| panic!("lattice_* method names collide: {e}"));
    m
}

fn register_reads(
    m: &mut RpcModule<Arc<Reader>>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    m.register_blocking_method(
        "lattice_listModels",
        |params, reader, _| -> RpcResult<Value> {
            let a = args(&params)?;
            let offset = u64_arg(a.first(), "offset", 0)?;
            let limit = u64_arg(a.get(1), "limit", 100)?.min(MAX_LIST);
            let models = registry::list_models(reader.node(), offset, limit).map_err(rpc_error)?;
            Ok(Value::Array(
                models.iter().map(|m| model_json(&reader, m)).collect(),
            ))
        },
    )?;

    m.register_blocking_method(
        "lattice_getModel",
        |params, reader, _| -> RpcResult<Value> {
            let a = args(&params)?;
            let Some(what) = a.first().and_then(Value::as_str) else {
                return Err(invalid("pass the model: an id, a name or a root CID"));
            };
            let model = registry::find_model(reader.node(), what).map_err(rpc_error)?;
            let mut out = model_json(&reader, &model);
            let latest: u64 = model.latest.saturating_to();
            let mut versions = Vec::new();
            for v in 0..=latest {
                let ver = registry::get_version(reader.node(), model.id, v).map_err(rpc_error)?;
                versions.push(json!({
                    "version": v,
                    "rootCid": cid_text(&ver.rootCid),
                    "manifestCid": cid_text(&ver.manifestCid),
                    "addedAt": ver.addedAt,
                    "pinCount": registry::pin_count(reader.node(), &ver.rootCid).ok(),
                }));
            }
            out["versions"] = Value::Array(versions);
            Ok(out)
        },
    )?;

    m.register_blocking_method(
        "lattice_getRequest",
        |params, reader, _| -> RpcResult<Value> {
            let a = args(&params)?;
            let hash: B256 = a
                .first()
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| invalid("pass the input hash (0x + 64 hex digits)"))?;
            let cid = content::raw_cid(hash);
            if !reader.store().has(&cid).map_err(|e| rpc_error(e.into()))? {
                return Err(invalid(format!(
                    "request document {cid} is not on this node"
                )));
            }
            let doc = reader
                .store()
                .block(&cid)
                .map_err(|e| rpc_error(e.into()))?;
            Ok(json!({
                "inputHash": hash,
                "cid": cid.to_string(),
                "document": BASE64.encode(&doc),
                "request": Request::from_bytes(&doc).ok(),
            }))
        },
    )?;

    m.register_async_method("lattice_getReceipt", |params, reader, _| async move {
        let a = args(&params)?;
        let id = U256::from(u64_arg(a.first(), "requestId", u64::MAX)?);
        if id == U256::from(u64::MAX) {
            return Err(invalid("pass the request id"));
        }
        let answer = reader.answer(id).await.map_err(rpc_error)?;
        serde_json::to_value(answer).map_err(|e| invalid(e.to_string()))
    })?;

    m.register_blocking_method(
        "lattice_verifyReceipt",
        |params, reader, _| -> RpcResult<Value> {
            let a = args(&params)?;
            let signed: SignedReceipt =
                serde_json::from_value(a.into_iter().next().unwrap_or(Value::Null))
                    .map_err(|e| invalid(format!("not a signed receipt: {e}")))?;
            verify(&reader, &signed).map_err(rpc_error)
        },
    )?;
    Ok(())
}

fn register_executor(
    m: &mut RpcModule<Arc<Executor>>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    m.register_blocking_method("lattice_putRequest", |params, ex, _| -> RpcResult<Value> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Put {
            #[serde(default)]
            request: Option<Request>,
            #[serde(default)]
            document: Option<String>,
        }
        let a = args(&params)?;
        let put: Put = serde_json::from_value(a.into_iter().next().unwrap_or(Value::Null))
            .map_err(|e| invalid(format!("expected {{\"request\": {{…}}}} or {{\"document\": \"<base64>\"}}: {e}")))?;
        let doc = document_of(put.request, put.document)?;
        let hash = ex.put_request(&doc).map_err(rpc_error)?;
        Ok(json!({"inputHash": hash, "cid": content::raw_cid(hash).to_string(), "bytes": doc.len()}))
    })?;

    m.register_async_method("lattice_infer", |params, ex, _| async move {
        let a = args(&params)?;
        let p: InferParams = serde_json::from_value(a.into_iter().next().unwrap_or(Value::Null))
            .map_err(|e| {
                invalid(format!(
                    "expected {{\"model\", \"request\" | \"document\", \"tx\"?}}: {e}"
                ))
            })?;
        let doc = document_of(p.request, p.document)?;
        let ex2 = Arc::clone(&ex);
        let what = p.model.clone();
        let model = tokio::task::spawn_blocking(move || registry::find_model(ex2.node(), &what))
            .await
            .map_err(|e| invalid(e.to_string()))?
            .map_err(rpc_error)?;
        let Some(tx) = p.tx else {
            let answer = ex.free_call(&model, &doc).await.map_err(rpc_error)?;
            return serde_json::to_value(answer).map_err(|e| invalid(e.to_string()));
        };
        let raw = hex::decode(tx.trim()).map_err(|e| invalid(format!("tx: not hex: {e}")))?;
        let input_hash = ex.put_request(&doc).map_err(rpc_error)?;
        let hash = ex
            .submit_request_tx(&raw, model.id, input_hash)
            .map_err(rpc_error)?;
        let wait = p.timeout_secs.map_or(DEFAULT_WAIT, Duration::from_secs);
        let id = ex.wait_request_id(hash, wait).await.map_err(rpc_error)?;
        let answer = ex.wait_settled(id, wait).await.map_err(rpc_error)?;
        let mut v = serde_json::to_value(answer).map_err(|e| invalid(e.to_string()))?;
        v["requestTx"] = json!(hash);
        Ok::<Value, ErrorObjectOwned>(v)
    })?;

    Ok(())
}

/// Every check of a receipt this node can make without re-running the model.
pub fn verify(reader: &Reader, signed: &SignedReceipt) -> Result<Value, ExecutorError> {
    let mut problems = Vec::new();
    let signer = signed.signer().ok();
    let signature_valid = signer == Some(signed.receipt.executor);
    if !signature_valid {
        problems.push(match signer {
            Some(s) => format!(
                "signed by {s}, not by the executor it names ({})",
                signed.receipt.executor
            ),
            None => "the signature does not recover".to_string(),
        });
    }
    if signed.chain_id != reader.chain_id()
        || signed.verifying_contract != lattice_evm::MODEL_REGISTRY_ADDRESS
    {
        problems.push(format!(
            "signed for chain {} / registry {}, this node is chain {} / registry {}",
            signed.chain_id,
            signed.verifying_contract,
            reader.chain_id(),
            lattice_evm::MODEL_REGISTRY_ADDRESS
        ));
    }
    let role = registry::is_executor(reader.node(), signed.receipt.executor)?;
    if !role {
        problems.push(format!(
            "{} does not hold EXECUTOR_ROLE",
            signed.receipt.executor
        ));
    }
    let id = signed.receipt.requestId;
    let on_chain = if id.is_zero() {
        Value::Null
    } else {
        let r = registry::get_request(reader.node(), id)?;
        if r.status != status::FULFILLED {
            problems.push(format!(
                "request {id} is {}, not fulfilled",
                status::name(r.status)
            ));
        } else {
            if r.outputHash != signed.receipt.outputHash {
                problems.push(format!(
                    "the chain records output hash {} for request {id}, the receipt {}",
                    r.outputHash, signed.receipt.outputHash
                ));
            }
            if r.executor != signed.receipt.executor {
                problems.push(format!("request {id} was fulfilled by {}", r.executor));
            }
        }
        if r.inputHash != signed.receipt.inputHash || r.modelId != signed.receipt.modelId {
            problems.push(format!("request {id} was for another model or input"));
        }
        json!({"status": status::name(r.status), "outputHash": r.outputHash, "executor": r.executor})
    };
    Ok(json!({
        "valid": problems.is_empty(),
        "signer": signer,
        "signatureValid": signature_valid,
        "executorHasRole": role,
        "request": on_chain,
        "problems": problems,
    }))
}
