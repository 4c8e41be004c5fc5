//! `lattice model deploy`, `model list` and `model info` as real processes against a real
//! `lattice devnet` on loopback: registering folders, reading them back by id, CID and name,
//! private models, new versions, and the refusals (same CID twice, someone else's model, a
//! node that is not there, no key on a chain that is not the dev chain).

use std::path::Path;
use std::process::Command;

use lattice_evm::DEV_ACCOUNTS;
use serde_json::Value;

mod support;
use support::{failed, model, ok_json, runtime_data as fixture, start_instant as start};

/// A copy of a fixture folder with one extra file, so it gets another root CID.
fn changed_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
    std::fs::write(to.join("NOTES.txt"), "second version\n").expect("write");
}

fn addr(i: usize) -> String {
    DEV_ACCOUNTS[i].address.to_string().to_lowercase()
}

#[test]
fn deploy_list_and_info_against_a_devnet() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let client = tempfile::tempdir().expect("tmp");
    let node = start(node_dir.path(), &[]);
    let url = node.url.as_str();
    let c = client.path();
    let bert = fixture("tiny-bert-classifier");
    let bert_path = bert.to_str().expect("utf-8 path");

    // A folder: imported, registered by dev account 0.
    let d = ok_json(model(c, url, &["deploy", bert_path, "--price", "0.001"]));
    assert_eq!(d["action"], "registerModel");
    assert_eq!(d["version"], "0");
    assert_eq!(d["name"], "tiny-bert-classifier");
    assert_eq!(d["format"], "safetensors");
    assert_eq!(d["architecture"], "BertForSequenceClassification");
    assert!(d["block"].as_u64().expect("block") >= 1);
    let id = d["model_id"].as_str().expect("id").to_string();
    let cid = d["root_cid"].as_str().expect("cid").to_string();
    assert!(cid.starts_with("bafy"), "CIDv1: {cid}");

    // Listed with its name, owner and price.
    let list = ok_json(model(c, url, &["list"]));
    let rows = list.as_array().expect("array");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["name"], "tiny-bert-classifier");
    assert_eq!(
        rows[0]["owner"].as_str().map(str::to_lowercase),
        Some(addr(0))
    );
    assert_eq!(rows[0]["price_eth"], "0.001");
    assert_eq!(rows[0]["price_wei"], "1000000000000000");
    assert_eq!(rows[0]["private"], false);
    assert_eq!(rows[0]["active"], true);

    // Info by id, CID and name agree.
    let by_id = ok_json(model(c, url, &["info", &id]));
    assert_eq!(by_id["root_cid"], cid.as_str());
    assert_eq!(by_id["versions"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_id["versions"][0]["root_cid"], cid.as_str());
    assert_eq!(ok_json(model(c, url, &["info", &cid])), by_id);
    assert_eq!(
        ok_json(model(c, url, &["info", "tiny-bert-classifier"])),
        by_id
    );

    // A second folder, private, free, with its own name.
    let distil = fixture("tiny-distilbert-classifier");
    let d2 = ok_json(model(
        c,
        url,
        &[
            "deploy",
            distil.to_str().expect("utf-8"),
            "--price",
            "0",
            "--private",
            "--name",
            "distil",
        ],
    ));
    let info2 = ok_json(model(c, url, &["info", "distil"]));
    assert_eq!(info2["id"], d2["model_id"]);
    assert_eq!(info2["private"], true);
    assert_eq!(info2["price_eth"], "0");
    assert_eq!(
        ok_json(model(c, url, &["list"])).as_array().map(Vec::len),
        Some(2)
    );

    // The same CID again: refused before sending anything.
    let err = failed(model(c, url, &["deploy", &cid, "--price", "1"]));
    assert!(err.contains("already registered"), "{err}");

    // A new version of dev account 0's model, signed by dev account 1: the contract refuses.
    let v2 = c.join("bert-v2");
    changed_copy(&bert, &v2);
    let v2_path = v2.to_str().expect("utf-8");
    let key1 = DEV_ACCOUNTS[1].private_key.to_string();
    let err = failed(model(
        c,
        url,
        &[
            "deploy",
            v2_path,
            "--price",
            "0",
            "--version-of",
            &id,
            "--key",
            &key1,
        ],
    ));
    assert!(err.contains("NotModelOwner"), "{err}");

    // The owner can.
    let d3 = ok_json(model(
        c,
        url,
        &["deploy", v2_path, "--price", "0", "--version-of", &id],
    ));
    assert_eq!(d3["action"], "addVersion");
    assert_eq!(d3["version"], "1");
    assert_eq!(d3["model_id"], id.as_str());
    let info = ok_json(model(c, url, &["info", &id]));
    assert_eq!(info["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(info["latest_root_cid"], d3["root_cid"]);
    // The new version's CID names the model too.
    let by_v2 = ok_json(model(
        c,
        url,
        &["info", d3["root_cid"].as_str().expect("cid")],
    ));
    assert_eq!(by_v2["id"], id.as_str());

    // Per owner: dev account 1 has none; dev account 0 both.
    let none = ok_json(model(c, url, &["list", "--owner", &addr(1)]));
    assert_eq!(none.as_array().map(Vec::len), Some(0));
    let mine = ok_json(model(c, url, &["list", "--owner", &addr(0)]));
    assert_eq!(mine.as_array().map(Vec::len), Some(2));
    let page = ok_json(model(c, url, &["list", "--offset", "1", "--limit", "1"]));
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["name"], "distil");

    // The new version's CID deployed as a model of its own: the contract refuses it by name.
    let err = failed(model(c, url, &["deploy", v2_path, "--price", "0"]));
    assert!(err.contains("CidAlreadyUsed"), "{err}");

    // A folder with a lattice.json manifest: name, format and architecture come from it, and
    // the manifest's CID is recorded.
    let with_manifest = c.join("with-manifest");
    changed_copy(&bert, &with_manifest);
    std::fs::write(
        with_manifest.join("lattice.json"),
        r#"{"schema": "lattice.model/1", "name": "org/tiny-bert", "format": "safetensors",
            "architecture": "BertForSequenceClassification", "task": "classify"}"#,
    )
    .expect("write manifest");
    let d4 = ok_json(model(
        c,
        url,
        &[
            "deploy",
            with_manifest.to_str().expect("utf-8"),
            "--price",
            "0.002",
        ],
    ));
    assert_eq!(d4["name"], "org/tiny-bert");
    let manifest_cid = d4["manifest_cid"].as_str().expect("manifest CID");
    let info4 = ok_json(model(c, url, &["info", "org/tiny-bert"]));
    assert_eq!(info4["latest_manifest_cid"], manifest_cid);
    assert_eq!(info4["versions"][0]["manifest_cid"], manifest_cid);

    // A CID already in the local store (added with `ipfs add`), detected from its files.
    let gpt2 = fixture("tiny-gpt2");
    let added = Command::new(env!("CARGO_BIN_EXE_lattice"))
        .arg("--datadir")
        .arg(c)
        .args(["ipfs", "add", "-r", "-Q", "--cid-version", "1"])
        .arg(&gpt2)
        .output()
        .expect("ipfs add runs");
    assert!(added.status.success(), "{added:?}");
    let gpt2_cid = String::from_utf8_lossy(&added.stdout).trim().to_string();
    let d5 = ok_json(model(
        c,
        url,
        &["deploy", &gpt2_cid, "--price", "0", "--name", "gpt2"],
    ));
    assert_eq!(d5["root_cid"], gpt2_cid.as_str());
    assert_eq!(d5["architecture"], "GPT2LMHeadModel");
    assert_eq!(d5["manifest_cid"], Value::Null);

    // Unknown models and bad input are clear errors.
    let err = failed(model(c, url, &["info", "no-such-model"]));
    assert!(err.contains("no model named"), "{err}");
    let err = failed(model(c, url, &["info", &format!("0x{}", "ab".repeat(32))]));
    assert!(err.contains("no model with id"), "{err}");
    let err = failed(model(c, url, &["deploy", bert_path, "--price", "cheap"]));
    assert!(err.contains("not an ETH amount"), "{err}");
    let not_a_model = c.join("not-a-model");
    std::fs::create_dir_all(&not_a_model).expect("mkdir");
    std::fs::write(not_a_model.join("notes.txt"), "hello").expect("write");
    let err = failed(model(
        c,
        url,
        &[
            "deploy",
            not_a_model.to_str().expect("utf-8"),
            "--price",
            "0",
        ],
    ));
    assert!(err.contains("not a model the runtime can run"), "{err}");
    let err = failed(model(c, url, &["deploy", "bafkqaaa", "--price", "0"]));
    assert!(err.contains("not in the local store"), "{err}");
}

#[test]
fn a_node_that_is_not_there_is_a_clear_error() {
    let client = tempfile::tempdir().expect("tmp");
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = failed(model(client.path(), &url, &["list"]));
    assert!(err.contains("cannot reach a node at"), "{err}");
    let bert = fixture("tiny-bert-classifier");
    let err = failed(model(
        client.path(),
        &url,
        &["deploy", bert.to_str().expect("utf-8"), "--price", "0"],
    ));
    assert!(err.contains("cannot reach a node at"), "{err}");
}

#[test]
fn no_key_on_another_chain_is_refused_and_a_key_works() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let client = tempfile::tempdir().expect("tmp");
    let node = start(node_dir.path(), &["--chain-id", "777"]);
    let bert = fixture("tiny-bert-classifier");
    let bert_path = bert.to_str().expect("utf-8");
    let err = failed(model(
        client.path(),
        &node.url,
        &["deploy", bert_path, "--price", "0"],
    ));
    assert!(err.contains("no signing key"), "{err}");
    assert!(err.contains("777"), "{err}");
    // With a key file (dev account 2), the same deploy goes through on chain 777.
    let key_file = client.path().join("key.hex");
    std::fs::write(&key_file, DEV_ACCOUNTS[2].private_key.to_string()).expect("write key");
    let d = ok_json(model(
        client.path(),
        &node.url,
        &[
            "deploy",
            bert_path,
            "--price",
            "0.5",
            "--key",
            key_file.to_str().expect("utf-8"),
        ],
    ));
    assert_eq!(d["owner"].as_str().map(str::to_lowercase), Some(addr(2)));
    assert_eq!(d["price_eth"], "0.5");
    // The node and the key from the environment (LATTICE_RPC, LATTICE_KEY).
    let out = Command::new(env!("CARGO_BIN_EXE_lattice"))
        .arg("--datadir")
        .arg(client.path())
        .args(["--json", "model", "deploy"])
        .arg(fixture("tiny-gpt2"))
        .args(["--price", "0"])
        .env("LATTICE_RPC", &node.url)
        .env("LATTICE_KEY", DEV_ACCOUNTS[3].private_key.to_string())
        .env_remove("LATTICE_LOG")
        .output()
        .expect("lattice runs");
    let d = ok_json(out);
    assert_eq!(d["owner"].as_str().map(str::to_lowercase), Some(addr(3)));
}
