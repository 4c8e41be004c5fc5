//! Whisper against PyTorch on a tiny fixture (`tests/models/make_fixtures.py whisper`): the
//! log-mel features of WAVs at 16, 44.1 (stereo) and 24 kHz (float) against
//! `WhisperFeatureExtractor` (after `scipy.signal.resample_poly`), the decoder prompt
//! (language detection included) and greedy tokens against `model.generate`, the transcript
//! against the tokenizer's decoding, batches, and bad input.

use std::path::PathBuf;
use std::time::Instant;

use lattice_runtime::audio::{CHUNK_FRAMES, wav_to_16k_mono};
use lattice_runtime::whisper::Whisper;
use lattice_runtime::{Input, LoadOptions, Model, ModelSpec, Output, Task};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-whisper")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("reference.json")).expect("reference"))
        .expect("json")
}

fn audios() -> Vec<Value> {
    reference()["audio"].as_array().expect("audio").clone()
}

fn wav(a: &Value) -> Vec<u8> {
    std::fs::read(dir().join(a["file"].as_str().expect("file"))).expect("wav")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn load() -> Whisper {
    let spec = ModelSpec::detect(&dir()).expect("spec");
    Whisper::load(&spec, &candle_core::Device::Cpu).expect("load")
}

fn model() -> Model {
    Model::load(
        ModelSpec::detect(&dir()).expect("spec"),
        &LoadOptions::default(),
    )
    .expect("load")
}

#[test]
fn features_match_the_whisper_feature_extractor() {
    let raw = std::fs::read(dir().join("features.f32")).expect("features");
    let want: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let m = load();
    let mut worst_all = 0f32;
    for a in audios() {
        let samples = wav_to_16k_mono(&wav(&a)).expect("decode");
        assert_eq!(samples.len() as u64, a["samples_16k"].as_u64().expect("n"));
        let got = m.features(&samples);
        assert_eq!(got.len(), 80 * CHUNK_FRAMES);
        let frames = a["frames"].as_u64().expect("frames") as usize;
        let off = a["features_offset"].as_u64().expect("offset") as usize;
        let mut worst = 0f32;
        for mel in 0..80 {
            for t in 0..frames {
                let w = want[off + mel * frames + t];
                worst = worst.max((got[mel * CHUNK_FRAMES + t] - w).abs());
            }
        }
        // The frames past the reference are padding: all at the clamp floor.
        let floor = got[CHUNK_FRAMES - 1];
        assert!((frames + 2..CHUNK_FRAMES).all(|t| got[t] == floor));
        eprintln!("{}: features max abs diff {worst:e}", a["file"]);
        assert!(worst <= 1e-4, "{}: max abs diff {worst}", a["file"]);
        worst_all = worst_all.max(worst);
    }
    eprintln!("features max abs diff over all files {worst_all:e}");
}

#[test]
fn greedy_tokens_prompt_and_text_match_pytorch() {
    let m = load();
    let want_max = reference()["max_new_tokens"].as_u64().expect("max") as usize;
    for a in audios() {
        let t0 = Instant::now();
        let t = m.transcribe_wav(&wav(&a), None).expect("transcribe");
        eprintln!(
            "{}: {} tokens in {:.0} ms (encode {:.0} ms, decode {:.0} ms, {:.0} tokens/s): {:?}",
            a["file"],
            t.tokens.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            t.encode_ms,
            t.decode_ms,
            t.tokens_per_s,
            t.text
        );
        assert_eq!(t.prompt, ids(&a["prompt"]), "{} prompt", a["file"]);
        assert_eq!(t.tokens, ids(&a["tokens"]), "{} tokens", a["file"]);
        assert_eq!(t.text, a["text"].as_str().expect("text"), "{}", a["file"]);
        assert_eq!(t.windows, 1);
        let stopped = a["stopped_at_eot"].as_bool().expect("eot");
        assert_eq!(stopped, t.tokens.len() < want_max, "{}", a["file"]);
        // A smaller limit cuts the same sequence.
        let short = m.transcribe_wav(&wav(&a), Some(3)).expect("short");
        assert_eq!(short.tokens[..], t.tokens[..3.min(t.tokens.len())]);
    }
}

#[test]
fn the_model_interface_transcribes_batches_as_one_by_one() {
    let model = model();
    assert_eq!(model.task(), Task::Transcribe);
    let inputs: Vec<Input> = audios()
        .iter()
        .map(|a| Input::Audio { bytes: wav(a) })
        .collect();
    let single: Vec<Output> = inputs.iter().map(|i| model.run(i).expect("run")).collect();
    let mut mixed = inputs.clone();
    mixed.insert(
        1,
        Input::Text {
            text: "hello".into(),
        },
    );
    let batch = model.run_batch(&mixed);
    assert_eq!(batch.len(), 4);
    let e = batch[1].as_ref().expect_err("text is refused").to_string();
    assert!(e.contains("takes audio (a WAV file), not text"), "{e}");
    let got: Vec<Output> = batch
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, r)| r.expect("run"))
        .collect();
    assert_eq!(got, single);
    for (out, a) in single.iter().zip(audios()) {
        let Output::Transcript { text, tokens } = out else {
            panic!("expected a transcript");
        };
        assert_eq!(tokens, &ids(&a["tokens"]));
        assert_eq!(text, a["text"].as_str().expect("text"));
    }
}

#[test]
fn bad_audio_is_a_clear_error() {
    let model = model();
    let err = |bytes: Vec<u8>| {
        model
            .run(&Input::Audio { bytes })
            .expect_err("must fail")
            .to_string()
    };
    let e = err(Vec::new());
    assert!(e.contains("invalid input") && e.contains("empty"), "{e}");
    let e = err(b"this is not a WAV file at all".to_vec());
    assert!(e.contains("not a WAV file"), "{e}");
    let good = wav(&audios()[0]);
    let e = err(good[..60].to_vec());
    assert!(e.contains("invalid input: audio"), "{e}");
    let e = model
        .run(&Input::Image { bytes: good })
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("not an image"), "{e}");
}

#[test]
fn audio_longer_than_30_s_is_transcribed_in_windows() {
    let m = load();
    let a = &audios()[0];
    let one = wav_to_16k_mono(&wav(a)).expect("decode");
    // 30 s of the first audio followed by silence, then the audio again: two windows, the
    // second beginning with the same audio as a single one.
    let mut long = one.clone();
    long.resize(480_000, 0.0);
    long.extend_from_slice(&one);
    let t = m.transcribe(&long, Some(4)).expect("transcribe");
    assert_eq!(t.windows, 2);
    let second = m.transcribe(&one, Some(4)).expect("transcribe");
    assert!(
        t.tokens.ends_with(&second.tokens),
        "{:?} / {:?}",
        t.tokens,
        second.tokens
    );
    assert!(m.transcribe(&[], None).is_err());
}

#[test]
fn the_prompt_follows_the_generation_config_as_transformers_builds_it() {
    let cases = reference()["prompt_cases"]
        .as_array()
        .expect("prompt cases")
        .clone();
    assert!(!cases.is_empty());
    let samples = wav_to_16k_mono(&wav(&audios()[0])).expect("decode");
    let gen_config: Value = serde_json::from_slice(
        &std::fs::read(dir().join("generation_config.json")).expect("generation config"),
    )
    .expect("json");
    for case in cases {
        let tmp = tempfile::tempdir().expect("tmp");
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(dir().join(f), tmp.path().join(f)).expect("copy");
        }
        let mut g = gen_config.clone();
        for (k, v) in case["set"].as_object().expect("set") {
            let obj = g.as_object_mut().expect("object");
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(
            tmp.path().join("generation_config.json"),
            serde_json::to_vec(&g).expect("json"),
        )
        .expect("write");
        let spec = ModelSpec::detect(tmp.path()).expect("spec");
        let m = Whisper::load(&spec, &candle_core::Device::Cpu).expect("load");
        let encoded = m.encode(&m.features(&samples)).expect("encode");
        assert_eq!(
            m.prompt(&encoded).expect("prompt"),
            ids(&case["prompt"]),
            "{}",
            case["set"]
        );
    }
}
