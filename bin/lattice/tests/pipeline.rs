//! The model lifecycle end to end, with real processes on loopback: an author imports
//! MiniLM (from its PyPI wheel) and deploys it; a node (`lattice devnet` with its executor)
//! fetches it from the author's `ipfs serve` (Kubo RPC API) when the first paid request arrives; a user
//! pays, gets the embedding and a signed receipt, re-executes it bit for bit; the owner
//! withdraws and every balance adds up. Then the bad paths: an unpaid request, a private model
//! without a grant, tampered store blocks, an unknown model, malformed input.

use std::path::Path;
use std::process::Output;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::Encodable2718;
use alloy_primitives::{Address, B256, TxKind, U256};
use alloy_sol_types::SolCall;
use base64::Engine as _;
use lattice_contracts::ModelRegistry;
use lattice_evm::{DEV_ACCOUNTS, MODEL_REGISTRY_ADDRESS};
use serde_json::{Value, json};

mod support;
use support::{
    failed, flip_in_store, free_port, lattice, model, models, ok_json, rpc, rpc_result,
    runtime_data, serve_on, start_instant,
};

/// Dev account 1 owns the models, 2 pays for inferences (0 is the registry's admin and
/// treasury, 9 the node's executor).
const OWNER: usize = 1;
const USER: usize = 2;
const EXECUTOR: usize = 9;

fn key(i: usize) -> String {
    DEV_ACCOUNTS[i].private_key.to_string()
}

fn balance(url: &str, who: Address) -> U256 {
    let v = rpc(url, "eth_getBalance", json!([who, "latest"]));
    v.as_str().and_then(|s| s.parse().ok()).expect("balance")
}

/// Wei a mined transaction cost its sender in gas.
fn gas_cost(url: &str, tx: &str) -> U256 {
    let r = rpc(url, "eth_getTransactionReceipt", json!([tx]));
    let q = |k: &str| -> U256 { r[k].as_str().and_then(|s| s.parse().ok()).expect(k) };
    q("gasUsed") * q("effectiveGasPrice")
}

fn registry_u256(url: &str, data: Vec<u8>) -> U256 {
    let v = rpc(
        url,
        "eth_call",
        json!([{"to": MODEL_REGISTRY_ADDRESS, "data": alloy_primitives::hex::encode_prefixed(data)}, "latest"]),
    );
    let bytes = alloy_primitives::hex::decode(v.as_str().expect("hex")).expect("hex");
    U256::from_be_slice(&bytes[..32])
}

fn inference(client: &Path, url: &str, args: &[&str]) -> Output {
    let mut all = vec!["inference"];
    all.extend_from_slice(args);
    model(client, url, &all)
}

/// `lattice --datadir DIR model import FOLDER EXTRA…`: the folder CID.
fn import_cid(dir: &Path, folder: &Path, extra: &[&str]) -> String {
    ok_json(
        lattice(dir)
            .args(["--json", "model", "import"])
            .arg(folder)
            .args(extra)
            .output()
            .expect("import"),
    )["cid"]
        .as_str()
        .expect("cid")
        .to_string()
}

fn u(v: &Value) -> U256 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a decimal: {v}"))
}

/// Deploys the model `cid` from `dir` as the owner at 0.0001 ETH per inference.
fn deploy(dir: &Path, url: &str, cid: &str) -> Value {
    ok_json(model(
        dir,
        url,
        &["deploy", cid, "--price", "0.0001", "--key", &key(OWNER)],
    ))
}

/// Polls `lattice_getReceipt(id)` until `ok` holds (60 s at most); the answer.
fn wait_receipt(url: &str, id: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(a) = rpc_result(url, "lattice_getReceipt", json!([id])) {
            if ok(&a) {
                return a;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {a}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The user's signed `requestInference(model, sha256(document), fee)` paying `value`, as
/// raw hex.
fn signed_request(nonce: u64, model: B256, document: &[u8], fee: U256, value: U256) -> String {
    let tx = TxEip1559 {
        chain_id: 31337,
        nonce,
        gas_limit: 500_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(MODEL_REGISTRY_ADDRESS),
        value,
        access_list: Default::default(),
        input: ModelRegistry::requestInferenceCall {
            modelId: model,
            inputHash: lattice_executor::content::sha256(document),
            maxFee: fee,
        }
        .abi_encode()
        .into(),
    };
    let sig = alloy_consensus::crypto::secp256k1::sign_message(
        DEV_ACCOUNTS[USER].private_key,
        tx.signature_hash(),
    )
    .expect("sign");
    let env: TxEnvelope = tx.into_signed(sig).into();
    alloy_primitives::hex::encode_prefixed(env.encoded_2718())
}

fn settled(a: &Value) -> bool {
    a["status"] != json!("pending")
}

#[test]
fn model_lifecycle_end_to_end_with_paid_inference_and_receipts() {
    let minilm = models().join("minilm");
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let (author, node_dir, client, verifier) = (
        dirs[0].path(),
        dirs[1].path(),
        dirs[2].path(),
        dirs[3].path(),
    );
    let port = free_port();
    let peer = format!("http://127.0.0.1:{port}");
    // The node reaches the author's store through its Kubo RPC API (`ipfs serve` answers
    // both); verifiers use the trustless gateway.
    let kubo_peer = format!("kubo+http://127.0.0.1:{port}");
    let node = start_instant(node_dir, &["--peer", &kubo_peer]);
    let url = node.url.as_str();

    // Import and deploy: the author's store holds the model, the node does not.
    let root = import_cid(author, &minilm, &["--name", "minilm"]);
    let deployed = ok_json(model(
        author,
        url,
        &["deploy", &root, "--price", "0.001", "--key", &key(OWNER)],
    ));
    let id = deployed["model_id"].as_str().expect("id").to_string();
    let fee = U256::from(1_000_000_000_000_000u64);
    // A free public model too.
    ok_json(model(
        author,
        url,
        &[
            "deploy",
            runtime_data("tiny-distilbert-classifier")
                .to_str()
                .expect("utf8"),
            "--price",
            "0",
            "--key",
            &key(OWNER),
        ],
    ));
    let serving = serve_on(author, port);

    let list = ok_json(model(client, url, &["list"]));
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|m| m["id"] == json!(id)),
        "{list}"
    );
    let info = ok_json(model(client, url, &["info", "minilm"]));
    assert_eq!(info["price_wei"], json!(fee.to_string()));
    assert_eq!(info["pin_count"], json!(0));
    assert_eq!(info["available_on_node"], json!(false));

    // Anyone can verify it from the author's gateway.
    let v = ok_json(model(verifier, url, &["verify", "minilm", "--peer", &peer]));
    assert_eq!(v["ok"], json!(true), "{v}");

    // A paid inference.
    let user = DEV_ACCOUNTS[USER].address;
    let owner = DEV_ACCOUNTS[OWNER].address;
    let user_before = balance(url, user);
    let receipt_file = client.join("receipt.json");
    let answer = ok_json(inference(
        client,
        url,
        &[
            "minilm",
            "--input",
            "A paid sentence embedding.",
            "--key",
            &key(USER),
            "--receipt-out",
            receipt_file.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(answer["status"], json!("fulfilled"), "{answer}");
    assert_eq!(u(&answer["fee"]), fee);
    let vector = answer["outputs"][0]["vector"]
        .as_array()
        .expect("embedding");
    assert_eq!(vector.len(), 384);
    let norm: f64 = vector.iter().map(|x| x.as_f64().expect("f").powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    let receipt = &answer["receipt"]["receipt"];
    assert_eq!(
        receipt["executor"].as_str().map(str::to_lowercase),
        Some(DEV_ACCOUNTS[EXECUTOR].address.to_string().to_lowercase())
    );
    assert_eq!(
        receipt["modelCid"].as_str().map(|h| h.len() > 2),
        Some(true)
    );
    let output_hash = receipt["outputHash"].as_str().expect("hash").to_string();
    assert_eq!(answer["outputHash"], json!(output_hash));

    // The user paid the fee and gas, nothing else.
    let request_tx = answer["requestTx"].as_str().expect("request tx");
    assert_eq!(
        user_before - balance(url, user),
        fee + gas_cost(url, request_tx)
    );

    // The same input run here, without the chain, gives the same bytes.
    let local = ok_json(
        lattice(client)
            .args(["--json", "model", "inference"])
            .arg(&minilm)
            .args(["--input", "A paid sentence embedding.", "--local"])
            .output()
            .expect("local run"),
    );
    assert_eq!(local["outputHash"], json!(output_hash));

    // The receipt checks out, and re-running the model reproduces it bit for bit.
    let verified = ok_json(
        lattice(verifier)
            .args(["--json", "receipt", "verify"])
            .arg(&receipt_file)
            .args(["--reexecute", "--peer", &peer, "--rpc", url])
            .output()
            .expect("receipt verify"),
    );
    assert_eq!(verified["valid"], json!(true), "{verified}");
    assert_eq!(verified["reexecuted"]["matches"], json!(true), "{verified}");
    // With one thread the executor's two-thread output is reproduced too.
    let one_thread = ok_json(
        lattice(verifier)
            .env("CANDLE_NUM_THREADS", "1")
            .env("RAYON_NUM_THREADS", "1")
            .args(["--json", "receipt", "verify"])
            .arg(&receipt_file)
            .args(["--reexecute", "--rpc", url])
            .output()
            .expect("receipt verify"),
    );
    assert_eq!(
        one_thread["reexecuted"]["matches"],
        json!(true),
        "{one_thread}"
    );
    // …and a forged one does not.
    let mut forged: Value =
        serde_json::from_slice(&std::fs::read(&receipt_file).expect("read")).expect("json");
    forged["receipt"]["outputHash"] = json!(format!("0x{}", "ab".repeat(32)));
    let err = failed(
        lattice(verifier)
            .args(["receipt", "verify", &forged.to_string(), "--rpc", url])
            .output()
            .expect("receipt verify"),
    );
    assert!(err.contains("does not check out"), "{err}");

    // Fees were split on fulfilment; the executor now pins the model.
    let revenue = fee * U256::from(8250) / U256::from(10_000);
    let info = ok_json(model(client, url, &["info", &id]));
    assert_eq!(info["revenue_wei"], json!(revenue.to_string()));
    assert_eq!(info["pin_count"], json!(1));
    assert_eq!(info["available_on_node"], json!(true));
    let executor_credit = registry_u256(
        url,
        ModelRegistry::balanceOfCall(DEV_ACCOUNTS[EXECUTOR].address).abi_encode(),
    );
    assert_eq!(executor_credit, fee / U256::from(10));

    // The owner withdraws: the revenue arrives, less the withdrawal's gas.
    let owner_before = balance(url, owner);
    let w = ok_json(model(
        client,
        url,
        &["withdraw", "minilm", "--key", &key(OWNER)],
    ));
    assert_eq!(u(&w["amount_wei"]), revenue);
    let wtx = w["tx"].as_str().expect("tx");
    assert_eq!(
        balance(url, owner),
        owner_before + revenue - gas_cost(url, wtx)
    );
    let info = ok_json(model(client, url, &["info", &id]));
    assert_eq!(info["revenue_wei"], json!("0"));
    let err = failed(model(
        client,
        url,
        &["withdraw", "minilm", "--key", &key(OWNER)],
    ));
    assert!(err.contains("NothingToWithdraw"), "{err}");
    let err = failed(model(
        client,
        url,
        &["withdraw", "minilm", "--key", &key(USER)],
    ));
    assert!(err.contains("NotModelOwner"), "{err}");

    // A free model is answered at once, off chain, with a receipt anyone can check.
    let free = rpc(
        url,
        "lattice_infer",
        json!([{"model": "tiny-distilbert-classifier", "request": {"inputs": ["great, thanks"]}}]),
    );
    assert_eq!(free["status"], json!("answered"), "{free}");
    assert_eq!(free["requestId"], json!("0"));
    assert!(
        free["outputs"][0]["labels"]
            .as_array()
            .is_some_and(|l| !l.is_empty()),
        "{free}"
    );
    let check = rpc(url, "lattice_verifyReceipt", json!([free["receipt"]]));
    assert_eq!(check["valid"], json!(true), "{check}");
    let local = ok_json(
        lattice(client)
            .args(["--json", "model", "inference", "tiny-distilbert-classifier"])
            .args([
                "--input",
                "great, thanks",
                "--local",
                "--peer",
                &peer,
                "--rpc",
                url,
            ])
            .output()
            .expect("local run"),
    );
    assert_eq!(local["outputHash"], free["outputHash"]);

    // --- Bad paths.

    // Unknown model.
    let err = failed(inference(
        client,
        url,
        &["no-such-model", "--input", "x", "--key", &key(USER)],
    ));
    assert!(err.contains("no model named"), "{err}");

    // An unpaid request (value 0 for a paid model) is refused before it is sent.
    let document = br#"{"inputs":["free ride"]}"#;
    let nonce = rpc(url, "eth_getTransactionCount", json!([user, "pending"]));
    let nonce = u64::from_str_radix(nonce.as_str().expect("n").trim_start_matches("0x"), 16)
        .expect("nonce");
    let raw = signed_request(nonce, id.parse().expect("id"), document, fee, U256::ZERO);
    let err = rpc_result(
        url,
        "lattice_infer",
        json!([{
            "model": id,
            "document": base64::engine::general_purpose::STANDARD.encode(document),
            "tx": raw,
        }]),
    )
    .expect_err("an unpaid request is refused");
    assert!(err.to_string().contains("Underpayment"), "{err}");
    // Without a transaction, a paid model is not run.
    let err = rpc_result(
        url,
        "lattice_infer",
        json!([{"model": id, "request": {"inputs": ["free ride"]}}]),
    )
    .expect_err("no free ride");
    assert!(err.to_string().contains("requestInference"), "{err}");

    // Malformed input: MiniLM takes text; a binary file is rejected on chain and refunded.
    let junk = client.join("junk.bin");
    std::fs::write(&junk, [0xff, 0xfe, 0x00, 0x80]).expect("write");
    let before = balance(url, user);
    let out = inference(
        client,
        url,
        &[
            "minilm",
            "--file",
            junk.to_str().expect("utf8"),
            "--key",
            &key(USER),
        ],
    );
    let err = failed(out.clone());
    assert!(err.contains("rejected") && err.contains("UTF-8"), "{err}");
    let rejected: Value = serde_json::from_slice(&out.stdout).expect("answer JSON");
    assert_eq!(rejected["status"], json!("rejected"));
    let tx = rejected["requestTx"].as_str().expect("tx");
    assert_eq!(
        before - balance(url, user),
        gas_cost(url, tx),
        "the fee came back"
    );

    // A private model: no grant, no inference; its owner runs it (free).
    let private = ok_json(model(
        dirs[4].path(),
        url,
        &[
            "deploy",
            runtime_data("tiny-bert-classifier").to_str().expect("utf8"),
            "--price",
            "0",
            "--private",
            "--key",
            &key(OWNER),
        ],
    ));
    let private_name = private["name"].as_str().expect("name").to_string();
    let err = failed(inference(
        client,
        url,
        &[&private_name, "--input", "hi", "--key", &key(USER)],
    ));
    assert!(err.contains("NoAccess"), "{err}");
    let err = rpc_result(
        url,
        "lattice_infer",
        json!([{"model": private_name, "request": {"inputs": ["hi"]}}]),
    )
    .expect_err("private");
    assert!(err.to_string().contains("private"), "{err}");
    drop(serving);
    // The private model's blocks are only in the deployer's store, which no peer serves: the
    // request stays pending, and the node says why.
    let out = inference(
        client,
        url,
        &[
            &private_name,
            "--input",
            "hi",
            "--key",
            &key(OWNER),
            "--timeout-s",
            "5",
        ],
    );
    let err = failed(out);
    assert!(
        err.contains("still pending") && err.contains("fetching model"),
        "{err}"
    );

    // Tampered store blocks: the node's copy of MiniLM is corrupted while it is down. With no
    // peer to repair from, the run is refused naming the file and the block; once the author
    // serves again, the executor fetches good blocks, repairs its copy and answers — with the
    // same output hash as before.
    drop(node);
    let weights = std::fs::read(minilm.join("model.safetensors")).expect("weights");
    let mid = weights.len() / 2;
    assert!(
        flip_in_store(node_dir, &weights[mid..mid + 64]) >= 1,
        "flipped the node's copy"
    );
    let node = start_instant(node_dir, &["--peer", &kubo_peer]);
    let url = node.url.as_str();
    let out = inference(
        client,
        url,
        &[
            "minilm",
            "--input",
            "A paid sentence embedding.",
            "--key",
            &key(USER),
            "--timeout-s",
            "5",
        ],
    );
    let err = failed(out);
    assert!(
        err.contains("model.safetensors") && err.contains("corrupt"),
        "names the file and the block: {err}"
    );
    let _serving = serve_on(dirs[0].path(), port);
    let again = ok_json(inference(
        client,
        url,
        &[
            "minilm",
            "--input",
            "A paid sentence embedding.",
            "--key",
            &key(USER),
        ],
    ));
    assert_eq!(again["status"], json!("fulfilled"), "{again}");
    assert_eq!(again["outputHash"], json!(output_hash));
}

/// A paid request whose document is on no node yet (sent as a bare transaction) is not
/// rejected — another executor might hold the document — but stays pending with the reason;
/// once the document is put on the node, the executor's next try fulfils it.
#[test]
fn a_request_whose_document_arrives_later_is_fulfilled_not_rejected() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let author = tempfile::tempdir().expect("tmp");
    let bert = runtime_data("tiny-bert-classifier");
    let cid = import_cid(node_dir.path(), &bert, &[]);
    assert_eq!(import_cid(author.path(), &bert, &[]), cid);
    let node = start_instant(node_dir.path(), &["--executor-retry-s", "1"]);
    let url = node.url.as_str();
    let deployed = deploy(author.path(), url, &cid);
    let id: B256 = deployed["model_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("model id in {deployed}"));
    let document = br#"{"inputs":["later, please"]}"#;
    let fee = U256::from(100_000_000_000_000u64);
    rpc(
        url,
        "eth_sendRawTransaction",
        json!([signed_request(0, id, document, fee, fee)]),
    );
    let pending = wait_receipt(url, 1, "the executor tried it", |a| a["reason"].is_string());
    assert_eq!(pending["status"], json!("pending"), "{pending}");
    assert!(
        pending["reason"]
            .as_str()
            .is_some_and(|r| r.contains("request document")),
        "{pending}"
    );
    let put = rpc(
        url,
        "lattice_putRequest",
        json!([{"document": base64::engine::general_purpose::STANDARD.encode(document)}]),
    );
    assert_eq!(
        put["inputHash"],
        json!(lattice_executor::content::sha256(document))
    );
    let done = wait_receipt(url, 1, "fulfilled after the document arrived", settled);
    assert_eq!(done["status"], json!("fulfilled"), "{done}");
}

/// A node without an executor still answers the read-only `lattice_*` methods from its
/// chain and store; paid requests sent to it are refused with the reason, and nothing is
/// paid.
#[test]
fn a_node_without_an_executor_serves_the_read_only_methods() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let author = tempfile::tempdir().expect("tmp");
    let cid = import_cid(author.path(), &runtime_data("tiny-bert-classifier"), &[]);
    let node = start_instant(node_dir.path(), &["--no-executor"]);
    let url = node.url.as_str();
    deploy(author.path(), url, &cid);
    let list = rpc(url, "lattice_listModels", json!([]));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["name"], json!("tiny-bert-classifier"));
    let got = rpc(url, "lattice_getModel", json!(["tiny-bert-classifier"]));
    assert_eq!(got["latestRootCid"], json!(cid), "{got}");
    assert_eq!(
        got["availableHere"],
        json!(false),
        "the node's store lacks it"
    );
    assert_eq!(got["versions"].as_array().map(Vec::len), Some(1));
    let err = rpc_result(url, "lattice_getReceipt", json!([7])).expect_err("no such request");
    assert!(err.to_string().contains('7'), "{err}");
    let err = rpc_result(
        url,
        "lattice_infer",
        json!([{"model": "tiny-bert-classifier", "request": {"inputs": ["hi"]}}]),
    )
    .expect_err("no executor");
    assert!(err.to_string().contains("not found"), "{err}");

    let before = balance(url, DEV_ACCOUNTS[USER].address);
    let err = failed(inference(
        author.path(),
        url,
        &["tiny-bert-classifier", "--input", "hi", "--key", &key(USER)],
    ));
    assert!(err.contains("runs no executor"), "{err}");
    assert_eq!(
        balance(url, DEV_ACCOUNTS[USER].address),
        before,
        "nothing paid"
    );
}

/// A request for a model no peer serves yet fails on the node and stays pending with the
/// reason; the executor tries it again on its own (`--executor-retry-s 1`), and once the
/// author's gateway is up the same running node fetches the model and fulfils it — no
/// restart, no second request.
#[test]
fn failed_requests_are_tried_again_without_a_restart() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let author = tempfile::tempdir().expect("tmp");
    let cid = import_cid(author.path(), &runtime_data("tiny-bert-classifier"), &[]);
    let port = free_port();
    let peer = format!("http://127.0.0.1:{port}");
    let node = start_instant(
        node_dir.path(),
        &["--peer", &peer, "--executor-retry-s", "1"],
    );
    let url = node.url.as_str();
    deploy(author.path(), url, &cid);
    let err = failed(inference(
        author.path(),
        url,
        &[
            "tiny-bert-classifier",
            "--input",
            "soon",
            "--key",
            &key(USER),
            "--timeout-s",
            "3",
        ],
    ));
    assert!(
        err.contains("still pending") && err.contains("fetching model"),
        "{err}"
    );
    let pending = rpc(url, "lattice_getReceipt", json!([1]));
    assert_eq!(pending["status"], json!("pending"), "{pending}");

    let _serving = serve_on(author.path(), port);
    let answer = wait_receipt(url, 1, "never retried", settled);
    assert_eq!(answer["status"], json!("fulfilled"), "{answer}");
    let check = rpc(url, "lattice_verifyReceipt", json!([answer["receipt"]]));
    assert_eq!(check["valid"], json!(true), "{check}");
}

/// A request that arrives while the node cannot answer it (its executor key lacks
/// `EXECUTOR_ROLE`) stays pending with the reason; after a restart with the right key, the
/// executor finds it in recent blocks and fulfils it. The model was imported into the node's
/// own store before it started: no peer is needed.
#[test]
fn pending_requests_are_answered_after_a_restart() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let client = tempfile::tempdir().expect("tmp");
    let bert = runtime_data("tiny-bert-classifier");
    // The same import in both stores gives the same CID.
    let cid = import_cid(node_dir.path(), &bert, &[]);
    assert_eq!(import_cid(client.path(), &bert, &[]), cid);
    let node = start_instant(node_dir.path(), &["--executor-key", &key(3)]);
    let url = node.url.as_str();
    deploy(client.path(), url, &cid);
    let err = failed(inference(
        client.path(),
        url,
        &[
            "tiny-bert-classifier",
            "--input",
            "later",
            "--key",
            &key(USER),
            "--timeout-s",
            "3",
        ],
    ));
    assert!(
        err.contains("still pending") && err.contains("AccessControlUnauthorizedAccount"),
        "{err}"
    );
    drop(node);

    let node = start_instant(node_dir.path(), &[]);
    let url = node.url.as_str();
    let answer = wait_receipt(url, 1, "never answered", settled);
    assert_eq!(answer["status"], json!("fulfilled"), "{answer}");
    let check = rpc(url, "lattice_verifyReceipt", json!([answer["receipt"]]));
    assert_eq!(check["valid"], json!(true), "{check}");
    let labels = answer["outputs"][0]["labels"].as_array().expect("labels");
    assert!(!labels.is_empty());

    // Four users at once: four fulfilments, one after another from the executor's account
    // (nonces in order), each with its own answer.
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (4..8)
            .map(|i| {
                let text = format!("user {i} says hello");
                let client = client.path();
                s.spawn(move || {
                    ok_json(inference(
                        client,
                        url,
                        &["tiny-bert-classifier", "--input", &text, "--key", &key(i)],
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut ids = Vec::new();
    for a in &answers {
        assert_eq!(a["status"], json!("fulfilled"), "{a}");
        let check = rpc(url, "lattice_verifyReceipt", json!([a["receipt"]]));
        assert_eq!(check["valid"], json!(true), "{check}");
        ids.push(a["requestId"].as_str().expect("id").to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "four distinct requests");
    let hashes: std::collections::HashSet<&str> = answers
        .iter()
        .filter_map(|a| a["outputHash"].as_str())
        .collect();
    assert_eq!(hashes.len(), 4, "four different inputs, four outputs");
    let credit = registry_u256(
        url,
        ModelRegistry::balanceOfCall(DEV_ACCOUNTS[EXECUTOR].address).abi_encode(),
    );
    assert_eq!(
        credit,
        U256::from(5) * U256::from(100_000_000_000_000u64) / U256::from(10)
    );
}

/// A Hugging Face llama checkpoint quantized to GGUF at import answers a paid prompt through
/// the executor, and re-running the receipt reproduces the generated tokens bit for bit.
#[test]
fn a_quantized_llm_answers_paid_prompts_reproducibly() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let client = tempfile::tempdir().expect("tmp");
    let llama = runtime_data("tiny-llama");
    let q8 = ["--quantize", "q8_0"];
    let cid = import_cid(node_dir.path(), &llama, &q8);
    assert_eq!(
        import_cid(client.path(), &llama, &q8),
        cid,
        "quantizing is deterministic"
    );
    let node = start_instant(node_dir.path(), &[]);
    let url = node.url.as_str();
    ok_json(model(
        client.path(),
        url,
        &["deploy", &cid, "--price", "0.0002", "--key", &key(OWNER)],
    ));
    let receipt_file = client.path().join("receipt.json");
    let answer = ok_json(inference(
        client.path(),
        url,
        &[
            "tiny-llama",
            "--input",
            "Once upon a time",
            "--max-tokens",
            "12",
            "--key",
            &key(USER),
            "--receipt-out",
            receipt_file.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(answer["status"], json!("fulfilled"), "{answer}");
    let generation = &answer["outputs"][0]["generation"];
    assert_eq!(
        generation["tokens"].as_array().map(Vec::len),
        Some(12),
        "{answer}"
    );
    assert_eq!(
        generation["prompt_ms"],
        json!(0.0),
        "timings are not part of the answer"
    );
    let verified = ok_json(
        lattice(client.path())
            .args(["--json", "receipt", "verify"])
            .arg(&receipt_file)
            .args(["--reexecute", "--rpc", url])
            .output()
            .expect("receipt verify"),
    );
    assert_eq!(verified["reexecuted"]["matches"], json!(true), "{verified}");
    assert_eq!(verified["valid"], json!(true), "{verified}");
}
