//! Dynamic batching: requests for the same model that arrive close together run as one batch.
//!
//! A [`Batcher`] owns one worker thread. Callers submit single inputs with [`Batcher::run`]
//! (which blocks); the worker collects them into a batch, calls the batch function once for
//! the whole batch and hands every caller the result for its own input.
//!
//! A batch opens when its first request arrives and closes when the window
//! ([`BatchConfig::window`], default 2 ms) ends or when it holds [`BatchConfig::max_batch`]
//! requests (default 32), whichever comes first. Requests already queued when the window ends
//! still join the batch, up to `max_batch`. The next batch opens with the next request.
//!
//! The batch function runs under [`std::panic::catch_unwind`]: a panic fails only that batch's
//! callers (with [`BatchError::Failed`]) and the worker goes on with the next batch.
//!
//! Plain threads and [`std::sync::mpsc`] channels; no async runtime is involved.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a [`Batcher`] groups requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// How long a batch stays open for more requests after its first one arrives.
    pub window: Duration,
    /// The most requests in one batch; a full batch runs at once. `0` is treated as `1`.
    pub max_batch: usize,
}

impl BatchConfig {
    /// The default window: 2 ms.
    pub const DEFAULT_WINDOW: Duration = Duration::from_millis(2);
    /// The default largest batch: 32.
    pub const DEFAULT_MAX_BATCH: usize = 32;
}

impl Default for BatchConfig {
    /// A 2 ms window and batches of at most 32.
    fn default() -> Self {
        Self {
            window: Self::DEFAULT_WINDOW,
            max_batch: Self::DEFAULT_MAX_BATCH,
        }
    }
}

/// Why [`Batcher::run`] returned no output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batcher has shut down (or its worker is gone) and cannot run the request.
    #[error("batcher is shut down")]
    Closed,
    /// The batch function failed this request: it returned an error for this input, returned
    /// the wrong number of results, or panicked.
    #[error("batch failed: {0}")]
    Failed(String),
}

/// Counters of a [`Batcher`] since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchStats {
    /// Times the batch function was called (including calls that panicked).
    pub batches: u64,
    /// Inputs passed to the batch function, over all batches.
    pub items: u64,
    /// The largest batch so far.
    pub largest_batch: usize,
}

/// One submitted request: the input and where its result goes.
struct Job<I, O> {
    input: I,
    reply: SyncSender<Result<O, BatchError>>,
}

/// Groups concurrent requests into batches run by one worker thread.
///
/// `Batcher` is `Send + Sync` (for `I: Send, O: Send`): share it (e.g. in an [`Arc`]) and call
/// [`Batcher::run`] from many threads at once. Dropping it stops the worker and joins it.
pub struct Batcher<I, O> {
    /// `None` only while dropping.
    sender: Option<Sender<Job<I, O>>>,
    stats: Arc<Mutex<BatchStats>>,
    worker: Option<JoinHandle<()>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the worker thread (named `lattice-batch`), which collects requests into batches
    /// as set by `config` and calls `run` once per batch.
    ///
    /// `run` gets the batch's inputs in arrival order and must return one result per input,
    /// in the same order: a `Vec` of the same length. An `Err(message)` fails only that input's
    /// caller. If `run` returns a different number of results, every caller in the batch gets
    /// a [`BatchError::Failed`] saying so; if it panics, every caller in the batch gets a
    /// [`BatchError::Failed`] with the panic message, and later batches still run.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start the thread (as [`std::thread::spawn`] does).
    pub fn new(
        config: BatchConfig,
        run: impl FnMut(Vec<I>) -> Vec<Result<O, String>> + Send + 'static,
    ) -> Self {
        let (sender, receiver) = mpsc::channel();
        let stats = Arc::new(Mutex::new(BatchStats::default()));
        let worker_stats = Arc::clone(&stats);
        let worker = std::thread::Builder::new()
            .name("lattice-batch".into())
            .spawn(move || worker_loop(receiver, config, run, &worker_stats))
            .expect("failed to spawn the batch worker thread");
        Self {
            sender: Some(sender),
            stats,
            worker: Some(worker),
        }
    }

    /// Submits one input and blocks until its result.
    ///
    /// # Errors
    ///
    /// [`BatchError::Closed`] if the batcher is shut down; [`BatchError::Failed`] if the batch
    /// function returned an error for this input, returned the wrong number of results, or
    /// panicked.
    pub fn run(&self, input: I) -> Result<O, BatchError> {
        let sender = self.sender.as_ref().ok_or(BatchError::Closed)?;
        let (reply, result) = mpsc::sync_channel(1);
        sender
            .send(Job { input, reply })
            .map_err(|_| BatchError::Closed)?;
        match result.recv() {
            Ok(result) => result,
            // The worker dropped the request without answering: it is gone.
            Err(_) => Err(BatchError::Closed),
        }
    }

    /// The counters so far: batches run, items run, largest batch.
    pub fn stats(&self) -> BatchStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<I, O> Drop for Batcher<I, O> {
    /// Stops the worker and joins it.
    ///
    /// [`Batcher::run`] borrows the batcher, so no call is in progress while it is dropped;
    /// closing the queue lets the worker finish the batch it is collecting (without waiting
    /// out the window) and exit. A request the worker could not answer gets
    /// [`BatchError::Closed`].
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("batch worker thread panicked");
        }
    }
}

impl<I, O> fmt::Debug for Batcher<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = *self.stats.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Batcher")
            .field("stats", &stats)
            .finish_non_exhaustive()
    }
}

/// The worker loop: collect a batch, run it, repeat until every sender is gone.
fn worker_loop<I, O>(
    receiver: Receiver<Job<I, O>>,
    config: BatchConfig,
    mut run: impl FnMut(Vec<I>) -> Vec<Result<O, String>>,
    stats: &Mutex<BatchStats>,
) {
    let max_batch = config.max_batch.max(1);
    loop {
        // Wait for the request that opens the next batch.
        let Ok(first) = receiver.recv() else {
            return;
        };
        // `None`: a window too long to represent; wait without a deadline.
        let deadline = Instant::now().checked_add(config.window);
        let mut jobs = vec![first];
        let mut closed = false;
        while jobs.len() < max_batch {
            let next = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // The window is over; take only what is already queued.
                        match receiver.try_recv() {
                            Ok(job) => Ok(job),
                            Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                            Err(TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                        }
                    } else {
                        receiver.recv_timeout(deadline - now)
                    }
                }
                None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        run_batch(&mut run, jobs, stats);
        if closed {
            return;
        }
    }
}

/// Runs one batch and answers its callers.
fn run_batch<I, O>(
    run: &mut impl FnMut(Vec<I>) -> Vec<Result<O, String>>,
    jobs: Vec<Job<I, O>>,
    stats: &Mutex<BatchStats>,
) {
    let (inputs, replies): (Vec<I>, Vec<SyncSender<Result<O, BatchError>>>) =
        jobs.into_iter().map(|job| (job.input, job.reply)).unzip();
    let size = inputs.len();
    tracing::trace!(size, "running batch");
    let outcome = catch_unwind(AssertUnwindSafe(|| run(inputs)));
    {
        // Counted before any caller is answered, so a caller reading the stats after its
        // result sees its batch.
        let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.batches += 1;
        stats.items += size as u64;
        stats.largest_batch = stats.largest_batch.max(size);
    }
    let failure = match outcome {
        Ok(results) if results.len() == size => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that has gone away no longer needs its result.
                let _ = reply.send(result.map_err(BatchError::Failed));
            }
            return;
        }
        Ok(results) => format!(
            "batch function returned {} results for {size} inputs",
            results.len()
        ),
        Err(payload) => {
            let message = format!("batch function panicked: {}", panic_message(&*payload));
            tracing::warn!(size, "{message}");
            message
        }
    };
    for reply in replies {
        let _ = reply.send(Err(BatchError::Failed(failure.clone())));
    }
}

/// The message of a panic payload, when it is a string.
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    fn doubler(config: BatchConfig) -> Batcher<u64, u64> {
        Batcher::new(config, |inputs: Vec<u64>| {
            inputs.into_iter().map(|x| Ok(x * 2)).collect()
        })
    }

    /// Runs `inputs` from one thread each, all released together; returns (input, result).
    fn submit_all(
        batcher: &Batcher<u64, u64>,
        inputs: impl IntoIterator<Item = u64>,
    ) -> Vec<(u64, Result<u64, BatchError>)> {
        let inputs: Vec<u64> = inputs.into_iter().collect();
        let barrier = Barrier::new(inputs.len());
        thread::scope(|s| {
            let handles: Vec<_> = inputs
                .iter()
                .map(|&x| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        (x, batcher.run(x))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread panicked"))
                .collect()
        })
    }

    #[test]
    fn concurrent_requests_are_batched_and_answered_individually() {
        let batcher = doubler(BatchConfig {
            window: Duration::from_millis(200),
            max_batch: 32,
        });
        let results = submit_all(&batcher, 1..=8);
        for (x, result) in results {
            assert_eq!(result, Ok(x * 2), "caller {x} got someone else's result");
        }
        let stats = batcher.stats();
        assert!(stats.batches < 8, "no batching happened: {stats:?}");
        assert_eq!(stats.items, 8);
        assert!(stats.largest_batch >= 2);
    }

    #[test]
    fn full_batch_runs_without_waiting_for_the_window() {
        // With a window far longer than the test, only max_batch can close the batches.
        let batcher = doubler(BatchConfig {
            window: Duration::from_secs(600),
            max_batch: 4,
        });
        let results = submit_all(&batcher, 0..20);
        for (x, result) in results {
            assert_eq!(result, Ok(x * 2));
        }
        assert_eq!(
            batcher.stats(),
            BatchStats {
                batches: 5,
                items: 20,
                largest_batch: 4
            }
        );
    }

    #[test]
    fn max_batch_is_respected() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let batcher = Batcher::new(
            BatchConfig {
                window: Duration::from_millis(100),
                max_batch: 3,
            },
            move |inputs: Vec<u64>| {
                seen.lock().expect("lock").push(inputs.len());
                inputs.into_iter().map(|x| Ok(x + 1)).collect()
            },
        );
        let results = submit_all(&batcher, 0..10);
        for (x, result) in results {
            assert_eq!(result, Ok(x + 1));
        }
        let sizes = sizes.lock().expect("lock").clone();
        assert!(sizes.iter().all(|&n| (1..=3).contains(&n)), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 10);
        assert!(batcher.stats().largest_batch <= 3);
    }

    #[test]
    fn lone_request_completes_after_the_window() {
        let batcher = Arc::new(doubler(BatchConfig {
            window: Duration::from_millis(20),
            max_batch: 32,
        }));
        let (tx, rx) = mpsc::channel();
        let b = Arc::clone(&batcher);
        thread::spawn(move || tx.send(b.run(21)).expect("send"));
        // Only guards against a hang; no claim about how long it took.
        let result = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("request hung");
        assert_eq!(result, Ok(42));
        assert_eq!(
            batcher.stats(),
            BatchStats {
                batches: 1,
                items: 1,
                largest_batch: 1
            }
        );
        // Sequential requests each get their own batch.
        assert_eq!(batcher.run(1), Ok(2));
        assert_eq!(batcher.run(2), Ok(4));
        assert_eq!(batcher.stats().batches, 3);
    }

    #[test]
    fn zero_window_and_zero_max_batch_still_work() {
        let batcher = doubler(BatchConfig {
            window: Duration::ZERO,
            max_batch: 0,
        });
        let results = submit_all(&batcher, 0..4);
        for (x, result) in results {
            assert_eq!(result, Ok(x * 2));
        }
        assert_eq!(batcher.stats().largest_batch, 1);
    }

    #[test]
    fn panicking_run_fails_only_its_batch() {
        let batcher = Batcher::new(BatchConfig::default(), |inputs: Vec<u64>| {
            if inputs.contains(&13) {
                panic!("unlucky input");
            }
            inputs.into_iter().map(|x| Ok(x * 2)).collect()
        });
        match batcher.run(13) {
            Err(BatchError::Failed(message)) => {
                assert!(message.contains("unlucky input"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        // The worker survived.
        assert_eq!(batcher.run(4), Ok(8));
        assert_eq!(batcher.run(5), Ok(10));
        assert_eq!(batcher.stats().batches, 3);
    }

    #[test]
    fn per_item_errors_and_wrong_lengths() {
        let batcher = Batcher::new(BatchConfig::default(), |inputs: Vec<i64>| {
            if inputs.contains(&-1) {
                return Vec::new();
            }
            inputs
                .into_iter()
                .map(|x| {
                    if x % 2 == 0 {
                        Ok(x)
                    } else {
                        Err(format!("{x} is odd"))
                    }
                })
                .collect()
        });
        assert_eq!(batcher.run(2), Ok(2));
        assert_eq!(batcher.run(3), Err(BatchError::Failed("3 is odd".into())));
        match batcher.run(-1) {
            Err(BatchError::Failed(message)) => {
                assert!(message.contains("0 results for 1 inputs"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(batcher.run(6), Ok(6));
    }

    #[test]
    fn drop_is_clean() {
        // Nothing ever submitted.
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        let batcher = Batcher::new(
            BatchConfig {
                window: Duration::from_secs(600),
                max_batch: 8,
            },
            move |inputs: Vec<u8>| {
                c.fetch_add(1, Ordering::SeqCst);
                inputs.into_iter().map(Ok).collect()
            },
        );
        drop(batcher);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // After use, and with the batch function's state dropped with the worker.
        let batcher = doubler(BatchConfig::default());
        assert_eq!(batcher.run(1), Ok(2));
        drop(batcher);
    }

    #[test]
    fn closed_when_the_worker_is_gone() {
        let mut batcher = doubler(BatchConfig::default());
        // Simulate the shut-down state Drop passes through.
        drop(batcher.sender.take());
        assert_eq!(batcher.run(1), Err(BatchError::Closed));
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Batcher<Vec<u32>, String>>();
    }

    #[test]
    fn default_config() {
        let config = BatchConfig::default();
        assert_eq!(config.window, Duration::from_millis(2));
        assert_eq!(config.max_batch, 32);
    }
}
