//! `lattice model run` end to end on real models (tests/models/fetch.sh): a folder, the
//! same folder by CID from the store, an image classifier, generation, deterministic output
//! whatever the thread count, and clear errors.

use std::path::{Path, PathBuf};

mod support;
use support::{lattice, models, ok_json as json};

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

    // The weights were not copied out of the store: the model folder links to the store's
    // own data file, which the runtime maps.
    let weights = tmp
        .path()
        .join("models")
        .join(&root)
        .join("model.safetensors");
    let target = std::fs::read_link(&weights).expect("weights are a symlink");
    assert!(
        target.starts_with(tmp.path().join("store/data")),
        "{}",
        target.display()
    );
    assert_eq!(
        std::fs::read(&target).expect("data file"),
        std::fs::read(dir.join("model.safetensors")).expect("weights")
    );

    // One flipped byte in the stored weights: the CID is refused before anything loads,
    // naming the file and the bad block; the folder itself still runs.
    let mut bytes = std::fs::read(&target).expect("read");
    bytes[5_000_000] ^= 0x40;
    std::fs::write(&target, &bytes).expect("tamper");
    let out = lattice(tmp.path())
        .args(["model", "run", &root, "--input", "x"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered model must not run");
    assert!(
        err.contains("model.safetensors") && err.contains("corrupt"),
        "{err}"
    );
    assert_eq!(vector(&run(dir.to_str().expect("utf8"))), v);
}

#[test]
fn a_gguf_file_runs_by_its_cid_and_other_single_files_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = models().join("smollm2");
    let gguf = std::fs::read_dir(&dir)
        .expect("smollm2")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .expect("a .gguf file");
    let add = |file: &Path| {
        let added = json(
            lattice(tmp.path())
                .args(["--json", "ipfs", "add", "--cid-version", "1"])
                .arg(file)
                .output()
                .expect("add"),
        );
        added.as_array().expect("entries")[0]["cid"]
            .as_str()
            .expect("cid")
            .to_string()
    };
    let generate = |model: &str| {
        json(
            lattice(tmp.path())
                .args(["--json", "model", "run", model])
                .args(["--input", "The capital of France is", "--max-tokens", "3"])
                .output()
                .expect("generate"),
        )["outputs"][0]["generation"]["tokens"]
            .clone()
    };
    let cid = add(&gguf);
    assert_eq!(
        generate(&cid),
        generate(gguf.to_str().expect("utf8")),
        "the CID runs the same file"
    );
    let config = add(&PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/runtime/tests/data/tiny-gpt2/config.json"));
    let out = lattice(tmp.path())
        .args(["model", "run", &config, "--input", "x"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is a file, not a model folder"), "{err}");
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
fn sampled_generation_does_not_depend_on_the_thread_count() {
    // Same seed, 1 vs 2 threads: the same tokens, for the quantized llama (SmolLM2) and the
    // GPT-2 implementation (tiny fixture). Sampling makes any difference in the logits'
    // bits likely to show up as a different token somewhere in the run.
    let tmp = tempfile::tempdir().expect("tmp");
    let gpt2 =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/runtime/tests/data/tiny-gpt2");
    for (model, prompt) in [
        (models().join("smollm2"), "List three colours:"),
        (gpt2, "Once upon a time"),
    ] {
        let run = |threads: &str| {
            let g = json(
                lattice(tmp.path())
                    .env("CANDLE_NUM_THREADS", threads)
                    .env("RAYON_NUM_THREADS", threads)
                    .args(["--json", "model", "run", "--deterministic"])
                    .arg(&model)
                    .args(["--input", prompt, "--max-tokens", "12"])
                    .args(["--temperature", "0.9", "--seed", "7"])
                    .output()
                    .expect("generate"),
            );
            g["outputs"][0]["generation"]["tokens"].clone()
        };
        let one = run("1");
        assert_eq!(one.as_array().expect("tokens").len(), 12, "{model:?}");
        assert_eq!(one, run("2"), "{model:?}");
    }
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
fn clip_zero_shot_and_embeddings() {
    // The tiny random CLIP of the runtime's tests (tests/models/make_fixtures.py clip) and
    // the outputs PyTorch gave for its image0.png and texts.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/runtime/tests/data/tiny-clip");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).expect("reference"))
            .expect("reference json");
    let texts: Vec<&str> = r["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("text"))
        .collect();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number") as f32)
            .collect()
    };
    let close = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4)
    };
    let run = |args: &[&str]| {
        json(
            lattice(tmp.path())
                .args(["--json", "model", "run"])
                .arg(&dir)
                .arg("--file")
                .arg(dir.join("image0.png"))
                .args(args)
                .output()
                .expect("run"),
        )
    };
    // Two of the three reference texts, in reverse order.
    let z = run(&["--input", texts[2], "--input", texts[0]]);
    assert_eq!(z["task"], "zero-shot");
    assert_eq!(z["family"], "clip");
    let want = floats(&r["logits_per_image"][0]);
    let out = &z["outputs"][0];
    assert!(close(&floats(&out["logits"]), &[want[2], want[0]]), "{out}");
    let labels = out["labels"].as_array().expect("labels");
    assert_eq!(labels.len(), 2);
    let best = if want[0] >= want[2] {
        (texts[0], 1)
    } else {
        (texts[2], 0)
    };
    assert_eq!(labels[0]["label"], best.0);
    assert_eq!(labels[0]["index"], best.1);
    let total: f64 = labels
        .iter()
        .map(|l| l["score"].as_f64().expect("score"))
        .sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");

    let image = run(&["--task", "embed"]);
    assert_eq!(image["task"], "embed");
    assert!(close(&vector(&image), &floats(&r["image_embeds"][0])));
    let text = json(
        lattice(tmp.path())
            .args(["--json", "model", "run", "--task", "embed"])
            .arg(&dir)
            .args(["--input", texts[1]])
            .output()
            .expect("run"),
    );
    assert!(close(&vector(&text), &floats(&r["text_embeds"][1])));
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
    assert!(e.contains("pass an image file"), "{e}");
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
    assert!(e.contains("pass a WAV file"), "{e}");
}
