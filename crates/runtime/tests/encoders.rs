//! Text encoders and ONNX graphs against the outputs PyTorch and ONNX Runtime (Python) gave
//! on the same real models (`tests/models/minilm_reference.py`,
//! `tests/models/open_nsfw_reference.py` wrote the reference files).

mod common;
mod fixtures;
use common::models;
use fixtures::{floats, json as reference, max_abs_diff, strings};

use std::path::PathBuf;

use lattice_runtime::{Input, LoadOptions, Model, ModelSpec, Output, RuntimeError, Task};
use serde_json::Value;

fn load(dir: PathBuf, options: &LoadOptions) -> Model {
    Model::load(ModelSpec::detect(&dir).expect("detect"), options).expect("load")
}

fn embeddings(model: &Model, texts: &[String]) -> Vec<Vec<f32>> {
    let inputs: Vec<Input> = texts
        .iter()
        .map(|t| Input::Text { text: t.clone() })
        .collect();
    model
        .run_batch(&inputs)
        .into_iter()
        .map(|r| match r.expect("run") {
            Output::Embedding { vector } => vector,
            other => panic!("expected an embedding, got {other:?}"),
        })
        .collect()
}

fn sentences(r: &Value) -> Vec<String> {
    r["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_string())
        .collect()
}

#[test]
fn minilm_tokenizer_matches_the_python_tokenizer() {
    let r = reference("minilm_reference.json");
    let dir = models().join("minilm");
    let tok = lattice_runtime::text::TextTokenizer::from_file(&dir.join("tokenizer.json"), 512)
        .expect("tokenizer");
    assert_eq!(tok.max_len(), 128, "tokenizer.json truncates at 128");
    for s in r["sentences"].as_array().expect("sentences") {
        let text = s["text"].as_str().expect("text");
        let want: Vec<u32> = s["input_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect();
        let got = tok.encode_batch(&[text]).expect("encode");
        assert_eq!(got.ids, want, "{text:?}");
    }
    // A batch pads to its longest item, not to the file's fixed 128.
    let b = tok
        .encode_batch(&["a", "a longer sentence here"])
        .expect("encode");
    assert_eq!(b.len, 6);
    assert_eq!(b.mask, vec![1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
}

#[test]
fn candle_minilm_embeddings_match_pytorch_within_1e_4() {
    let r = reference("minilm_reference.json");
    let texts = sentences(&r);
    let model = load(models().join("minilm"), &LoadOptions::default());
    assert_eq!(model.task(), Task::Embed);
    // One padded batch, as PyTorch ran it.
    let got = embeddings(&model, &texts);
    let mut worst = 0f32;
    for (g, want) in got
        .iter()
        .zip(r["pytorch_fp32"]["batched"].as_array().expect("batched"))
    {
        assert_eq!(g.len(), 384);
        worst = worst.max(max_abs_diff(g, &floats(want)));
    }
    // One at a time (no padding: the unmasked path).
    for (t, want) in texts
        .iter()
        .zip(r["pytorch_fp32"]["single"].as_array().expect("single"))
    {
        let g = embeddings(&model, std::slice::from_ref(t));
        worst = worst.max(max_abs_diff(&g[0], &floats(want)));
    }
    eprintln!("candle vs PyTorch: max abs diff {worst:e}");
    assert!(worst <= 1e-4, "max abs diff {worst} > 1e-4");
}

#[test]
fn onnx_int8_minilm_matches_onnx_runtime_python_and_tracks_pytorch() {
    let r = reference("minilm_reference.json");
    let texts = sentences(&r);
    let model = load(models().join("minilm-int8"), &LoadOptions::default());
    assert_eq!(model.backend(), lattice_runtime::Backend::Onnx);
    let got = embeddings(&model, &texts);
    let mut worst_ort = 0f32;
    let mut worst_cos = 1f32;
    for ((g, ort), torch) in got
        .iter()
        .zip(r["onnx_int8"]["batched"].as_array().expect("onnx batched"))
        .zip(r["pytorch_fp32"]["batched"].as_array().expect("batched"))
    {
        worst_ort = worst_ort.max(max_abs_diff(g, &floats(ort)));
        let t = floats(torch);
        worst_cos = worst_cos.min(g.iter().zip(&t).map(|(a, b)| a * b).sum());
    }
    eprintln!(
        "onnx int8: vs onnxruntime-python {worst_ort:e}, min cosine vs PyTorch fp32 {worst_cos}"
    );
    // Same library, same graph, same inputs: only the pooling's float order differs.
    assert!(worst_ort <= 1e-5, "vs onnxruntime python: {worst_ort}");
    // int8 weights: close to, not equal to, fp32.
    assert!(worst_cos >= 0.998, "cosine {worst_cos}");
}

#[test]
fn deterministic_mode_gives_the_same_bits_whatever_else_is_in_the_batch() {
    let r = reference("minilm_reference.json");
    let texts = sentences(&r);
    for dir in ["minilm", "minilm-int8"] {
        let opts = LoadOptions {
            deterministic: true,
            ..Default::default()
        };
        let model = load(models().join(dir), &opts);
        let alone = embeddings(&model, &texts[1..2]);
        let with_others = embeddings(&model, &texts);
        let reversed: Vec<String> = texts.iter().rev().cloned().collect();
        let with_others_reversed = embeddings(&model, &reversed);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&alone[0]), bits(&with_others[1]), "{dir}");
        assert_eq!(
            bits(&alone[0]),
            bits(&with_others_reversed[texts.len() - 2]),
            "{dir}"
        );
    }
}

#[test]
fn wrong_inputs_are_refused_per_item_without_failing_the_batch() {
    let model = load(models().join("minilm"), &LoadOptions::default());
    let out = model.run_batch(&[
        Input::Text {
            text: "fine".into(),
        },
        Input::Image {
            bytes: vec![1, 2, 3],
        },
    ]);
    assert!(matches!(out[0], Ok(Output::Embedding { .. })));
    let e = out[1].as_ref().expect_err("an image to a text model");
    assert!(matches!(e, RuntimeError::InvalidInput(_)));
    assert!(e.to_string().contains("takes text, not an image"), "{e}");
}

#[test]
fn open_nsfw_scores_follow_the_packages_pipeline() {
    let r = reference("open_nsfw_reference.json");
    let model = load(models().join("open-nsfw"), &LoadOptions::default());
    assert_eq!(model.task(), Task::ClassifyImage);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let images = r["images"].as_array().expect("images");
    let inputs: Vec<Input> = images
        .iter()
        .map(|i| Input::Image {
            bytes: std::fs::read(data.join(i["file"].as_str().expect("file"))).expect("image"),
        })
        .collect();
    let outs = model.run_batch(&inputs);
    for (img, out) in images.iter().zip(outs) {
        let Output::Labels { labels, .. } = out.expect("classify") else {
            panic!("expected labels");
        };
        let nsfw = labels
            .iter()
            .find(|l| l.label == "nsfw")
            .expect("nsfw label")
            .score;
        let sfw = labels
            .iter()
            .find(|l| l.label == "sfw")
            .expect("sfw label")
            .score;
        assert!((nsfw + sfw - 1.0).abs() < 1e-4);
        let want = img["score_reference"].as_f64().expect("score") as f32;
        let want_444 = img["score_jpeg_444"].as_f64().expect("score") as f32;
        eprintln!(
            "{}: nsfw {nsfw} (package: {want}; with 4:4:4 JPEG: {want_444})",
            img["file"]
        );
        // The pipeline is the package's, but the image crate's JPEG encoder writes 4:4:4
        // chroma where PIL writes 4:2:0, and its resize is not PIL's to the last level. The
        // reference measured what 4:4:4 alone does to the score (0.076 on the blob image,
        // the one this model is unsure about; measured here: 0.626 vs the package's 0.740
        // and 4:4:4's 0.663). Scores near 0 agree to 0.002.
        assert!(
            (nsfw - want_444).abs() <= 0.05,
            "{}: {nsfw} vs 4:4:4 {want_444}",
            img["file"]
        );
        assert!(
            (nsfw - want).abs() <= 0.12,
            "{}: {nsfw} vs {want}",
            img["file"]
        );
        if want < 0.1 {
            assert!(
                (nsfw - want).abs() <= 0.005,
                "{}: {nsfw} vs {want}",
                img["file"]
            );
        }
    }
    let bad = model.run(&Input::Image {
        bytes: b"GIF89a-nope".to_vec(),
    });
    assert!(matches!(bad, Err(RuntimeError::InvalidInput(_))), "{bad:?}");
}

/// A tiny random *ForSequenceClassification with PyTorch's logits
/// (tests/models/make_fixtures.py): logits within 1e-4, the same best label, scores summing
/// to 1.
fn check_classifier(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let r = reference(&format!("{name}/reference.json"));
    let model = load(dir, &LoadOptions::default());
    assert_eq!(model.task(), Task::Classify);
    let texts: Vec<Input> = strings(&r["texts"])
        .into_iter()
        .map(|text| Input::Text { text })
        .collect();
    for ((out, want), want_label) in model
        .run_batch(&texts)
        .into_iter()
        .zip(r["logits"].as_array().expect("logits"))
        .zip(r["labels"].as_array().expect("labels"))
    {
        let Output::Labels { labels, logits } = out.expect("classify") else {
            panic!("expected labels");
        };
        let diff = max_abs_diff(&logits, &floats(want));
        assert!(diff <= 1e-4, "{name}: logits differ by {diff}");
        assert_eq!(labels[0].label, want_label.as_str().expect("label"));
        let total: f32 = labels.iter().map(|l| l.score).sum();
        assert!(
            (total - 1.0).abs() < 1e-5,
            "softmax over all labels sums to 1: {total}"
        );
    }
}

#[test]
fn bert_sequence_classification_matches_pytorch_logits_and_labels() {
    check_classifier("tiny-bert-classifier");
}

#[test]
fn distilbert_sequence_classification_matches_pytorch() {
    check_classifier("tiny-distilbert-classifier");
}

#[test]
fn roberta_classification_and_embeddings_match_pytorch_in_a_padded_batch() {
    // RoBERTa's position ids start after the padding index and depend on where the padding
    // is, so the reference batch mixes lengths (tests/models/make_fixtures.py roberta).
    check_classifier("tiny-roberta-classifier");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-roberta-classifier");
    let r = reference("tiny-roberta-classifier/reference.json");
    let spec = ModelSpec::detect_with(&dir, Some(Task::Embed)).expect("detect");
    let model = Model::load(spec, &LoadOptions::default()).expect("load");
    let texts = strings(&r["texts"]);
    let got = embeddings(&model, &texts);
    for (i, (g, want)) in got
        .iter()
        .zip(r["embeddings"].as_array().expect("embeddings"))
        .enumerate()
    {
        let diff = max_abs_diff(g, &floats(want));
        assert!(diff <= 1e-4, "text {i}: embedding differs by {diff}");
    }
    // One at a time (no padding) gives the same vectors as the padded batch.
    for (i, t) in texts.iter().enumerate() {
        let alone = embeddings(&model, std::slice::from_ref(t));
        let diff = max_abs_diff(&alone[0], &got[i]);
        assert!(diff <= 1e-5, "text {i}: alone vs batched differ by {diff}");
    }
}

#[test]
fn vit_image_classification_matches_pytorch() {
    // A tiny random ViTForImageClassification (tests/models/make_fixtures.py) on 32x32 PNGs:
    // the model's own size, so the resize step is the identity here as in PIL.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-vit");
    let r = reference("tiny-vit/reference.json");
    let model = load(dir.clone(), &LoadOptions::default());
    assert_eq!(model.task(), Task::ClassifyImage);
    assert_eq!(model.backend(), lattice_runtime::Backend::Candle);
    let images = r["images"].as_array().expect("images");
    let inputs: Vec<Input> = images
        .iter()
        .map(|i| Input::Image {
            bytes: std::fs::read(dir.join(i["file"].as_str().expect("file"))).expect("png"),
        })
        .collect();
    for (img, out) in images.iter().zip(model.run_batch(&inputs)) {
        let Output::Labels { labels, .. } = out.expect("classify") else {
            panic!("expected labels");
        };
        let want = floats(&img["logits"]);
        let want_probs = {
            let max = want.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = want.iter().map(|x| (x - max).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect::<Vec<_>>()
        };
        assert_eq!(labels[0].label, img["label"].as_str().expect("label"));
        for l in &labels {
            let d = (l.score - want_probs[l.index]).abs();
            assert!(
                d <= 1e-5,
                "{}: {} vs {}",
                l.label,
                l.score,
                want_probs[l.index]
            );
        }
    }
}
