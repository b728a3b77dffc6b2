//! [`Tripwire`]: a cancellation token watched without taking locks.
//!
//! Checking a tokio-util `CancellationToken` (`is_cancelled`, or polling `cancelled()`)
//! takes its node's mutex, and a wait registered inside a `select!` is unlinked again under
//! its `Notify`'s lock when the select returns. A task that looks at the same tokens on every
//! event pays that each time: a client's writer and its transport do, at every keystroke's
//! fan-out, times every client (at a thousand viewers, a tenth of the session process's
//! CPU went to these locks). A tripwire registers one wait on the token, once, whose wake-up
//! sets a flag: a check is one atomic load, and a task waiting on it leaves its waker in one
//! of the tripwire's slots (one waiting task per slot).
//!
//! It only watches: cancelling stays the token's, and the token's other users are untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How many tasks may wait on one tripwire at once, each in its own slot.
pub const SLOTS: usize = 2;

pub struct Tripwire {
    flag: Arc<Flag>,
    /// The token's wait, polled once with `flag` as its waker and kept registered: the
    /// token's cancellation (directly or through its tree) wakes it, which trips the flag.
    _wait: Pin<Box<WaitForCancellationFutureOwned>>,
}

#[derive(Default)]
struct Flag {
    tripped: AtomicBool,
    wakers: [AtomicWaker; SLOTS],
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.tripped.store(true, Ordering::Release);
        for w in &self.wakers {
            w.wake();
        }
    }
}

impl Tripwire {
    pub fn new(token: &CancellationToken) -> Tripwire {
        let flag = Arc::new(Flag::default());
        let mut wait = Box::pin(token.clone().cancelled_owned());
        let waker = Waker::from(Arc::clone(&flag));
        // Registers the wait, or finds the token already cancelled.
        if wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready()
        {
            flag.tripped.store(true, Ordering::Release);
        }
        Tripwire { flag, _wait: wait }
    }

    /// Whether the token was cancelled.
    pub fn is_tripped(&self) -> bool {
        self.flag.tripped.load(Ordering::Acquire)
    }

    /// Ready once tripped; otherwise `cx`'s waker waits in `slot` (`< SLOTS`), and the flag
    /// is read again after that, so a cancellation in between is not missed.
    pub fn poll_tripped(&self, slot: usize, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_tripped() {
            return Poll::Ready(());
        }
        self.flag.wakers[slot].register(cx.waker());
        if self.is_tripped() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Wait until tripped (slot 0). Dropping the wait unregisters nothing: a stale waker
    /// in the slot costs one spurious wake-up at most.
    pub fn tripped(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_tripped(0, cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trips_through_the_tree_and_wakes_a_waiting_task() {
        let parent = CancellationToken::new();
        let wire = Arc::new(Tripwire::new(&parent.child_token()));
        assert!(!wire.is_tripped());
        let waiting = tokio::spawn({
            let wire = Arc::clone(&wire);
            async move { wire.tripped().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        parent.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting task was woken")
            .unwrap();
        assert!(wire.is_tripped());
    }

    #[tokio::test]
    async fn a_token_already_cancelled_is_tripped_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        let wire = Tripwire::new(&token);
        assert!(wire.is_tripped());
        wire.tripped().await;
    }

    #[tokio::test]
    async fn every_slot_is_woken() {
        let token = CancellationToken::new();
        let wire = Arc::new(Tripwire::new(&token));
        let waits: Vec<_> = (0..SLOTS)
            .map(|slot| {
                let wire = Arc::clone(&wire);
                tokio::spawn(
                    async move { std::future::poll_fn(|cx| wire.poll_tripped(slot, cx)).await },
                )
            })
            .collect();
        tokio::task::yield_now().await;
        token.cancel();
        for w in waits {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("woken")
                .unwrap();
        }
    }
}
