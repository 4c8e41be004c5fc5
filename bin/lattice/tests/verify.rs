//! `lattice model verify` as a real process against a real `lattice devnet` on loopback: a
//! deployed folder and an imported model (with a manifest) verify; a flipped byte in the
//! weights, an unknown model and blocks that are not local are clear failures.

use std::process::Command;

use serde_json::Value;

mod support;
use support::{
    failed, flip_in_store, model, ok_json, runtime_data as fixture, serve, start_instant as start,
};

#[test]
fn verify_deployed_models_and_detect_corruption() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let client = tempfile::tempdir().expect("tmp");
    let node = start(node_dir.path(), &[]);
    let url = node.url.as_str();
    let c = client.path();
    let bert = fixture("tiny-bert-classifier");
    let bert_path = bert.to_str().expect("utf-8 path");

    // A folder deployed as is: blocks, no manifest, a smoke classification.
    let d = ok_json(model(c, url, &["deploy", bert_path, "--price", "0"]));
    let cid = d["root_cid"].as_str().expect("cid").to_string();
    let v = ok_json(model(c, url, &["verify", "tiny-bert-classifier"]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["root_cid"], cid.as_str());
    assert!(v["blocks_checked"].as_u64().expect("blocks") >= 4, "{v}");
    assert!(v["load_ms"].as_f64().is_some(), "{v}");
    assert!(v["run_ms"].as_f64().is_some(), "{v}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert!(names.contains(&"run"), "{v}");

    // An imported model: its manifest is checked against the chain and the folder.
    let mut import = Command::new(env!("CARGO_BIN_EXE_lattice"));
    import
        .arg("--datadir")
        .arg(c)
        .args(["--json", "model", "import", bert_path, "--name", "org/bert"]);
    let imported = ok_json(import.output().expect("import runs"));
    let icid = imported["cid"].as_str().expect("cid").to_string();
    ok_json(model(c, url, &["deploy", &icid, "--price", "0"]));
    let v = ok_json(model(c, url, &["verify", &icid, "--no-run"]));
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["manifest_cid"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v["load_ms"].is_null(), "--no-run loads nothing: {v}");
    // Text output, with the datadir given as a relative path (the runtime follows links
    // into the store from the laid-out folder).
    let text = Command::new(env!("CARGO_BIN_EXE_lattice"))
        .current_dir(c.parent().expect("parent"))
        .arg("--datadir")
        .arg(c.file_name().expect("name"))
        .args(["model", "verify", "org/bert", "--rpc", url])
        .env_remove("LATTICE_RPC")
        .output()
        .expect("lattice runs");
    let out = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(out.contains("ok     run"), "{out}");
    assert!(out.trim_end().ends_with("verified"), "{out}");

    // A manifest that does not match its folder: the files are named.
    let bad = client.path().join("bad-manifest");
    std::fs::create_dir_all(&bad).expect("mkdir");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(bert.join(f), bad.join(f)).expect("copy");
    }
    std::fs::write(
        bad.join("lattice.json"),
        r#"{"schema": "lattice.model/1", "name": "bad-manifest", "format": "safetensors",
            "files": [{"path": "config.json", "size": 1, "cid": "bafkreinotthecid"},
                      {"path": "vocab.txt", "size": 5, "cid": "bafkreinotthere"}]}"#,
    )
    .expect("write manifest");
    ok_json(model(
        c,
        url,
        &["deploy", bad.to_str().expect("utf-8"), "--price", "0"],
    ));
    let out = model(c, url, &["verify", "bad-manifest", "--no-run"]);
    assert!(!out.status.success(), "a wrong manifest verified");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let files = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "manifest files")
        .expect("manifest files check");
    assert_eq!(files["ok"], false, "{report}");
    let detail = files["detail"].as_str().expect("detail");
    for needle in [
        "config.json: CID",
        "manifest says 1",
        "vocab.txt: listed but not in the folder",
        "model.safetensors: in the folder but not in lattice.json",
        "tokenizer.json: in the folder but not in lattice.json",
    ] {
        assert!(detail.contains(needle), "{needle:?} not in {detail}");
    }

    // Blocks that are not local, and no peer: the missing block is named.
    let empty = tempfile::tempdir().expect("tmp");
    let err = failed(model(
        empty.path(),
        url,
        &["verify", "tiny-bert-classifier"],
    ));
    assert!(err.contains("failed verification"), "{err}");
    let out = model(empty.path(), url, &["verify", "tiny-bert-classifier"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let detail = report["checks"][0]["detail"].as_str().expect("detail");
    assert!(
        detail.contains(&format!("block {cid} is missing")),
        "{detail}"
    );
    assert!(detail.contains("--peer"), "{detail}");

    // A peer that is not there: the fetch fails, the missing block is still named.
    let out = model(
        empty.path(),
        url,
        &[
            "verify",
            "tiny-bert-classifier",
            "--peer",
            "http://127.0.0.1:9",
        ],
    );
    assert!(!out.status.success(), "verified without blocks");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["checks"][0]["name"], "fetch", "{report}");
    assert_eq!(report["checks"][0]["ok"], false, "{report}");
    let detail = report["checks"][1]["detail"].as_str().expect("detail");
    assert!(detail.contains("is missing"), "{detail}");

    // The same, with a peer that has the blocks: fetched, verified, run.
    {
        let (_server, gateway) = serve(c);
        let v = ok_json(model(
            empty.path(),
            url,
            &["verify", "tiny-bert-classifier", "--peer", &gateway],
        ));
        assert_eq!(v["ok"], true, "{v}");
        assert!(v["blocks_fetched"].as_u64().expect("fetched") >= 4, "{v}");
        let again = ok_json(model(
            empty.path(),
            url,
            &["verify", "tiny-bert-classifier"],
        ));
        assert_eq!(again["blocks_fetched"], 0, "{again}");
    }

    // Unknown model.
    let err = failed(model(c, url, &["verify", "no-such-model"]));
    assert!(err.contains("no model named \"no-such-model\""), "{err}");

    // One flipped byte in the weights: the file and the block are named.
    let weights = std::fs::read(bert.join("model.safetensors")).expect("weights");
    let at = weights.len() / 2;
    assert!(
        flip_in_store(c, &weights[at..at + 64]) >= 1,
        "weights not found in the store"
    );
    let out = model(c, url, &["verify", "tiny-bert-classifier"]);
    assert!(!out.status.success(), "corrupt model verified");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["ok"], false);
    let detail = report["checks"][0]["detail"].as_str().expect("detail");
    assert!(detail.contains("model.safetensors: block bafk"), "{detail}");
    assert!(detail.contains("is corrupt"), "{detail}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed verification: blocks"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn every_task_runs_a_smoke_input() {
    let node_dir = tempfile::tempdir().expect("tmp");
    let client = tempfile::tempdir().expect("tmp");
    let node = start(node_dir.path(), &[]);
    let url = node.url.as_str();
    let c = client.path();
    for (name, task) in [
        ("tiny-gpt2", "generate"),
        ("tiny-vit", "classify-image"),
        ("tiny-clip", "zero-shot"),
        ("tiny-whisper", "transcribe"),
    ] {
        let folder = fixture(name);
        ok_json(model(
            c,
            url,
            &["deploy", folder.to_str().expect("utf-8"), "--price", "0"],
        ));
        let v = ok_json(model(c, url, &["verify", name]));
        assert_eq!(v["ok"], true, "{name}: {v}");
        let checks = v["checks"].as_array().expect("checks");
        let detail = |n: &str| {
            checks
                .iter()
                .find(|c| c["name"] == n)
                .and_then(|c| c["detail"].as_str())
                .unwrap_or_else(|| panic!("{name}: no {n} check in {v}"))
                .to_string()
        };
        assert!(detail("load").starts_with(task), "{name}: {v}");
        let run = detail("run");
        match task {
            "generate" => assert!(run.starts_with("generated"), "{run}"),
            "transcribe" => assert!(run.starts_with("transcript"), "{run}"),
            _ => assert!(run.contains("labels summing to 1"), "{run}"),
        }
    }
}
