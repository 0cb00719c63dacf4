//! Lingering close, as nginx does it: when the server hangs up first, what it wrote last (an
//! `error` naming the reason, a close frame with 1008/1009, a 413) must reach the client.
//!
//! Closing a TCP socket whose receive buffer still holds unread bytes makes the kernel send
//! a reset instead of a FIN, and a reset can overtake the data still in flight: the client
//! then reads `ECONNRESET` (a WebSocket 1006, socket.io's `transport close`, an EPIPE on a
//! REST upload) instead of the reason. That is exactly the situation of a flooder, of a
//! client whose frame is over the cap (tungstenite stops at the frame header and leaves the
//! payload unread), and of a REST body over `MAX_BODY_BYTES` (hyper answers 413 without
//! reading it).
//!
//! [`Lingering`] wraps every accepted TCP stream. When the server drops it (hyper after a
//! response, a WebSocket after its close frame, engine.io after a disconnect), the socket is
//! not closed at once: a small task shuts down the write side (a FIN after everything
//! written), then reads and discards what the client still sends until it closes too, or
//! until [`LINGER_TIME`] or [`LINGER_BYTES`] is used up, whichever comes first. Only then is
//! the socket closed. A client that closed first (its EOF was read) costs nothing.
//!
//! This sits under every protocol, so it needs no access to the stream inside axum's
//! `WebSocket` or engineioxide's session (neither gives one), and it covers `/ws`, Socket.IO
//! websocket and polling, and REST alike.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Longest a closed connection keeps reading what its client still sends.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);
/// Most bytes read and discarded from a closed connection before it is closed anyway.
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;

/// A TCP stream that closes with a lingering close when dropped.
#[derive(Debug)]
pub(crate) struct Lingering {
    /// Always `Some` until dropped.
    stream: Option<TcpStream>,
    /// The client closed its side: nothing left to drain.
    peer_closed: bool,
}

impl Lingering {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream: Some(stream),
            peer_closed: false,
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if self.peer_closed {
            return;
        }
        // Outside a runtime (process exit) the socket just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// FIN after what was written, then read and discard, bounded in time and bytes.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0_u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let stream = match this.stream() {
            Ok(stream) => stream,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let polled = Pin::new(stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            this.peer_closed = true;
        }
        polled
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}
