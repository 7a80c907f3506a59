//! The connection bound of a server ([`crate::Limits::max_connections`]): every accepted
//! socket gets a [`Slot`], counted the first time the connection is used while there is room.
//! A data-plane connection without room is answered busy and closed; a gRPC connection
//! without room stays open, and each of its calls is answered busy by [`admit_call`] until
//! room appears (so a client that retries gets in once others leave, without reconnecting).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;
use tonic::{Request, Status};

use crate::limits::Busy;

/// How long a client refused for lack of connections is told to wait.
const RETRY_CONNECTION: Duration = Duration::from_millis(500);

/// The open connections of one server.
pub(crate) struct Connections {
    open: AtomicUsize,
    limit: usize,
}

impl Connections {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Connections { open: AtomicUsize::new(0), limit })
    }

    /// A slot for a newly accepted connection (not counted until [`Slot::admit`]).
    pub(crate) fn slot(self: &Arc<Self>) -> Arc<Slot> {
        Arc::new(Slot { connections: Arc::clone(self), counted: AtomicBool::new(false) })
    }

    /// Connections counted now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The answer to a connection without room.
    pub(crate) fn busy(&self) -> Busy {
        Busy {
            retry_after: RETRY_CONNECTION,
            message: format!(
                "this server holds {} connections at most and all are open: retry later, add shards (cluster.shards), or raise cluster.max_connections",
                self.limit
            ),
        }
    }
}

/// One accepted connection's place in the count, freed when the connection closes.
pub(crate) struct Slot {
    connections: Arc<Connections>,
    counted: AtomicBool,
}

impl Slot {
    /// Counts the connection if there is room (or it is counted already).
    pub(crate) fn admit(&self) -> bool {
        if self.counted.load(Ordering::Acquire) {
            return true;
        }
        let open = &self.connections.open;
        let admitted = open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.connections.limit).then_some(n + 1))
            .is_ok();
        if admitted && self.counted.swap(true, Ordering::AcqRel) {
            // Two calls of one connection raced: it counts once.
            open.fetch_sub(1, Ordering::AcqRel);
        }
        admitted
    }
}

impl Slot {
    /// The answer to a connection without room.
    pub(crate) fn busy(&self) -> Busy {
        self.connections.busy()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if *self.counted.get_mut() {
            self.connections.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A gRPC connection with its slot, which tonic hands to every call as [`ConnectionInfo`].
pub(crate) struct CountedStream {
    stream: TcpStream,
    info: ConnectionInfo,
}

impl CountedStream {
    pub(crate) fn new(stream: TcpStream, slot: Arc<Slot>) -> Self {
        let remote_addr = stream.peer_addr().ok();
        CountedStream { stream, info: ConnectionInfo { slot, remote_addr } }
    }
}

/// What a call knows of its connection.
#[derive(Clone)]
pub(crate) struct ConnectionInfo {
    slot: Arc<Slot>,
    remote_addr: Option<std::net::SocketAddr>,
}

impl Connected for CountedStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What a call knows of its connection (under TLS the info sits inside tonic's TLS wrapper).
fn info<T>(request: &Request<T>) -> Option<&ConnectionInfo> {
    let info = request.extensions().get::<ConnectionInfo>();
    #[cfg(feature = "tls")]
    let info = info.or_else(|| {
        request.extensions().get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>().map(|tls| tls.get_ref())
    });
    info
}

/// The caller's address (what tonic's `Request::remote_addr` answers for plain TCP streams).
pub(crate) fn remote_addr<T>(request: &Request<T>) -> Option<std::net::SocketAddr> {
    info(request)?.remote_addr
}

/// The interceptor in front of every gRPC service: a call on a connection without room is
/// answered busy.
pub(crate) fn admit_call(request: Request<()>) -> Result<Request<()>, Status> {
    match info(&request) {
        Some(info) if !info.slot.admit() => Err(info.slot.busy().status()),
        _ => Ok(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_once_and_free_on_drop() {
        let connections = Connections::new(2);
        let (a, b, c) = (connections.slot(), connections.slot(), connections.slot());
        assert!(a.admit() && a.admit() && b.admit());
        assert_eq!(connections.open(), 2);
        assert!(!c.admit());
        drop(a);
        assert_eq!(connections.open(), 1);
        assert!(c.admit());
        drop((b, c));
        assert_eq!(connections.open(), 0);
        assert!(connections.busy().message.contains("2 connections at most"));
    }
}
