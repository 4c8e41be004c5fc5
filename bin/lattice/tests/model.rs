//! `lattice model run` end to end on real models (tests/models/fetch.sh): a folder, the
//! same folder by CID from the store, an image classifier, generation, deterministic output
//! whatever the thread count, and clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn models() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/models/fetch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/models/fetch.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn lattice(datadir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lattice"));
    c.arg("--datadir").arg(datadir).env_remove("LATTICE_LOG");
    c
}

fn json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn vector(v: &serde_json::Value) -> Vec<f32> {
    v["outputs"][0]["vector"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[test]
fn embeds_from_a_folder_and_from_its_cid_in_the_store() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = models();
    let dir = m.join("minilm");
    let run = |model: &str| {
        json(
            lattice(tmp.path())
                .args([
                    "--json",
                    "model",
                    "run",
                    model,
                    "--input",
                    "The cat sat on the mat.",
                ])
                .output()
                .expect("run"),
        )
    };
    let a = run(dir.to_str().expect("utf8"));
    assert_eq!(a["task"], "embed");
    assert_eq!(a["backend"], "candle");
    assert_eq!(a["device"], "cpu");
    let v = vector(&a);
    assert_eq!(v.len(), 384);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");

    let added = json(
        lattice(tmp.path())
            .args(["--json", "ipfs", "add", "-r", "--cid-version", "1"])
            .arg(&dir)
            .output()
            .expect("add"),
    );
    let root = added.as_array().expect("entries").last().expect("root")["cid"]
        .as_str()
        .expect("cid")
        .to_string();
    let b = run(&root);
    assert_eq!(vector(&b), v, "the CID runs the same bytes");
}

#[test]
fn deterministic_output_does_not_depend_on_the_thread_count() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = models().join("minilm");
    let run = |threads: &str| {
        vector(&json(
            lattice(tmp.path())
                .env("CANDLE_NUM_THREADS", threads)
                .env("RAYON_NUM_THREADS", threads)
                .args(["--json", "model", "run", "--deterministic"])
                .arg(&dir)
                .args(["--input", "Determinism is a property of the whole stack."])
                .output()
                .expect("run"),
        ))
    };
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(run("1")), bits(run("2")));
}

#[test]
fn classifies_an_image_and_generates_text() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = models();
    let image = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/runtime/tests/data/images/blobs_640x480.png");
    let c = json(
        lattice(tmp.path())
            .args(["--json", "model", "run"])
            .arg(m.join("open-nsfw"))
            .arg("--file")
            .arg(&image)
            .output()
            .expect("classify"),
    );
    assert_eq!(c["task"], "classify-image");
    assert_eq!(c["backend"], "onnx");
    let labels = c["outputs"][0]["labels"].as_array().expect("labels");
    assert_eq!(labels.len(), 2);
    assert_eq!(
        labels[0]["label"], "nsfw",
        "the blob image scores ~0.63 nsfw"
    );

    let g = json(
        lattice(tmp.path())
            .args(["--json", "model", "run"])
            .arg(m.join("smollm2"))
            .args(["--input", "The capital of France is", "--max-tokens", "6"])
            .output()
            .expect("generate"),
    );
    assert_eq!(g["task"], "generate");
    let gen_ = &g["outputs"][0]["generation"];
    assert!(gen_["tokens"].as_array().expect("tokens").len() <= 6);
    assert!(
        gen_["text"].as_str().expect("text").contains("Paris"),
        "{gen_}"
    );
}

#[test]
fn bad_models_and_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = models();
    let err = |args: &[&str], model: &Path| {
        let out = lattice(tmp.path())
            .args(["model", "run"])
            .arg(model)
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        let e = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(e.starts_with("error: ") && !e.contains("panicked"), "{e}");
        e
    };
    let e = err(&["--input", "x"], &tmp.path().join("nowhere"));
    assert!(e.contains("no such file or folder"), "{e}");
    let e = err(&["--input", "x", "--device", "tpu"], &m.join("minilm"));
    assert!(e.contains("unknown device"), "{e}");
    let e = err(&["--input", "x", "--task", "generate"], &m.join("minilm"));
    assert!(e.contains("cannot do task generate"), "{e}");
    let e = err(&["--input", "not an image"], &m.join("open-nsfw"));
    assert!(e.contains("--file IMAGE"), "{e}");
    let e = err(&["--input", "x", "--temperature=-1"], &m.join("smollm2"));
    assert!(e.contains("temperature"), "{e}");
}

#[test]
fn transcribes_a_wav_with_a_tiny_whisper() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/runtime/tests/data/tiny-whisper");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).expect("reference"))
            .expect("json");
    let audio = &reference["audio"][1];
    let wav = dir.join(audio["file"].as_str().expect("file"));
    let out = json(
        lattice(tmp.path())
            .args(["--json", "model", "run"])
            .arg(&dir)
            .arg("--file")
            .arg(&wav)
            .output()
            .expect("transcribe"),
    );
    assert_eq!(out["task"], "transcribe");
    assert_eq!(out["family"], "whisper");
    let t = &out["outputs"][0];
    assert_eq!(t["kind"], "transcript");
    assert_eq!(t["tokens"], audio["tokens"]);
    assert_eq!(t["text"], audio["text"]);

    let missing = lattice(tmp.path())
        .args(["model", "run"])
        .arg(&dir)
        .args(["--input", "x"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(1));
    let e = String::from_utf8_lossy(&missing.stderr);
    assert!(e.contains("--file WAV"), "{e}");
}
