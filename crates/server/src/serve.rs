//! Serving an axum app with the limits a public listener needs: what
//! `tally serve` runs instead of `axum::serve`, which sets no read timeout, so a
//! client that stops mid-header or mid-body would hold its connection forever.
//!
//! [`serve`] accepts connections with hyper-util's HTTP/1.1 + HTTP/2 server and:
//!
//! - closes a connection whose request line and headers have not all arrived
//!   within [`ConnectionLimits::header_read_timeout`] (hyper's
//!   `header_read_timeout`; for HTTP/1.1 the clock also runs while a kept-alive
//!   connection waits for its next request, so it bounds idle keep-alive too);
//! - closes a connection on which nothing was read or written for
//!   [`ConnectionLimits::idle_timeout`]: gracefully first (an answer being
//!   written is finished, HTTP/2 gets a `GOAWAY`), then for good after a second
//!   such period;
//! - holds at most [`ConnectionLimits::max_connections`] connections open: at
//!   the cap, it stops accepting and new connections wait in the kernel's
//!   listen backlog until one closes.
//!
//! The request body's own deadline belongs to the handler that reads it: the
//! collector answers `408` when a `/collect` body has not fully arrived within
//! [`CollectorConfig::body_read_timeout`](crate::collector::CollectorConfig::body_read_timeout).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// How long clients may take and how many may be connected at once
/// (`[server]` in `tally.toml`: `header_read_timeout_ms`, `idle_timeout_ms`,
/// `max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// The request line and headers must all arrive within this (default 10 s).
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed (default 30 s).
    pub idle_timeout: Duration,
    /// Connections open at once, at most (default 1024); keep it below the
    /// process's open-file limit (`ulimit -n`).
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The default header read timeout.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default idle timeout.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// The default connection cap.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

    /// Sets [`ConnectionLimits::header_read_timeout`].
    pub fn header_read_timeout(mut self, t: Duration) -> ConnectionLimits {
        self.header_read_timeout = t;
        self
    }

    /// Sets [`ConnectionLimits::idle_timeout`].
    pub fn idle_timeout(mut self, t: Duration) -> ConnectionLimits {
        self.idle_timeout = t;
        self
    }

    /// Sets [`ConnectionLimits::max_connections`] (at least 1).
    pub fn max_connections(mut self, n: usize) -> ConnectionLimits {
        self.max_connections = n.max(1);
        self
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then
/// closes connections gracefully and returns once all are closed. Handlers see
/// the peer as [`ConnectInfo<SocketAddr>`], as with
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    // At most u32::MAX, so `acquire_many` can wait for them all at shutdown.
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // The permit first: at the cap, connections wait in the listen backlog.
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => p.map_err(io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum does, rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let stopped = stopped.clone();
        tokio::spawn(async move {
            serve_connection(&builder, stream, peer, app, limits.idle_timeout, stopped).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit: all are back once all are closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _closed = permits.acquire_many(all).await;
    Ok(())
}

async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    idle_timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: stream, activity: Arc::clone(&activity) });
    let service =
        TowerToHyperService::new(app.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        }));
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut closing = false;
    loop {
        let quiet_until = activity.last() + idle_timeout;
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(quiet_until) => {
                if activity.last() + idle_timeout > Instant::now() {
                    continue;
                }
                if closing {
                    tracing::debug!(%peer, "closing a connection that stayed idle after a graceful close");
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            changed = stopped.changed(), if !closing => {
                if changed.is_err() || *stopped.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// When a connection last moved a byte.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records when it last read or wrote a byte.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
