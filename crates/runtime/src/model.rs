//! A loaded model of any family behind one interface: [`Model::load`] a [`ModelSpec`], then
//! [`Model::run`] one [`Input`] or [`Model::run_batch`] several.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::clip::Clip;
use crate::device::{Backend, DeviceChoice, cpu_features, cpu_threads};
use crate::encoder::Encoder;
use crate::error::{Result, RuntimeError};
use crate::generate::{GenerateParams, Generation};
use crate::gpt2::Gpt2;
use crate::llama::Llama;
use crate::onnx::{OnnxImage, OnnxText, SessionOptions};
use crate::resnet::ResNet;
use crate::spec::{Family, Format, ModelSpec, Task};
use crate::text::TextTokenizer;
use crate::vision::Preprocess;
use crate::whisper::Whisper;

/// One request to a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Input {
    /// Text to embed or classify.
    Text {
        /// The text.
        text: String,
    },
    /// An encoded image (PNG, JPEG) to classify.
    Image {
        /// The file's bytes.
        bytes: Vec<u8>,
    },
    /// A prompt to continue.
    Prompt {
        /// The prompt (raw; see `chat` to wrap it in the model's chat template).
        text: String,
        /// Generation parameters.
        #[serde(default)]
        params: GenerateParams,
        /// Wrap `text` as one user message in the model's chat template.
        #[serde(default)]
        chat: bool,
    },
    /// An encoded image (PNG, JPEG) and candidate texts to score it against (zero-shot
    /// image classification).
    ImageTexts {
        /// The image file's bytes.
        bytes: Vec<u8>,
        /// The candidate labels, as texts (at least one).
        texts: Vec<String>,
    },
    /// An audio file (WAV) to transcribe.
    Audio {
        /// The WAV file's bytes.
        bytes: Vec<u8>,
    },
}

/// A class and its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// Class index.
    pub index: usize,
    /// Class name (`LABEL_i` when the model names none).
    pub label: String,
    /// Probability (softmax of the logits).
    pub score: f32,
}

/// What a model answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Output {
    /// A sentence embedding (unit length).
    Embedding {
        /// The vector.
        vector: Vec<f32>,
    },
    /// Classes, best first (top-k), with the raw logits where the model gives them.
    Labels {
        /// The best classes.
        labels: Vec<Label>,
        /// Every class's logit (empty for graphs that output probabilities).
        logits: Vec<f32>,
    },
    /// Generated text.
    Generated {
        /// The generation.
        generation: Generation,
    },
    /// A transcript of audio.
    Transcript {
        /// The text (special tokens skipped).
        text: String,
        /// The generated token ids (without the decoder prompt and end-of-text).
        tokens: Vec<u32>,
    },
}

/// How to load a model.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// The backend; `None` = the one the format needs.
    pub backend: Option<Backend>,
    /// The device; `None` = [`DeviceChoice::auto`].
    pub device: Option<DeviceChoice>,
    /// Deterministic mode: every input runs alone (never batched with others) and ONNX
    /// Runtime uses deterministic kernels on one thread, so an output depends only on its
    /// input and the CPU architecture.
    pub deterministic: bool,
    /// Labels returned by classifiers.
    pub top_k: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            backend: None,
            device: None,
            deterministic: false,
            top_k: 5,
        }
    }
}

enum Kind {
    Encoder(Encoder, TextTokenizer),
    OnnxText(OnnxText, TextTokenizer),
    OnnxImage(OnnxImage, Preprocess),
    Llama(Box<Mutex<Llama>>),
    Gpt2(Box<Mutex<Gpt2>>),
    Vit(
        Box<candle_transformers::models::vit::Model>,
        Preprocess,
        candle_core::Device,
    ),
    Resnet(Box<ResNet>, Preprocess),
    Clip(Box<Clip>, TextTokenizer, Preprocess),
    Whisper(Box<Whisper>),
}

/// A loaded model.
pub struct Model {
    spec: ModelSpec,
    backend: Backend,
    device: DeviceChoice,
    options: LoadOptions,
    kind: Kind,
}

impl Model {
    /// Loads `spec` with `options`.
    pub fn load(spec: ModelSpec, options: &LoadOptions) -> Result<Self> {
        let needed = Backend::for_format(spec.format);
        let backend = options.backend.unwrap_or(needed);
        if backend != needed {
            return Err(RuntimeError::Unsupported(format!(
                "{}: {:?} weights run on the {needed} backend, not {backend}",
                spec.weights.display(),
                spec.format
            )));
        }
        let device = options.device.unwrap_or_else(DeviceChoice::auto);
        if backend == Backend::Onnx && device != DeviceChoice::Cpu {
            return Err(RuntimeError::Device(format!(
                "the ONNX backend runs on cpu in this build, not {device}"
            )));
        }
        let onnx_opts = SessionOptions {
            threads: if options.deterministic {
                1
            } else {
                cpu_threads()
            },
            deterministic: options.deterministic,
        };
        let tokenizer = |max: usize| -> Result<TextTokenizer> {
            let path = spec.tokenizer.as_ref().ok_or_else(|| {
                RuntimeError::InvalidModel(format!("{}: no tokenizer.json", spec.dir.display()))
            })?;
            TextTokenizer::from_file(path, max)
        };
        let kind = match (spec.format, spec.family) {
            (Format::Safetensors, Family::Bert) => {
                let enc = Encoder::load(&spec, &device.candle_device()?)?;
                let tok = tokenizer(enc.max_len())?;
                Kind::Encoder(enc, tok)
            }
            (Format::Onnx, Family::OnnxText) => {
                let g = OnnxText::load(&spec.weights, onnx_opts)?;
                Kind::OnnxText(g, tokenizer(512)?)
            }
            (Format::Onnx, Family::OnnxImage) => {
                let g = OnnxImage::load(&spec.weights, onnx_opts)?;
                let pre = Preprocess::from_dir(&spec.dir)?;
                let (w, h) = pre.output_size((0, 0));
                if (h as usize, w as usize) != g.size {
                    return Err(RuntimeError::InvalidModel(format!(
                        "{}: preprocessing makes {w}x{h} images, the graph takes {}x{}",
                        spec.dir.display(),
                        g.size.1,
                        g.size.0
                    )));
                }
                Kind::OnnxImage(g, pre)
            }
            (Format::Gguf, Family::Llama) => Kind::Llama(Box::new(Mutex::new(Llama::load(
                &spec.weights,
                &device.candle_device()?,
            )?))),
            (Format::Safetensors, Family::Vit) => {
                let cfg: candle_transformers::models::vit::Config =
                    serde_json::from_value(spec.config.clone()).map_err(|e| {
                        RuntimeError::InvalidModel(format!(
                            "{}: config.json: {e}",
                            spec.dir.display()
                        ))
                    })?;
                let labels = spec.labels.len();
                if labels == 0 {
                    return Err(RuntimeError::InvalidModel(
                        "an image classifier needs id2label in config.json".into(),
                    ));
                }
                let pre = Preprocess::from_dir(&spec.dir)?;
                let (w, h) = pre.output_size((0, 0));
                if (w as usize, h as usize) != (cfg.image_size, cfg.image_size) {
                    return Err(RuntimeError::InvalidModel(format!(
                        "{}: preprocessing makes {w}x{h} images, the model takes {1}x{1}",
                        spec.dir.display(),
                        cfg.image_size
                    )));
                }
                let dev = device.candle_device()?;
                // SAFETY: mapped read-only; model files are immutable once verified.
                let vb = unsafe {
                    candle_nn::VarBuilder::from_mmaped_safetensors(
                        &[&spec.weights],
                        candle_core::DType::F32,
                        &dev,
                    )?
                };
                let model = candle_transformers::models::vit::Model::new(&cfg, labels, vb)?;
                Kind::Vit(Box::new(model), pre, dev)
            }
            (Format::Safetensors, Family::Resnet) => {
                let labels = spec.labels.len();
                if labels == 0 {
                    return Err(RuntimeError::InvalidModel(
                        "an image classifier needs id2label in config.json".into(),
                    ));
                }
                let pre = Preprocess::from_dir(&spec.dir)?;
                let model = ResNet::load(&spec, labels, &device.candle_device()?)?;
                Kind::Resnet(Box::new(model), pre)
            }
            (Format::Safetensors, Family::Clip) => {
                let model = Clip::load(&spec, &device.candle_device()?)?;
                let pre = Preprocess::from_dir(&spec.dir)?;
                let (w, h) = pre.output_size((0, 0));
                let s = model.image_size();
                if (w as usize, h as usize) != (s, s) {
                    return Err(RuntimeError::InvalidModel(format!(
                        "{}: preprocessing makes {w}x{h} images, the model takes {s}x{s}",
                        spec.dir.display()
                    )));
                }
                let tok = tokenizer(model.max_len())?;
                Kind::Clip(Box::new(model), tok, pre)
            }
            (Format::Safetensors, Family::Gpt2) => Kind::Gpt2(Box::new(Mutex::new(Gpt2::load(
                &spec,
                &device.candle_device()?,
            )?))),
            (Format::Safetensors, Family::Whisper) => {
                Kind::Whisper(Box::new(Whisper::load(&spec, &device.candle_device()?)?))
            }
            (format, family) => {
                return Err(RuntimeError::Unsupported(format!(
                    "{family:?} as {format:?}; supported: {}",
                    crate::spec::SUPPORTED
                )));
            }
        };
        Ok(Self {
            spec,
            backend,
            device,
            options: options.clone(),
            kind,
        })
    }

    /// What was loaded.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The task it runs.
    pub fn task(&self) -> Task {
        self.spec.task
    }

    /// The backend chosen.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The device chosen.
    pub fn device(&self) -> DeviceChoice {
        self.device
    }

    /// One line saying what runs where, for reports: `candle on cpu (avx512f,avx2,fma), 2 threads`.
    pub fn describe(&self) -> String {
        let threads = if self.backend == Backend::Onnx && self.options.deterministic {
            1
        } else {
            cpu_threads()
        };
        match self.device {
            DeviceChoice::Cpu => format!(
                "{} on cpu ({}), {threads} threads{}",
                self.backend,
                cpu_features().join(","),
                if self.options.deterministic {
                    ", deterministic"
                } else {
                    ""
                }
            ),
            d => format!("{} on {d}", self.backend),
        }
    }

    /// Bytes of weights held (what the model cache counts).
    pub fn weight_bytes(&self) -> u64 {
        match &self.kind {
            Kind::Encoder(e, _) => e.weight_bytes(),
            Kind::OnnxText(g, _) => g.weight_bytes(),
            Kind::OnnxImage(g, _) => g.weight_bytes(),
            Kind::Llama(l) => l.lock().unwrap_or_else(|e| e.into_inner()).weight_bytes(),
            Kind::Gpt2(g) => g.lock().unwrap_or_else(|e| e.into_inner()).weight_bytes(),
            Kind::Vit(..) => std::fs::metadata(&self.spec.weights).map_or(0, |m| m.len()),
            Kind::Resnet(m, _) => m.weight_bytes(),
            Kind::Clip(m, ..) => m.weight_bytes(),
            Kind::Whisper(w) => w.weight_bytes(),
        }
    }

    /// Runs one input.
    pub fn run(&self, input: &Input) -> Result<Output> {
        self.run_batch(std::slice::from_ref(input))
            .pop()
            .unwrap_or_else(|| Err(RuntimeError::InvalidInput("no input".into())))
    }

    /// Runs several inputs, as one batch where the model allows (one result per input, in
    /// order; in deterministic mode each runs alone).
    pub fn run_batch(&self, inputs: &[Input]) -> Vec<Result<Output>> {
        if self.options.deterministic && inputs.len() > 1 {
            return inputs
                .iter()
                .map(|i| self.run_group(std::slice::from_ref(i)).remove(0))
                .collect();
        }
        self.run_group(inputs)
    }

    fn run_group(&self, inputs: &[Input]) -> Vec<Result<Output>> {
        match &self.kind {
            Kind::Encoder(..) | Kind::OnnxText(..) => self.run_text(inputs),
            Kind::OnnxImage(g, pre) => {
                self.run_images(inputs, pre, g.layout, |pixels, n| g.classify(pixels, n))
            }
            Kind::Vit(m, pre, dev) => {
                self.run_images(inputs, pre, crate::onnx::Layout::Nchw, |pixels, n| {
                    let (w, h) = pre.output_size((0, 0));
                    let x = candle_core::Tensor::from_slice(
                        pixels,
                        (n, 3, h as usize, w as usize),
                        dev,
                    )?;
                    let logits: Vec<Vec<f32>> = m.forward(&x)?.to_vec2()?;
                    Ok(logits.iter().map(|row| crate::onnx::softmax(row)).collect())
                })
            }
            Kind::Resnet(m, pre) => {
                self.run_images(inputs, pre, crate::onnx::Layout::Nchw, |pixels, n| {
                    let (w, h) = pre.output_size((0, 0));
                    let (w, h) = (w as usize, h as usize);
                    if pixels.len() != n * 3 * w * h {
                        return Err(RuntimeError::InvalidInput(format!(
                            "preprocessing made images of other sizes than {w}x{h} \
                             (preprocessor_config.json resizes without cropping)"
                        )));
                    }
                    let logits = m.classify(pixels, n, (w, h))?;
                    Ok(logits.iter().map(|row| crate::onnx::softmax(row)).collect())
                })
            }
            Kind::Clip(m, tok, pre) => self.run_clip(m, tok, pre, inputs),
            Kind::Llama(l) => inputs
                .iter()
                .map(|input| {
                    let Input::Prompt { text, params, chat } = input else {
                        return Err(wrong_input(input, self.spec.task));
                    };
                    let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                    let prompt = if *chat {
                        l.chat_prompt(text)
                    } else {
                        text.clone()
                    };
                    Ok(Output::Generated {
                        generation: l.generate(&prompt, params)?,
                    })
                })
                .collect(),
            Kind::Gpt2(g) => inputs
                .iter()
                .map(|input| {
                    let Input::Prompt { text, params, chat } = input else {
                        return Err(wrong_input(input, self.spec.task));
                    };
                    if *chat {
                        return Err(RuntimeError::InvalidInput(
                            "GPT-2 has no chat template; send the raw prompt".into(),
                        ));
                    }
                    let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
                    Ok(Output::Generated {
                        generation: g.generate(text, params)?,
                    })
                })
                .collect(),
            // One after another: each window's decoding is sequential anyway, and an audio's
            // transcript then never depends on the others in the batch.
            Kind::Whisper(w) => inputs
                .iter()
                .map(|input| {
                    let Input::Audio { bytes } = input else {
                        return Err(wrong_input(input, self.spec.task));
                    };
                    let t = w.transcribe_wav(bytes, None)?;
                    Ok(Output::Transcript {
                        text: t.text,
                        tokens: t.tokens,
                    })
                })
                .collect(),
        }
    }

    /// Preprocesses the images among `inputs` and classifies them as one batch with
    /// `classify(pixels, n) -> probabilities per image`.
    fn run_images(
        &self,
        inputs: &[Input],
        pre: &Preprocess,
        layout: crate::onnx::Layout,
        classify: impl FnOnce(&[f32], usize) -> Result<Vec<Vec<f32>>>,
    ) -> Vec<Result<Output>> {
        let mut results: Vec<Option<Result<Output>>> = Vec::with_capacity(inputs.len());
        let mut pixels = Vec::new();
        let mut ok = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let Input::Image { bytes } = input else {
                results.push(Some(Err(wrong_input(input, self.spec.task))));
                continue;
            };
            match pre.run(bytes, layout, &mut pixels) {
                Ok(_) => {
                    ok.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !ok.is_empty() {
            match classify(&pixels, ok.len()) {
                Ok(rows) => {
                    for (i, probs) in ok.iter().zip(rows) {
                        results[*i] = Some(Ok(self.labels(&probs, Vec::new())));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for i in &ok {
                        results[*i] = Some(Err(RuntimeError::InvalidInput(msg.clone())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RuntimeError::InvalidInput("not run".into()))))
            .collect()
    }

    /// CLIP: texts and images embedded (task embed), or images scored against their texts
    /// (zero-shot); all images of the batch go through the vision model at once, all texts
    /// through the text model at once.
    fn run_clip(
        &self,
        clip: &Clip,
        tok: &TextTokenizer,
        pre: &Preprocess,
        inputs: &[Input],
    ) -> Vec<Result<Output>> {
        let task = self.spec.task;
        let size = clip.image_size() as u32;
        let mut results: Vec<Option<Result<Output>>> = Vec::with_capacity(inputs.len());
        let mut pixels = Vec::new();
        // Per input: its image's row in the image batch, and its texts' rows.
        let mut slots: Vec<(Option<usize>, std::ops::Range<usize>)> = Vec::new();
        let mut images = 0;
        let mut texts: Vec<&str> = Vec::new();
        let mut add_image = |bytes: &[u8], pixels: &mut Vec<f32>| -> Result<usize> {
            let base = pixels.len();
            let (w, h) = pre.run(bytes, crate::onnx::Layout::Nchw, pixels)?;
            if (w, h) != (size, size) {
                pixels.truncate(base);
                return Err(RuntimeError::InvalidInput(format!(
                    "preprocessing made a {w}x{h} image, the model takes {size}x{size}"
                )));
            }
            images += 1;
            Ok(images - 1)
        };
        for input in inputs {
            let slot = match (task, input) {
                (Task::Embed, Input::Text { text }) => {
                    texts.push(text);
                    Ok((None, texts.len() - 1..texts.len()))
                }
                (Task::Embed, Input::Image { bytes }) => {
                    add_image(bytes, &mut pixels).map(|i| (Some(i), 0..0))
                }
                (Task::ZeroShot, Input::ImageTexts { texts: t, .. }) if t.is_empty() => {
                    Err(RuntimeError::InvalidInput(
                        "zero-shot classification needs at least one candidate text".into(),
                    ))
                }
                (Task::ZeroShot, Input::ImageTexts { bytes, texts: t }) => {
                    add_image(bytes, &mut pixels).map(|i| {
                        let start = texts.len();
                        texts.extend(t.iter().map(String::as_str));
                        (Some(i), start..texts.len())
                    })
                }
                (Task::Embed, other) => Err(RuntimeError::InvalidInput(format!(
                    "this model (embed) takes text or an image, not {}",
                    input_kind(other)
                ))),
                (_, other) => Err(wrong_input(other, task)),
            };
            match slot {
                Ok(slot) => {
                    slots.push(slot);
                    results.push(None);
                }
                Err(e) => {
                    slots.push((None, 0..0));
                    results.push(Some(Err(e)));
                }
            }
        }
        let shared = |r: Result<Vec<Vec<f32>>>| r.map_err(|e| e.to_string());
        let image_rows = if images > 0 {
            shared(clip.embed_images(&pixels, images))
        } else {
            Ok(Vec::new())
        };
        let text_rows = if texts.is_empty() {
            Ok(Vec::new())
        } else {
            shared(
                tok.encode_batch(&texts)
                    .and_then(|batch| clip.embed_texts(&batch)),
            )
        };
        let row = |rows: &std::result::Result<Vec<Vec<f32>>, String>, i: usize| {
            rows.as_ref()
                .map_err(|e| RuntimeError::InvalidInput(e.clone()))
                .and_then(|r| {
                    r.get(i).cloned().ok_or_else(|| {
                        RuntimeError::InvalidInput(format!("no embedding for row {i}"))
                    })
                })
        };
        for ((result, (image, range)), input) in results.iter_mut().zip(slots).zip(inputs) {
            if result.is_some() {
                continue;
            }
            let out = match (image, input) {
                (None, _) => {
                    row(&text_rows, range.start).map(|vector| Output::Embedding { vector })
                }
                (Some(i), Input::ImageTexts { texts: names, .. }) => {
                    row(&image_rows, i).and_then(|img| {
                        let candidates = range
                            .map(|t| row(&text_rows, t))
                            .collect::<Result<Vec<_>>>()?;
                        let logits = clip.scaled_cosines(&img, &candidates);
                        Ok(self.zero_shot_labels(names, logits))
                    })
                }
                (Some(i), _) => row(&image_rows, i).map(|vector| Output::Embedding { vector }),
            };
            *result = Some(out);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RuntimeError::InvalidInput("not run".into()))))
            .collect()
    }

    /// Zero-shot labels: each text a class (index = its position), scored by the softmax of
    /// `logits`, best first (top-k).
    fn zero_shot_labels(&self, texts: &[String], logits: Vec<f32>) -> Output {
        let probs = crate::onnx::softmax(&logits);
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let labels = order
            .into_iter()
            .take(self.options.top_k.max(1))
            .map(|index| Label {
                index,
                label: texts.get(index).cloned().unwrap_or_default(),
                score: probs[index],
            })
            .collect();
        Output::Labels { labels, logits }
    }

    fn run_text(&self, inputs: &[Input]) -> Vec<Result<Output>> {
        let mut texts = Vec::new();
        let mut results: Vec<Option<Result<Output>>> = Vec::with_capacity(inputs.len());
        for input in inputs {
            match input {
                Input::Text { text } => {
                    texts.push(text.as_str());
                    results.push(None);
                }
                other => results.push(Some(Err(wrong_input(other, self.spec.task)))),
            }
        }
        if !texts.is_empty() {
            let rows = self.text_rows(&texts);
            let mut rows = match rows {
                Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => {
                    let msg = e.to_string();
                    (0..texts.len())
                        .map(|_| Err(RuntimeError::InvalidInput(msg.clone())))
                        .collect()
                }
            }
            .into_iter();
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = rows.next();
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RuntimeError::InvalidInput("not run".into()))))
            .collect()
    }

    fn text_rows(&self, texts: &[&str]) -> Result<Vec<Output>> {
        match (&self.kind, self.spec.task) {
            (Kind::Encoder(e, tok), Task::Embed) => {
                let batch = tok.encode_batch(texts)?;
                Ok(e.embed(&batch)?
                    .into_iter()
                    .map(|vector| Output::Embedding { vector })
                    .collect())
            }
            (Kind::Encoder(e, tok), Task::Classify) => {
                let batch = tok.encode_batch(texts)?;
                Ok(e.classify(&batch)?
                    .into_iter()
                    .map(|logits| self.labels(&crate::onnx::softmax(&logits), logits))
                    .collect())
            }
            (Kind::OnnxText(g, tok), _) => {
                let batch = tok.encode_batch(texts)?;
                Ok(g.embed(&batch)?
                    .into_iter()
                    .map(|vector| Output::Embedding { vector })
                    .collect())
            }
            _ => Err(RuntimeError::Unsupported(format!(
                "task {} on this model",
                self.spec.task
            ))),
        }
    }

    fn labels(&self, probs: &[f32], logits: Vec<f32>) -> Output {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let labels = order
            .into_iter()
            .take(self.options.top_k.max(1))
            .map(|index| Label {
                index,
                label: self
                    .spec
                    .labels
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| format!("LABEL_{index}")),
                score: probs[index],
            })
            .collect();
        Output::Labels { labels, logits }
    }
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Text { .. } => "text",
        Input::Image { .. } => "an image",
        Input::Prompt { .. } => "a prompt",
        Input::ImageTexts { .. } => "an image with texts",
        Input::Audio { .. } => "audio",
    }
}

fn wrong_input(input: &Input, task: Task) -> RuntimeError {
    let got = input_kind(input);
    let wants = match task {
        Task::Embed | Task::Classify => "text",
        Task::Generate => "a prompt",
        Task::ClassifyImage => "an image",
        Task::ZeroShot => "an image with candidate texts",
        Task::Transcribe => "audio (a WAV file)",
    };
    RuntimeError::InvalidInput(format!("this model ({task}) takes {wants}, not {got}"))
}
