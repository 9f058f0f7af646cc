//! The HTTP server loop: the router on hyper, with what `axum::serve`
//! leaves out. A client must send a request's headers within
//! [`HEADER_TIMEOUT`] of starting them (one that trickles them is cut off),
//! and a connection on which nothing moves either way for [`IDLE_TIMEOUT`]
//! is closed (one opened and left silent, or an idle keep-alive); a request
//! body must arrive within the router's body timeout. Responses may stream
//! for as long as they like (the live alert stream sends a keep-alive
//! comment well within the idle timeout), and end on shutdown.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How long a client has to send a request's headers, counted from the
/// connection (or the previous response) on.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may carry nothing either way before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A socket that notes when bytes last moved on it (milliseconds since
/// `since`), for the idle watchdog.
struct Watched<T> {
    inner: T,
    since: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets the open
/// connections finish, for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let last = Arc::new(AtomicU64::new(0));
        let since = Instant::now();
        let io = Watched {
            inner: stream,
            since,
            last: last.clone(),
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            tokio::pin!(connection);
            loop {
                let idle_from = since + Duration::from_millis(last.load(Ordering::Relaxed));
                tokio::select! {
                    ended = &mut connection => {
                        if let Err(e) = ended {
                            debug!(error = %e, "HTTP connection ended");
                        }
                        return;
                    }
                    _ = tokio::time::sleep_until((idle_from + IDLE_TIMEOUT).into()) => {
                        let moved = since + Duration::from_millis(last.load(Ordering::Relaxed));
                        if moved.elapsed() >= IDLE_TIMEOUT {
                            debug!("HTTP connection idle: closed");
                            return; // dropping it closes the socket
                        }
                    }
                }
            }
        });
    }
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            ?grace,
            "HTTP connections still open at the end of the grace period"
        );
    }
}
