//! PyTorch checkpoints: a tiny GPT-2 `pytorch_model.bin` (written by
//! `tests/models/make_bin_fixture.py` from the safetensors of
//! `crates/runtime/tests/data/tiny-gpt2`) is imported as `model.safetensors` whose tensors
//! and generations equal its safetensors twin's. Also: unsupported models are refused with the
//! runtime's list, and a folder imported twice gives the same CID.

use std::path::{Path, PathBuf};

use candle_core::Device;
use lattice_import::{HubConfig, ImportError, ImportRequest, Importer, Quiet};
use lattice_runtime::model::LoadOptions;
use lattice_runtime::{GenerateParams, Input, Model, ModelSpec, Output};
use lattice_store::Store;

// Dependencies of the library or of the other tests that these tests do not name.
use axum as _;
use bytes as _;
use cid as _;
use futures as _;
use reqwest as _;
use serde as _;
use serde_json as _;
use sha2 as _;
use thiserror as _;
use tokio as _;
use tracing as _;

fn twin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/tiny-gpt2")
}

fn bin_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2-bin/pytorch_model.bin")
}

fn offline() -> HubConfig {
    HubConfig {
        endpoint: "http://127.0.0.1:9".to_string(),
        token: None,
        cache: PathBuf::from("/nonexistent-hf-cache"),
    }
}

fn req(source: &Path) -> ImportRequest {
    ImportRequest {
        source: source.display().to_string(),
        ..ImportRequest::default()
    }
}

fn greedy(dir: &Path) -> Vec<u32> {
    let spec = ModelSpec::detect(dir).expect("detect");
    let model = Model::load(spec, &LoadOptions::default()).expect("load");
    let out = model
        .run(&Input::Prompt {
            text: "the data of the model".to_string(),
            params: GenerateParams {
                max_tokens: 12,
                ..GenerateParams::default()
            },
            chat: false,
        })
        .expect("generate");
    match out {
        Output::Generated { generation } => generation.tokens,
        other => panic!("not a generation: {other:?}"),
    }
}

#[test]
fn a_pytorch_checkpoint_becomes_safetensors_equal_to_its_twin() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("tiny-gpt2-bin");
    std::fs::create_dir(&src).expect("mkdir");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(twin().join(f), src.join(f)).expect("copy");
    }
    std::fs::copy(bin_fixture(), src.join("pytorch_model.bin")).expect("copy bin");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let importer = Importer::new(&store, tmp.path().join("work"), offline());
    let m = importer.import(&req(&src), &Quiet).expect("import");
    let paths: Vec<&str> = m.manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
    assert_eq!(m.manifest.format, "safetensors");

    let out = tmp.path().join("out");
    store.get(&m.cid, &out).expect("get");
    assert!(!out.join("pytorch_model.bin").exists());
    let converted =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).expect("load");
    let original = candle_core::safetensors::load(twin().join("model.safetensors"), &Device::Cpu)
        .expect("load twin");
    for (name, t) in &original {
        let c = converted.get(name).expect("tensor present");
        assert_eq!(c.dtype(), t.dtype(), "{name}");
        assert_eq!(c.dims(), t.dims(), "{name}");
        let diff = (c - t)
            .expect("sub")
            .abs()
            .expect("abs")
            .flatten_all()
            .expect("flat")
            .max(0)
            .expect("max")
            .to_scalar::<f32>()
            .expect("scalar");
        assert_eq!(diff, 0.0, "{name}");
    }
    assert_eq!(greedy(&out), greedy(&twin()));

    // A rerun converts nothing new and gives the same CID.
    let again = importer.import(&req(&src), &Quiet).expect("rerun");
    assert_eq!(again.cid, m.cid);
}

#[test]
fn a_broken_checkpoint_is_refused_naming_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("broken");
    std::fs::create_dir(&src).expect("mkdir");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(twin().join(f), src.join(f)).expect("copy");
    }
    std::fs::write(src.join("pytorch_model.bin"), b"not a checkpoint").expect("write");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let e = Importer::new(&store, tmp.path().join("work"), offline())
        .import(&req(&src), &Quiet)
        .expect_err("broken");
    assert!(matches!(e, ImportError::Convert { .. }), "{e}");
    assert!(e.to_string().contains("pytorch_model.bin"), "{e}");
    assert!(store.pins().expect("pins").is_empty());
}

#[test]
fn unsupported_models_are_refused_with_the_supported_list() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("t5");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("config.json"), r#"{"model_type":"t5"}"#).expect("write");
    std::fs::write(src.join("model.safetensors"), b"").expect("write");
    std::fs::write(src.join("tokenizer.json"), b"{}").expect("write");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let e = Importer::new(&store, tmp.path().join("work"), offline())
        .import(&req(&src), &Quiet)
        .expect_err("t5");
    let msg = e.to_string();
    assert!(
        msg.contains("\"t5\"") && msg.contains("supported:"),
        "{msg}"
    );
    assert!(store.pins().expect("pins").is_empty());
}

#[test]
fn a_folder_imported_twice_or_from_elsewhere_gives_the_same_cid() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Store::open(tmp.path().join("store")).expect("store");
    let importer = Importer::new(&store, tmp.path().join("work"), offline());
    let a = importer.import(&req(&twin()), &Quiet).expect("import");
    let b = importer.import(&req(&twin()), &Quiet).expect("again");
    assert_eq!(a.cid, b.cid);
    let copy = tmp.path().join("elsewhere/tiny-gpt2");
    std::fs::create_dir_all(&copy).expect("mkdir");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "reference.json",
    ] {
        std::fs::copy(twin().join(f), copy.join(f)).expect("copy");
    }
    let c = importer.import(&req(&copy), &Quiet).expect("copy");
    assert_eq!(c.cid, a.cid);
    assert_eq!(a.manifest.source.kind, "folder");
    assert_eq!(a.manifest.source.repo, "tiny-gpt2");
    assert_eq!(
        store.is_pinned(&a.cid).expect("pinned"),
        Some(lattice_store::PinKind::Recursive)
    );
}
