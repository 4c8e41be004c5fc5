//! Execution receipts: what an executor ran and what came out, signed as EIP-712 typed data
//! (domain `Lattice` version `1`, the chain id, the registry as verifying contract), so that
//! anyone can check who vouched for an output and, by re-running the model on the input,
//! whether the output is right.

use alloy_primitives::{Address, B256, Bytes, Signature, U256};
use alloy_sol_types::{Eip712Domain, SolStruct, SolValue, eip712_domain};
use serde::{Deserialize, Serialize};

use crate::error::ExecutorError;

alloy_sol_types::sol! {
    /// One inference as its executor vouches for it (the EIP-712 primary type).
    ///
    /// - `executor`: the account that ran it and signs;
    /// - `requestId`: the registry's request (0 for a free call answered off chain);
    /// - `modelId`, `modelCid`: the model and the root CID of the version that ran;
    /// - `inputHash`: sha256 of the request document;
    /// - `outputHash`: sha256 of the canonical outputs document;
    /// - `outputCid`: where the outputs document is (an identity CID holds it inline);
    /// - `blockNumber`, `blockHash`: the block the request was made in (the head, for a free
    ///   call), which fixes the model version and price it ran under;
    /// - `runtime`: the runtime and its version (`lattice-runtime/0.1.0 candle-cpu x86_64`).
    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct InferenceReceipt {
        address executor;
        uint256 requestId;
        bytes32 modelId;
        bytes modelCid;
        bytes32 inputHash;
        bytes32 outputHash;
        bytes outputCid;
        uint64 blockNumber;
        bytes32 blockHash;
        string runtime;
    }
}

/// The EIP-712 domain receipts of `chain_id` are signed in.
pub fn domain(chain_id: u64, registry: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Lattice",
        version: "1",
        chain_id: chain_id,
        verifying_contract: registry,
    }
}

/// A receipt, its signature and the domain it was signed in: the JSON form
/// (`{"receipt": {…}, "signature": "0x…", "chainId": …, "verifyingContract": "0x…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedReceipt {
    /// What was run.
    pub receipt: InferenceReceipt,
    /// 65 bytes: r, s, v (27/28).
    pub signature: Bytes,
    /// The domain's chain id.
    pub chain_id: u64,
    /// The domain's verifying contract (the registry).
    pub verifying_contract: Address,
}

impl SignedReceipt {
    /// Signs `receipt` with `key` (which must be `receipt.executor`'s).
    pub fn sign(
        receipt: InferenceReceipt,
        key: B256,
        chain_id: u64,
        registry: Address,
    ) -> Result<Self, ExecutorError> {
        let hash = receipt.eip712_signing_hash(&domain(chain_id, registry));
        let sig = alloy_consensus::crypto::secp256k1::sign_message(key, hash)
            .map_err(|e| ExecutorError::Key(e.to_string()))?;
        let signed = Self {
            receipt,
            signature: Bytes::copy_from_slice(&sig.as_bytes()),
            chain_id,
            verifying_contract: registry,
        };
        let signer = signed.signer()?;
        if signer != signed.receipt.executor {
            return Err(ExecutorError::Key(format!(
                "the key is {signer}'s, but the receipt names executor {}",
                signed.receipt.executor
            )));
        }
        Ok(signed)
    }

    /// The EIP-712 hash that was signed.
    pub fn signing_hash(&self) -> B256 {
        self.receipt
            .eip712_signing_hash(&domain(self.chain_id, self.verifying_contract))
    }

    /// The account whose key made the signature.
    pub fn signer(&self) -> Result<Address, ExecutorError> {
        let sig = Signature::from_raw(&self.signature)
            .map_err(|e| ExecutorError::BadReceipt(format!("signature: {e}")))?;
        alloy_consensus::crypto::secp256k1::recover_signer(&sig, self.signing_hash())
            .map_err(|e| ExecutorError::BadReceipt(format!("signature does not recover: {e}")))
    }

    /// Checks the signature is the named executor's.
    pub fn check_signature(&self) -> Result<(), ExecutorError> {
        let signer = self.signer()?;
        if signer != self.receipt.executor {
            return Err(ExecutorError::BadReceipt(format!(
                "signed by {signer}, not by the executor it names ({})",
                self.receipt.executor
            )));
        }
        Ok(())
    }

    /// The bytes posted on chain with the fulfilment: `abi.encode(receipt, signature)`.
    pub fn to_abi(&self) -> Bytes {
        (self.receipt.clone(), self.signature.clone())
            .abi_encode_params()
            .into()
    }

    /// Reads [`SignedReceipt::to_abi`]'s bytes, as posted on chain `chain_id` whose registry
    /// is `registry`.
    pub fn from_abi(bytes: &[u8], chain_id: u64, registry: Address) -> Result<Self, ExecutorError> {
        let (receipt, signature) = <(InferenceReceipt, Bytes)>::abi_decode_params(bytes)
            .map_err(|e| ExecutorError::BadReceipt(format!("not an ABI-encoded receipt: {e}")))?;
        Ok(Self {
            receipt,
            signature,
            chain_id,
            verifying_contract: registry,
        })
    }

    /// The request id as a number (0 for a free call).
    pub fn request_id(&self) -> U256 {
        self.receipt.requestId
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(executor: Address) -> InferenceReceipt {
        InferenceReceipt {
            executor,
            requestId: U256::from(7),
            modelId: B256::repeat_byte(1),
            modelCid: Bytes::from_static(b"\x01\x70\x12\x20root"),
            inputHash: B256::repeat_byte(2),
            outputHash: B256::repeat_byte(3),
            outputCid: Bytes::from_static(b"\x01\x55\x00\x02{}"),
            blockNumber: 12,
            blockHash: B256::repeat_byte(4),
            runtime: "lattice-runtime/0.1.0".into(),
        }
    }

    #[test]
    fn signed_receipts_recover_their_executor_and_survive_both_encodings() {
        let acct = lattice_evm::DEV_ACCOUNTS[9];
        let registry = lattice_evm::MODEL_REGISTRY_ADDRESS;
        let signed = SignedReceipt::sign(receipt(acct.address), acct.private_key, 31337, registry)
            .expect("sign");
        signed.check_signature().expect("valid");
        assert_eq!(signed.signer().expect("signer"), acct.address);

        let json = serde_json::to_string(&signed).expect("json");
        let back: SignedReceipt = serde_json::from_str(&json).expect("parse json");
        assert_eq!(back, signed);
        let abi = signed.to_abi();
        let back = SignedReceipt::from_abi(&abi, 31337, registry).expect("abi");
        assert_eq!(back, signed);
        assert!(SignedReceipt::from_abi(&abi[..abi.len() - 40], 31337, registry).is_err());

        // Any changed field, or another domain, breaks the signature.
        let mut forged = signed.clone();
        forged.receipt.outputHash = B256::repeat_byte(9);
        assert!(forged.check_signature().is_err());
        let mut other_chain = signed.clone();
        other_chain.chain_id = 1;
        assert!(other_chain.check_signature().is_err());
        let mut junk = signed.clone();
        junk.signature = Bytes::from_static(b"short");
        assert!(junk.check_signature().is_err());
        // A key that is not the executor's cannot sign for it.
        let other = lattice_evm::DEV_ACCOUNTS[1];
        assert!(
            SignedReceipt::sign(receipt(acct.address), other.private_key, 31337, registry).is_err()
        );
    }
}
