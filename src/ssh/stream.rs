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

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct Cuttable<S> {
    inner: S,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Cuttable<S> {
    pub fn new(inner: S, token: CancellationToken) -> Self {
        Cuttable {
            inner,
            cut: Box::pin(token.cancelled_owned()),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut by hearth",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
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
