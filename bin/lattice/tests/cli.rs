//! The `lattice ipfs` commands end to end, as a user runs them: real
//! processes, real data directories, a real server on loopback.

use std::path::Path;
use std::process::Output;

mod support;
use support::{lattice, serve};

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn json(out: Output) -> serde_json::Value {
    serde_json::from_slice(&ok(out).stdout).expect("JSON on stdout")
}

fn failure(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "errors exit with 1");
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert!(err.starts_with("error: "), "human-readable error: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn model(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(m.join("sub")).expect("mkdir");
    std::fs::write(m.join("config.json"), br#"{"model_type":"bert"}"#).expect("write");
    let weights: Vec<u8> = (0..700_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(m.join("model.safetensors"), &weights).expect("write");
    std::fs::write(m.join("sub/vocab.txt"), b"[PAD]\n[UNK]\n").expect("write");
    std::fs::write(m.join(".hidden"), b"kubo skips dotfiles unless --hidden").expect("write");
    m
}

/// Flips one bit of the stored weights (the 700,000-byte data file).
fn flip_weights_byte(datadir: &Path, offset: usize) {
    let data = std::fs::read_dir(datadir.join("store/data"))
        .expect("data")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == 700_000))
        .expect("the weights laid out contiguously in one data file");
    let mut bytes = std::fs::read(&data).expect("read");
    bytes[offset] ^= 0x80;
    std::fs::write(&data, &bytes).expect("write");
}

#[test]
fn add_read_verify_pin_gc() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = model(tmp.path());
    let node = tmp.path().join("node");

    let added = json(
        lattice(&node)
            .args(["--json", "ipfs", "add", "-r"])
            .arg(&m)
            .output()
            .expect("add"),
    );
    let entries = added.as_array().expect("array");
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "model/config.json",
            "model/model.safetensors",
            "model/sub/vocab.txt",
            "model/sub",
            "model"
        ]
    );
    let root = entries.last().expect("root")["cid"]
        .as_str()
        .expect("cid")
        .to_string();
    assert!(root.starts_with("Qm"), "CIDv0 by default: {root}");

    // Text output is kubo's.
    let text = String::from_utf8(
        ok(lattice(&node)
            .args(["ipfs", "add", "-r"])
            .arg(&m)
            .output()
            .expect("add"))
        .stdout,
    )
    .expect("utf8");
    assert!(text.ends_with(&format!("added {root} model\n")), "{text}");
    let v1 = String::from_utf8(
        ok(lattice(&node)
            .args([
                "ipfs",
                "add",
                "-r",
                "-Q",
                "--cid-version",
                "1",
                "--only-hash",
            ])
            .arg(&m)
            .output()
            .expect("add"))
        .stdout,
    )
    .expect("utf8");
    assert!(v1.trim().starts_with("bafybei"), "{v1}");

    let cat = ok(lattice(&node)
        .args([
            "ipfs",
            "cat",
            &format!("{root}/model.safetensors"),
            "--offset",
            "1000",
            "--length",
            "5",
        ])
        .output()
        .expect("cat"));
    assert_eq!(
        cat.stdout,
        &std::fs::read(m.join("model.safetensors")).expect("read")[1000..1005]
    );

    let ls = json(
        lattice(&node)
            .args(["--json", "ipfs", "ls", &root])
            .output()
            .expect("ls"),
    );
    let ls_names: Vec<&str> = ls
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(ls_names, ["config.json", "model.safetensors", "sub"]);
    assert_eq!(ls[1]["file_size"], 700_000);
    assert_eq!(ls[2]["is_dir"], true);

    let out_dir = tmp.path().join("out");
    ok(lattice(&node)
        .args(["ipfs", "get", &root, "-o"])
        .arg(&out_dir)
        .output()
        .expect("get"));
    for rel in ["config.json", "model.safetensors", "sub/vocab.txt"] {
        assert_eq!(
            std::fs::read(out_dir.join(rel)).expect("read"),
            std::fs::read(m.join(rel)).expect("read")
        );
    }
    assert!(!out_dir.join(".hidden").exists());

    let report = json(
        lattice(&node)
            .args(["--json", "ipfs", "verify", &root])
            .output()
            .expect("verify"),
    );
    assert_eq!(report["corrupt"], serde_json::json!([]));

    // Flip one byte of the stored weights: verify names the block and fails.
    flip_weights_byte(&node, 300_000);
    let out = lattice(&node)
        .args(["ipfs", "verify", &root])
        .output()
        .expect("verify");
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf8");
    assert!(stdout.contains("corrupt Qm"), "{stdout}");
    let err = failure(out);
    assert!(err.contains("1 corrupt"), "{err}");
    let err = failure(
        lattice(&node)
            .args(["ipfs", "cat", &format!("{root}/model.safetensors")])
            .output()
            .expect("cat"),
    );
    assert!(err.contains("is corrupt"), "{err}");

    // Pins: the root is pinned; unpin + gc removes everything.
    let pins = json(
        lattice(&node)
            .args(["--json", "ipfs", "pin", "ls"])
            .output()
            .expect("pin ls"),
    );
    assert!(
        pins.as_array()
            .expect("pins")
            .iter()
            .any(|p| p["cid"] == root.as_str() && p["type"] == "recursive")
    );
    let unpinned = json(
        lattice(&node)
            .args(["--json", "ipfs", "pin", "rm", &root])
            .output()
            .expect("pin rm"),
    );
    assert_eq!(unpinned["unpinned"], serde_json::json!([root]));
    let gc = json(
        lattice(&node)
            .args(["--json", "ipfs", "gc"])
            .output()
            .expect("gc"),
    );
    assert!(gc["blocks_removed"].as_u64().expect("n") >= 5, "{gc}");
    let err = failure(
        lattice(&node)
            .args(["ipfs", "cat", &format!("{root}/config.json")])
            .output()
            .expect("cat"),
    );
    assert!(err.contains("not in the store"), "{err}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let node = tmp.path().join("node");
    let m = model(tmp.path());
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "cat", "not-a-cid"])
                .output()
                .expect("run")
        )
        .contains("not a valid CID")
    );
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "add"])
                .arg(&m)
                .output()
                .expect("run")
        )
        .contains("use -r")
    );
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "add", "--chunk-size", "2000000"])
                .arg(m.join("config.json"))
                .output()
                .expect("run")
        )
        .contains("chunk size")
    );
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "add", "--chunker", "rabin"])
                .arg(m.join("config.json"))
                .output()
                .expect("run")
        )
        .contains("size-N")
    );
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "add"])
                .arg(tmp.path().join("missing"))
                .output()
                .expect("run")
        )
        .contains("missing")
    );
    let root = String::from_utf8(
        ok(lattice(&node)
            .args(["ipfs", "add", "-r", "-Q"])
            .arg(&m)
            .output()
            .expect("add"))
        .stdout,
    )
    .expect("utf8");
    let root = root.trim();
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "cat", &format!("{root}/nope")])
                .output()
                .expect("run")
        )
        .contains("no link named \"nope\"")
    );
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "cat", &format!("{root}/../x")])
                .output()
                .expect("run")
        )
        .contains("not allowed")
    );
    assert!(
        failure(
            lattice(&node)
                .args(["ipfs", "dag", "import"])
                .arg(m.join("config.json"))
                .output()
                .expect("run")
        )
        .contains("CAR")
    );
    // Nothing stored was lost by the failed commands.
    let report = json(
        lattice(&node)
            .args(["--json", "ipfs", "verify", root])
            .output()
            .expect("verify"),
    );
    assert_eq!(report["missing"], serde_json::json!([]));
}

#[test]
fn car_export_import_and_fetch_between_nodes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = model(tmp.path());
    let a = tmp.path().join("a");
    let root = String::from_utf8(
        ok(lattice(&a)
            .args(["ipfs", "add", "-r", "-Q", "--chunk-size", "65536"])
            .arg(&m)
            .output()
            .expect("add"))
        .stdout,
    )
    .expect("utf8");
    let root = root.trim().to_string();

    let car = tmp.path().join("model.car");
    ok(lattice(&a)
        .args(["ipfs", "dag", "export", &root, "-o"])
        .arg(&car)
        .output()
        .expect("export"));
    let b = tmp.path().join("b");
    let imported = json(
        lattice(&b)
            .args(["--json", "ipfs", "dag", "import"])
            .arg(&car)
            .output()
            .expect("import"),
    );
    assert_eq!(imported[0]["pinned"], serde_json::json!([root]));
    let cat = ok(lattice(&b)
        .args(["ipfs", "cat", &format!("{root}/model.safetensors")])
        .output()
        .expect("cat"));
    assert_eq!(
        cat.stdout,
        std::fs::read(m.join("model.safetensors")).expect("read")
    );

    // Node c fetches from node a's gateway, and from its Kubo RPC API.
    let (_server, url) = serve(&a);
    let c = tmp.path().join("c");
    let report = json(
        lattice(&c)
            .args(["--json", "ipfs", "fetch", "--from", &url, &root])
            .output()
            .expect("fetch"),
    );
    assert_eq!(report["blocks_present"], 0);
    assert!(
        report["blocks_fetched"].as_u64().expect("n") > 10,
        "{report}"
    );
    let verify = json(
        lattice(&c)
            .args(["--json", "ipfs", "verify", &root])
            .output()
            .expect("verify"),
    );
    assert_eq!(verify["corrupt"], serde_json::json!([]));
    assert_eq!(verify["missing"], serde_json::json!([]));
    // Corrupt c's copy of the weights; fetching again repairs it.
    flip_weights_byte(&c, 123_456);
    failure(
        lattice(&c)
            .args(["ipfs", "verify", &root])
            .output()
            .expect("verify"),
    );
    let report = json(
        lattice(&c)
            .args(["--json", "ipfs", "fetch", "--from", &url, &root])
            .output()
            .expect("refetch"),
    );
    assert_eq!(
        report["blocks_fetched"], 1,
        "only the corrupt block is fetched again: {report}"
    );
    ok(lattice(&c)
        .args(["ipfs", "verify", &root])
        .output()
        .expect("verify"));
    let d = tmp.path().join("d");
    let kubo = format!("kubo+{url}");
    ok(lattice(&d)
        .args(["ipfs", "fetch", "--from", &kubo, &root])
        .output()
        .expect("fetch"));
    let out = tmp.path().join("d-out");
    ok(lattice(&d)
        .args(["ipfs", "get", &root, "-o"])
        .arg(&out)
        .output()
        .expect("get"));
    assert_eq!(
        std::fs::read(out.join("sub/vocab.txt")).expect("read"),
        b"[PAD]\n[UNK]\n"
    );
    let err = failure(
        lattice(&d)
            .args(["ipfs", "fetch", "--from", "ftp://x", &root])
            .output()
            .expect("fetch"),
    );
    assert!(err.contains("ftp://x"), "{err}");
}
