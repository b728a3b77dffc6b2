//! A guard on the daemon's side of each control connection, below the frame codec: it
//! follows the length-delimited framing as bytes arrive, refuses a request whose declared
//! length exceeds [`MAX_REQUEST`] before any of it is buffered, and cuts a connection that
//! stops in the middle of a frame for [`FRAME_TIMEOUT`]. A connection idle between frames
//! (a CLI waiting on a long poll) is never cut.
//!
//! Owns nothing but this byte-level bookkeeping; it must not parse the JSON inside.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Largest request frame the daemon reads (requests are small but for `send`, whose text
/// is capped at 2 MiB).
pub const MAX_REQUEST: u64 = 4 * 1024 * 1024;
/// Time a peer may take to finish a frame it started.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

enum State {
    /// Reading the 4-byte big-endian length: bytes seen so far.
    Header(usize, [u8; 4]),
    /// Body bytes still to come.
    Body(u64),
}

pub struct Guarded<S> {
    inner: S,
    state: State,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bumped on every read that brings bytes (what "idle" means for eviction).
    activity: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl<S> Guarded<S> {
    pub fn new(inner: S) -> Self {
        Guarded {
            inner,
            state: State::Header(0, [0; 4]),
            deadline: None,
            activity: None,
        }
    }

    /// Count reads in `activity` (a sequence number from `next`, so larger is later).
    pub fn with_activity(mut self, activity: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn between_frames(&self) -> bool {
        matches!(self.state, State::Header(0, _))
    }

    /// Follow the framing over `bytes`.
    fn advance(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Header(got, buf) => {
                    buf[*got] = bytes[0];
                    *got += 1;
                    bytes = &bytes[1..];
                    if *got == 4 {
                        let len = u64::from(u32::from_be_bytes(*buf));
                        if len > MAX_REQUEST {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "request frame of {len} bytes (the limit is {MAX_REQUEST})"
                                ),
                            ));
                        }
                        self.state = if len == 0 {
                            State::Header(0, [0; 4])
                        } else {
                            State::Body(len)
                        };
                    }
                }
                State::Body(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.state = State::Header(0, [0; 4]);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                self.advance(&new)?;
                if !new.is_empty()
                    && let Some(a) = &self.activity
                {
                    a.store(super::control_clock(), std::sync::atomic::Ordering::Relaxed);
                }
                if self.between_frames() {
                    self.deadline = None;
                } else if new.is_empty() {
                    // EOF mid-frame: the codec reports it.
                } else if self.deadline.is_none() {
                    self.deadline = Some(Box::pin(tokio::time::sleep(FRAME_TIMEOUT)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(d) = self.deadline.as_mut()
                    && d.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "a request frame was left unfinished",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
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
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn whole_frames_pass_and_idle_between_frames_is_fine() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut g = Guarded::new(b);
        a.write_all(&[0, 0, 0, 3, b'a', b'b', b'c']).await.unwrap();
        let mut buf = [0u8; 7];
        g.read_exact(&mut buf).await.unwrap();
        assert!(g.between_frames() && g.deadline.is_none());
    }

    #[tokio::test]
    async fn an_oversized_declared_length_is_refused_at_once() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut g = Guarded::new(b);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut buf = [0u8; 4];
        let e = g.read_exact(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_frame_times_out() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut g = Guarded::new(b);
        a.write_all(&[0, 0, 0, 9, b'x']).await.unwrap();
        let mut buf = [0u8; 32];
        let n = g.read(&mut buf).await.unwrap();
        assert_eq!(n, 5);
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
