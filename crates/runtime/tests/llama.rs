//! GGUF llama generation on the real SmolLM2-135M-Instruct Q4_1 file, checked against
//! PyTorch/transformers: `tests/data/smollm2_reference.json` is written by
//! `tests/models/llama_reference.py` (prompt token ids and 24 greedy new tokens per prompt,
//! float32 dequantized weights).
//!
//! Run `cargo test --release -p lattice-runtime --test llama -- --nocapture` to see the decode
//! speeds and how far the quantized path follows the float32 reference.

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use candle_core::Device;
use lattice_runtime::llama::Llama;
use lattice_runtime::{GenerateParams, RuntimeError, StopReason};
use serde_json::Value;

/// Greedy tokens (of 24) the quantized path must reproduce from the start of each reference
/// continuation. The Q4_1 weights are held as Q8_0 (requantized at load), and candle's
/// quantized matmul rounds activations to 8 bits where the float32 reference does not, so its
/// logits differ slightly, a near-tie flips a token and the continuations part. Measured
/// (x86-64 AVX2, candle 0.11.1): 19, 24, 8, 24 and 24 leading tokens for the five reference
/// prompts (Q4_1 as stored gave 5, 24, 16, 11 and 21). The float32 path
/// ([`Llama::load_dequantized`]) matches all of them exactly.
const QUANTIZED_MIN_MATCH: usize = 8;

fn models_dir() -> PathBuf {
    common::models()
}

fn gguf() -> PathBuf {
    models_dir().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn lock(m: &'static Mutex<Llama>) -> MutexGuard<'static, Llama> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The quantized model, loaded once for all tests.
fn quantized() -> MutexGuard<'static, Llama> {
    static M: OnceLock<Mutex<Llama>> = OnceLock::new();
    lock(M.get_or_init(|| Mutex::new(Llama::load(&gguf(), &Device::Cpu).expect("load"))))
}

/// The float32 (verification) model, loaded once.
fn dequantized() -> MutexGuard<'static, Llama> {
    static M: OnceLock<Mutex<Llama>> = OnceLock::new();
    lock(M.get_or_init(|| {
        Mutex::new(Llama::load_dequantized(&gguf(), &Device::Cpu).expect("load f32"))
    }))
}

fn reference() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/smollm2_reference.json");
    let text = std::fs::read_to_string(&path).expect("read the reference");
    serde_json::from_str(&text).expect("reference json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("id")).expect("u32 id"))
        .collect()
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ..Default::default()
    }
}

/// The reference continuation up to (not including) its first end-of-sequence token, and
/// whether it had one: what `generate` returns as `tokens`.
fn expected_tokens(reference: &[u32], eos: &[u32]) -> (Vec<u32>, bool) {
    match reference.iter().position(|t| eos.contains(t)) {
        Some(i) => (reference[..i].to_vec(), true),
        None => (reference.to_vec(), false),
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[test]
fn tokenizer_matches_transformers() {
    let r = reference();
    let model = quantized();
    let tok = model.tokenizer();
    let mut cases: Vec<(String, Vec<u32>)> = Vec::new();
    for g in r["generations"].as_array().expect("generations") {
        cases.push((
            g["prompt"].as_str().expect("prompt").to_owned(),
            ids(&g["prompt_ids"]),
        ));
    }
    for t in r["tokenize"].as_array().expect("tokenize") {
        cases.push((t["text"].as_str().expect("text").to_owned(), ids(&t["ids"])));
    }
    assert!(cases.len() >= 10);
    for (text, want) in &cases {
        let got = tok.encode(text.as_str(), false).expect("encode");
        assert_eq!(got.get_ids(), want.as_slice(), "ids of {text:?}");
        // Byte-level BPE round-trips exactly (special tokens included).
        let back = tok.decode(want, false).expect("decode");
        assert_eq!(&back, text, "decoding the ids of {text:?}");
    }
}

#[test]
fn chat_template_matches_transformers() {
    let r = reference();
    let model = quantized();
    let mut n = 0;
    for g in r["generations"].as_array().expect("generations") {
        if g["chat"].as_bool() == Some(true) {
            let msg = g["user_message"].as_str().expect("user message");
            assert_eq!(
                model.chat_prompt(msg),
                g["prompt"].as_str().expect("prompt")
            );
            n += 1;
        }
    }
    assert!(n > 0);
    assert_eq!(
        model.context_length(),
        4096,
        "8192 in the file, capped at candle's rope table"
    );
    assert!(model.eos_token_ids().contains(&2), "<|im_end|>");
    let mb = model.weight_bytes() / 1_000_000;
    assert!((90..300).contains(&mb), "weight bytes {mb} MB");
}

/// The float32 verification path reproduces PyTorch's greedy tokens exactly.
#[test]
fn dequantized_greedy_matches_pytorch() {
    let r = reference();
    let mut model = dequantized();
    let eos = model.eos_token_ids();
    let n_new = r["new_tokens"].as_u64().expect("new_tokens") as usize;
    for g in r["generations"].as_array().expect("generations") {
        let prompt = g["prompt"].as_str().expect("prompt");
        let (want, stops) = expected_tokens(&ids(&g["greedy"]), &eos);
        let out = model.generate(prompt, &greedy(n_new)).expect("generate");
        assert_eq!(out.prompt_tokens, ids(&g["prompt_ids"]).len());
        assert_eq!(out.tokens, want, "greedy tokens for {prompt:?}");
        let reason = if stops {
            StopReason::EndOfSequence
        } else {
            StopReason::Length
        };
        assert_eq!(out.stop_reason, reason);
        let text = model.tokenizer().decode(&want, true).expect("decode");
        assert_eq!(out.text, text);
    }
}

/// How many leading greedy tokens the quantized path shares with PyTorch, per prompt.
#[test]
fn quantized_greedy_follows_the_reference() {
    let r = reference();
    let mut model = quantized();
    let eos = model.eos_token_ids();
    let n_new = r["new_tokens"].as_u64().expect("new_tokens") as usize;
    let mut worst = usize::MAX;
    for g in r["generations"].as_array().expect("generations") {
        let prompt = g["prompt"].as_str().expect("prompt");
        let (want, _) = expected_tokens(&ids(&g["greedy"]), &eos);
        let out = model.generate(prompt, &greedy(n_new)).expect("generate");
        let same = common_prefix(&out.tokens, &want);
        let full = same == want.len() && out.tokens.len() == want.len();
        println!(
            "quantized vs pytorch f32: {same}/{} leading tokens equal{} for {:?} -> {:?}",
            want.len(),
            if full { " (all)" } else { "" },
            prompt.chars().take(40).collect::<String>(),
            out.text
        );
        worst = worst.min(if full { n_new } else { same });
    }
    assert!(
        worst >= QUANTIZED_MIN_MATCH,
        "quantized greedy matched only {worst} leading tokens (expected >= {QUANTIZED_MIN_MATCH})"
    );
}

#[test]
fn sampling_is_reproducible_by_seed() {
    let mut model = quantized();
    let params = |seed| GenerateParams {
        max_tokens: 24,
        temperature: 1.0,
        top_p: Some(0.95),
        seed,
        ..Default::default()
    };
    let prompt = "Once upon a time, in a small village,";
    let a = model.generate(prompt, &params(7)).expect("a");
    let b = model.generate(prompt, &params(7)).expect("b");
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    assert_eq!(a.text, b.text);
    let c = model.generate(prompt, &params(8)).expect("c");
    let d = model.generate(prompt, &params(9)).expect("d");
    assert!(
        c.tokens != a.tokens || d.tokens != a.tokens,
        "three seeds gave the same 24 sampled tokens"
    );
    // Top-k with k = 1 is greedy.
    let k1 = GenerateParams {
        top_k: Some(1),
        ..params(3)
    };
    let g = model.generate(prompt, &greedy(24)).expect("greedy");
    let s = model.generate(prompt, &k1).expect("top-1");
    assert_eq!(g.tokens, s.tokens);
}

#[test]
fn max_tokens_stop_strings_and_timings() {
    let mut model = quantized();
    let prompt = "The capital of France is";
    let out = model.generate(prompt, &greedy(5)).expect("generate");
    assert_eq!(out.tokens.len(), 5);
    assert_eq!(out.stop_reason, StopReason::Length);
    assert_eq!(out.prompt_tokens, 5);
    assert!(out.prompt_ms > 0.0);
    assert!(out.tokens_per_s > 0.0);

    let one = model.generate(prompt, &greedy(1)).expect("one token");
    assert_eq!(one.tokens, out.tokens[..1]);
    assert_eq!(one.tokens_per_s, 0.0, "no decode step after the prompt");

    // Greedy continuation is " Paris.\n\nThe answer is: ..."; stop at the blank line.
    let full = model.generate(prompt, &greedy(12)).expect("full");
    assert!(full.text.starts_with(" Paris.\n\n"), "{:?}", full.text);
    let stop = GenerateParams {
        stop: vec!["\n\n".into(), "never appears".into()],
        ..greedy(12)
    };
    let cut = model.generate(prompt, &stop).expect("stop");
    assert_eq!(cut.stop_reason, StopReason::StopString);
    assert_eq!(cut.text, " Paris.");
    assert!(cut.tokens.len() < 12);
    assert_eq!(cut.tokens[..], full.tokens[..cut.tokens.len()]);
    // A stop string inside one token: cut in the middle of it.
    let mid = GenerateParams {
        stop: vec!["ari".into()],
        ..greedy(12)
    };
    let cut = model.generate(prompt, &mid).expect("stop mid-token");
    assert_eq!(cut.text, " P");
    assert_eq!(cut.tokens.len(), 1);

    // Calls are independent (the KV cache is cleared): the same request twice, same answer.
    let again = model.generate(prompt, &greedy(12)).expect("again");
    assert_eq!(again.tokens, full.tokens);
}

#[test]
fn chat_generation_ends_at_end_of_turn() {
    let mut model = quantized();
    let prompt = model.chat_prompt("Say hello.");
    let out = model.generate(&prompt, &greedy(200)).expect("chat");
    assert_eq!(out.stop_reason, StopReason::EndOfSequence, "{:?}", out.text);
    assert!(!out.text.contains("<|im_end|>"));
    assert!(!out.text.is_empty());
}

#[test]
fn bad_requests_are_invalid_input() {
    let mut model = quantized();
    let invalid = |r: Result<_, RuntimeError>| matches!(r, Err(RuntimeError::InvalidInput(_)));
    assert!(invalid(model.generate("", &GenerateParams::default())));
    let bad = [
        GenerateParams {
            max_tokens: 0,
            ..Default::default()
        },
        GenerateParams {
            temperature: -0.5,
            ..Default::default()
        },
        GenerateParams {
            temperature: f64::NAN,
            ..Default::default()
        },
        GenerateParams {
            temperature: 1.0,
            top_p: Some(0.0),
            ..Default::default()
        },
        GenerateParams {
            temperature: 1.0,
            top_k: Some(0),
            ..Default::default()
        },
    ];
    for p in &bad {
        assert!(invalid(model.generate("Hello", p)), "{p:?}");
    }
    // Longer than the context window.
    let long = "hello ".repeat(model.context_length() + 10);
    let err = model.generate(&long, &greedy(4)).expect_err("too long");
    assert!(
        matches!(&err, RuntimeError::InvalidInput(m) if m.contains("context")),
        "{err}"
    );
    // Still usable afterwards.
    assert_eq!(
        model
            .generate("Hello", &greedy(2))
            .expect("ok")
            .tokens
            .len(),
        2
    );
}

#[test]
fn bad_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.gguf");
    assert!(matches!(
        Llama::load(&missing, &Device::Cpu),
        Err(RuntimeError::Io { .. })
    ));
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF but not really a gguf file at all").expect("write");
    assert!(matches!(
        Llama::load(&junk, &Device::Cpu),
        Err(RuntimeError::InvalidModel(_))
    ));
    // A real header cut short: tensors missing.
    let bytes = std::fs::read(gguf()).expect("read gguf");
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    assert!(matches!(
        Llama::load(&cut, &Device::Cpu),
        Err(RuntimeError::InvalidModel(_))
    ));
}
