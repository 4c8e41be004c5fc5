//! Reads of `ModelRegistry` and `IPFSIncentives` on the node's own state (no RPC round trip).

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{SolCall, SolInterface};
use lattice_chain::Node;
use lattice_contracts::{IPFSIncentives, ModelRegistry, model_id};
use lattice_evm::{CallOutcome, CallRequest, IPFS_INCENTIVES_ADDRESS, MODEL_REGISTRY_ADDRESS};

use crate::error::ExecutorError;

/// A registered model as the registry shows it.
pub type ModelView = ModelRegistry::ModelView;

/// `ModelRegistry.Status` of a request.
pub mod status {
    /// Never made.
    pub const NONE: u8 = 0;
    /// Waiting for an executor.
    pub const PENDING: u8 = 1;
    /// Answered.
    pub const FULFILLED: u8 = 2;
    /// Refunded (by timeout, or rejected by an executor).
    pub const REFUNDED: u8 = 3;

    /// The status as a word.
    pub fn name(s: u8) -> &'static str {
        match s {
            PENDING => "pending",
            FULFILLED => "fulfilled",
            REFUNDED => "refunded",
            _ => "none",
        }
    }
}

/// Calls `call` on `to` at the head; a revert comes back as its data.
fn raw_call<C: SolCall>(
    node: &Node,
    to: Address,
    call: &C,
) -> Result<Result<C::Return, Vec<u8>>, ExecutorError> {
    raw_call_at(node, None, to, call)
}

/// Calls `call` on `to` after block `at` (`None`: the head).
fn raw_call_at<C: SolCall>(
    node: &Node,
    at: Option<u64>,
    to: Address,
    call: &C,
) -> Result<Result<C::Return, Vec<u8>>, ExecutorError> {
    let req = CallRequest {
        to: Some(to),
        input: call.abi_encode().into(),
        ..Default::default()
    };
    let err = |reason: String| ExecutorError::Registry {
        call: C::SIGNATURE.split('(').next().unwrap_or("call"),
        reason,
    };
    match node
        .call_at(at, &req, &Default::default())
        .map_err(|e| err(e.to_string()))?
    {
        CallOutcome::Success { output, .. } => C::abi_decode_returns(&output)
            .map(Ok)
            .map_err(|e| err(format!("undecodable answer: {e}"))),
        CallOutcome::Revert { output, .. } => Ok(Err(output.to_vec())),
        other => Err(err(format!("{other:?}"))),
    }
}

/// Calls a registry view that must not revert.
fn registry<C: SolCall>(node: &Node, call: C) -> Result<C::Return, ExecutorError> {
    raw_call(node, MODEL_REGISTRY_ADDRESS, &call)?.map_err(|data| ExecutorError::Registry {
        call: C::SIGNATURE.split('(').next().unwrap_or("call"),
        reason: revert_reason(&data),
    })
}

/// A registry revert's custom error by name (`UnknownModel(0x…)`), else its hex.
pub fn revert_reason(data: &[u8]) -> String {
    match ModelRegistry::ModelRegistryErrors::abi_decode(data) {
        Ok(e) => format!("{e:?}"),
        Err(_) => format!("reverted with 0x{}", alloy_primitives::hex::encode(data)),
    }
}

/// `getModel(id)`; `None` for an unknown id.
pub fn get_model(node: &Node, id: B256) -> Result<Option<ModelView>, ExecutorError> {
    get_model_at(node, id, None)
}

/// `getModel(id)` after block `at` (`None`: the head); `None` for an unknown id.
pub fn get_model_at(
    node: &Node,
    id: B256,
    at: Option<u64>,
) -> Result<Option<ModelView>, ExecutorError> {
    match raw_call_at(
        node,
        at,
        MODEL_REGISTRY_ADDRESS,
        &ModelRegistry::getModelCall { modelId: id },
    )? {
        Ok(m) => Ok(Some(m)),
        Err(data) => match ModelRegistry::ModelRegistryErrors::abi_decode(&data) {
            Ok(ModelRegistry::ModelRegistryErrors::UnknownModel(_)) => Ok(None),
            _ => Err(ExecutorError::Registry {
                call: "getModel",
                reason: revert_reason(&data),
            }),
        },
    }
}

/// Models in registration order, `limit` from `offset`.
pub fn list_models(node: &Node, offset: u64, limit: u64) -> Result<Vec<ModelView>, ExecutorError> {
    registry(
        node,
        ModelRegistry::listModelsCall {
            offset: U256::from(offset),
            limit: U256::from(limit),
        },
    )
}

/// How many models are registered.
pub fn model_count(node: &Node) -> Result<u64, ExecutorError> {
    let n = registry(node, ModelRegistry::modelCountCall {})?;
    Ok(n.saturating_to())
}

/// A version's root and manifest CIDs.
pub fn get_version(
    node: &Node,
    id: B256,
    version: u64,
) -> Result<ModelRegistry::Version, ExecutorError> {
    registry(
        node,
        ModelRegistry::getVersionCall {
            modelId: id,
            version: U256::from(version),
        },
    )
}

/// `getRequest(id)` (status [`status::NONE`] when there is none).
pub fn get_request(node: &Node, id: U256) -> Result<ModelRegistry::Request, ExecutorError> {
    registry(node, ModelRegistry::getRequestCall { requestId: id })
}

/// Whether `account` holds `EXECUTOR_ROLE`.
pub fn is_executor(node: &Node, account: Address) -> Result<bool, ExecutorError> {
    registry(
        node,
        ModelRegistry::hasRoleCall {
            role: lattice_contracts::EXECUTOR_ROLE,
            account,
        },
    )
}

/// Whether `account` may request inferences of model `id` (public, owner, or granted).
pub fn has_access(node: &Node, id: B256, account: Address) -> Result<bool, ExecutorError> {
    registry(
        node,
        ModelRegistry::hasAccessCall {
            modelId: id,
            account,
        },
    )
}

/// How many accounts announce pinning `cid` (IPFSIncentives `pinCount`).
pub fn pin_count(node: &Node, cid: &[u8]) -> Result<u64, ExecutorError> {
    let call = IPFSIncentives::pinCountCall(alloy_primitives::keccak256(cid));
    match raw_call(node, IPFS_INCENTIVES_ADDRESS, &call)? {
        Ok(n) => Ok(n.saturating_to()),
        Err(data) => Err(ExecutorError::Registry {
            call: "pinCount",
            reason: format!("reverted with 0x{}", alloy_primitives::hex::encode(data)),
        }),
    }
}

/// Whether `account` announced pinning `cid` (IPFSIncentives `isPinning`).
pub fn is_pinning(node: &Node, cid: &[u8], account: Address) -> Result<bool, ExecutorError> {
    let call = IPFSIncentives::isPinningCall {
        _0: alloy_primitives::keccak256(cid),
        _1: account,
    };
    raw_call(node, IPFS_INCENTIVES_ADDRESS, &call)?.map_err(|data| ExecutorError::Registry {
        call: "isPinning",
        reason: format!("reverted with 0x{}", alloy_primitives::hex::encode(data)),
    })
}

/// Models scanned per `listModels` call when searching by name or later CID.
const SCAN_PAGE: u64 = 200;

/// The model `what` names: an id (0x + 64 hex), a root CID (its first version's, else any
/// model's latest), or a unique name — as `lattice model info` resolves it.
pub fn find_model(node: &Node, what: &str) -> Result<ModelView, ExecutorError> {
    let what = what.trim();
    if what.starts_with("0x") && what.len() == 66 {
        let id: B256 = what.parse().map_err(|_| {
            ExecutorError::UnknownModel(format!("{what}: not a model id (0x + 64 hex digits)"))
        })?;
        return get_model(node, id)?.ok_or_else(|| {
            ExecutorError::UnknownModel(format!("no model with id {id} in the registry"))
        });
    }
    let cid = what.parse::<cid::Cid>().ok();
    if let Some(cid) = &cid
        && let Some(m) = get_model(node, model_id(&cid.to_bytes()))?
    {
        return Ok(m);
    }
    let cid_bytes = cid.map(|c| c.to_bytes());
    let mut found = Vec::new();
    let mut offset = 0;
    loop {
        let page = list_models(node, offset, SCAN_PAGE)?;
        let n = page.len() as u64;
        found.extend(page.into_iter().filter(|m| match &cid_bytes {
            Some(b) => m.latestRootCid.as_ref() == b.as_slice(),
            None => m.name == what,
        }));
        if n < SCAN_PAGE {
            break;
        }
        offset += n;
    }
    match found.len() {
        0 if cid_bytes.is_some() => Err(ExecutorError::UnknownModel(format!(
            "no model in the registry has root CID {what}"
        ))),
        0 => Err(ExecutorError::UnknownModel(format!(
            "no model named {what:?} in the registry"
        ))),
        1 => Ok(found.remove(0)),
        n => Err(ExecutorError::UnknownModel(format!(
            "{n} models are named {what:?}; name one by id: {}",
            found
                .iter()
                .map(|m| m.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
