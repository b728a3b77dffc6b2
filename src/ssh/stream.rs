//! Wrappers around a client's TCP stream, below russh.
//!
//! [`Cuttable`]: a stream that can be cut from outside. russh stops reading its handle's
//! queue while a peer's window is full, so a stalled client cannot be disconnected politely;
//! cancelling this stream's token makes every further read and write fail, which ends the
//! russh session task (and frees its buffers) no matter what it was waiting for.
//!
//! [`QuickAck`]: acknowledges the client's first packets at once. OpenSSH turns Nagle off
//! only once the session is interactive, so during the handshake its `KEX_ECDH_INIT` waits
//! for the ACK of its `KEXINIT`, which the server, having nothing to say back, delays by
//! Linux's 40 ms. That stalled half of all joins (tcpdump: the ACK 43 ms after the KEXINIT,
//! the 48-byte ECDH_INIT right behind it). Setting `TCP_QUICKACK` after each of the first
//! reads sends that ACK immediately; later reads skip the system call.
//!
//! [`Heard`]: notes that the client sent anything at all (its SSH version line comes
//! first), so a connection that stays silent can be cut early.
//!
//! None looks at the bytes.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::tripwire::Tripwire;

pub struct Cuttable<S> {
    inner: S,
    /// Every read and write checks it: one atomic load, where polling the token's own wait
    /// took two locks per call ([`Tripwire`]). Slot 0 holds the reader's waker, 1 the
    /// writer's (russh polls both halves).
    cut: Tripwire,
}

const READ: usize = 0;
const WRITE: usize = 1;

impl<S> Cuttable<S> {
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Cuttable {
            inner,
            cut: Tripwire::new(&token),
        }
    }
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection cut by hearth")
}

/// `poll` unless the stream is cut; a call left pending leaves its waker in `slot`, so a
/// cut wakes it.
fn checked<T>(
    cut: &Tripwire,
    slot: usize,
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    if cut.is_tripped() {
        return Poll::Ready(Err(cut_error()));
    }
    match poll(cx) {
        Poll::Pending => match cut.poll_tripped(slot, cx) {
            Poll::Ready(()) => Poll::Ready(Err(cut_error())),
            Poll::Pending => Poll::Pending,
        },
        ready => ready,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Cuttable { inner, cut } = &mut *self;
        checked(cut, READ, cx, |cx| Pin::new(inner).poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Cuttable { inner, cut } = &mut *self;
        checked(cut, WRITE, cx, |cx| Pin::new(inner).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Cuttable { inner, cut } = &mut *self;
        checked(cut, WRITE, cx, |cx| Pin::new(inner).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads after which [`QuickAck`] stops: past the key exchange, authentication and the
/// channel requests of any client seen (OpenSSH's handshake takes about a dozen).
pub const QUICK_READS: u32 = 32;

pub struct QuickAck<S> {
    inner: S,
    reads_left: u32,
}

impl<S: AsRawFd> QuickAck<S> {
    pub fn new(inner: S) -> Self {
        QuickAck {
            inner,
            reads_left: QUICK_READS,
        }
    }
}

/// Sends a delayed ACK now and leaves delayed-ACK mode (Linux; elsewhere nothing).
fn quick_ack(fd: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: `fd` is an open socket owned by the caller for the duration of the call,
        // and the option value is a live c_int of the length passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

impl<S: AsyncRead + AsRawFd + Unpin> AsyncRead for QuickAck<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.reads_left > 0
            && matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.reads_left -= 1;
            quick_ack(self.inner.as_raw_fd());
        }
        polled
    }
}

/// Writes go straight through to `inner`: the wrappers below only look at reads.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: AsyncWrite + Unpin> AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

write_through!(QuickAck);

/// Sets its flag on the first read that brings data.
pub struct Heard<S> {
    inner: S,
    heard: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<S> Heard<S> {
    pub fn new(inner: S, heard: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        Heard { inner, heard }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.heard.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }
}

write_through!(Heard);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A connected pair: the server side wrapped in a [`Cuttable`] on `token`.
    async fn cuttable_pair(
        token: &CancellationToken,
    ) -> (tokio::net::TcpStream, Cuttable<tokio::net::TcpStream>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, Cuttable::new(server, token.clone()))
    }

    fn is_cut<T: std::fmt::Debug>(r: io::Result<T>) -> bool {
        matches!(r, Err(e) if e.kind() == io::ErrorKind::ConnectionAborted)
    }

    const SOON: std::time::Duration = std::time::Duration::from_secs(5);

    #[tokio::test]
    async fn a_cut_ends_a_read_that_waits_and_through_the_tree() {
        let parent = CancellationToken::new();
        let (_client, mut server) = cuttable_pair(&parent.child_token()).await;
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            server.read(&mut buf).await
        });
        tokio::task::yield_now().await;
        parent.cancel();
        let r = tokio::time::timeout(SOON, read)
            .await
            .expect("woken by the cut");
        assert!(is_cut(r.unwrap()));
    }

    #[tokio::test]
    async fn a_cut_ends_a_write_that_waits() {
        let token = CancellationToken::new();
        let (_client, mut server) = cuttable_pair(&token).await;
        // The client never reads: writes fill both socket buffers until one makes no
        // progress at all.
        let chunk = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + SOON;
        while tokio::time::timeout(std::time::Duration::from_millis(50), server.write(&chunk))
            .await
            .is_ok()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the socket never filled"
            );
        }
        let write = tokio::spawn(async move { server.write(&chunk).await });
        tokio::task::yield_now().await;
        assert!(!write.is_finished());
        token.cancel();
        let r = tokio::time::timeout(SOON, write)
            .await
            .expect("woken by the cut");
        assert!(is_cut(r.unwrap()));
    }

    #[tokio::test]
    async fn after_a_cut_nothing_more_is_read_or_written() {
        let token = CancellationToken::new();
        let (mut client, mut server) = cuttable_pair(&token).await;
        client.write_all(b"ready to read").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        token.cancel();
        // Bytes are there to be read, and the socket could take a write: both fail.
        assert!(is_cut(server.read(&mut buf).await));
        assert!(is_cut(server.write(b"x").await));
        assert!(is_cut(server.flush().await));
        // A stream made on a token already cancelled is cut from the start.
        let (_c, mut late) = cuttable_pair(&token).await;
        assert!(is_cut(late.read(&mut buf).await));
    }

    #[tokio::test]
    async fn quick_acks_count_only_reads_with_data_and_stop_after_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut server = QuickAck::new(server);
        let mut buf = [0u8; 1];
        for n in 1..=QUICK_READS + 3 {
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(server.reads_left, QUICK_READS.saturating_sub(n));
        }
        // The end of the stream is no read with data.
        drop(client);
        let mut server = QuickAck {
            reads_left: 1,
            ..server
        };
        assert_eq!(server.read(&mut buf).await.unwrap(), 0);
        assert_eq!(server.reads_left, 1);
    }
}
