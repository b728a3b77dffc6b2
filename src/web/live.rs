//! A browser watching a live session: attached as a viewer (kind `web`), sent the screen
//! (`event: screen`) and then the rows that changed (`event: rows`), and told why it ends
//! (`event: end`: exited, kicked, ended, revoked, expired).
//!
//! One renderer per watched session turns the screen model into a [`render::Frame`] when
//! output came, at most [`FRAMES_PER_SECOND`] times a second and only while someone
//! watches; viewers share it through a `watch`, which keeps the newest frame only. A viewer
//! sends what changed since what it last sent, so one that stalled gets the current screen
//! as soon as it reads again, and nobody waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::render::{self, Frame};
use super::{Body, channel, end_event, event_stream, sse};
use crate::session::Session;
use crate::session::{ClientKind, ClientSpec, Role};

/// The header naming the browser's address, from the front to a session's process.
pub const PEER_HEADER: &str = "x-hearth-peer";
/// The header naming the link a viewer came through.
pub const SHARE_HEADER: &str = "x-hearth-share";
/// Frames a renderer makes per second, at most.
pub const FRAMES_PER_SECOND: u64 = 20;
/// A comment this often keeps proxies from closing a quiet stream.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// How often a renderer looks for a resize that came without output.
const RESIZE_CHECK: Duration = Duration::from_secs(1);

/// Who is watching.
pub struct Viewer {
    pub address: String,
    /// The link's id.
    pub share: String,
}

struct Renderer {
    frames: watch::Receiver<Arc<Frame>>,
}

/// The renderers of the sessions being watched (by session id; each ends with its last
/// viewer).
#[derive(Default)]
pub struct Renderers(parking_lot::Mutex<HashMap<String, Weak<Renderer>>>);

impl Renderers {
    fn get(&self, session: &Arc<Session>, tracker: &TaskTracker) -> Arc<Renderer> {
        let mut map = self.0.lock();
        map.retain(|_, r| r.strong_count() > 0);
        if let Some(r) = map.get(&session.id).and_then(Weak::upgrade) {
            return r;
        }
        let first = Arc::new(frame_of(session));
        let (tx, rx) = watch::channel(first);
        tracker.spawn(render_loop(Arc::clone(session), tx));
        let r = Arc::new(Renderer { frames: rx });
        map.insert(session.id.clone(), Arc::downgrade(&r));
        r
    }
}

fn frame_of(session: &Session) -> Frame {
    session.with_screen(render::frame)
}

/// Render on output (and on resizes without output) until nobody watches.
async fn render_loop(session: Arc<Session>, tx: watch::Sender<Arc<Frame>>) {
    let mut output = session.output_watch();
    let mut exit = session.exit_watch();
    let mut exit_open = true;
    let gap = Duration::from_millis(1000 / FRAMES_PER_SECOND);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            r = output.changed() => if r.is_err() { return },
            r = exit.changed(), if exit_open => exit_open = r.is_ok(),
            _ = tokio::time::sleep(RESIZE_CHECK) => {}
        }
        let now = frame_of(&session);
        tx.send_if_modified(|cur| {
            if **cur == now {
                return false;
            }
            *cur = Arc::new(now);
            true
        });
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(gap) => {}
        }
    }
}

/// A stream that only says the session is not there (`reason`).
pub fn ended(reason: &str) -> Response<Body> {
    let (tx, body) = channel();
    let _ = tx.try_send(end_event(reason));
    event_stream(body)
}

/// Attach `viewer` to `session` and stream the screen to it.
pub fn stream(
    session: &Arc<Session>,
    viewer: Viewer,
    renderers: &Renderers,
    tracker: &TaskTracker,
) -> Response<Body> {
    let spec = ClientSpec {
        user: "web".into(),
        role: Role::Viewer,
        address: viewer.address,
        key_fingerprint: format!("share:{}", viewer.share),
        size: (0, 0),
        kind: ClientKind::Web,
    };
    let attachment = match session.attach(spec) {
        Ok(a) => a,
        Err(e) => {
            let reason = match e {
                crate::session::AttachError::Exited => "exited",
                crate::session::AttachError::Full(_) => "full",
                crate::session::AttachError::Locked => "locked",
            };
            return ended(reason);
        }
    };
    let renderer = renderers.get(session, tracker);
    let (tx, body) = channel();
    let mut exit = session.exit_watch();
    tracker.spawn(async move {
        let a = attachment;
        let mut frames = renderer.frames.clone();
        let mut last = Arc::clone(&frames.borrow_and_update());
        let send = |b: Bytes| {
            a.count_out(b.len());
            let tx = tx.clone();
            let kick = a.kick.clone();
            async move {
                tokio::select! {
                    r = tx.send(b) => r.is_ok(),
                    _ = kick.cancelled() => false,
                }
            }
        };
        if !send(sse("screen", &render::whole(&last))).await {
            return;
        }
        let reason = loop {
            if exit.borrow_and_update().is_some() {
                // The last screen, then the end.
                let now = Arc::new(frame_of(a.session()));
                if let Some(rows) = render::changed(&last, &now) {
                    let _ = send(sse("rows", &rows)).await;
                }
                break "exited";
            }
            tokio::select! {
                r = frames.changed() => {
                    if r.is_err() {
                        break "ended";
                    }
                    let now = Arc::clone(&frames.borrow_and_update());
                    let msg = if now.cols != last.cols || now.rows != last.rows || now.title != last.title {
                        sse("screen", &render::whole(&now))
                    } else if let Some(rows) = render::changed(&last, &now) {
                        sse("rows", &rows)
                    } else {
                        continue;
                    };
                    if !send(msg).await {
                        break "kicked";
                    }
                    last = now;
                }
                _ = exit.changed() => {}
                _ = a.kick.cancelled() => break "kicked",
                _ = tx.closed() => return,
                _ = tokio::time::sleep(KEEPALIVE) => {
                    if !send(Bytes::from_static(b": keepalive\n\n")).await {
                        break "kicked";
                    }
                }
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            tx.send(end_event(reason)),
        )
        .await;
    });
    event_stream(body)
}
