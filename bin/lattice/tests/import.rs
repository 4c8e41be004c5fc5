//! `lattice model import` end to end with the real binary: a folder becomes a CID whose
//! folder holds `lattice.json` and the model files and runs with `model run`; a Hugging Face
//! cache entry resolves through its refs; `--batch` reports each model and carries on past
//! a bad one; unsupported models are refused with the list of supported ones; `--quantize`
//! turns a llama checkpoint into a GGUF that generates what PyTorch does.

use std::path::Path;
use std::process::Command;

mod support;
use support::{models, ok_json as json, runtime_data as data};

/// The binary with its own datadir, and a hub cache and endpoint that reach nothing.
fn lattice(datadir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lattice"));
    c.arg("--datadir")
        .arg(datadir)
        .env_remove("LATTICE_LOG")
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN")
        .env("HF_HUB_CACHE", datadir.join("no-hf-cache"))
        .env("HF_ENDPOINT", "http://127.0.0.1:9");
    c
}

fn cat(datadir: &Path, path: &str) -> serde_json::Value {
    let out = lattice(datadir)
        .args(["ipfs", "cat", path])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON file")
}

#[test]
fn a_folder_imports_to_a_cid_that_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = models().join("minilm");
    let imported = json(
        lattice(tmp.path())
            .args(["--json", "model", "import"])
            .arg(&dir)
            .args(["--name", "all-MiniLM-L6-v2"])
            .output()
            .expect("run"),
    );
    let cid = imported["cid"].as_str().expect("cid").to_string();
    assert!(cid.starts_with("bafy"), "{cid}");
    assert_eq!(imported["task"], "embed");
    assert_eq!(imported["format"], "safetensors");
    assert_eq!(imported["name"], "all-MiniLM-L6-v2");

    // The folder: lattice.json plus the model files, each listed with its CID.
    let ls = json(
        lattice(tmp.path())
            .args(["--json", "ipfs", "ls", &cid])
            .output()
            .expect("ls"),
    );
    let names: Vec<String> = ls
        .as_array()
        .or_else(|| ls["entries"].as_array())
        .or_else(|| ls["Objects"][0]["Links"].as_array())
        .expect("entries")
        .iter()
        .map(|e| {
            e["name"]
                .as_str()
                .or_else(|| e["Name"].as_str())
                .expect("name")
                .to_string()
        })
        .collect();
    assert!(names.contains(&"lattice.json".to_string()), "{names:?}");
    assert!(
        names.contains(&"model.safetensors".to_string()),
        "{names:?}"
    );
    let manifest = cat(tmp.path(), &format!("{cid}/lattice.json"));
    assert_eq!(manifest["schema"], "lattice.model/1");
    assert_eq!(manifest["source"]["kind"], "folder");
    assert_eq!(manifest["model_type"], "bert");
    assert_eq!(manifest["outputs"][0]["dim"], 384);
    for f in manifest["files"].as_array().expect("files") {
        let path = f["path"].as_str().expect("path");
        assert!(names.contains(&path.to_string()), "{path}");
    }

    // The same folder again: the same CID.
    let again = json(
        lattice(tmp.path())
            .args(["--json", "model", "import"])
            .arg(&dir)
            .args(["--name", "all-MiniLM-L6-v2"])
            .output()
            .expect("run"),
    );
    assert_eq!(again["cid"], imported["cid"]);

    // The CID runs, and gives what the folder gives.
    let run = |model: &str| {
        json(
            lattice(tmp.path())
                .args([
                    "--json",
                    "model",
                    "run",
                    model,
                    "--input",
                    "a cat sat on the mat",
                ])
                .output()
                .expect("run"),
        )["outputs"][0]["vector"]
            .clone()
    };
    let by_cid = run(&cid);
    assert_eq!(by_cid.as_array().expect("vector").len(), 384);
    assert_eq!(by_cid, run(&dir.display().to_string()));
}

/// A huggingface_hub cache entry for `repo` holding `files` of `from` at `commit`.
fn cache_entry(cache: &Path, repo: &str, commit: &str, from: &Path, files: &[&str]) {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).expect("mkdir");
    std::fs::create_dir_all(dir.join("blobs")).expect("mkdir");
    for (i, f) in files.iter().enumerate() {
        let blob = format!("{commit}{i:024}");
        std::fs::copy(from.join(f), dir.join("blobs").join(&blob)).expect("copy");
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snap.join(f)).expect("link");
    }
}

#[test]
fn a_repo_id_resolves_from_the_hf_cache_through_its_refs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let hf = tmp.path().join("hf-home");
    let cache = hf.join("hub");
    let old = "1111111111111111111111111111111111111111";
    let new = "2222222222222222222222222222222222222222";
    let files = ["config.json", "model.safetensors", "tokenizer.json"];
    cache_entry(
        &cache,
        "org/tiny",
        old,
        &data("tiny-roberta-classifier"),
        &files,
    );
    cache_entry(&cache, "org/tiny", new, &data("tiny-gpt2"), &files);
    let refs = cache.join("models--org--tiny/refs");
    std::fs::create_dir_all(&refs).expect("refs");
    std::fs::write(refs.join("main"), new).expect("main");
    std::fs::write(refs.join("v1"), old).expect("v1");

    let import = |extra: &[&str]| {
        json(
            lattice(tmp.path())
                .env_remove("HF_HUB_CACHE")
                .env("HF_HOME", &hf)
                .args(["--json", "model", "import", "org/tiny"])
                .args(extra)
                .output()
                .expect("run"),
        )
    };
    let main = import(&[]);
    assert_eq!(main["task"], "generate");
    assert_eq!(main["revision"], new);
    assert_eq!(main["name"], "org/tiny");
    let cid = main["cid"].as_str().expect("cid");
    let manifest = cat(tmp.path(), &format!("{cid}/lattice.json"));
    assert_eq!(manifest["source"]["kind"], "hf");
    assert_eq!(manifest["source"]["repo"], "org/tiny");
    assert_eq!(manifest["source"]["revision"], new);
    assert_eq!(manifest["architecture"], "GPT2LMHeadModel");

    let v1 = import(&["--revision", "v1"]);
    assert_eq!(v1["task"], "classify");
    assert_eq!(v1["revision"], old);
    let by_commit = import(&["--revision", old]);
    assert_eq!(by_commit["cid"], v1["cid"]);

    // The imported CID runs.
    let out = json(
        lattice(tmp.path())
            .args([
                "--json",
                "model",
                "run",
                cid,
                "--input",
                "hello",
                "--max-tokens",
                "4",
            ])
            .output()
            .expect("run"),
    );
    assert_eq!(out["task"], "generate");

    // Not cached and the hub unreachable: a clear error, no panic.
    let out = lattice(tmp.path())
        .env("HF_HOME", &hf)
        .args(["model", "import", "org/tiny", "--revision", "v2"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:9") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_batch_reports_each_model_and_goes_past_a_bad_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let list = tmp.path().join("models.txt");
    std::fs::write(
        &list,
        format!(
            "# tiny models\n{}\n/no/such/folder   # this one fails\n\n{}\n",
            data("tiny-gpt2").display(),
            data("tiny-roberta-classifier").display()
        ),
    )
    .expect("write");
    let out = lattice(tmp.path())
        .args(["model", "import", "--batch"])
        .arg(&list)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("ok") && lines[0].contains("tiny-gpt2"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("FAILED") && lines[1].contains("/no/such/folder"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("ok") && lines[2].contains("tiny-roberta"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 3 imports failed"));

    let out = lattice(tmp.path())
        .args(["--json", "model", "import", "--batch"])
        .arg(&list)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["failed"], 1);
    assert_eq!(v["imported"], 2);
    assert_eq!(v["results"][1]["ok"], false);
    assert!(
        v["results"][1]["error"]
            .as_str()
            .expect("error")
            .contains("no such folder")
    );
    assert_eq!(v["results"][2]["task"], "classify");
}

#[test]
fn an_unsupported_model_is_refused_listing_what_is_supported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("t5-small");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(
        src.join("config.json"),
        r#"{"model_type":"t5","architectures":["T5ForConditionalGeneration"]}"#,
    )
    .expect("write");
    std::fs::write(src.join("model.safetensors"), b"").expect("write");
    std::fs::write(src.join("tokenizer.json"), b"{}").expect("write");
    let out = lattice(tmp.path())
        .args(["model", "import"])
        .arg(&src)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"t5\"") && err.contains("supported:") && err.contains("GPT-2"),
        "{err}"
    );
    let pins = lattice(tmp.path())
        .args(["ipfs", "pin", "ls"])
        .output()
        .expect("pins");
    assert!(String::from_utf8_lossy(&pins.stdout).trim().is_empty());
}

/// Ids of a JSON array.
fn id_list(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect()
}

#[test]
fn quantize_q8_0_imports_a_gguf_that_generates_what_pytorch_does() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = data("tiny-llama");
    let imported = json(
        lattice(tmp.path())
            .args(["--json", "model", "import"])
            .arg(&src)
            .args(["--quantize", "q8_0"])
            .output()
            .expect("run"),
    );
    assert_eq!(imported["format"], "gguf");
    assert_eq!(imported["task"], "generate");
    assert_eq!(imported["quantization"], "q8_0");
    let cid = imported["cid"].as_str().expect("cid").to_string();
    let manifest = cat(tmp.path(), &format!("{cid}/lattice.json"));
    assert_eq!(manifest["quantization"], "q8_0");
    assert_eq!(manifest["format"], "gguf");
    assert_eq!(manifest["architecture"], "LlamaForCausalLM");
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert!(paths.contains(&"model.gguf"), "{paths:?}");
    assert!(!paths.contains(&"model.safetensors"), "{paths:?}");

    // The CID generates PyTorch's greedy tokens. (tests/quantize.rs in lattice-import
    // measures all 16 of every prompt; the 16th of one prompt is a near tie, so 15 here.)
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("reference.json")).expect("reference"))
            .expect("json");
    let prompts = reference["prompts"].as_array().expect("prompts");
    let mut cmd = lattice(tmp.path());
    cmd.args(["--json", "model", "run", &cid, "--max-tokens", "15"]);
    for p in prompts {
        cmd.args(["--input", p["prompt"].as_str().expect("prompt")]);
    }
    let run = json(cmd.output().expect("run"));
    assert_eq!(run["format"], "gguf");
    for (p, out) in prompts
        .iter()
        .zip(run["outputs"].as_array().expect("outputs"))
    {
        let want = id_list(&p["greedy"]);
        assert_eq!(
            id_list(&out["generation"]["tokens"]),
            want[..15],
            "{}",
            p["prompt"]
        );
    }

    // Values other than q4_0 and q8_0 are refused by the argument parser.
    let out = lattice(tmp.path())
        .args(["model", "import"])
        .arg(&src)
        .args(["--quantize", "q5_k"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("q5_k") && err.contains("q4_0") && err.contains("q8_0"),
        "{err}"
    );
}

#[test]
fn quantize_refuses_an_unsupported_architecture_and_stores_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = lattice(tmp.path())
        .args(["model", "import"])
        .arg(data("tiny-bert-classifier"))
        .args(["--quantize", "q4_0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--quantize")
            && err.contains("BertForSequenceClassification")
            && err.contains("LlamaForCausalLM")
            && !err.contains("panicked"),
        "{err}"
    );
    let pins = lattice(tmp.path())
        .args(["ipfs", "pin", "ls"])
        .output()
        .expect("pins");
    assert!(String::from_utf8_lossy(&pins.stdout).trim().is_empty());
    assert!(!tmp.path().join("import/quantized").exists());
}
