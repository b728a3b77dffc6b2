//! The web viewer: a read-only page of a live session, for people without an SSH key on
//! the box (`hearth share`, adr/0015). Transport only, like `ssh/`: the session core knows
//! nothing of it.
//!
//! - The **front** (in the daemon, when `[web] port` is set) serves `GET /s/TOKEN` (the
//!   page), `GET /s/TOKEN/live` (Server-Sent Events) and `/app.js`. It checks the token
//!   ([`shares`]), penalises sources that guess (the SSH pre-auth table's rules, a table of
//!   its own), and either streams a session in this process or carries the request on to
//!   the session's own process over `sessions/<id>.web.sock`. Every stream passes a pump
//!   that ends it when its link is revoked or expires.
//! - The **session side** ([`live`]) attaches the browser as a viewer (`peers` shows it,
//!   kind `web`; `kick`, `[limits]` and the audit trail apply), sends the screen, then the
//!   rows that changed, at most 20 times a second. Rows are rendered once per change for
//!   every viewer ([`render`]); a viewer that cannot keep up simply gets the newest screen
//!   when it can take more, so it never slows anyone.
//!
//! Must not: write to a PTY, hold a session lock across an await, or trust a header it did
//! not set itself (the host trusts only its own socket's same-uid peer, the front).

pub mod live;
mod page;
pub mod render;
pub mod replay;
pub mod shares;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::Session;
use crate::ssh::preauth::{PreAuth, Refused};

/// Every response's body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a request's head may take (bytes).
const MAX_HEAD: usize = 16 * 1024;

/// A body fed by a channel of one chunk: the sender waits (itself only) while the client
/// has not taken the last one.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed body and the sender that feeds it.
pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(1);
    (tx, ChannelBody(rx).boxed())
}

fn full(status: StatusCode, kind: &str, text: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(text.into())
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", kind.parse().expect("a valid header"));
    secure(h);
    r
}

/// Headers on every answer: no caching, no referrer (the token is in the URL), no framing,
/// nothing loaded from elsewhere.
fn secure(h: &mut hyper::HeaderMap) {
    for (k, v) in [
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(k, v.parse().expect("a valid header"));
    }
}

fn not_found() -> Response<Body> {
    full(StatusCode::NOT_FOUND, "text/plain", "not found\n")
}

/// An event stream's answer around `body`.
pub fn event_stream(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert("content-type", "text/event-stream".parse().expect("valid"));
    h.insert("x-accel-buffering", "no".parse().expect("valid"));
    secure(h);
    r
}

/// One server-sent event.
pub fn sse(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// The event that ends a stream, saying why (`reason` is one of ours: no escaping).
pub fn end_event(reason: &str) -> Bytes {
    sse("end", &format!("{{\"reason\":\"{reason}\"}}"))
}

/// Where a shared session is served.
pub enum Route {
    /// In this process.
    Here(Arc<Session>),
    /// In a process of its own: its web socket.
    Host(PathBuf),
}

/// What the front asks the daemon: where session `id` runs now (`None`: it has ended).
pub type Router = Arc<dyn Fn(&str) -> Option<Route> + Send + Sync>;

/// The daemon's web front.
pub struct Front {
    pub shares: shares::Shares,
    guard: PreAuth,
    route: Router,
    /// Where recordings are (`None`: recording is off: no timelines).
    recordings: Option<PathBuf>,
    timelines: Arc<replay::Timelines>,
    renderers: Arc<live::Renderers>,
    /// Streams open per link (by its id).
    viewers: Arc<parking_lot::Mutex<std::collections::HashMap<String, u32>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// One open stream of a link, counted while it lives.
struct Watching {
    viewers: Arc<parking_lot::Mutex<std::collections::HashMap<String, u32>>>,
    link: String,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut v = self.viewers.lock();
        if let Some(n) = v.get_mut(&self.link) {
            *n -= 1;
            if *n == 0 {
                v.remove(&self.link);
            }
        }
    }
}

impl Front {
    pub fn new(
        shares: shares::Shares,
        guard: PreAuth,
        (route, recordings): (Router, Option<PathBuf>),
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Arc<Front> {
        Arc::new(Front {
            shares,
            guard,
            route,
            recordings,
            timelines: Arc::default(),
            renderers: Arc::default(),
            viewers: Arc::default(),
            tracker,
            cancel,
        })
    }

    /// Browsers watching through link `id` now.
    pub fn viewers(&self, id: &str) -> u32 {
        self.viewers.lock().get(id).copied().unwrap_or(0)
    }

    /// Accept browsers on `listener` until cancelled.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "web: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = self.cancel.cancelled() => return,
            };
            let _ = stream.set_nodelay(true);
            // Until it opens a live stream, a connection holds an unauthenticated place.
            let slot = match self.guard.admit(peer.ip()) {
                Ok(s) => s,
                Err(why) => {
                    let source = self.guard.source(peer.ip());
                    if let Some(left_out) = self.guard.log_gate(source) {
                        tracing::info!(%source, reason = %why, left_out, "web: connection refused");
                    }
                    let status = match why {
                        Refused::Penalty(_) => StatusCode::TOO_MANY_REQUESTS,
                        _ => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    self.tracker.spawn(refuse(stream, status));
                    continue;
                }
            };
            let front = Arc::clone(&self);
            let slot = Arc::new(parking_lot::Mutex::new(Some(slot)));
            let service = hyper::service::service_fn(move |req| {
                let (front, slot) = (Arc::clone(&front), Arc::clone(&slot));
                async move { Ok::<_, Infallible>(front.handle(req, peer, &slot).await) }
            });
            serve_connection(&self.tracker, stream, service, self.cancel.clone());
        }
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        slot: &parking_lot::Mutex<Option<crate::ssh::preauth::Slot>>,
    ) -> Response<Body> {
        if req.method() != hyper::Method::GET {
            return full(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "read-only: GET only\n",
            );
        }
        let path = req.uri().path();
        if path == "/app.js" {
            return full(StatusCode::OK, "text/javascript", page::SCRIPT);
        }
        let Some(rest) = path.strip_prefix("/s/") else {
            return not_found();
        };
        let (token, what) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(wait) = self.guard.penalty_of(peer.ip()) {
            let mut r = full(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain",
                "too many wrong links from this address: wait\n",
            );
            r.headers_mut()
                .insert("retry-after", (wait.as_secs() + 1).into());
            return r;
        }
        let Some((share, cut)) = self.shares.check(token) else {
            // The same answer as any missing page; the source pays for guessing.
            self.guard.failed(peer.ip());
            return not_found();
        };
        match what {
            "" => full(StatusCode::OK, "text/html; charset=utf-8", page::HTML),
            "live" => {
                // A viewer now: bounded by the session's client limit, not pre-auth.
                slot.lock().take();
                let expires = std::time::UNIX_EPOCH + Duration::from_secs(share.expires_unix);
                let inner = match (self.route)(&share.session) {
                    Some(Route::Here(session)) => live::stream(
                        &session,
                        live::Viewer {
                            address: peer.to_string(),
                            share: share.id.clone(),
                        },
                        &self.renderers,
                        &self.tracker,
                    ),
                    Some(Route::Host(sock)) => {
                        match proxy(&sock, peer, &share.id, &self.tracker).await {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::debug!(error = %e, session = %share.session, "web: the session's process did not take the viewer");
                                live::ended("ended")
                            }
                        }
                    }
                    None => live::ended("ended"),
                };
                self.cut_when(inner, &share.id, cut, expires)
            }
            "timeline" | "at" | "play" => self.replay(what, &req, &share, cut).await,
            _ => not_found(),
        }
    }

    /// The timeline's answers: for a link made with `--replay`, or to a session that has
    /// ended; over its recording.
    async fn replay(
        &self,
        what: &str,
        req: &Request<Incoming>,
        share: &shares::Share,
        cut: CancellationToken,
    ) -> Response<Body> {
        let live = (self.route)(&share.session).is_some();
        let path = match &self.recordings {
            Some(dir) if share.replay || !live => dir.join(format!("{}.cast", share.session)),
            _ => return not_found(),
        };
        let query = |key: &str| {
            req.uri().query().unwrap_or("").split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == key).then(|| v.parse::<f64>().ok()).flatten()
            })
        };
        let t = query("t").filter(|t| t.is_finite()).unwrap_or(0.0);
        let timelines = Arc::clone(&self.timelines);
        // Reading a recording is work on a blocking thread: a bounded number at once.
        let Some(permit) = self.timelines.player() else {
            return full(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "too many replays at once: try again\n",
            );
        };
        match what {
            "timeline" | "at" => {
                let at = what == "at";
                let answer = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    if at {
                        replay::frame_at(&timelines, &path, t)
                    } else {
                        timelines
                            .get(&path)
                            .map(|tl| replay::timeline_json(&tl, live))
                    }
                })
                .await;
                match answer {
                    Ok(Ok(json)) => full(StatusCode::OK, "application/json", json),
                    _ => not_found(),
                }
            }
            _ => {
                let speed = query("speed")
                    .filter(|s| s.is_finite())
                    .unwrap_or(1.0)
                    .clamp(0.25, 16.0);
                let (tx, body) = channel();
                let stop = self.cancel.child_token();
                let expires = std::time::UNIX_EPOCH + Duration::from_secs(share.expires_unix);
                let watch = stop.clone();
                self.tracker.spawn(async move {
                    let left = expires
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::time::sleep(left) => {}
                        _ = watch.cancelled() => {}
                    }
                    watch.cancel();
                });
                let done = stop.clone();
                tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    replay::play(&timelines, &path, t, speed, tx, stop);
                    done.cancel();
                });
                event_stream(body)
            }
        }
    }

    /// `r`'s stream, ended (with an `end` event saying why) when the link is revoked or
    /// expires, or the daemon stops.
    fn cut_when(
        &self,
        r: Response<Body>,
        link: &str,
        cut: CancellationToken,
        expires: SystemTime,
    ) -> Response<Body> {
        let (parts, mut body) = r.into_parts();
        *self.viewers.lock().entry(link.to_string()).or_default() += 1;
        let watching = Watching {
            viewers: Arc::clone(&self.viewers),
            link: link.to_string(),
        };
        let (tx, out) = channel();
        let stop = self.cancel.clone();
        let left = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.tracker.spawn(async move {
            let _watching = watching;
            let deadline = tokio::time::sleep(left);
            tokio::pin!(deadline);
            let reason = loop {
                tokio::select! {
                    f = body.frame() => match f {
                        Some(Ok(f)) => {
                            if let Ok(data) = f.into_data() && tx.send(data).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    _ = tx.closed() => return,
                    _ = cut.cancelled() => break "revoked",
                    _ = &mut deadline => break "expired",
                    _ = stop.cancelled() => return,
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(end_event(reason))).await;
        });
        Response::from_parts(parts, out)
    }
}

/// Serve one HTTP/1.1 connection (one request: no keep-alive; its head capped in size
/// and time) until it ends or `cancel`.
fn serve_connection<I, S>(tracker: &TaskTracker, io: I, service: S, cancel: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
    S::Future: Send,
{
    tracker.spawn(async move {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .keep_alive(false)
            .serve_connection(TokioIo::new(io), service);
        tokio::select! {
            _ = conn => {}
            _ = cancel.cancelled() => {}
        }
    });
}

/// Answer `status` and close, for a connection refused before its request.
async fn refuse(stream: tokio::net::TcpStream, status: StatusCode) {
    use tokio::io::AsyncWriteExt;
    let mut stream = stream;
    let line = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(line.as_bytes())).await;
}

/// Carry a viewer on to the session's own process: `GET /live` on its web socket, naming
/// the browser's address and the link.
async fn proxy(
    sock: &Path,
    peer: SocketAddr,
    share: &str,
    tracker: &TaskTracker,
) -> Result<Response<Body>, String> {
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tracker.spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/live")
        .header("host", "session")
        .header(live::PEER_HEADER, peer.to_string())
        .header(live::SHARE_HEADER, share)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let r = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if r.status() != StatusCode::OK {
        return Err(format!("it answered {}", r.status()));
    }
    Ok(r.map(|b| b.map_err(std::io::Error::other).boxed()))
}

/// A session process's side: serve `GET /live` for its session on `path` (0600, same uid
/// only), for the front, until cancelled.
pub async fn serve_host(
    path: PathBuf,
    session: Arc<Session>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let renderers: Arc<live::Renderers> = Arc::default();
    let t = tracker.clone();
    tracker.spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => { tokio::time::sleep(Duration::from_millis(100)).await; continue; }
                },
                _ = cancel.cancelled() => break,
            };
            if stream.peer_cred().map(|c| c.uid()).ok() != Some(uid) {
                continue;
            }
            let (session, renderers, tracker) =
                (Arc::clone(&session), Arc::clone(&renderers), t.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = host_answer(&req, &session, &renderers, &tracker);
                async move { Ok::<_, Infallible>(r) }
            });
            serve_connection(&t, stream, service, cancel.clone());
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn host_answer(
    req: &Request<Incoming>,
    session: &Arc<Session>,
    renderers: &Arc<live::Renderers>,
    tracker: &TaskTracker,
) -> Response<Body> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect::<String>())
    };
    match (
        req.uri().path(),
        header(live::PEER_HEADER),
        header(live::SHARE_HEADER),
    ) {
        ("/live", Some(address), Some(share)) => {
            live::stream(session, live::Viewer { address, share }, renderers, tracker)
        }
        _ => not_found(),
    }
}

/// A session process's web socket, beside its control socket.
pub fn host_socket(control: &Path) -> PathBuf {
    control.with_extension("web.sock")
}
