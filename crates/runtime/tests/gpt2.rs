//! GPT-2 against PyTorch on a tiny trained fixture (`tests/models/make_fixtures.py`): the
//! logits at every generated step (PyTorch without a cache, ours with the KV cache) and the
//! greedy tokens, exactly.

use std::path::PathBuf;

use lattice_runtime::gpt2::Gpt2;
use lattice_runtime::{GenerateParams, Input, LoadOptions, Model, ModelSpec, Output, StopReason};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-gpt2")
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("reference.json")).expect("reference"))
        .expect("json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn load() -> Gpt2 {
    let spec = ModelSpec::detect(&dir()).expect("spec");
    Gpt2::load(&spec, &candle_core::Device::Cpu).expect("load")
}

#[test]
fn step_logits_with_the_kv_cache_match_pytorch_without_one() {
    let mut m = load();
    for p in reference()["prompts"].as_array().expect("prompts") {
        let prompt_ids = ids(&p["prompt_ids"]);
        let enc = m
            .tokenizer()
            .encode(p["prompt"].as_str().expect("prompt"), false)
            .expect("encode");
        assert_eq!(enc.get_ids(), &prompt_ids[..], "tokenizer");
        let greedy = ids(&p["greedy"]);
        m.clear_cache();
        let mut logits = m.forward(&prompt_ids, 0).expect("prompt");
        for (step, want) in p["step_logits"]
            .as_array()
            .expect("steps")
            .iter()
            .enumerate()
        {
            let got: Vec<f32> = logits.to_vec1().expect("logits");
            let worst = got
                .iter()
                .zip(want.as_array().expect("row"))
                .map(|(a, b)| (a - b.as_f64().expect("f") as f32).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-4, "step {step}: max abs diff {worst}");
            let next = greedy[step];
            assert_eq!(Gpt2::argmax(&logits).expect("argmax"), next, "step {step}");
            logits = m.forward(&[next], prompt_ids.len() + step).expect("step");
        }
    }
}

#[test]
fn greedy_generation_gives_pytorchs_tokens_through_the_model_interface() {
    let model = Model::load(
        ModelSpec::detect(&dir()).expect("spec"),
        &LoadOptions::default(),
    )
    .expect("load");
    for p in reference()["prompts"].as_array().expect("prompts") {
        let greedy = ids(&p["greedy"]);
        let out = model
            .run(&Input::Prompt {
                text: p["prompt"].as_str().expect("prompt").to_string(),
                params: GenerateParams {
                    max_tokens: greedy.len(),
                    ..Default::default()
                },
                chat: false,
            })
            .expect("generate");
        let Output::Generated { generation } = out else {
            panic!("expected a generation");
        };
        assert_eq!(generation.tokens, greedy);
        assert_eq!(generation.stop_reason, StopReason::Length);
    }
}

#[test]
fn sampling_is_seeded_and_stops_and_limits_hold() {
    let mut m = load();
    let sampled = |m: &mut Gpt2, seed| {
        let params = GenerateParams {
            max_tokens: 12,
            temperature: 1.0,
            seed,
            ..Default::default()
        };
        m.generate("Once upon a time", &params)
            .expect("generate")
            .tokens
    };
    let a = sampled(&mut m, 1);
    assert_eq!(a, sampled(&mut m, 1));
    assert!(
        (2..20).any(|s| sampled(&mut m, s) != a),
        "other seeds sample differently"
    );

    let greedy = m
        .generate("Once upon a time", &GenerateParams::default())
        .expect("generate");
    let cut = &greedy.text[..greedy.text.len() / 2];
    let stop = cut.chars().last().map(String::from).unwrap_or_default();
    let stopped = m
        .generate(
            "Once upon a time",
            &GenerateParams {
                stop: vec![stop.clone()],
                ..Default::default()
            },
        )
        .expect("generate");
    assert_eq!(stopped.stop_reason, StopReason::StopString);
    assert!(!stopped.text.contains(&stop));
    // 64 positions: a long run stops at the context.
    let long = m
        .generate(
            "Once upon a time",
            &GenerateParams {
                max_tokens: 1000,
                ..Default::default()
            },
        )
        .expect("generate");
    assert!(matches!(
        long.stop_reason,
        StopReason::ContextFull | StopReason::EndOfSequence
    ));
    assert!(long.prompt_tokens + long.tokens.len() <= 64);
    assert!(m.generate("", &GenerateParams::default()).is_err());
    assert!(m.forward(&[1; 65], 0).is_err(), "past the position table");
}
