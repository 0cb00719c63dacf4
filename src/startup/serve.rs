//! The accept loop. `axum::serve` sets no header read timeout and no cap on connections: a
//! socket that never sends a request, or trickles its headers a byte a second, lived forever,
//! and a few thousand of them exhausted the process's file descriptors. This loop serves the
//! same router over hyper's HTTP/1.1 connection (upgrades included), and adds:
//!
//! - **A header read timeout** (`HTTP_HEADER_TIMEOUT_SECS`, hyper's `header_read_timeout` with
//!   tokio's timer). hyper starts it whenever it waits for a request head: when the connection
//!   opens (so a socket that sends nothing is closed too), while headers trickle in, and on a
//!   keep-alive connection from the end of the previous response (so an idle REST connection
//!   is closed after the same bound). It does not run while a request is being answered, so a
//!   long-polling Socket.IO request is not cut; upgraded sockets have their own idle timeout.
//! - **A cap on open connections** ([`Admission`]): past `MAX_CONNECTIONS` (or
//!   `MAX_CONNECTIONS_PER_IP` from one address) a new socket gets a minimal 503 written
//!   straight on it, then a lingering close (what the client sent is read and dropped for a
//!   moment, so the close is not a reset that destroys the 503 before it is read). At most
//!   [`MAX_REFUSALS_IN_FLIGHT`] refusals are answered at once; past that, refused sockets are
//!   closed without an answer, so a flood cannot hold more descriptors than that.
//! - **Graceful shutdown** as `axum::serve` did it: when `stop` completes, stop accepting,
//!   ask every connection to finish its request and close, and wait for them (bounded by
//!   `SHUTDOWN_TIMEOUT_SECS`).
//!
//! The peer address reaches handlers as the `ConnectInfo<SocketAddr>` extension, as
//! `into_make_service_with_connect_info::<SocketAddr>()` would insert it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use super::admission::{Admission, Full, Slot};
use crate::config::ConnectionLimits;
use crate::telemetry::{REPORT_EVERY, RefusalLog};
use crate::transport::linger::Lingering;

/// Refused sockets being answered (503 + lingering close) at once; more are closed unanswered.
pub(super) const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refused socket may take to receive its 503 and close.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);
/// The most bytes read and dropped from a refused socket before it is closed.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;
/// Pause after an accept error that is not about one connection (such as running out of file
/// descriptors), so the loop does not spin; axum::serve does the same.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `stop` completes, then drains (see the module doc).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ConnectionLimits,
    drain_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let doors = Doors {
        admission: Admission::new(limits),
        refused_total: RefusalLog::default(),
        refused_per_ip: RefusalLog::default(),
        answering: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
    };
    let connections = TaskTracker::new();
    let draining = CancellationToken::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!("accepting a connection failed: {e}");
                tokio::select! {
                    () = &mut stop => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // Every write is a whole frame (or several, coalesced by the writer): sent at once,
        // not held back by Nagle's algorithm. It also narrows the window in which a frame the
        // server counted as handed over still sits unsent when the process dies (the soak
        // test's finding: a frame marked delivered could be lost with a killed process).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
        match doors.admission.try_admit(remote.ip()) {
            Ok(slot) => {
                let io = TokioIo::new(Counted {
                    stream: Lingering::new(stream),
                    _slot: slot,
                });
                let connection = serve_connection(&http, io, remote, &router, draining.clone());
                connections.spawn(connection);
            }
            Err(full) => doors.refuse(stream, remote, full),
        }
    }
    drop(listener);
    draining.cancel();
    connections.close();
    if tokio::time::timeout(drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "HTTP connections did not finish in time"
        );
    }
}

/// Serves one admitted connection until it ends, or until `draining` asks it to finish.
fn serve_connection(
    http: &http1::Builder,
    io: TokioIo<Counted>,
    remote: SocketAddr,
    router: &Router,
    draining: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let router = router.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        // A Router is always ready: no `poll_ready` needed before `call`.
        router.clone().call(request)
    });
    let connection = http.serve_connection(io, service).with_upgrades();
    async move {
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = draining.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = result {
            // A header timeout, a malformed request, a peer that went away.
            tracing::debug!(%remote, "connection ended: {e}");
        }
    }
}

/// What the accept loop checks a new socket against, and how it says no.
struct Doors {
    admission: Arc<Admission>,
    refused_total: RefusalLog,
    refused_per_ip: RefusalLog,
    answering: Arc<Semaphore>,
}

impl Doors {
    /// Logs the refusal (rate-limited) and answers the socket with 503 in the background.
    fn refuse(&self, stream: TcpStream, remote: SocketAddr, full: Full) {
        let (log, variable, message) = match full {
            Full::Total => (
                &self.refused_total,
                "MAX_CONNECTIONS",
                "too many connections: the server is at its limit, try again later",
            ),
            Full::PerIp => (
                &self.refused_per_ip,
                "MAX_CONNECTIONS_PER_IP",
                "too many connections from your address, try again later",
            ),
        };
        if let Some(refused) = log.record(Instant::now()) {
            tracing::warn!(
                limit = variable,
                cap = self.admission.cap(full),
                open = self.admission.open(),
                refused,
                last_refused = %remote.ip(),
                "refusing connections with 503: {variable} reached \
                 ({refused} refused since the last line; at most one line per {}s)",
                REPORT_EVERY.as_secs(),
            );
        }
        let Ok(answering) = self.answering.clone().try_acquire_owned() else {
            return; // Dropped: closed without an answer.
        };
        tokio::spawn(async move {
            let _answering = answering;
            let _ = tokio::time::timeout(REFUSAL_GRACE, answer_503(stream, message)).await;
        });
    }
}

/// Writes a minimal 503 with `{"error": message}`, then closes without a reset: the write
/// side is shut, and what the client sent (its request) is read and dropped until it closes
/// too, up to [`REFUSAL_DRAIN_BYTES`].
async fn answer_503(mut stream: TcpStream, message: &str) -> io::Result<()> {
    let body = serde_json::json!({ "error": message }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/json\r\n\
         content-length: {}\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    let mut buf = [0_u8; 4096];
    let mut drained = 0;
    while drained < REFUSAL_DRAIN_BYTES {
        match stream.read(&mut buf).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

/// Errors that concern one connection, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// An admitted socket with its [`Slot`]: the slot is freed when the socket is dropped, which
/// for an upgraded connection is when its WebSocket task ends, not when hyper lets go of it.
struct Counted {
    /// Closes with a lingering close when dropped (`transport::linger`), so what the server
    /// wrote last (an error, a close frame, a 413) reaches the client. The slot is given back
    /// when hyper drops the connection; the linger after it is bounded (2 s, 1 MiB).
    stream: Lingering,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
