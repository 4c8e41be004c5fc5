//! Bridges between the synchronous store and async HTTP bodies.
//!
//! Downloads: a blocking task writes into a [`ChannelWriter`], whose chunks
//! flow through a bounded channel into the response [`Body`]. Uploads: the
//! async side feeds request chunks through a bounded channel into a
//! [`ChannelReader`] that a blocking importer reads. Either way at most a
//! few chunks are in memory per request, and a side that goes away stops
//! the other.

use std::io::{self, Read, Write};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use lattice_store::StoreError;
use tokio::sync::mpsc;

/// Bytes gathered before a chunk is sent to the client.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight per response or upload.
const DEPTH: usize = 4;

/// A [`Write`] that sends what it is given, in chunks, to an async receiver.
/// Blocking: use it only inside `spawn_blocking`.
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, StoreError>>,
    buf: BytesMut,
    sent_any: bool,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.sent_any = true;
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A response body produced by `produce` on a blocking thread.
///
/// Resolves once the first chunk is ready, so that a failure before any
/// byte was produced (say, a corrupt block near the start of a file) is
/// returned here and can still become an error status. A failure after
/// that ends the body with an error, which makes the server abort the
/// connection: the client sees a truncated response, never a
/// complete-looking one.
pub(crate) async fn blocking_body<F>(what: &'static str, produce: F) -> Result<Body, StoreError>
where
    F: FnOnce(&mut ChannelWriter) -> Result<(), StoreError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, StoreError>>(DEPTH);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
            sent_any: false,
        };
        let result = produce(&mut w).and_then(|()| {
            w.flush().map_err(|source| StoreError::Io {
                op: "write",
                path: "HTTP response".into(),
                source,
            })
        });
        if let Err(e) = result {
            if err_tx.is_closed() {
                tracing::debug!(what, "client went away: {e}");
            } else {
                if w.sent_any {
                    tracing::warn!(what, "aborting a response in progress: {e}");
                }
                let _ = err_tx.blocking_send(Err(e));
            }
        }
    });
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(e),
        Some(Ok(chunk)) => Some(Ok::<_, StoreError>(chunk)),
        None => None,
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Body::from_stream(futures::stream::iter(first).chain(rest)))
}

/// A [`Read`] over chunks sent from an async task. Blocking: use it only
/// inside `spawn_blocking`. An error sent through the channel is returned
/// from `read`, which makes the importer abandon its work.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.cur = chunk,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// A bounded channel whose receiving end reads as a [`ChannelReader`].
pub(crate) fn upload_channel() -> (mpsc::Sender<io::Result<Bytes>>, ChannelReader) {
    let (tx, rx) = mpsc::channel(DEPTH);
    (
        tx,
        ChannelReader {
            rx,
            cur: Bytes::new(),
        },
    )
}
