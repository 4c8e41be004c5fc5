//! ResNet and CLIP against PyTorch: tiny random models written by
//! `tests/models/make_fixtures.py resnet clip` with the outputs (and, for a non-square image,
//! the pixel values) that transformers gave.

mod fixtures;
use fixtures::{floats, max_abs_diff, strings};

use std::path::PathBuf;

use lattice_runtime::onnx::Layout;
use lattice_runtime::resnet::ResNet;
use lattice_runtime::text::TextTokenizer;
use lattice_runtime::vision::Preprocess;
use lattice_runtime::{Family, Input, LoadOptions, Model, ModelSpec, Output, Task};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn reference(dir: &str) -> Value {
    fixtures::json(&format!("{dir}/reference.json"))
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().expect("rows").iter().map(floats).collect()
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let max = v.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn load(dir: &str, task: Option<Task>) -> Model {
    let spec = ModelSpec::detect_with(&data(dir), task).expect("detect");
    Model::load(spec, &LoadOptions::default()).expect("load")
}

fn read(dir: &str, file: &str) -> Vec<u8> {
    std::fs::read(data(dir).join(file)).expect("image file")
}

fn files(r: &Value, key: &str) -> Vec<String> {
    r[key]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| {
            i.get("file")
                .unwrap_or(i)
                .as_str()
                .expect("file name")
                .to_string()
        })
        .collect()
}

fn labels(out: Output) -> (Vec<lattice_runtime::Label>, Vec<f32>) {
    match out {
        Output::Labels { labels, logits } => (labels, logits),
        other => panic!("expected labels, got {other:?}"),
    }
}

fn embedding(out: Output) -> Vec<f32> {
    match out {
        Output::Embedding { vector } => vector,
        other => panic!("expected an embedding, got {other:?}"),
    }
}

/// The pixel values `Preprocess` makes of the fixture's non-square image against the ones the
/// Hugging Face processor made; returns (max, mean) absolute difference.
fn preprocess_against_pytorch(dir: &str) -> (f32, f32) {
    let r = reference(dir);
    let p = &r["preprocess"];
    let pre = Preprocess::from_json(&p["config"]).expect("preprocessor config");
    let shape: Vec<usize> = p["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|x| x.as_u64().expect("dim") as usize)
        .collect();
    let mut out = Vec::new();
    let (w, h) = pre
        .run(
            &read(dir, p["file"].as_str().expect("file")),
            Layout::Nchw,
            &mut out,
        )
        .expect("preprocess");
    assert_eq!(vec![3, h as usize, w as usize], shape);
    let want = floats(&p["pixel_values"]);
    let max = max_abs_diff(&out, &want);
    let mean = out
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / want.len() as f32;
    (max, mean)
}

/// The logits `ResNet` gives the fixture's 32x32 PNGs against PyTorch's.
fn check_resnet_logits(dir: &str) {
    let r = reference(dir);
    let spec = ModelSpec::detect(&data(dir)).expect("detect");
    assert_eq!(
        (spec.family, spec.task),
        (Family::Resnet, Task::ClassifyImage)
    );
    let pre = Preprocess::from_dir(&spec.dir).expect("preprocessor");
    let cpu = lattice_runtime::DeviceChoice::Cpu
        .candle_device()
        .expect("cpu");
    let net = ResNet::load(&spec, spec.labels.len(), &cpu).expect("load");
    let images = r["images"].as_array().expect("images");
    let mut pixels = Vec::new();
    for f in files(&r, "images") {
        let (w, h) = pre
            .run(&read(dir, &f), Layout::Nchw, &mut pixels)
            .expect("preprocess");
        assert_eq!((w, h), (32, 32));
    }
    let logits = net
        .classify(&pixels, images.len(), (32, 32))
        .expect("classify");
    for (img, got) in images.iter().zip(&logits) {
        let want = floats(&img["logits"]);
        let d = max_abs_diff(got, &want);
        assert!(d <= 1e-4, "{dir} {}: logits differ by {d}", img["file"]);
        assert_eq!(
            spec.labels[argmax(got)],
            img["label"].as_str().expect("label")
        );
    }
}

#[test]
fn resnet_logits_match_pytorch() {
    // Bottleneck layers, identity and projection shortcuts, BatchNorm statistics perturbed (so
    // folding them into the convolutions is checked), 32x32 PNGs that preprocessing leaves at
    // their size.
    check_resnet_logits("tiny-resnet");
}

#[test]
fn resnet_variants_match_pytorch() {
    // Basic layers with GELU and a downsampling first stage; bottlenecks downsampling in
    // their first 1x1 convolution.
    check_resnet_logits("tiny-resnet-basic");
    check_resnet_logits("tiny-resnet-dib");
}

#[test]
fn resnet_model_classifies_batches_like_single_images() {
    let r = reference("tiny-resnet");
    let model = load("tiny-resnet", None);
    assert_eq!(model.backend(), lattice_runtime::Backend::Candle);
    let images = r["images"].as_array().expect("images");
    let inputs: Vec<Input> = files(&r, "images")
        .iter()
        .map(|f| Input::Image {
            bytes: read("tiny-resnet", f),
        })
        .collect();
    let batch = model.run_batch(&inputs);
    for ((img, out), input) in images.iter().zip(batch).zip(&inputs) {
        let (got, _) = labels(out.expect("classify"));
        let want = softmax(&floats(&img["logits"]));
        assert_eq!(got[0].label, img["label"].as_str().expect("label"));
        assert_eq!(got.len(), 4);
        for l in &got {
            let d = (l.score - want[l.index]).abs();
            assert!(d <= 1e-5, "{}: {} vs {}", l.label, l.score, want[l.index]);
        }
        let (alone, _) = labels(model.run(input).expect("classify alone"));
        for (a, b) in alone.iter().zip(&got) {
            assert_eq!(a.index, b.index);
            assert!((a.score - b.score).abs() <= 1e-6);
        }
    }
    assert!(model.weight_bytes() > 10_000);
}

#[test]
fn resnet_bad_inputs_are_clear_errors() {
    let model = load("tiny-resnet", None);
    let out = model.run_batch(&[
        Input::Text { text: "hi".into() },
        Input::Image {
            bytes: b"not an image".to_vec(),
        },
        Input::Image {
            bytes: read("tiny-resnet", "image0.png"),
        },
    ]);
    let e = out[0].as_ref().expect_err("text").to_string();
    assert!(e.contains("takes an image, not text"), "{e}");
    let e = out[1].as_ref().expect_err("garbage").to_string();
    assert!(e.contains("cannot decode"), "{e}");
    assert!(out[2].is_ok(), "{:?}", out[2]);
}

#[test]
fn resnet_preprocessing_of_a_non_square_image_is_close_to_pytorch() {
    // microsoft/resnet-50's rule (ConvNextImageProcessor, crop_pct 0.875): a 45x60 image is
    // resized to 36x48 (bicubic) and its centre 32x32 cropped. PIL's bicubic and the image
    // crate's Catmull-Rom differ by about one grey level (0.018 here) on this smooth image.
    let (max, mean) = preprocess_against_pytorch("tiny-resnet");
    assert!(max <= 0.05, "max abs diff {max} (mean {mean})");
    assert!(mean <= 0.01, "mean abs diff {mean} (max {max})");
}

#[test]
fn clip_preprocessing_of_a_non_square_image_is_close_to_pytorch() {
    // CLIPImageProcessor: shortest edge to 32 (60x45 -> 42x32, bicubic), centre crop 32x32.
    let (max, mean) = preprocess_against_pytorch("tiny-clip");
    assert!(max <= 0.05, "max abs diff {max} (mean {mean})");
    assert!(mean <= 0.01, "mean abs diff {mean} (max {max})");
}

#[test]
fn clip_tokenizer_gives_the_ids_pytorch_saw() {
    let r = reference("tiny-clip");
    let texts = strings(&r["texts"]);
    let tok =
        TextTokenizer::from_file(&data("tiny-clip").join("tokenizer.json"), 32).expect("tokenizer");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = tok.encode_batch(&refs).expect("encode");
    let want: Vec<u32> = r["input_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .flat_map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(batch.ids, want);
}

#[test]
fn clip_embeddings_match_pytorch() {
    let r = reference("tiny-clip");
    let model = load("tiny-clip", Some(Task::Embed));
    assert_eq!(model.task(), Task::Embed);
    let texts: Vec<Input> = strings(&r["texts"])
        .into_iter()
        .map(|text| Input::Text { text })
        .collect();
    let images: Vec<Input> = files(&r, "files")
        .iter()
        .map(|f| Input::Image {
            bytes: read("tiny-clip", f),
        })
        .collect();
    // Texts and images in one batch, interleaved.
    let mixed: Vec<Input> = texts
        .iter()
        .zip(&images)
        .flat_map(|(t, i)| [t.clone(), i.clone()])
        .collect();
    let out: Vec<Vec<f32>> = model
        .run_batch(&mixed)
        .into_iter()
        .map(|o| embedding(o.expect("embed")))
        .collect();
    let want_text = rows(&r["text_embeds"]);
    let want_image = rows(&r["image_embeds"]);
    for (k, got) in out.iter().enumerate() {
        let (want, what) = if k % 2 == 0 {
            (&want_text[k / 2], "text")
        } else {
            (&want_image[k / 2], "image")
        };
        let d = max_abs_diff(got, want);
        assert!(d <= 1e-4, "{what} {}: differs by {d}", k / 2);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        let alone = embedding(model.run(&mixed[k]).expect("embed alone"));
        let d = max_abs_diff(&alone, got);
        assert!(d <= 1e-5, "{what} {} alone vs batched: {d}", k / 2);
    }
}

#[test]
fn clip_zero_shot_matches_pytorch() {
    let r = reference("tiny-clip");
    let model = load("tiny-clip", None);
    assert_eq!(model.task(), Task::ZeroShot);
    let texts = strings(&r["texts"]);
    let inputs: Vec<Input> = files(&r, "files")
        .iter()
        .map(|f| Input::ImageTexts {
            bytes: read("tiny-clip", f),
            texts: texts.clone(),
        })
        .collect();
    let want = rows(&r["logits_per_image"]);
    let batch = model.run_batch(&inputs);
    for ((k, out), input) in batch.into_iter().enumerate().zip(&inputs) {
        let (got, logits) = labels(out.expect("zero-shot"));
        let d = max_abs_diff(&logits, &want[k]);
        assert!(d <= 1e-4, "image {k}: logits differ by {d}");
        let best = argmax(&want[k]);
        assert_eq!(got[0].index, best, "image {k}");
        assert_eq!(got[0].label, texts[best]);
        let probs = softmax(&want[k]);
        assert_eq!(got.len(), texts.len());
        for l in &got {
            assert_eq!(l.label, texts[l.index]);
            assert!((l.score - probs[l.index]).abs() <= 1e-5);
        }
        let (_, alone) = labels(model.run(input).expect("zero-shot alone"));
        assert!(max_abs_diff(&alone, &logits) <= 1e-5, "image {k} alone");
    }
    // A different number of candidates per image in one batch.
    let out = model.run_batch(&[
        Input::ImageTexts {
            bytes: read("tiny-clip", "image1.png"),
            texts: vec![texts[2].clone()],
        },
        Input::ImageTexts {
            bytes: read("tiny-clip", "image2.png"),
            texts: vec![texts[1].clone(), texts[0].clone()],
        },
    ]);
    let mut out = out.into_iter();
    let (one, l1) = labels(out.next().expect("first").expect("one text"));
    assert_eq!((one.len(), one[0].score), (1, 1.0));
    assert!((l1[0] - want[1][2]).abs() <= 1e-4);
    let (_, l2) = labels(out.next().expect("second").expect("two texts"));
    assert!(max_abs_diff(&l2, &[want[2][1], want[2][0]]) <= 1e-4);
}

#[test]
fn clip_bad_inputs_are_clear_errors() {
    let zero_shot = load("tiny-clip", None);
    let image = read("tiny-clip", "image0.png");
    let out = zero_shot.run_batch(&[
        Input::ImageTexts {
            bytes: image.clone(),
            texts: Vec::new(),
        },
        Input::ImageTexts {
            bytes: b"garbage".to_vec(),
            texts: vec!["a cat".into()],
        },
        Input::Text {
            text: "a cat".into(),
        },
        Input::ImageTexts {
            bytes: image.clone(),
            texts: vec!["a cat".into(), "a dog".into()],
        },
    ]);
    let e = out[0].as_ref().expect_err("no texts").to_string();
    assert!(e.contains("at least one candidate text"), "{e}");
    let e = out[1].as_ref().expect_err("garbage").to_string();
    assert!(e.contains("cannot decode"), "{e}");
    let e = out[2].as_ref().expect_err("text").to_string();
    assert!(
        e.contains("takes an image with candidate texts, not text"),
        "{e}"
    );
    assert!(out[3].is_ok(), "{:?}", out[3]);

    let embed = load("tiny-clip", Some(Task::Embed));
    let e = embed
        .run(&Input::ImageTexts {
            bytes: image,
            texts: vec!["a cat".into()],
        })
        .expect_err("image with texts")
        .to_string();
    assert!(e.contains("takes text or an image"), "{e}");
}

/// A copy of fixture `dir` whose config.json has `edit` applied.
fn edited_copy(dir: &str, edit: impl Fn(&mut Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    for entry in std::fs::read_dir(data(dir)).expect("fixture") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        std::fs::copy(&path, tmp.path().join(name)).expect("copy");
    }
    let cfg = tmp.path().join("config.json");
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(&cfg).expect("config")).expect("config json");
    edit(&mut v);
    std::fs::write(&cfg, serde_json::to_vec(&v).expect("json")).expect("write config");
    tmp
}

fn load_error(dir: &std::path::Path) -> String {
    let spec = ModelSpec::detect(dir).expect("detect");
    match Model::load(spec, &LoadOptions::default()) {
        Ok(_) => panic!("{} must not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_configs_are_refused_by_name() {
    let d = edited_copy("tiny-resnet", |v| v["layer_type"] = "preactivation".into());
    let e = load_error(d.path());
    assert!(e.contains("layer_type \"preactivation\""), "{e}");
    let d = edited_copy("tiny-resnet", |v| v["hidden_act"] = "mish".into());
    let e = load_error(d.path());
    assert!(e.contains("hidden_act \"mish\""), "{e}");
    let d = edited_copy("tiny-resnet", |v| v["depths"] = serde_json::json!([1, 1]));
    let e = load_error(d.path());
    assert!(e.contains("3 hidden_sizes for 2 depths"), "{e}");
    let d = edited_copy("tiny-clip", |v| {
        v["vision_config"]["hidden_act"] = "gelu".into()
    });
    let e = load_error(d.path());
    assert!(e.contains("vision_config hidden_act \"gelu\""), "{e}");
    let d = edited_copy("tiny-clip", |v| {
        v["vision_config"]["image_size"] = 64.into()
    });
    let e = load_error(d.path());
    assert!(
        e.contains("vision_model.embeddings.position_embedding.weight"),
        "{e}"
    );
}

fn text_embeddings(dir: &std::path::Path, texts: &[String]) -> Vec<Vec<f32>> {
    let spec = ModelSpec::detect_with(dir, Some(Task::Embed)).expect("detect");
    let model = Model::load(spec, &LoadOptions::default()).expect("load");
    let inputs: Vec<Input> = texts
        .iter()
        .map(|t| Input::Text { text: t.clone() })
        .collect();
    model
        .run_batch(&inputs)
        .into_iter()
        .map(|o| embedding(o.expect("embed")))
        .collect()
}

#[test]
fn clip_pools_text_as_transformers_does() {
    // transformers 5 pools at the first eos_token_id, or, when a config still says
    // eos_token_id 2 (CLIP configs written before transformers#24773), at the largest id.
    // The fixture's <|endoftext|> has the largest id, as in CLIP's vocabulary, so both rules
    // give PyTorch's embeddings; pooling at another token does not.
    let r = reference("tiny-clip");
    let texts = strings(&r["texts"]);
    let want = rows(&r["text_embeds"]);
    let legacy = edited_copy("tiny-clip", |v| v["text_config"]["eos_token_id"] = 2.into());
    for (got, want) in text_embeddings(legacy.path(), &texts).iter().zip(&want) {
        assert!(max_abs_diff(got, want) <= 1e-4);
    }
    // Pooling at <|startoftext|> (position 0) instead.
    let bos = edited_copy("tiny-clip", |v| {
        v["text_config"]["eos_token_id"] = v["text_config"]["bos_token_id"].clone()
    });
    for (got, want) in text_embeddings(bos.path(), &texts).iter().zip(&want) {
        assert!(max_abs_diff(got, want) > 1e-2);
    }
}
