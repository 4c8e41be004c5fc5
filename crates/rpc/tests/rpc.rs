//! The JSON-RPC server end to end: a real node in a temp dir, the server on
//! 127.0.0.1:0, raw JSON over HTTP (so field names and hex encodings are
//! asserted exactly) and a real WebSocket client for subscriptions.

use std::sync::Arc;
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address, hex, keccak256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use jsonrpsee::core::client::{Subscription, SubscriptionClientT};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::WsClientBuilder;
use lattice_chain::{Node, NodeConfig, dev::seal_block};
use lattice_contracts::{ModelRegistry, model_id};
use lattice_evm::{DEV_ACCOUNTS, Genesis, GenesisAlloc, MODEL_REGISTRY_ADDRESS};
use lattice_rpc::{RpcConfig, RpcServer};
use serde_json::{Value, json};

const CHAIN_ID: u64 = 31337;
const GWEI: u128 = 1_000_000_000;
/// Holds code that always reverts with `Error("boom")`.
const REVERTER: Address = address!("0x00000000000000000000000000000000000bad00");

/// Runtime code: copy the 100 bytes of `Error("boom")` revert data that
/// follow this 12-byte prefix into memory and revert with them.
fn reverter_code() -> Bytes {
    let mut code = hex::decode("6064600c60003960646000fd").expect("hex");
    code.extend_from_slice(&boom_revert_data());
    code.into()
}

fn boom_revert_data() -> Vec<u8> {
    let mut data = keccak256("Error(string)")[..4].to_vec();
    data.extend_from_slice(&"boom".to_string().abi_encode());
    data
}

fn genesis() -> Genesis {
    let mut g = lattice_chain::dev_genesis(CHAIN_ID, 30_000_000);
    g.alloc.insert(
        REVERTER,
        GenesisAlloc {
            code: reverter_code(),
            storage: [(B256::with_last_byte(1), B256::with_last_byte(0xef))].into(),
            ..Default::default()
        },
    );
    g
}

struct Harness {
    node: Arc<Node>,
    server: RpcServer,
    http: reqwest::Client,
    url: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Self {
        Self::with_config(RpcConfig::default()).await
    }

    async fn with_config(config: RpcConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Arc::new(
            Node::open(
                &dir.path().join("chain.redb"),
                &genesis(),
                NodeConfig::dev(),
            )
            .expect("open node"),
        );
        let server = lattice_rpc::start(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::clone(&node),
            config,
        )
        .await
        .expect("start server");
        let url = format!("http://{}", server.local_addr());
        Self {
            node,
            server,
            http: reqwest::Client::new(),
            url,
            _dir: dir,
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}", self.server.local_addr())
    }

    async fn post(&self, body: &Value) -> Value {
        self.http
            .post(&self.url)
            .json(body)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json body")
    }

    /// The full response of one call.
    async fn response(&self, method: &str, params: Value) -> Value {
        self.post(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .await
    }

    /// The result of a call that must succeed.
    async fn call(&self, method: &str, params: Value) -> Value {
        let rp = self.response(method, params).await;
        assert!(rp.get("error").is_none(), "{method} failed: {rp}");
        rp["result"].clone()
    }

    /// The error object of a call that must fail.
    async fn error(&self, method: &str, params: Value) -> Value {
        let rp = self.response(method, params).await;
        assert!(rp.get("result").is_none(), "{method} succeeded: {rp}");
        rp["error"].clone()
    }

    async fn send(&self, tx: &TxEnvelope) -> B256 {
        let hash = self.call("eth_sendRawTransaction", json!([raw(tx)])).await;
        assert_eq!(hash, json!(tx.tx_hash()));
        *tx.tx_hash()
    }

    fn seal(&self) -> u64 {
        seal_block(&self.node).expect("seal").0
    }
}

fn raw(tx: &TxEnvelope) -> String {
    hex::encode_prefixed(tx.encoded_2718())
}

struct Tx {
    key: usize,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas: u64,
    max_fee: u128,
    tip: u128,
    chain_id: u64,
}

impl Tx {
    fn transfer(key: usize, nonce: u64, to: Address, value: u64) -> Self {
        Self {
            key,
            nonce,
            to: TxKind::Call(to),
            value: U256::from(value),
            input: Bytes::new(),
            gas: 21_000,
            max_fee: 10 * GWEI,
            tip: GWEI,
            chain_id: CHAIN_ID,
        }
    }

    fn call(key: usize, nonce: u64, to: Address, input: Vec<u8>) -> Self {
        Self {
            input: input.into(),
            gas: 1_000_000,
            ..Self::transfer(key, nonce, to, 0)
        }
    }

    fn sign(self) -> TxEnvelope {
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit: self.gas,
            max_fee_per_gas: self.max_fee,
            max_priority_fee_per_gas: self.tip,
            to: self.to,
            value: self.value,
            access_list: Default::default(),
            input: self.input,
        };
        let sig = alloy_consensus::crypto::secp256k1::sign_message(
            DEV_ACCOUNTS[self.key].private_key,
            tx.signature_hash(),
        )
        .expect("sign");
        tx.into_signed(sig).into()
    }
}

fn register_call(root: &[u8]) -> Vec<u8> {
    ModelRegistry::registerModelCall {
        rootCid: Bytes::copy_from_slice(root),
        manifestCid: Bytes::from_static(b"manifest"),
        name: "tiny".into(),
        format: "safetensors".into(),
        architecture: "bert".into(),
        price: U256::from(1000),
        isPrivate: false,
    }
    .abi_encode()
}

fn hex_u64(v: &Value) -> u64 {
    let s = v.as_str().expect("hex string");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex quantity")
}

fn padded(a: Address) -> String {
    format!("{}", B256::left_padding_from(a.as_slice()))
}

/// A consensus node that heard of finalized block 5 while at 0 is catching up
/// (`eth_syncing` names the gap); one block behind is not; at the height, nothing is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_syncing_reports_a_node_catching_up() {
    let h = Harness::start().await;
    h.node.saw_finalized(5);
    assert_eq!(
        h.call("eth_syncing", json!([])).await,
        json!({"startingBlock": "0x0", "currentBlock": "0x0", "highestBlock": "0x5"})
    );
    h.seal();
    h.seal();
    assert_eq!(
        h.call("eth_syncing", json!([])).await,
        json!({"startingBlock": "0x0", "currentBlock": "0x2", "highestBlock": "0x5"})
    );
    h.seal();
    h.seal();
    assert_eq!(
        h.call("eth_syncing", json!([])).await,
        json!(false),
        "4 of 5"
    );
    h.seal();
    h.node.saw_finalized(5);
    assert_eq!(h.call("eth_syncing", json!([])).await, json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web3_net_and_chain_constants() {
    let h = Harness::start().await;
    assert_eq!(
        h.call("web3_clientVersion", json!([])).await,
        json!(concat!("lattice/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(
        h.call("web3_sha3", json!(["0x68656c6c6f"])).await,
        json!(keccak256("hello"))
    );
    assert_eq!(h.call("net_version", json!([])).await, json!("31337"));
    assert_eq!(h.call("net_listening", json!([])).await, json!(true));
    assert_eq!(h.call("net_peerCount", json!([])).await, json!("0x0"));
    assert_eq!(h.call("eth_chainId", json!([])).await, json!("0x7a69"));
    assert_eq!(h.call("eth_blockNumber", json!([])).await, json!("0x0"));
    assert_eq!(h.call("eth_syncing", json!([])).await, json!(false));
    assert_eq!(h.call("eth_accounts", json!([])).await, json!([]));
    assert_eq!(
        h.call("eth_coinbase", json!([])).await,
        json!("0x0000000000000000000000000000000000000000")
    );
    // Genesis: 1 gwei base fee and nothing used, so the next is 7/8 of it;
    // plus the 1 gwei suggested tip.
    assert_eq!(
        hex_u64(&h.call("eth_gasPrice", json!([])).await),
        875_000_000 + 1_000_000_000
    );
    assert_eq!(
        h.call("eth_maxPriorityFeePerGas", json!([])).await,
        json!("0x3b9aca00")
    );
    // Parameters may be omitted entirely.
    let rp = h
        .post(&json!({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId"}))
        .await;
    assert_eq!(rp, json!({"jsonrpc": "2.0", "id": 7, "result": "0x7a69"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_from_pool_to_block() {
    let h = Harness::start().await;
    let from = DEV_ACCOUNTS[0].address;
    let to = address!("0x1000000000000000000000000000000000000001");
    let tx = Tx::transfer(0, 0, to, 12345).sign();
    let hash = h.send(&tx).await;

    // Pooled: no block fields, gasPrice is the fee cap.
    let pending = h.call("eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(pending["hash"], json!(hash));
    assert_eq!(pending["from"], json!(from));
    assert_eq!(pending["to"], json!(to));
    assert_eq!(pending["blockHash"], Value::Null);
    assert_eq!(pending["blockNumber"], Value::Null);
    assert_eq!(pending["transactionIndex"], Value::Null);
    assert_eq!(pending["gasPrice"], json!("0x2540be400"));
    assert_eq!(pending["type"], json!("0x2"));
    assert_eq!(pending["value"], json!("0x3039"));
    assert_eq!(
        h.call("eth_getTransactionCount", json!([from, "pending"]))
            .await,
        json!("0x1")
    );
    assert_eq!(
        h.call("eth_getTransactionCount", json!([from, "latest"]))
            .await,
        json!("0x0")
    );
    assert_eq!(
        h.call("eth_getTransactionReceipt", json!([hash])).await,
        Value::Null
    );

    assert_eq!(h.seal(), 1);
    assert_eq!(h.call("eth_blockNumber", json!([])).await, json!("0x1"));

    let block = h.call("eth_getBlockByNumber", json!(["0x1", false])).await;
    let block_hash = block["hash"].clone();
    assert_eq!(block["number"], json!("0x1"));
    assert_eq!(block["transactions"], json!([hash]));
    assert_eq!(block["uncles"], json!([]));
    assert_eq!(block["withdrawals"], json!([]));
    assert!(block["withdrawalsRoot"].is_string(), "{block}");
    assert_eq!(block["baseFeePerGas"], json!("0x342770c0")); // 875,000,000
    assert_eq!(block["gasUsed"], json!("0x5208"));
    assert_eq!(block["gasLimit"], json!("0x11e1a300")); // 300M
    assert_eq!(
        block["sha3Uncles"],
        json!("0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
    );
    // Size is the RLP length of the whole block.
    let header = h.node.header(1).expect("read").expect("header");
    let consensus = alloy_consensus::Block {
        header,
        body: alloy_consensus::BlockBody {
            transactions: vec![tx.clone()],
            ommers: vec![],
            withdrawals: Some(Default::default()),
        },
    };
    assert_eq!(
        hex_u64(&block["size"]),
        alloy_rlp::encode(&consensus).len() as u64
    );
    assert_eq!(block_hash, json!(consensus.header.hash_slow()));

    for tag in ["latest", "safe", "finalized", "pending"] {
        let b = h.call("eth_getBlockByNumber", json!([tag, false])).await;
        assert_eq!(b["hash"], block_hash, "{tag}");
    }
    let genesis = h
        .call("eth_getBlockByNumber", json!(["earliest", false]))
        .await;
    assert_eq!(genesis["number"], json!("0x0"));
    assert_eq!(block["parentHash"], genesis["hash"]);
    assert_eq!(
        h.call("eth_getBlockByNumber", json!(["0x2", false])).await,
        Value::Null
    );
    assert_eq!(
        h.call("eth_getBlockByHash", json!([B256::repeat_byte(7), false]))
            .await,
        Value::Null
    );

    // Full transactions, by hash.
    let full = h
        .call("eth_getBlockByHash", json!([block_hash, true]))
        .await;
    assert_eq!(full["number"], json!("0x1"));
    let t = &full["transactions"][0];
    assert_eq!(t["hash"], json!(hash));
    assert_eq!(t["blockHash"], block_hash);
    assert_eq!(t["blockNumber"], json!("0x1"));
    assert_eq!(t["transactionIndex"], json!("0x0"));
    // Effective price: base fee + tip.
    assert_eq!(hex_u64(&t["gasPrice"]), 875_000_000 + 1_000_000_000);

    let included = h.call("eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(&included, t);
    assert_eq!(
        h.call(
            "eth_getTransactionByBlockNumberAndIndex",
            json!(["0x1", "0x0"])
        )
        .await,
        included
    );
    assert_eq!(
        h.call(
            "eth_getTransactionByBlockHashAndIndex",
            json!([block_hash, "0x0"])
        )
        .await,
        included
    );
    assert_eq!(
        h.call(
            "eth_getTransactionByBlockNumberAndIndex",
            json!(["0x1", "0x1"])
        )
        .await,
        Value::Null
    );
    assert_eq!(
        h.call("eth_getTransactionByHash", json!([B256::repeat_byte(9)]))
            .await,
        Value::Null
    );
    assert_eq!(
        h.call("eth_getBlockTransactionCountByNumber", json!(["0x1"]))
            .await,
        json!("0x1")
    );
    assert_eq!(
        h.call("eth_getBlockTransactionCountByHash", json!([block_hash]))
            .await,
        json!("0x1")
    );
    assert_eq!(
        h.call("eth_getBlockTransactionCountByNumber", json!(["0x9"]))
            .await,
        Value::Null
    );
    assert_eq!(
        h.call("eth_getUncleCountByBlockNumber", json!(["0x1"]))
            .await,
        json!("0x0")
    );
    assert_eq!(
        h.call("eth_getUncleCountByBlockHash", json!([block_hash]))
            .await,
        json!("0x0")
    );
    assert_eq!(
        h.call("eth_getUncleByBlockNumberAndIndex", json!(["0x1", "0x0"]))
            .await,
        Value::Null
    );

    let receipt = h.call("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["status"], json!("0x1"));
    assert_eq!(receipt["type"], json!("0x2"));
    assert_eq!(receipt["transactionHash"], json!(hash));
    assert_eq!(receipt["transactionIndex"], json!("0x0"));
    assert_eq!(receipt["blockHash"], block_hash);
    assert_eq!(receipt["blockNumber"], json!("0x1"));
    assert_eq!(receipt["gasUsed"], json!("0x5208"));
    assert_eq!(receipt["cumulativeGasUsed"], json!("0x5208"));
    assert_eq!(receipt["effectiveGasPrice"], t["gasPrice"]);
    assert_eq!(receipt["from"], json!(from));
    assert_eq!(receipt["to"], json!(to));
    assert_eq!(receipt["contractAddress"], Value::Null);
    assert_eq!(receipt["logs"], json!([]));
    assert_eq!(
        receipt["logsBloom"],
        json!(format!("0x{}", "0".repeat(512)))
    );
    assert_eq!(
        h.call("eth_getBlockReceipts", json!(["latest"])).await,
        json!([receipt])
    );
    assert_eq!(
        h.call("eth_getBlockReceipts", json!([block_hash])).await,
        json!([receipt])
    );
    assert_eq!(
        h.call("eth_getBlockReceipts", json!(["0x5"])).await,
        Value::Null
    );

    // State at the head only.
    assert_eq!(
        h.call("eth_getBalance", json!([to, "latest"])).await,
        json!("0x3039")
    );
    assert_eq!(
        h.call("eth_getBalance", json!([to, "0x1"])).await,
        json!("0x3039")
    );
    assert_eq!(
        h.call("eth_getBalance", json!([to, {"blockHash": block_hash}]))
            .await,
        json!("0x3039")
    );
    assert_eq!(h.call("eth_getBalance", json!([to])).await, json!("0x3039"));
    // Past state is kept: before block 1 the recipient had nothing.
    assert_eq!(
        h.call("eth_getBalance", json!([to, "0x0"])).await,
        json!("0x0")
    );
    assert_eq!(
        h.call("eth_getTransactionCount", json!([from, "earliest"]))
            .await,
        json!("0x0")
    );
    let err = h.error("eth_getBalance", json!([to, "0x7"])).await;
    assert_eq!(err["message"], json!("header not found"));
    assert_eq!(
        h.call("eth_getTransactionCount", json!([from, "latest"]))
            .await,
        json!("0x1")
    );
    assert_eq!(
        h.call("eth_getTransactionCount", json!([from, "pending"]))
            .await,
        json!("0x1")
    );

    // The pool refuses a replay with geth's message.
    let err = h.error("eth_sendRawTransaction", json!([raw(&tx)])).await;
    assert_eq!(err["code"], json!(-32000));
    assert_eq!(
        err["message"],
        json!("nonce too low: next nonce 1, tx nonce 0")
    );
    let other_chain = Tx {
        chain_id: 1,
        ..Tx::transfer(0, 1, to, 1)
    }
    .sign();
    let err = h
        .error("eth_sendRawTransaction", json!([raw(&other_chain)]))
        .await;
    assert_eq!(err["code"], json!(-32000));
    assert_eq!(
        err["message"],
        json!("invalid chain id for signer: have 1 want 31337")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_registry_call_receipt_and_logs() {
    let h = Harness::start().await;
    let owner = DEV_ACCOUNTS[1].address;
    let root = b"\x01\x70\x12\x20model-root";
    let id = model_id(root);

    // A block with a real timestamp first: `registerModel` stores
    // `block.timestamp`, and the genesis timestamp is 0, which is cheaper to
    // store.
    h.seal();
    // Read-only: code, a view call, an estimate.
    assert_eq!(
        h.call("eth_getCode", json!([MODEL_REGISTRY_ADDRESS, "latest"]))
            .await,
        json!(ModelRegistry::DEPLOYED_BYTECODE)
    );
    let count_call = Bytes::from(ModelRegistry::modelCountCall {}.abi_encode());
    let before = h
        .call(
            "eth_call",
            json!([{"to": MODEL_REGISTRY_ADDRESS, "input": count_call}, "latest"]),
        )
        .await;
    assert_eq!(before, json!(B256::ZERO));
    let estimate = hex_u64(
        &h.call(
            "eth_estimateGas",
            json!([{"from": owner, "to": MODEL_REGISTRY_ADDRESS, "data": Bytes::from(register_call(root))}]),
        )
        .await,
    );
    assert!(estimate > 100_000 && estimate < 1_000_000, "{estimate}");

    // A custom error has no reason string: code 3, bare message, data = selector.
    let empty = register_call(b"");
    let err = h
        .error(
            "eth_call",
            json!([{"from": owner, "to": MODEL_REGISTRY_ADDRESS, "input": Bytes::from(empty.clone())}]),
        )
        .await;
    assert_eq!(err["code"], json!(3));
    assert_eq!(err["message"], json!("execution reverted"));
    assert_eq!(
        err["data"],
        json!(Bytes::from(keccak256("EmptyCid()")[..4].to_vec()))
    );
    let err = h
        .error(
            "eth_estimateGas",
            json!([{"from": owner, "to": MODEL_REGISTRY_ADDRESS, "input": Bytes::from(empty)}]),
        )
        .await;
    assert_eq!(err["code"], json!(3));

    let tx = Tx::call(1, 0, MODEL_REGISTRY_ADDRESS, register_call(root)).sign();
    let hash = h.send(&tx).await;
    h.seal();

    let receipt = h.call("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["status"], json!("0x1"));
    let block = h
        .call("eth_getBlockByNumber", json!(["latest", false]))
        .await;
    let logs = receipt["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 2, "{receipt}");
    let registered = &logs[0];
    assert_eq!(registered["address"], json!(MODEL_REGISTRY_ADDRESS));
    assert_eq!(
        registered["topics"],
        json!([
            ModelRegistry::ModelRegistered::SIGNATURE_HASH,
            id,
            padded(owner)
        ])
    );
    assert_eq!(registered["logIndex"], json!("0x0"));
    assert_eq!(registered["transactionIndex"], json!("0x0"));
    assert_eq!(registered["transactionHash"], json!(hash));
    assert_eq!(registered["blockHash"], block["hash"]);
    assert_eq!(registered["blockNumber"], json!("0x2"));
    assert_eq!(registered["blockTimestamp"], block["timestamp"]);
    assert_eq!(registered["removed"], json!(false));
    let data: Bytes = serde_json::from_value(registered["data"].clone()).expect("data");
    let decoded = ModelRegistry::ModelRegistered::abi_decode_data(&data).expect("decode");
    assert_eq!(decoded.0, "tiny");
    assert_eq!(decoded.3, U256::from(1000));
    assert_eq!(logs[1]["logIndex"], json!("0x1"));
    assert_eq!(
        logs[1]["topics"][0],
        json!(ModelRegistry::VersionAdded::SIGNATURE_HASH)
    );
    assert_ne!(
        receipt["logsBloom"],
        json!(format!("0x{}", "0".repeat(512)))
    );
    assert_eq!(
        hex_u64(&receipt["gasUsed"]),
        hex_u64(&receipt["cumulativeGasUsed"])
    );
    let used = hex_u64(&receipt["gasUsed"]);
    assert!(used <= estimate, "used {used}, estimate {estimate}");

    let after = h
        .call(
            "eth_call",
            json!([{"to": MODEL_REGISTRY_ADDRESS, "input": count_call}]),
        )
        .await;
    assert_eq!(after, json!(B256::with_last_byte(1)));

    // eth_getLogs: by address, topic OR-arrays, null positions, block hash.
    let by_address = h
        .call(
            "eth_getLogs",
            json!([{"address": MODEL_REGISTRY_ADDRESS, "fromBlock": "0x0"}]),
        )
        .await;
    assert_eq!(by_address, json!(logs));
    let by_topic = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "earliest", "toBlock": "latest",
                    "topics": [ModelRegistry::ModelRegistered::SIGNATURE_HASH]}]),
        )
        .await;
    assert_eq!(by_topic, json!([registered]));
    let or_topics = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "topics": [[
                ModelRegistry::ModelRegistered::SIGNATURE_HASH,
                ModelRegistry::VersionAdded::SIGNATURE_HASH
            ], id]}]),
        )
        .await;
    assert_eq!(or_topics.as_array().expect("array").len(), 2);
    let by_owner = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "address": [MODEL_REGISTRY_ADDRESS, REVERTER],
                    "topics": [null, null, padded(owner)]}]),
        )
        .await;
    assert_eq!(by_owner, json!([registered]));
    let nobody = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "topics": [null, null, padded(DEV_ACCOUNTS[5].address)]}]),
        )
        .await;
    assert_eq!(nobody, json!([]));
    let by_hash = h
        .call("eth_getLogs", json!([{"blockHash": block["hash"]}]))
        .await;
    assert_eq!(by_hash, json!(logs));
    let genesis_only = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "toBlock": "0x0"}]),
        )
        .await;
    assert_eq!(genesis_only, json!([]));
    let err = h
        .error("eth_getLogs", json!([{"blockHash": B256::repeat_byte(3)}]))
        .await;
    assert_eq!(err["message"], json!("unknown block"));

    // Two registrations in one block: log indexes run across the block.
    let a = Tx::call(2, 0, MODEL_REGISTRY_ADDRESS, register_call(b"first")).sign();
    let b = Tx::call(3, 0, MODEL_REGISTRY_ADDRESS, register_call(b"second")).sign();
    h.send(&a).await;
    let second = h.send(&b).await;
    h.seal();
    let receipts = h.call("eth_getBlockReceipts", json!(["latest"])).await;
    assert_eq!(receipts.as_array().map(Vec::len), Some(2));
    assert_eq!(receipts[1]["transactionHash"], json!(second));
    assert_eq!(receipts[1]["transactionIndex"], json!("0x1"));
    let logs = receipts[1]["logs"].as_array().expect("logs");
    assert_eq!(logs[0]["logIndex"], json!("0x2"));
    assert_eq!(logs[0]["transactionIndex"], json!("0x1"));
    assert_eq!(logs[1]["logIndex"], json!("0x3"));
    assert_eq!(
        h.call("eth_getTransactionReceipt", json!([second])).await,
        receipts[1]
    );
    assert_eq!(
        hex_u64(&receipts[1]["cumulativeGasUsed"]),
        hex_u64(&receipts[0]["gasUsed"]) + hex_u64(&receipts[1]["gasUsed"])
    );
    let block_logs = h
        .call("eth_getLogs", json!([{"fromBlock": "latest"}]))
        .await;
    let indexes: Vec<u64> = block_logs
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| hex_u64(&l["logIndex"]))
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3]);
    assert_eq!(block_logs[2], logs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_revert_reason_and_state_overrides() {
    let h = Harness::start().await;
    assert_eq!(
        h.call("eth_getCode", json!([REVERTER, "latest"])).await,
        json!(reverter_code())
    );
    let err = h
        .error("eth_call", json!([{"to": REVERTER}, "latest"]))
        .await;
    assert_eq!(err["code"], json!(3));
    assert_eq!(err["message"], json!("execution reverted: boom"));
    assert_eq!(err["data"], json!(Bytes::from(boom_revert_data())));
    let err = h.error("eth_estimateGas", json!([{"to": REVERTER}])).await;
    assert_eq!(err["code"], json!(3));
    assert_eq!(err["message"], json!("execution reverted: boom"));

    // Overrides: code that returns 42 replaces the reverter's for this call only.
    let returns_42 = "0x602a60005260206000f3";
    let out = h
        .call(
            "eth_call",
            json!([{"to": REVERTER}, "latest", {REVERTER.to_string(): {"code": returns_42}}]),
        )
        .await;
    assert_eq!(out, json!(B256::with_last_byte(42)));
    // A balance override lets an empty account send value.
    let poor = address!("0x2000000000000000000000000000000000000002");
    let err = h
        .error(
            "eth_call",
            json!([{"from": poor, "to": REVERTER, "value": "0x1", "gasPrice": "0x1"}]),
        )
        .await;
    assert_eq!(err["code"], json!(-32000), "{err}");
    let out = h
        .call(
            "eth_call",
            json!([{"from": poor, "to": poor, "value": "0x1"}, "latest",
                   {poor.to_string(): {"balance": "0xde0b6b3a7640000"}}]),
        )
        .await;
    assert_eq!(out, json!("0x"));
    assert_eq!(h.call("eth_getBalance", json!([poor])).await, json!("0x0"));
    // Storage override read back through a contract: SLOAD(0) returned.
    let sload0 = "0x60005460005260206000f3";
    let out = h
        .call(
            "eth_call",
            json!([{"to": poor}, "latest",
                   {poor.to_string(): {"code": sload0, "stateDiff": {B256::ZERO.to_string(): B256::with_last_byte(7)}}}]),
        )
        .await;
    assert_eq!(out, json!(B256::with_last_byte(7)));
    assert_eq!(
        h.call("eth_getStorageAt", json!([poor, "0x0", "latest"]))
            .await,
        json!(B256::ZERO)
    );
    let err = h.error("eth_call", json!([{"to": poor}, "0x5"])).await;
    assert_eq!(err, json!({"code": -32000, "message": "header not found"}));
    let err = h
        .error(
            "eth_call",
            json!([{"to": poor, "data": "0x01", "input": "0x02"}]),
        )
        .await;
    assert_eq!(err["code"], json!(-32602));

    // A contract creation: `to` is null, `contractAddress` is where the
    // code went, and the code answers calls.
    let runtime = hex::decode("602a60005260206000f3").expect("hex");
    let mut init = vec![
        0x60, 10, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 10, 0x60, 0x00, 0xf3,
    ];
    init.extend_from_slice(&runtime);
    let create = Tx {
        to: TxKind::Create,
        input: init.into(),
        gas: 200_000,
        ..Tx::transfer(8, 0, Address::ZERO, 0)
    }
    .sign();
    let hash = h.send(&create).await;
    h.seal();
    let deployed = DEV_ACCOUNTS[8].address.create(0);
    let receipt = h.call("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["status"], json!("0x1"));
    assert_eq!(receipt["to"], Value::Null);
    assert_eq!(receipt["contractAddress"], json!(deployed));
    assert_eq!(
        h.call("eth_getTransactionByHash", json!([hash])).await["to"],
        Value::Null
    );
    assert_eq!(
        h.call("eth_getCode", json!([deployed, "latest"])).await,
        json!(Bytes::from(runtime))
    );
    assert_eq!(
        h.call("eth_call", json!([{"to": deployed}, "latest"]))
            .await,
        json!(B256::with_last_byte(42))
    );

    // Storage: slot values are 32-byte words.
    assert_eq!(
        h.call("eth_getStorageAt", json!([REVERTER, "0x1", "latest"]))
            .await,
        json!(B256::with_last_byte(0xef))
    );
    assert_eq!(
        h.call("eth_getStorageAt", json!([REVERTER, "0x2"])).await,
        json!(B256::ZERO)
    );
    // A plain transfer needs exactly 21,000.
    assert_eq!(
        h.call(
            "eth_estimateGas",
            json!([{"from": DEV_ACCOUNTS[0].address, "to": poor, "value": "0x1"}])
        )
        .await,
        json!("0x5208")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors() {
    let h = Harness::with_config(RpcConfig {
        max_batch_len: 5,
        max_log_blocks: 3,
        max_logs: 2,
        ..RpcConfig::default()
    })
    .await;
    let err = h.error("eth_doesNotExist", json!([])).await;
    assert_eq!(err["code"], json!(-32601));

    let err = h.error("eth_getBalance", json!(["0xzz", "latest"])).await;
    assert_eq!(err["code"], json!(-32602));
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid argument 0:")),
        "{err}"
    );
    let err = h.error("eth_getBalance", json!([])).await;
    assert_eq!(
        err,
        json!({"code": -32602, "message": "missing value for required argument 0"})
    );
    let err = h.error("eth_blockNumber", json!([1])).await;
    assert_eq!(err["message"], json!("too many arguments, want at most 0"));
    let err = h.error("eth_getBalance", json!({"address": "0x00"})).await;
    assert_eq!(err["code"], json!(-32602));
    let err = h
        .error("eth_getBlockByNumber", json!(["nope", false]))
        .await;
    assert_eq!(err["code"], json!(-32602));
    let err = h.error("eth_sendRawTransaction", json!(["0x02ff"])).await;
    assert_eq!(err["code"], json!(-32000));
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("rlp:")),
        "{err}"
    );

    // Batch over the limit.
    let batch: Vec<Value> = (0..6)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []}))
        .collect();
    let rp = h.post(&json!(batch)).await;
    assert_eq!(rp["error"]["code"], json!(-32010), "{rp}");

    // Log queries over the range and result limits.
    for nonce in 0..3u8 {
        let tx = Tx::call(
            2,
            nonce.into(),
            MODEL_REGISTRY_ADDRESS,
            register_call(&[nonce + 1]),
        )
        .sign();
        h.send(&tx).await;
        h.seal();
    }
    let err = h
        .error(
            "eth_getLogs",
            json!([{"fromBlock": "0x0", "toBlock": "latest"}]),
        )
        .await;
    assert_eq!(
        err,
        json!({"code": -32005, "message": "query exceeds max block range 3"})
    );
    let err = h
        .error(
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "toBlock": "0x2"}]),
        )
        .await;
    assert_eq!(
        err,
        json!({"code": -32005, "message": "query returned more than 2 results"})
    );
    let ok = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x3", "toBlock": "0x3"}]),
        )
        .await;
    assert_eq!(ok.as_array().map(Vec::len), Some(2));
    let err = h
        .error(
            "eth_getLogs",
            json!([{"fromBlock": "0x3", "toBlock": "0x2"}]),
        )
        .await;
    assert_eq!(err["code"], json!(-32602));
    // Past the head: nothing, not an error.
    let ok = h
        .call(
            "eth_getLogs",
            json!([{"fromBlock": "0x10", "toBlock": "0x20"}]),
        )
        .await;
    assert_eq!(ok, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_raw_transactions() {
    let h = Harness::start().await;
    let to = address!("0x3000000000000000000000000000000000000003");
    let txs: Vec<TxEnvelope> = (0..600).map(|n| Tx::transfer(3, n, to, 1).sign()).collect();
    let batch: Vec<Value> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw(tx)]})
        })
        .collect();
    let rp = h.post(&json!(batch)).await;
    let rp = rp.as_array().expect("batch response");
    assert_eq!(rp.len(), 600);
    for r in rp {
        let i = r["id"].as_u64().expect("id") as usize;
        assert_eq!(r["result"], json!(txs[i].tx_hash()), "{r}");
    }
    assert_eq!(
        h.call(
            "eth_getTransactionCount",
            json!([DEV_ACCOUNTS[3].address, "pending"])
        )
        .await,
        json!("0x258")
    );
    h.seal();
    assert_eq!(
        h.call("eth_getBlockTransactionCountByNumber", json!(["latest"]))
            .await,
        json!("0x258")
    );
    // A mixed batch: results, nulls and errors each under their id.
    let rp = h
        .post(&json!([
            {"jsonrpc": "2.0", "id": "a", "method": "eth_getBalance", "params": [to, "latest"]},
            {"jsonrpc": "2.0", "id": "b", "method": "eth_getTransactionReceipt", "params": [txs[599].tx_hash()]},
            {"jsonrpc": "2.0", "id": "c", "method": "eth_nope", "params": []},
            {"jsonrpc": "2.0", "id": "d", "method": "eth_getTransactionByHash", "params": [B256::ZERO]},
        ]))
        .await;
    let by_id = |id: &str| {
        rp.as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == json!(id)))
            .cloned()
            .expect("response for id")
    };
    assert_eq!(by_id("a")["result"], json!("0x258"));
    assert_eq!(by_id("b")["result"]["transactionIndex"], json!("0x257"));
    assert_eq!(
        hex_u64(&by_id("b")["result"]["cumulativeGasUsed"]),
        600 * 21_000
    );
    assert_eq!(by_id("c")["error"]["code"], json!(-32601));
    assert_eq!(by_id("d")["result"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_history_rewards() {
    let h = Harness::start().await;
    let to = address!("0x4000000000000000000000000000000000000004");
    // Block 1: tips of 1 and 3 gwei, 21,000 gas each.
    for (key, tip) in [(4, GWEI), (5, 3 * GWEI)] {
        let tx = Tx {
            tip,
            ..Tx::transfer(key, 0, to, 1)
        }
        .sign();
        h.send(&tx).await;
    }
    h.seal();
    // Block 2: empty.
    h.seal();
    let fh = h
        .call(
            "eth_feeHistory",
            json!(["0x2", "latest", [10, 25, 75, 100]]),
        )
        .await;
    assert_eq!(fh["oldestBlock"], json!("0x1"));
    let base: Vec<u64> = fh["baseFeePerGas"]
        .as_array()
        .expect("base fees")
        .iter()
        .map(hex_u64)
        .collect();
    assert_eq!(base.len(), 3);
    assert_eq!(base[0], 875_000_000);
    let block2 = h.call("eth_getBlockByNumber", json!(["0x2", false])).await;
    assert_eq!(base[1], hex_u64(&block2["baseFeePerGas"]));
    assert_eq!(
        base[2],
        hex_u64(&h.call("eth_gasPrice", json!([])).await) - 1_000_000_000
    );
    let ratios = fh["gasUsedRatio"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 2);
    assert!((ratios[0].as_f64().expect("f64") - 42_000.0 / 300_000_000.0).abs() < 1e-12);
    assert_eq!(ratios[1], json!(0.0));
    let g = format!("{:#x}", GWEI);
    let g3 = format!("{:#x}", 3 * GWEI);
    assert_eq!(
        fh["reward"],
        json!([[g, g, g3, g3], ["0x0", "0x0", "0x0", "0x0"]])
    );
    // Decimal block count, no percentiles, count past genesis.
    let fh = h.call("eth_feeHistory", json!([10, "0x1"])).await;
    assert_eq!(fh["oldestBlock"], json!("0x0"));
    assert_eq!(fh["baseFeePerGas"].as_array().map(Vec::len), Some(3));
    assert!(fh.get("reward").is_none(), "{fh}");
    let err = h
        .error("eth_feeHistory", json!(["0x1", "latest", [50, 10]]))
        .await;
    assert_eq!(err["code"], json!(-32602));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_filters_across_blocks() {
    let h = Harness::start().await;
    let block_filter = h.call("eth_newBlockFilter", json!([])).await;
    let log_filter = h
        .call(
            "eth_newFilter",
            json!([{"address": MODEL_REGISTRY_ADDRESS,
            "topics": [ModelRegistry::ModelRegistered::SIGNATURE_HASH]}]),
        )
        .await;
    let tx_filter = h.call("eth_newPendingTransactionFilter", json!([])).await;
    let id = block_filter.as_str().expect("id");
    assert!(id.starts_with("0x") && id.len() == 34, "{id}");
    assert_ne!(block_filter, log_filter);

    assert_eq!(
        h.call("eth_getFilterChanges", json!([block_filter])).await,
        json!([])
    );
    let tx1 = Tx::call(6, 0, MODEL_REGISTRY_ADDRESS, register_call(b"one")).sign();
    let hash1 = h.send(&tx1).await;
    assert_eq!(
        h.call("eth_getFilterChanges", json!([tx_filter])).await,
        json!([hash1])
    );
    assert_eq!(
        h.call("eth_getFilterChanges", json!([tx_filter])).await,
        json!([])
    );
    h.seal();
    let b1 = h.call("eth_getBlockByNumber", json!(["0x1", false])).await;
    assert_eq!(
        h.call("eth_getFilterChanges", json!([block_filter])).await,
        json!([b1["hash"]])
    );
    let logs = h.call("eth_getFilterChanges", json!([log_filter])).await;
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{logs}");
    assert_eq!(logs[0]["transactionHash"], json!(hash1));
    assert_eq!(logs[0]["topics"][1], json!(model_id(b"one")));
    assert_eq!(
        h.call("eth_getFilterChanges", json!([log_filter])).await,
        json!([])
    );
    assert_eq!(
        h.call("eth_getFilterChanges", json!([block_filter])).await,
        json!([])
    );

    // Two more blocks before the next poll.
    let tx2 = Tx::call(6, 1, MODEL_REGISTRY_ADDRESS, register_call(b"two")).sign();
    let hash2 = h.send(&tx2).await;
    h.seal();
    h.seal();
    let b2 = h.call("eth_getBlockByNumber", json!(["0x2", false])).await;
    let b3 = h.call("eth_getBlockByNumber", json!(["0x3", false])).await;
    assert_eq!(
        h.call("eth_getFilterChanges", json!([block_filter])).await,
        json!([b2["hash"], b3["hash"]])
    );
    let logs = h.call("eth_getFilterChanges", json!([log_filter])).await;
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{logs}");
    assert_eq!(logs[0]["transactionHash"], json!(hash2));
    // eth_getFilterLogs: the whole range of the filter ("latest" → "latest").
    let all = h.call("eth_getFilterLogs", json!([log_filter])).await;
    assert_eq!(all, json!([]));
    let ranged = h
        .call(
            "eth_newFilter",
            json!([{"fromBlock": "0x1", "address": MODEL_REGISTRY_ADDRESS}]),
        )
        .await;
    let all = h.call("eth_getFilterLogs", json!([ranged])).await;
    assert_eq!(all.as_array().map(Vec::len), Some(4), "{all}");
    let err = h.error("eth_getFilterLogs", json!([block_filter])).await;
    assert_eq!(err["message"], json!("filter not found"));

    assert_eq!(
        h.call("eth_uninstallFilter", json!([block_filter])).await,
        json!(true)
    );
    assert_eq!(
        h.call("eth_uninstallFilter", json!([block_filter])).await,
        json!(false)
    );
    let err = h.error("eth_getFilterChanges", json!([block_filter])).await;
    assert_eq!(err, json!({"code": -32000, "message": "filter not found"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_expire_without_polling() {
    let h = Harness::with_config(RpcConfig {
        filter_timeout: Duration::from_millis(300),
        ..RpcConfig::default()
    })
    .await;
    let kept = h.call("eth_newBlockFilter", json!([])).await;
    let dropped = h.call("eth_newBlockFilter", json!([])).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.call("eth_getFilterChanges", json!([kept])).await;
    }
    let err = h.error("eth_getFilterChanges", json!([dropped])).await;
    assert_eq!(err["message"], json!("filter not found"));
    h.call("eth_getFilterChanges", json!([kept])).await;
}

async fn next_json(sub: &mut Subscription<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("notification in time")
        .expect("subscription open")
        .expect("valid notification")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscriptions() {
    let h = Harness::start().await;
    let ws = WsClientBuilder::default()
        .build(h.ws_url())
        .await
        .expect("ws connect");
    let mut heads: Subscription<Value> = ws
        .subscribe("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe")
        .await
        .expect("newHeads");
    let mut logs: Subscription<Value> = ws
        .subscribe(
            "eth_subscribe",
            rpc_params![
                "logs",
                json!({"address": MODEL_REGISTRY_ADDRESS,
                       "topics": [ModelRegistry::ModelRegistered::SIGNATURE_HASH]})
            ],
            "eth_unsubscribe",
        )
        .await
        .expect("logs");
    let mut pending: Subscription<Value> = ws
        .subscribe(
            "eth_subscribe",
            rpc_params!["newPendingTransactions"],
            "eth_unsubscribe",
        )
        .await
        .expect("pending");
    match heads.kind() {
        jsonrpsee::core::client::SubscriptionKind::Subscription(
            jsonrpsee::types::SubscriptionId::Str(id),
        ) => assert!(id.starts_with("0x") && id.len() == 34, "{id}"),
        other => panic!("unexpected subscription id {other:?}"),
    }
    // An unknown kind is refused.
    let refused = ws
        .subscribe::<Value, _>("eth_subscribe", rpc_params!["nope"], "eth_unsubscribe")
        .await;
    assert!(refused.is_err());

    let tx = Tx::call(7, 0, MODEL_REGISTRY_ADDRESS, register_call(b"ws")).sign();
    let hash = h.send(&tx).await;
    assert_eq!(next_json(&mut pending).await, json!(hash));
    h.seal();
    h.seal();

    let block1 = h.call("eth_getBlockByNumber", json!(["0x1", false])).await;
    let head1 = next_json(&mut heads).await;
    assert_eq!(head1["number"], json!("0x1"));
    assert_eq!(head1["hash"], block1["hash"]);
    assert_eq!(head1["parentHash"], block1["parentHash"]);
    assert_eq!(head1["baseFeePerGas"], block1["baseFeePerGas"]);
    assert!(head1.get("transactions").is_none(), "{head1}");
    let head2 = next_json(&mut heads).await;
    assert_eq!(head2["number"], json!("0x2"));
    assert_eq!(head2["parentHash"], block1["hash"]);

    let log = next_json(&mut logs).await;
    assert_eq!(log["transactionHash"], json!(hash));
    assert_eq!(log["blockHash"], block1["hash"]);
    assert_eq!(log["logIndex"], json!("0x0"));
    assert_eq!(
        log["topics"],
        json!([
            ModelRegistry::ModelRegistered::SIGNATURE_HASH,
            model_id(b"ws"),
            padded(DEV_ACCOUNTS[7].address)
        ])
    );

    // Plain calls work over the same socket.
    let n: String =
        jsonrpsee::core::client::ClientT::request(&ws, "eth_blockNumber", rpc_params![])
            .await
            .expect("blockNumber over ws");
    assert_eq!(n, "0x2");
    heads.unsubscribe().await.expect("unsubscribe");
    logs.unsubscribe().await.expect("unsubscribe");

    h.server.stop();
    tokio::time::timeout(Duration::from_secs(10), h.server.stopped())
        .await
        .expect("server stops");
    let after = h
        .http
        .post(&h.url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
        .send()
        .await;
    assert!(after.is_err(), "server still answers: {after:?}");
}
