//! The input task's line to its client's writer: posting never waits, and what is queued
//! stays a handful of commands, because a newer one makes older ones moot.
//!
//! Why it must not wait: the writer waits for the client's SSH window; the window adjust
//! that frees it is read by russh's loop; that loop hands the client's keys to the input
//! task and waits while the input task's queue is full. Had the input task waited for the
//! writer too, a client that stopped reading and then typed fast in its menu would close
//! that circle and wedge its own connection for good (`adr/0009`).
//!
//! What is kept: at most one screen command ([`ToWriter::Menu`] or [`ToWriter::Live`]: each
//! replaces the whole screen, so only the newest matters), one [`ToWriter::Resized`] (the
//! writer reads the size when it handles it), and, once the client leaves
//! ([`ToWriter::Detach`], [`ToWriter::Lobby`]), nothing more. Owns the queue only; what the
//! commands mean is the writer's business.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::Notify;

/// To the client's writer task.
#[derive(Debug)]
pub enum ToWriter {
    /// Show this menu frame (entering the menu's alternate screen if needed).
    Menu(Vec<u8>),
    /// Leave the menu: repaint from the screen model and stream live again.
    Live,
    /// Say goodbye and close this client's channel (exit status 0).
    Detach,
    /// Leave the session for the lobby (the channel stays open).
    Lobby,
    /// The client's window changed: re-check whether it needs clipped frames.
    Resized,
    /// A one-line note for this client only, shown like a message banner.
    Note(String),
}

#[derive(Default)]
struct State {
    queue: VecDeque<ToWriter>,
    /// The sending side is gone.
    closed: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
}

/// What [`Inbox::try_recv`] found.
pub enum Mail {
    Command(ToWriter),
    /// Nothing yet.
    Empty,
    /// Nothing, and the sender is gone.
    Closed,
}

/// The input task's end.
pub struct Outbox(Arc<Shared>);

/// The writer's end.
pub struct Inbox(Arc<Shared>);

/// A connected pair.
pub fn mailbox() -> (Outbox, Inbox) {
    let shared = Arc::new(Shared::default());
    (Outbox(Arc::clone(&shared)), Inbox(shared))
}

fn is_screen(cmd: &ToWriter) -> bool {
    matches!(cmd, ToWriter::Menu(_) | ToWriter::Live)
}

fn is_leave(cmd: &ToWriter) -> bool {
    matches!(cmd, ToWriter::Detach | ToWriter::Lobby)
}

impl State {
    fn post(&mut self, cmd: ToWriter) {
        if self.queue.iter().any(is_leave) {
            return;
        }
        match &cmd {
            ToWriter::Resized if self.queue.iter().any(|c| matches!(c, ToWriter::Resized)) => {
                return;
            }
            ToWriter::Resized => {}
            // A note does not replace a screen; a newer note replaces an older one.
            ToWriter::Note(_) => self.queue.retain(|c| !matches!(c, ToWriter::Note(_))),
            _ => self.queue.retain(|c| !is_screen(c)),
        }
        self.queue.push_back(cmd);
    }
}

impl Outbox {
    /// Queue `cmd` for the writer; never waits.
    pub fn post(&self, cmd: ToWriter) {
        self.0.state.lock().post(cmd);
        self.0.notify.notify_one();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.0.state.lock().closed = true;
        self.0.notify.notify_one();
    }
}

impl Inbox {
    /// The next command, without waiting.
    pub fn try_recv(&self) -> Mail {
        let mut state = self.0.state.lock();
        match state.queue.pop_front() {
            Some(cmd) => Mail::Command(cmd),
            None if state.closed => Mail::Closed,
            None => Mail::Empty,
        }
    }

    /// The next command; `None` once the queue is empty and the sender gone.
    pub async fn recv(&self) -> Option<ToWriter> {
        loop {
            // `notify_one` keeps a permit when nobody waits, so a post between the check
            // and the wait is not missed.
            match self.try_recv() {
                Mail::Command(cmd) => return Some(cmd),
                Mail::Closed => return None,
                Mail::Empty => self.0.notify.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(inbox: &Inbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Mail::Command(cmd) = inbox.try_recv() {
            out.push(match cmd {
                ToWriter::Menu(f) => format!("menu {}", String::from_utf8_lossy(&f)),
                other => format!("{other:?}").to_lowercase(),
            });
        }
        out
    }

    #[test]
    fn a_newer_screen_replaces_older_ones_and_resizes_are_kept_once() {
        let (out, inbox) = mailbox();
        for n in 0..1000 {
            out.post(ToWriter::Menu(format!("{n}").into_bytes()));
            out.post(ToWriter::Resized);
        }
        assert_eq!(names(&inbox), ["resized", "menu 999"]);
        out.post(ToWriter::Menu(b"a".to_vec()));
        out.post(ToWriter::Live);
        assert_eq!(names(&inbox), ["live"]);
        out.post(ToWriter::Live);
        out.post(ToWriter::Menu(b"b".to_vec()));
        assert_eq!(names(&inbox), ["menu b"]);
    }

    #[test]
    fn nothing_follows_a_leave() {
        let (out, inbox) = mailbox();
        out.post(ToWriter::Menu(b"a".to_vec()));
        out.post(ToWriter::Detach);
        out.post(ToWriter::Menu(b"b".to_vec()));
        out.post(ToWriter::Lobby);
        out.post(ToWriter::Resized);
        assert_eq!(names(&inbox), ["detach"]);
    }

    #[tokio::test]
    async fn recv_wakes_for_a_post_and_ends_when_the_sender_goes() {
        let (out, inbox) = mailbox();
        let waiter = tokio::spawn(async move {
            let first = inbox.recv().await;
            let second = inbox.recv().await;
            (
                first.is_some_and(|c| matches!(c, ToWriter::Live)),
                second.is_none(),
            )
        });
        tokio::task::yield_now().await;
        out.post(ToWriter::Live);
        drop(out);
        assert_eq!(waiter.await.unwrap(), (true, true));
    }
}
