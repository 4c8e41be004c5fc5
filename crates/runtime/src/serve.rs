//! Serving: loaded models kept in a byte-bounded LRU ([`ModelCache`]), each with its own
//! dynamic [`Batcher`], so concurrent requests for one model arriving within the batch
//! window run as one batch and each caller gets its own answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{BatchConfig, BatchError, BatchStats, Batcher};
use crate::cache::{CacheStats, DEFAULT_CACHE_BYTES, ModelCache};
use crate::error::{Result, RuntimeError};
use crate::model::{Input, LoadOptions, Model, Output};
use crate::spec::{ModelSpec, Task};

/// How a [`Runtime`] serves.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Bytes of loaded weights kept (least recently used models are dropped past this).
    pub cache_bytes: u64,
    /// The batching window and largest batch.
    pub batch: BatchConfig,
    /// How models are loaded (backend, device, deterministic mode).
    pub load: LoadOptions,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            batch: BatchConfig::default(),
            load: LoadOptions::default(),
        }
    }
}

/// A loaded model and the batcher in front of it.
pub struct Served {
    /// The model.
    pub model: Arc<Model>,
    batcher: Batcher<Input, Output>,
}

impl Served {
    /// Batching counters of this model.
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.stats()
    }
}

/// Models served from folders on disk (a node hands it folders the store verified).
pub struct Runtime {
    config: RuntimeConfig,
    cache: ModelCache<(PathBuf, Option<Task>), Served>,
}

impl Runtime {
    /// A runtime with `config`.
    pub fn new(config: RuntimeConfig) -> Self {
        Self {
            cache: ModelCache::new(config.cache_bytes),
            config,
        }
    }

    /// The model in `dir` (loaded now, or from the cache) with its batcher.
    pub fn model(&self, dir: &Path, task: Option<Task>) -> Result<Arc<Served>> {
        let key = (dir.to_path_buf(), task);
        self.cache.get_or_load(&key, || {
            let spec = ModelSpec::detect_with(dir, task)?;
            let model = Arc::new(Model::load(spec, &self.config.load)?);
            let bytes = model.weight_bytes();
            let runner = Arc::clone(&model);
            // In deterministic mode an input never shares a batch (see `LoadOptions`).
            let mut batch = self.config.batch;
            if self.config.load.deterministic {
                batch.max_batch = 1;
            }
            let batcher = Batcher::new(batch, move |inputs: Vec<Input>| {
                runner
                    .run_batch(&inputs)
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect()
            });
            Ok::<_, RuntimeError>((Served { model, batcher }, bytes))
        })
    }

    /// Runs `input` on the model in `dir`, batched with concurrent requests for it.
    pub fn run(&self, dir: &Path, task: Option<Task>, input: Input) -> Result<Output> {
        let served = self.model(dir, task)?;
        served.batcher.run(input).map_err(|e| match e {
            BatchError::Failed(msg) => RuntimeError::InvalidInput(msg),
            other => RuntimeError::InvalidInput(other.to_string()),
        })
    }

    /// Whether the model in `dir` (for its own task) is loaded now.
    pub fn is_loaded(&self, dir: &Path) -> bool {
        self.cache.contains(&(dir.to_path_buf(), None))
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }
}
