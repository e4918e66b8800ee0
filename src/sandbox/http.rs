//! The test doubles' HTTP/1.1 server: one thread accepts on a loopback listener and every
//! connection gets a thread of its own that reads requests in turn (keep-alive, bodies framed by
//! `Content-Length` or chunked, `Expect: 100-continue` answered), hands each to the handler and
//! writes its answer with a `Content-Length` (files streamed from disk). At most `max_active`
//! requests are handled at once, like a server with that many workers; an idle keep-alive
//! connection holds no worker, so a burst of fresh connections never waits behind quiet ones.
//! A handler may also ask for the connection to be dropped without an answer (a fault).
//!
//! Shutting down closes the listener and every open connection and joins their threads.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// The longest request head (request line and headers) read; longer heads get a 431.
const MAX_HEAD: usize = 64 * 1024;

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A file streamed from disk.
    File(PathBuf),
}

/// An answer to write.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers (`Content-Length` and `Connection` are the server's).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// An answer with a body in memory and a Content-Type.
    pub fn bytes(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: Body::Bytes(body.into()),
        }
    }
}

/// What a handler decides.
#[derive(Debug)]
pub enum Outcome {
    /// Write this answer.
    Respond(Response),
    /// Close the connection without answering (after one byte that is not HTTP, so the client
    /// fails at once instead of waiting for its timeout).
    Drop,
}

/// One request as a handler sees it; its body is read through [`Request::body`].
pub struct Request<'a> {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: BodyReader<'a>,
}

impl Request<'_> {
    /// The method, as sent (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target, `path?query` as sent.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// All headers, names as sent.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body (de-chunked); what the handler leaves unread is read and dropped afterwards.
    pub fn body(&mut self) -> &mut dyn Read {
        &mut self.body
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The handler every request goes to.
pub type Handler = dyn Fn(&mut Request<'_>) -> Outcome + Send + Sync;

/// A running server; dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

/// State shared by the accept loop, the connections and the handle.
struct Inner {
    stop: AtomicBool,
    handler: Arc<Handler>,
    /// Requests being handled now, and the cap.
    active: (Mutex<usize>, Condvar),
    max_active: usize,
    /// Open connections (a clone of each socket, to close them on shutdown) and their threads.
    connections: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
}

impl Server {
    /// Serves `listener` with `handler`, at most `max_active` requests at once.
    ///
    /// # Errors
    /// When the listener has no local address or the accept thread cannot be spawned.
    pub fn start(
        listener: TcpListener,
        max_active: usize,
        handler: Arc<Handler>,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            stop: AtomicBool::new(false),
            handler,
            active: (Mutex::new(0), Condvar::new()),
            max_active: max_active.max(1),
            connections: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        });
        let shared = Arc::clone(&inner);
        let accept = std::thread::Builder::new()
            .name(format!("http-accept-{}", addr.port()))
            .spawn(move || accept_loop(&listener, &shared))?;
        Ok(Server {
            addr,
            inner,
            accept: Some(accept),
        })
    }

    /// Binds `addr` (port 0: a free port) with TCP_NODELAY on accepted sockets, and serves it.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(
        addr: SocketAddr,
        max_active: usize,
        handler: Arc<Handler>,
    ) -> std::io::Result<Server> {
        Server::start(nodelay_listener(addr)?, max_active, handler)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and joins all threads (a request being
    /// handled finishes first; its answer may not reach the client).
    pub fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the loop sees the flag and ends.
        if let Err(err) = TcpStream::connect(self.addr) {
            tracing::debug!(error = %err, "HTTP server: could not wake its accept loop.");
        }
        if accept.join().is_err() {
            tracing::error!("HTTP server: the accept thread panicked.");
        }
        for stream in lock(&self.inner.connections).values() {
            // Unblocks a connection thread waiting for its next request.
            let _closed = stream.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.inner.threads));
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("HTTP server: a connection thread panicked.");
            }
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A mutex guard, poisoned or not (the data stays consistent: every holder only inserts or
/// removes whole entries).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A listening socket whose accepted connections have TCP_NODELAY (answers go out at once
/// instead of waiting for the client's delayed ACK).
pub fn nodelay_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn accept_loop(listener: &TcpListener, inner: &Arc<Inner>) {
    loop {
        let accepted = listener.accept();
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %err, "HTTP server: accept failed.");
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
        };
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        match stream.try_clone() {
            Ok(clone) => {
                lock(&inner.connections).insert(id, clone);
            }
            Err(err) => {
                tracing::warn!(error = %err, "HTTP server: cannot keep a connection handle.");
                continue;
            }
        }
        let conn = Arc::clone(inner);
        let spawned = std::thread::Builder::new()
            .name("http-conn".to_owned())
            .spawn(move || {
                serve_connection(stream, &conn);
                lock(&conn.connections).remove(&id);
            });
        let mut threads = lock(&inner.threads);
        threads.retain(|t| !t.is_finished());
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(err) => {
                tracing::warn!(error = %err, "HTTP server: cannot spawn a connection thread.");
                lock(&inner.connections).remove(&id);
            }
        }
    }
}

/// The head of one request.
struct Head {
    method: String,
    url: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after this request.
    fn keep_alive(&self) -> bool {
        let connection = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        if self.http10 {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

/// Why a head could not be read.
enum HeadError {
    /// The connection ended (cleanly between requests, or broken).
    Closed,
    /// Not HTTP, or too long: answer with this status and close.
    Bad(u16),
}

/// Reads a request head; `Closed` at end of stream.
fn read_head(reader: &mut impl BufRead) -> Result<Head, HeadError> {
    let mut total = 0;
    let mut line = Vec::new();
    let mut next_line = |line: &mut Vec<u8>| -> Result<(), HeadError> {
        line.clear();
        let limit = (MAX_HEAD - total) as u64 + 1;
        let n = reader
            .by_ref()
            .take(limit)
            .read_until(b'\n', line)
            .map_err(|_| HeadError::Closed)?;
        total += n;
        if total > MAX_HEAD {
            return Err(HeadError::Bad(431));
        }
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(HeadError::Closed);
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Ok(())
    };
    // Empty lines before a request line are allowed (RFC 9112 2.2).
    loop {
        next_line(&mut line)?;
        if !line.is_empty() {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad(400));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Bad(505));
    }
    let mut head = Head {
        method: method.to_owned(),
        url: url.to_owned(),
        http10: version == "HTTP/1.0",
        headers: Vec::new(),
    };
    loop {
        next_line(&mut line)?;
        if line.is_empty() {
            return Ok(head);
        }
        let text = String::from_utf8_lossy(&line);
        let Some((name, value)) = text.split_once(':') else {
            return Err(HeadError::Bad(400));
        };
        head.headers
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// A request body: `Content-Length` bytes, or chunked.
enum BodyReader<'a> {
    Sized(std::io::Take<&'a mut BufReader<TcpStream>>),
    Chunked(Chunked<'a>),
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BodyReader::Sized(r) => r.read(buf),
            BodyReader::Chunked(r) => r.read(buf),
        }
    }
}

/// The chunked transfer coding, decoded.
struct Chunked<'a> {
    reader: &'a mut BufReader<TcpStream>,
    /// Bytes left in the current chunk.
    left: u64,
    done: bool,
}

impl Chunked<'_> {
    fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        self.reader
            .by_ref()
            .take(4096)
            .read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(bad_data("truncated chunk framing"));
        }
        Ok(String::from_utf8_lossy(&line).trim().to_owned())
    }
}

fn bad_data(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let size_line = self.line()?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(size, 16)
                .map_err(|_| bad_data("a chunk size that is not hexadecimal"))?;
            if self.left == 0 {
                // Trailers, up to the empty line.
                while !self.line()?.is_empty() {}
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(bad_data("the body ended inside a chunk"));
        }
        self.left -= n as u64;
        if self.left == 0 && !self.line()?.is_empty() {
            return Err(bad_data("a chunk not followed by CRLF"));
        }
        Ok(n)
    }
}

/// Serves the requests of one connection until it closes, asks to close or the server stops.
fn serve_connection(stream: TcpStream, inner: &Inner) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    while !inner.stop.load(Ordering::SeqCst) {
        let head = match read_head(&mut reader) {
            Ok(head) => head,
            Err(HeadError::Closed) => return,
            Err(HeadError::Bad(status)) => {
                let body = Response::bytes(status, "text/plain", "Bad Request");
                let _gone = write_response(&mut writer, body, false, false);
                return;
            }
        };
        let keep_alive = head.keep_alive();
        let chunked = head
            .header("Transfer-Encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = match head.header("Content-Length").map(str::parse::<u64>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                let body = Response::bytes(400, "text/plain", "Bad Content-Length");
                let _gone = write_response(&mut writer, body, false, false);
                return;
            }
        };
        if head
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        let is_head = head.method.eq_ignore_ascii_case("HEAD");
        let body = if chunked {
            BodyReader::Chunked(Chunked {
                reader: &mut reader,
                left: 0,
                done: false,
            })
        } else {
            BodyReader::Sized((&mut reader).take(length))
        };
        let mut request = Request {
            method: head.method,
            url: head.url,
            headers: head.headers,
            body,
        };
        let outcome = {
            let _worker = Worker::acquire(inner);
            let outcome = (inner.handler)(&mut request);
            // The rest of the body, so the next request starts at its head.
            let drained = std::io::copy(&mut request.body, &mut std::io::sink());
            match outcome {
                Outcome::Drop => {
                    let _gone = writer.write_all(b"\0").and_then(|()| writer.flush());
                    let _closed = writer.shutdown(Shutdown::Both);
                    return;
                }
                Outcome::Respond(response) => {
                    let keep = keep_alive && drained.is_ok();
                    write_response(&mut writer, response, keep, is_head).map(|()| keep)
                }
            }
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::debug!(error = %err, "HTTP server: the client went away.");
                return;
            }
        }
    }
}

/// One of the `max_active` request slots, released on drop.
struct Worker<'a>(&'a Inner);

impl<'a> Worker<'a> {
    fn acquire(inner: &'a Inner) -> Worker<'a> {
        let (count, freed) = &inner.active;
        let mut active = lock(count);
        while *active >= inner.max_active {
            active = freed.wait(active).unwrap_or_else(|p| p.into_inner());
        }
        *active += 1;
        Worker(inner)
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        let (count, freed) = &self.0.active;
        *lock(count) -= 1;
        freed.notify_one();
    }
}

/// Writes an answer with its Content-Length; small bodies go out in one write.
fn write_response(
    writer: &mut TcpStream,
    response: Response,
    keep_alive: bool,
    is_head: bool,
) -> std::io::Result<()> {
    let (status, mut file, length, mut bytes) = match response.body {
        Body::Bytes(bytes) => (response.status, None, bytes.len() as u64, bytes),
        Body::File(path) => match std::fs::File::open(&path).and_then(|f| {
            let len = f.metadata()?.len();
            Ok((f, len))
        }) {
            Ok((f, len)) => (response.status, Some(f), len, Vec::new()),
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "HTTP server: a file to send is unreadable.");
                (500, None, 0, Vec::new())
            }
        },
    };
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &response.headers {
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("Connection") {
            continue;
        }
        if name.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {length}\r\n"));
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    if is_head {
        writer.write_all(head.as_bytes())?;
    } else if let Some(file) = file.as_mut() {
        writer.write_all(head.as_bytes())?;
        std::io::copy(file, writer)?;
    } else {
        let mut all = head.into_bytes();
        all.append(&mut bytes);
        writer.write_all(&all)?;
    }
    writer.flush()
}

/// The reason phrase of a status.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server(max_active: usize) -> Server {
        let handler: Arc<Handler> = Arc::new(|req: &mut Request<'_>| {
            let mut body = Vec::new();
            req.body().read_to_end(&mut body).unwrap();
            if req.url() == "/drop" {
                return Outcome::Drop;
            }
            let text = format!("{} {} {}", req.method(), req.url(), body.len());
            Outcome::Respond(Response::bytes(200, "text/plain", text))
        });
        Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), max_active, handler).unwrap()
    }

    /// Sends raw bytes and reads until the server closes the connection.
    fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(raw).unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn keep_alive_lengths_and_chunks() {
        let server = echo_server(2);
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /b?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n\
GET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
        let out = exchange(server.addr(), raw);
        let answers: Vec<&str> = out.split("HTTP/1.1 200 OK").skip(1).collect();
        assert_eq!(answers.len(), 3, "{out}");
        assert!(answers[0].ends_with("POST /a 5"), "{out}");
        assert!(answers[1].ends_with("POST /b?q=1 7"), "{out}");
        assert!(answers[2].contains("Connection: close"), "{out}");
        assert!(answers[2].ends_with("GET /c 0"), "{out}");
    }

    #[test]
    fn expect_continue_bad_requests_and_drops() {
        let server = echo_server(1);
        let out = exchange(
            server.addr(),
            b"PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        );
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
            "{out}"
        );
        assert!(out.ends_with("PUT /e 2"), "{out}");
        let out = exchange(server.addr(), b"NOT-HTTP\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        let out = exchange(
            server.addr(),
            b"GET /drop HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\n",
        );
        assert_eq!(out, "\0");
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let out = exchange(server.addr(), huge.as_bytes());
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    /// The starvation this server exists for: many idle keep-alive connections must not hold
    /// back a request on a fresh one, even with a single worker.
    #[test]
    fn idle_connections_hold_no_worker() {
        let server = echo_server(1);
        let mut idle = Vec::new();
        for _ in 0..32 {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).ends_with("GET /x 0"));
            idle.push(s);
        }
        let out = exchange(
            server.addr(),
            b"GET /fresh HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(out.ends_with("GET /fresh 0"), "{out}");
    }

    #[test]
    fn files_stream_and_shutdown_closes_idle_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, vec![7u8; 300_000]).unwrap();
        let handler: Arc<Handler> = Arc::new(move |_req: &mut Request<'_>| {
            Outcome::Respond(Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                body: Body::File(path.clone()),
            })
        });
        let mut server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), 2, handler).unwrap();
        let out = exchange(
            server.addr(),
            b"GET /f HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            out.contains("Content-Length: 300000\r\n"),
            "{}",
            &out[..200]
        );
        assert!(out.ends_with(&"\u{7}".repeat(300_000)));
        let mut idle = TcpStream::connect(server.addr()).unwrap();
        idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.shutdown();
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).unwrap_or(0), 0);
    }
}
