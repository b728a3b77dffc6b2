//! The dashboard's feed, shared by both adapters (`hearth top` in a terminal, the lobby on
//! an SSH channel): it keeps a [`Dashboard`] current from the control API and carries out
//! the actions that need only the API (send, message, kill, new).
//!
//! The model follows the daemon's event stream (a long poll, never a timer); the selected
//! session's screen is fetched again each time its output moves (a long `read` from the
//! end, at most ~10 times a second); each session's last line is fetched at start and when
//! it turns idle. Attaching and replaying are the adapters' business: they own the
//! terminal. This half talks to the daemon only through hearth-rpc and draws nothing; the
//! background tasks end when the [`Live`] is dropped. What they send waits in a bounded
//! queue: while nobody reads it (the adapter has handed the terminal to a session for
//! hours) updates are dropped, and the next read lists everything again instead.

use std::time::Duration;

use hearth_rpc::{ApiError, ErrorKind, Event, EventKind, HearthClient, ReadFrom, SendRequest};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::{Action, Dashboard, Key};

/// What reaches the dashboard's loop.
#[derive(Debug)]
pub enum Update {
    Key(Key),
    /// The terminal changed size: draw again.
    Resize,
    Events(Vec<Event>),
    /// A session's screen, as text (empty: its output ended).
    Screen(String, String),
    Error(String),
    /// Updates were dropped while nobody read them: list everything again.
    Missed,
    /// A second went by: draw again (idle times and ages are computed at draw time).
    Tick,
}

/// Updates from the followers that wait for the loop; beyond this they are dropped.
const FEED: usize = 64;

fn ctx() -> tarpc::context::Context {
    let mut c = tarpc::context::current();
    c.deadline = std::time::Instant::now() + Duration::from_secs(60);
    c
}

/// One call, bounded by our own timer too: a client whose connection went away must not
/// hold the dashboard.
async fn call<T>(
    f: impl std::future::Future<Output = Result<Result<T, ApiError>, tarpc::client::RpcError>>,
) -> Result<T, ApiError> {
    hearth_rpc::bounded(Duration::from_secs(40), f).await
}

/// What keeps a connection open (a running `ssh`), dropped with it.
pub type Guard = Box<dyn std::any::Any + Send + Sync>;

/// Makes a source's connection again after it dropped.
pub type Reconnect = Box<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<(HearthClient, Guard), ApiError>>
        + Send
        + Sync,
>;

/// One daemon the dashboard shows: this machine's, or another host's.
pub struct Source {
    /// The host's name (`local` for this machine) or a label.
    pub host: String,
    /// `None` until a connection is made (a host not reachable yet).
    client: parking_lot::Mutex<Option<HearthClient>>,
    guard: parking_lot::Mutex<Option<Guard>>,
    reconnect: Option<Reconnect>,
}

impl Source {
    pub fn new(host: impl Into<String>, client: HearthClient) -> Source {
        Source {
            host: host.into(),
            client: parking_lot::Mutex::new(Some(client)),
            guard: parking_lot::Mutex::new(None),
            reconnect: None,
        }
    }

    /// A source not connected yet (give it a way to connect with `reconnecting`).
    pub fn disconnected(host: impl Into<String>) -> Source {
        Source {
            host: host.into(),
            client: parking_lot::Mutex::new(None),
            guard: parking_lot::Mutex::new(None),
            reconnect: None,
        }
    }

    /// A source whose connection `guard` keeps open, and `reconnect` makes again.
    pub fn reconnecting(mut self, guard: Guard, reconnect: Reconnect) -> Source {
        *self.guard.get_mut() = Some(guard);
        self.reconnect = Some(reconnect);
        self
    }

    /// The connection, or why there is none (calls fail at once then).
    pub fn client(&self) -> Result<HearthClient, ApiError> {
        self.client.lock().clone().ok_or_else(|| {
            ApiError::new(ErrorKind::Daemon, format!("{} is not connected", self.host))
        })
    }

    /// Connect again, if this source can (`None`: it cannot).
    async fn reconnect(&self) -> Option<Result<(), ApiError>> {
        let f = self.reconnect.as_ref()?;
        Some(match f().await {
            Ok((client, guard)) => {
                *self.client.lock() = Some(client);
                *self.guard.lock() = Some(guard);
                Ok(())
            }
            Err(e) => Err(e),
        })
    }
}

/// The sessions of several sources, told apart by their host in the id: `host/id`.
fn tagged(host: &str, id: &str) -> String {
    format!("{host}/{id}")
}

/// A dashboard kept current from the control API of one or more daemons.
pub struct Live {
    pub dash: Dashboard,
    sources: std::sync::Arc<Vec<Source>>,
    tx: mpsc::UnboundedSender<Update>,
    rx: mpsc::UnboundedReceiver<Update>,
    /// From the event and screen followers (bounded).
    feed: mpsc::Receiver<Update>,
    /// Set when a follower dropped an update.
    missed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Tells the screen follower which session is selected.
    select: mpsc::UnboundedSender<String>,
    /// Where `n` starts a session (`None`: the daemon's default, its home).
    pub new_cwd: Option<String>,
    /// The shell `n` with an empty command starts (`None`: the daemon's).
    pub shell: Option<String>,
    /// The environment `n` carries into the program (`top` here: this terminal's; the
    /// lobby: none).
    pub caller_env: Vec<(String, String)>,
    /// Draws once a second even when nothing happens.
    tick: tokio::time::Interval,
    _stop: DropGuard,
}

impl Live {
    /// List the sessions, start following events and the selected session's screen (tasks
    /// on `tasks`, ended when the `Live` is dropped), and fetch every session's last line
    /// once. With several sources, ids are `host/id`.
    pub async fn start(
        sources: Vec<Source>,
        mut dash: Dashboard,
        tasks: &TaskTracker,
    ) -> Result<Live, ApiError> {
        if sources.is_empty() {
            return Err(ApiError::invalid("no daemon to show"));
        }
        // A lone source must answer for a start (several: those that do are shown).
        if sources.len() == 1 {
            let list = call(sources[0].client()?.list(ctx())).await?;
            dash.model.set_sessions(list);
        }
        let sources = std::sync::Arc::new(sources);
        let (tx, rx) = mpsc::unbounded_channel();
        let (feed_tx, feed) = mpsc::channel(FEED);
        let missed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = CancellationToken::new();
        let out = Feed {
            tx: feed_tx,
            missed: std::sync::Arc::clone(&missed),
        };
        for i in 0..sources.len() {
            follow_events(
                tasks,
                std::sync::Arc::clone(&sources),
                i,
                out.clone(),
                stop.clone(),
            );
        }
        let select = follow_screen(tasks, std::sync::Arc::clone(&sources), out, stop.clone());
        let mut live = Live {
            dash,
            sources,
            tx,
            rx,
            feed,
            missed,
            select,
            new_cwd: None,
            shell: None,
            caller_env: Vec::new(),
            tick: {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + Duration::from_secs(1),
                    Duration::from_secs(1),
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                t
            },
            _stop: stop.drop_guard(),
        };
        if live.multi() {
            live.refresh().await;
        }
        if let Some(s) = live.dash.model.selected() {
            let _ = live.select.send(s.id.clone());
        }
        let ids: Vec<String> = live
            .dash
            .model
            .visible()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            live.fetch_screen(&id).await;
        }
        Ok(live)
    }

    /// Several sources: ids carry their host.
    fn multi(&self) -> bool {
        self.sources.len() > 1
    }

    /// The source a (possibly tagged) session id belongs to, and the id there.
    pub fn route(&self, id: &str) -> Option<(&Source, String)> {
        route(&self.sources, id)
    }

    /// Where an adapter sends keys and resizes, when they come from another task.
    pub fn sender(&self) -> mpsc::UnboundedSender<Update> {
        self.tx.clone()
    }

    /// The next update; `None` once nothing can come any more.
    pub async fn recv(&mut self) -> Option<Update> {
        if self.missed.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return Some(Update::Missed);
        }
        tokio::select! {
            u = self.rx.recv() => u,
            Some(u) = self.feed.recv() => Some(u),
            _ = self.tick.tick() => Some(Update::Tick),
        }
    }

    /// Apply an update; the action the adapter must carry out, if any (attach, replay,
    /// quit, or one for [`Live::act`]).
    pub async fn apply(&mut self, update: Update) -> Option<Action> {
        match update {
            Update::Key(k) => return self.key(k),
            Update::Resize | Update::Tick => {}
            Update::Events(events) => {
                let mut refresh = false;
                for e in &events {
                    refresh |= self.dash.model.apply(e);
                    if let EventKind::Idle { .. } = e.kind {
                        self.fetch_screen(&e.session).await;
                    }
                }
                if refresh {
                    self.refresh().await;
                }
            }
            Update::Screen(id, text) if !text.is_empty() => self.dash.set_screen(&id, &text),
            Update::Screen(..) => {}
            Update::Error(e) => self.dash.status = Some(format!("daemon: {e}")),
            Update::Missed => {
                self.refresh().await;
                // The preview catches up too.
                if let Some(s) = self.dash.model.selected() {
                    let _ = self.select.send(s.id.clone());
                }
            }
        }
        None
    }

    /// A key: the dashboard's action, with a new selection followed here.
    pub fn key(&mut self, k: Key) -> Option<Action> {
        match self.dash.key(k)? {
            Action::Preview(id) => {
                self.dash.preview.clear();
                let _ = self.select.send(id);
                None
            }
            action => Some(action),
        }
    }

    /// Where session `id`'s recording is (a live or an ended session).
    /// Seconds into `id`'s recording of the last line containing `text` (case-insensitive),
    /// if any: where a replay "from the hit" starts.
    pub async fn last_hit(&self, id: &str, text: &str) -> Result<Option<f64>, ApiError> {
        let (source, id) = self
            .route(id)
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
        let client = source.client()?;
        let req = hearth_rpc::SearchRequest {
            pattern: regex::escape(text),
            ignore_case: true,
            sessions: vec![id],
            ..Default::default()
        };
        let (mut last, mut cursor) = (None, None);
        // Hits come oldest first within a session: the last one wins (bounded by time).
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let b = call(client.search(ctx(), req.clone(), cursor)).await?;
            if let Some(h) = b.hits.last() {
                last = Some(h.offset_secs);
            }
            match b.next {
                Some(next) if tokio::time::Instant::now() < until => cursor = Some(next),
                _ => return Ok(last),
            }
        }
    }

    pub async fn recording(&self, id: &str) -> Result<std::path::PathBuf, ApiError> {
        let (source, id) = self
            .route(id)
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
        let client = source.client()?;
        let info = match call(client.get(ctx(), id.to_string())).await {
            Ok(info) => info,
            Err(e) if e.kind == ErrorKind::NotFound => {
                let ended = call(client.history(ctx(), Some(id.to_string()), None)).await?;
                let s = ended.into_iter().next().ok_or(e)?;
                return s.recording.map(Into::into).ok_or_else(|| {
                    ApiError::not_found(format!("session {} has no recording", s.id))
                });
            }
            Err(e) => return Err(e),
        };
        info.recording
            .map(Into::into)
            .ok_or_else(|| ApiError::not_found(format!("session {} has no recording", info.id)))
    }

    async fn fetch_screen(&mut self, id: &str) {
        let Some((source, real)) = self.route(id) else {
            return;
        };
        let Ok(client) = source.client() else {
            return;
        };
        if let Ok(text) = call(client.screen(ctx(), real, false)).await {
            self.dash.set_screen(id, &text);
        }
    }

    /// List the sessions again (one killed elsewhere leaves the view); the preview follows
    /// the selection if it moved. A source that does not answer says so on the status line
    /// (its sessions leave the view until it answers again).
    pub async fn refresh(&mut self) {
        let before = self.dash.model.selected().map(|s| s.id.clone());
        let lists = futures::future::join_all(self.sources.iter().map(|s| async move {
            let list = match s.client() {
                Ok(c) => call(c.list(ctx())).await,
                Err(e) => Err(e),
            };
            (s.host.clone(), list)
        }))
        .await;
        let multi = self.multi();
        let mut all = Vec::new();
        let mut failed = Vec::new();
        for (host, list) in lists {
            match list {
                Ok(list) => all.extend(list.into_iter().map(|mut s| {
                    if multi {
                        s.id = tagged(&host, &s.id);
                    }
                    s
                })),
                Err(e) => failed.push(if multi {
                    format!("{host}: {}", e.message)
                } else {
                    e.message
                }),
            }
        }
        self.dash.model.set_sessions(all);
        if !failed.is_empty() {
            self.dash.status = Some(failed.join("; "));
        }
        let after = self.dash.model.selected().map(|s| s.id.clone());
        if after != before
            && let Some(id) = after
        {
            let _ = self.select.send(id);
        }
    }

    /// Carry out an action that needs only the control API; the outcome goes to the status
    /// line. Attach, replay, preview and quit are the adapter's: they do nothing here.
    pub async fn act(&mut self, action: Action) {
        let target = match &action {
            Action::Send { id, .. } | Action::Message { id, .. } | Action::Kill(id) => {
                Some(id.clone())
            }
            // A new session starts on the selected session's host (or the first).
            _ => None,
        };
        let routed = match &target {
            Some(id) => self.route(id),
            None => {
                let selected = self.dash.model.selected().map(|s| s.id.clone());
                selected
                    .and_then(|id| self.route(&id))
                    .or_else(|| Some((&self.sources[0], String::new())))
            }
        };
        let Some((source, real)) = routed else {
            self.dash.status = Some("that session's host is not shown".into());
            return;
        };
        let client = match source.client() {
            Ok(c) => c,
            Err(e) => {
                self.dash.status = Some(e.message);
                return;
            }
        };
        let on = if self.multi() {
            format!(" on {}", source.host)
        } else {
            String::new()
        };
        let outcome = match action {
            Action::Send { id, text } => {
                let req = SendRequest {
                    text,
                    enter: true,
                    ..Default::default()
                };
                call(client.send(ctx(), real, req))
                    .await
                    .map(|r| format!("sent {} bytes to {id}", r.bytes))
            }
            Action::Message { id, text } => call(client.message(ctx(), real, text))
                .await
                .map(|_| format!("message shown in {id}")),
            Action::Kill(id) => call(client.kill(ctx(), vec![real], false)).await.map(|_| {
                self.dash.model.remove(&id);
                format!("killed {id}")
            }),
            Action::New(command) => {
                let req = hearth_rpc::CreateRequest {
                    cwd: self.new_cwd.clone(),
                    command: if command.trim().is_empty() {
                        Vec::new()
                    } else {
                        vec!["sh".into(), "-c".into(), command]
                    },
                    shell: self.shell.clone(),
                    caller_env: self.caller_env.clone(),
                    ..Default::default()
                };
                call(client.create(ctx(), req))
                    .await
                    .map(|s| format!("started {}{on} on port {}", s.id, s.port))
            }
            Action::Attach(_) | Action::Replay { .. } | Action::Preview(_) | Action::Quit => {
                return;
            }
        };
        self.dash.status = Some(outcome.unwrap_or_else(|e| e.message));
        self.refresh().await;
    }
}

/// Where the followers send: bounded; a full queue drops the update and says so.
#[derive(Clone)]
struct Feed {
    tx: mpsc::Sender<Update>,
    missed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Feed {
    /// `false` once the loop is gone.
    fn send(&self, u: Update) -> bool {
        match self.tx.try_send(u) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed
                    .store(true, std::sync::atomic::Ordering::Release);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The source of a (possibly `host/`-tagged) id, and the id there.
fn route<'a>(sources: &'a [Source], id: &str) -> Option<(&'a Source, String)> {
    if sources.len() == 1 {
        return Some((&sources[0], id.to_string()));
    }
    let (host, real) = id.split_once('/')?;
    let source = sources.iter().find(|s| s.host == host)?;
    Some((source, real.to_string()))
}

/// One source's event stream: a long poll; every batch goes to the loop (which lists
/// again when a session appeared or events were missed). A connection that fails is made
/// again (with back-off) if the source can.
fn follow_events(
    tasks: &TaskTracker,
    sources: std::sync::Arc<Vec<Source>>,
    index: usize,
    tx: Feed,
    stop: CancellationToken,
) {
    tasks.spawn(stop.clone().run_until_cancelled_owned(async move {
        let source = &sources[index];
        let multi = sources.len() > 1;
        let mut since = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            let batch = match source.client() {
                Ok(c) => call(c.events(ctx(), since, None, 512, 10_000)).await,
                Err(e) => Err(e),
            };
            match batch {
                Ok(mut batch) => {
                    backoff = Duration::from_millis(200);
                    since = Some(batch.next);
                    if batch.events.is_empty() {
                        continue;
                    }
                    if multi {
                        for e in &mut batch.events {
                            e.session = tagged(&source.host, &e.session);
                        }
                    }
                    if !tx.send(Update::Events(batch.events)) {
                        return;
                    }
                }
                Err(e) => {
                    let say = |message: String| {
                        tx.send(Update::Error(if multi {
                            format!("{}: {message}", source.host)
                        } else {
                            message
                        }))
                    };
                    // A dropped connection is made again if the source can (and its error
                    // is the one worth showing); other errors are shown as they are.
                    let again = if e.kind == ErrorKind::Daemon {
                        tokio::time::sleep(backoff).await;
                        source.reconnect().await
                    } else {
                        None
                    };
                    match again {
                        Some(Ok(())) => {
                            // A new connection (maybe a new daemon): start from what it
                            // has, and have everything listed again.
                            backoff = Duration::from_millis(200);
                            since = None;
                            tx.send(Update::Missed);
                            continue;
                        }
                        Some(Err(why)) => {
                            if !say(why.message) {
                                return;
                            }
                        }
                        None => {
                            if !say(e.message) {
                                return;
                            }
                            tokio::time::sleep(backoff).await;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }));
}

/// The selected session's screen: fetched at once, then each time its output moves, at
/// most ~10 times a second. Returns where to send the newly selected id.
fn follow_screen(
    tasks: &TaskTracker,
    sources: std::sync::Arc<Vec<Source>>,
    tx: Feed,
    stop: CancellationToken,
) -> mpsc::UnboundedSender<String> {
    let (select, mut selected) = mpsc::unbounded_channel::<String>();
    tasks.spawn(stop.run_until_cancelled_owned(async move {
        let mut id: Option<String> = None;
        let mut offset: Option<u64> = None;
        loop {
            let Some(current) = id.clone() else {
                match selected.recv().await {
                    Some(next) => id = Some(next),
                    None => return,
                }
                continue;
            };
            let Some((source, real)) = route(&sources, &current) else {
                id = None;
                continue;
            };
            let Ok(client) = source.client() else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            if let Ok(text) = call(client.screen(ctx(), real.clone(), false)).await
                && !tx.send(Update::Screen(current.clone(), text))
            {
                return;
            }
            let from = offset.map_or(ReadFrom::End, ReadFrom::Offset);
            let moved = client.read(ctx(), real, from, 4 << 20, 5_000);
            tokio::select! {
                next = selected.recv() => match next {
                    Some(next) => { id = Some(next); offset = None; }
                    None => return,
                },
                r = moved => match r {
                    Ok(Ok(chunk)) if chunk.exited && chunk.data.is_empty() => {
                        // Nothing more will come: wait for another selection.
                        tx.send(Update::Screen(current.clone(), String::new()));
                        match selected.recv().await {
                            Some(next) => { id = Some(next); offset = None; }
                            None => return,
                        }
                    }
                    Ok(Ok(chunk)) => {
                        offset = Some(chunk.next);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
    }));
    select
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_full_feed_drops_the_update_and_says_so() {
        let (tx, rx) = mpsc::channel(1);
        let feed = Feed {
            tx,
            missed: Default::default(),
        };
        assert!(feed.send(Update::Resize));
        assert!(!feed.missed.load(Ordering::Acquire));
        assert!(feed.send(Update::Resize), "full: dropped, not an error");
        assert!(feed.missed.load(Ordering::Acquire));
        drop(rx);
        assert!(!feed.send(Update::Resize), "the loop is gone");
    }
}
