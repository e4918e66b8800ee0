//! The HTTP engine under [`SenaiteClient`](super::SenaiteClient): one async reqwest client whose
//! connections live on a small multi-thread tokio runtime of its own, and a blocking hand-off for
//! the calling threads (extract's and load's workers are plain threads).
//!
//! A request is one task on that runtime: it sends the request and reads the whole answer
//! (`bytes()`) before handing it back over a oneshot channel, so a request costs two thread
//! wake-ups (caller to runtime, runtime to caller), whatever the body's size. `reqwest::blocking`
//! cost three plus one per body chunk, since it streams the body to the caller chunk by chunk
//! from its runtime thread. Downloads, which may be large, are still streamed: the task forwards
//! chunks over a bounded channel to a [`Read`] on the caller's side.
//!
//! The runtime's workers run whenever a connection has something to do, whichever caller is
//! idle: a connection the server closes is noticed when it is closed and leaves the pool, as with
//! `reqwest::blocking`. (Driving a current-thread runtime per calling thread, "lanes", saves the
//! two wake-ups too, but leaves an idle lane's pooled connections unserviced; extract's tests then
//! stalled for minutes now and then.)

use std::io::{self, Read};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, oneshot};

use crate::source::retry;

/// Chunks of a streamed download buffered between the runtime and the reader.
const STREAM_CHUNKS: usize = 8;

/// Worker threads of the runtime. One thread serialized the HTTP work of extract's four
/// workers and was measurably slower on the 2-core machine; the HTTP work of one request is a
/// few microseconds, so more than two only adds idle threads.
const WORKERS: usize = 2;

/// The async client and the thread driving its runtime. Dropping it stops the thread, which
/// closes the pooled connections.
pub(crate) struct Engine {
    http: reqwest::Client,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

/// The answer to one request: a 2xx answer's body is a [`Body`] for [`Engine::send`], the
/// whole [`Bytes`] for [`whole`].
pub(crate) enum Answer<B = Body> {
    /// A 2xx answer.
    Success(B),
    /// Any other status, with its `Retry-After` (in seconds) and its body (empty when the body
    /// could not be read: the status is the error).
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header, when given in seconds.
        retry_after: Option<Duration>,
        /// The body.
        body: Bytes,
    },
}

/// The body of a 2xx answer.
pub(crate) enum Body {
    /// Read whole.
    Whole(Bytes),
    /// Streamed (downloads).
    Stream(BodyReader),
}

/// Why a request has no answer.
pub(crate) enum Failure {
    /// The transport failed (connect, timeout, connection closed, body cut off, ...).
    Transport(reqwest::Error),
    /// The runtime stopped before the request's task answered.
    Lost,
}

impl Engine {
    /// Starts the runtime's worker threads for `http`.
    pub(crate) fn start(http: reqwest::Client) -> io::Result<Engine> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("senaite-sync-http")
            .enable_all()
            .build()?;
        Ok(Engine {
            http,
            runtime: Some(runtime),
        })
    }

    /// The client, for building requests.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` and waits for its answer: a 2xx body whole, or streamed when `stream`.
    ///
    /// # Errors
    /// The transport error, or [`Failure::Lost`] when the runtime is gone.
    pub(crate) fn send(
        &self,
        request: reqwest::Request,
        stream: bool,
    ) -> std::result::Result<Answer, Failure> {
        let Some(runtime) = &self.runtime else {
            return Err(Failure::Lost);
        };
        let http = self.http.clone();
        let (reply, answer) = oneshot::channel();
        // The task is detached: its outcome travels over `reply`.
        drop(runtime.spawn(exchange(http, request, stream, reply)));
        match answer.blocking_recv() {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(Failure::Transport(e)),
            Err(_) => Err(Failure::Lost),
        }
    }
}

impl Engine {
    /// Runs `work` on the runtime and waits for its outcome: the calling thread sleeps once,
    /// however many requests `work` makes (a page's per-object requests, see
    /// [`SenaiteClient::get_json_batch`](super::SenaiteClient::get_json_batch)).
    ///
    /// # Errors
    /// [`Failure::Lost`] when the runtime is gone or stopped before `work` ended.
    pub(crate) fn run<F>(&self, work: F) -> std::result::Result<F::Output, Failure>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(Failure::Lost);
        };
        let (reply, answer) = oneshot::channel();
        drop(runtime.spawn(async move {
            let _unheard = reply.send(work.await);
        }));
        answer.blocking_recv().map_err(|_| Failure::Lost)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Without waiting for tasks still running (a streamed download whose reader is gone):
        // their connections are closed as the tasks are dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sends `request` and reads its answer whole, on the runtime.
///
/// # Errors
/// The transport error.
pub(crate) async fn whole(
    http: &reqwest::Client,
    request: reqwest::Request,
) -> reqwest::Result<Answer<Bytes>> {
    let resp = http.execute(request).await?;
    match not_success(resp).await {
        Ok(answer) => Ok(answer),
        Err(resp) => resp.bytes().await.map(Answer::Success),
    }
}

/// The answer of a non-2xx response (with its `Retry-After` and body), or the 2xx response back.
async fn not_success<B>(
    resp: reqwest::Response,
) -> std::result::Result<Answer<B>, reqwest::Response> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Err(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry::parse_retry_after);
    let body = resp.bytes().await.unwrap_or_default();
    Ok(Answer::Status {
        status,
        retry_after,
        body,
    })
}

/// One request on the runtime: send, then read the body whole or start streaming it.
async fn exchange(
    http: reqwest::Client,
    request: reqwest::Request,
    stream: bool,
    reply: oneshot::Sender<reqwest::Result<Answer>>,
) {
    if !stream {
        let answer = whole(&http, request).await.map(|a| match a {
            Answer::Success(bytes) => Answer::Success(Body::Whole(bytes)),
            Answer::Status {
                status,
                retry_after,
                body,
            } => Answer::Status {
                status,
                retry_after,
                body,
            },
        });
        let _unheard = reply.send(answer);
        return;
    }
    let resp = match http.execute(request).await {
        Ok(resp) => resp,
        Err(e) => {
            let _unheard = reply.send(Err(e));
            return;
        }
    };
    let resp = match not_success(resp).await {
        Ok(answer) => {
            let _unheard = reply.send(Ok(answer));
            return;
        }
        Err(resp) => resp,
    };
    let (chunks, rx) = mpsc::channel(STREAM_CHUNKS);
    let reader = BodyReader {
        rx,
        current: Bytes::new(),
        ended: false,
    };
    if reply
        .send(Ok(Answer::Success(Body::Stream(reader))))
        .is_err()
    {
        return;
    }
    let mut resp = resp;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(bytes)) => Chunk::Data(bytes),
            Ok(None) => Chunk::End,
            Err(e) => Chunk::Failed(e),
        };
        let last = !matches!(chunk, Chunk::Data(_));
        // A reader that went away (its sink failed) ends the transfer: dropping `resp` closes
        // the connection.
        if chunks.send(chunk).await.is_err() || last {
            return;
        }
    }
}

/// A piece of a streamed body.
enum Chunk {
    Data(Bytes),
    End,
    Failed(reqwest::Error),
}

/// The caller's side of a streamed download. A body that stops without its end (the transfer
/// failed, or the runtime stopped) is a read error, never a short file.
pub(crate) struct BodyReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    ended: bool,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current.advance(n);
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(bytes)) => self.current = bytes,
                Some(Chunk::End) => self.ended = true,
                Some(Chunk::Failed(e)) => return Err(io::Error::other(e)),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the download stopped before its end",
                    ));
                }
            }
        }
    }
}
