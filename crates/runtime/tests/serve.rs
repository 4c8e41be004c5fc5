//! Serving with the real MiniLM: concurrent callers share batches and each gets its own
//! answer; the byte-bounded cache evicts the least recently used model.

mod common;
use common::models;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use lattice_runtime::batch::BatchConfig;
use lattice_runtime::{Input, LoadOptions, Model, ModelSpec, Output, Runtime, RuntimeConfig};

fn vector(o: Output) -> Vec<f32> {
    match o {
        Output::Embedding { vector } => vector,
        other => panic!("expected an embedding, got {other:?}"),
    }
}

#[test]
fn concurrent_requests_are_batched_and_each_caller_gets_its_own_embedding() {
    let dir = models().join("minilm");
    let texts: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "request number {i} asks about {}",
                ["cats", "ships", "rain", "code"][i % 4]
            )
        })
        .collect();
    // What each text gives alone, straight from the model.
    let model = Model::load(
        ModelSpec::detect(&dir).expect("spec"),
        &LoadOptions::default(),
    )
    .expect("load");
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| vector(model.run(&Input::Text { text: t.clone() }).expect("run")))
        .collect();
    drop(model);

    let rt = Arc::new(Runtime::new(RuntimeConfig {
        // A wide window so the 8 threads land in the same batch even on a loaded machine.
        batch: BatchConfig {
            window: Duration::from_millis(200),
            max_batch: 32,
        },
        ..Default::default()
    }));
    rt.model(&dir, None)
        .expect("load once before the threads start");
    let barrier = Arc::new(Barrier::new(texts.len()));
    let handles: Vec<_> = texts
        .iter()
        .cloned()
        .map(|text| {
            let (rt, dir, barrier) = (Arc::clone(&rt), dir.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                vector(rt.run(&dir, None, Input::Text { text }).expect("run"))
            })
        })
        .collect();
    for (h, want) in handles.into_iter().zip(&alone) {
        let got = h.join().expect("thread");
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Batched with padding vs alone: the same up to float order.
        assert!(diff < 1e-5, "diff {diff}");
    }
    let stats = rt.model(&dir, None).expect("cached").batch_stats();
    assert_eq!(stats.items, 8);
    assert!(
        stats.batches < 8,
        "8 concurrent requests ran in {} batches",
        stats.batches
    );
    assert!(stats.largest_batch > 1);
}

#[test]
fn the_cache_keeps_models_within_its_byte_budget() {
    let m = models();
    let (fp32, int8) = (m.join("minilm"), m.join("minilm-int8"));
    // Room for the 23 MB int8 graph or the 90 MB fp32 encoder, not both.
    let rt = Runtime::new(RuntimeConfig {
        cache_bytes: 100_000_000,
        ..Default::default()
    });
    let text = || Input::Text {
        text: "hello".into(),
    };
    rt.run(&fp32, None, text()).expect("fp32");
    assert_eq!(rt.cache_stats().entries, 1);
    rt.run(&int8, None, text()).expect("int8");
    let s = rt.cache_stats();
    assert_eq!((s.entries, s.evictions), (1, 1), "{s:?}");
    assert!(s.bytes <= 100_000_000, "{s:?}");
    rt.run(&int8, None, text()).expect("int8 again");
    assert_eq!(rt.cache_stats().hits, 1);
    let e = rt
        .run(&m.join("no-such-model"), None, text())
        .expect_err("missing model");
    assert!(e.to_string().contains("no-such-model"), "{e}");
}
