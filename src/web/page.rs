//! The page and its script: no third-party code, nothing loaded from elsewhere. The script
//! builds each row from the server's runs with `textContent` (never HTML from the session),
//! and follows `live` with an `EventSource`, which reconnects by itself (a daemon restart
//! is a blip) until the server says the stream has ended.

pub const HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>hearth</title>
<style>
  html, body { margin: 0; background: #111; color: #ddd; }
  body { font: 14px/1.2 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
  #bar { padding: 4px 8px; background: #222; color: #aaa; font-size: 12px;
         display: flex; gap: 12px; position: sticky; top: 0; }
  #state.live { color: #6c6; }
  #state.gone { color: #c66; }
  #screen { margin: 0; padding: 6px 8px; white-space: pre; overflow-x: auto;
            font: inherit; line-height: 1.2; }
  #screen div { height: 1.2em; }
  #dvr { padding: 4px 8px; background: #1a1a1a; display: flex; gap: 8px; align-items: center;
         flex-wrap: wrap; font-size: 12px; }
  #dvr[hidden] { display: none; }
  #dvr input[type=range] { flex: 1; min-width: 160px; }
  #dvr button, #dvr select { background: #333; color: #ddd; border: 1px solid #555; }
  .w { display: inline-block; width: 2ch; }
  .c { outline: 1px solid #ddd; }
</style>
</head>
<body>
<div id="bar"><span id="state">connecting</span><span id="title"></span><span id="size"></span></div>
<div id="dvr" hidden>
  <button id="golive" type="button">live</button>
  <button id="play" type="button">play</button>
  <select id="speed" aria-label="speed"><option value="1">1x</option><option value="2">2x</option><option value="4">4x</option><option value="8">8x</option></select>
  <input id="seek" type="range" min="0" max="0" step="any" value="0" list="marks" aria-label="time">
  <datalist id="marks"></datalist>
  <span id="clock">0:00</span>
  <select id="jump" aria-label="markers"><option value="">markers</option></select>
</div>
<pre id="screen" aria-live="off"></pre>
<script src="/app.js"></script>
</body>
</html>
"#;

pub const SCRIPT: &str = r#"'use strict';
(function () {
  const $ = function (id) { return document.getElementById(id); };
  const screen = $('screen'), state = $('state'), title = $('title'), size = $('size');
  const base = location.pathname.replace(/\/$/, '');
  const pal = [[0,0,0],[205,0,0],[0,205,0],[205,205,0],[0,0,238],[205,0,205],[0,205,205],[229,229,229],
               [127,127,127],[255,0,0],[0,255,0],[255,255,0],[92,92,255],[255,0,255],[0,255,255],[255,255,255]];
  function palette(i) {
    if (i < 16) { return 'rgb(' + pal[i].join(',') + ')'; }
    if (i < 232) {
      const n = i - 16, s = [0, 95, 135, 175, 215, 255];
      return 'rgb(' + s[Math.floor(n / 36)] + ',' + s[Math.floor(n / 6) % 6] + ',' + s[n % 6] + ')';
    }
    const g = 8 + (i - 232) * 10;
    return 'rgb(' + g + ',' + g + ',' + g + ')';
  }
  function colour(c) {
    if (c === null || c === undefined) { return null; }
    return typeof c === 'number' ? palette(c) : String(c);
  }
  function row(runs) {
    const div = document.createElement('div');
    for (const [text, fg, bg, flags] of runs) {
      const span = document.createElement('span');
      span.textContent = text;
      let f = colour(fg), b = colour(bg);
      if (flags & 1 && typeof fg === 'number' && fg < 8) { f = palette(fg + 8); }
      if (flags & 8) { const t = f || '#ddd'; f = b || '#111'; b = t; }
      if (f) { span.style.color = f; }
      if (b) { span.style.background = b; }
      if (flags & 1) { span.style.fontWeight = 'bold'; }
      if (flags & 2) { span.style.fontStyle = 'italic'; }
      if (flags & 4) { span.style.textDecoration = 'underline'; }
      if (flags & 64) { span.style.opacity = '0.6'; }
      if (flags & 16) { span.className = 'w'; }
      if (flags & 32) { span.classList.add('c'); }
      div.appendChild(span);
    }
    return div;
  }
  function whole(s) {
    screen.replaceChildren(...s.lines.map(row));
    title.textContent = s.title;
    document.title = s.title ? s.title + ' - hearth' : 'hearth';
    size.textContent = s.cols + 'x' + s.rows;
  }
  function rows(e) {
    const r = JSON.parse(e.data);
    for (const i in r) {
      const old = screen.children[Number(i)];
      if (old) { screen.replaceChild(row(r[i]), old); }
    }
  }
  function show(text, cls) { state.textContent = text; state.className = cls || ''; }

  // Live.
  let live = null, player = null, timeline = null;
  function stopLive() { if (live) { live.close(); live = null; } }
  function openLive() {
    stopPlayer();
    stopLive();
    live = new EventSource(base + '/live');
    live.addEventListener('open', function () { show('live', 'live'); });
    live.addEventListener('error', function () { if (live) { show('reconnecting'); } });
    live.addEventListener('screen', function (e) { whole(JSON.parse(e.data)); });
    live.addEventListener('rows', rows);
    live.addEventListener('end', function (e) {
      stopLive();
      show('ended: ' + JSON.parse(e.data).reason, 'gone');
    });
  }

  // The timeline (a link made with --replay, or to a session that has ended).
  const seek = $('seek'), clock = $('clock'), playBtn = $('play'), speed = $('speed');
  function fmt(t) {
    t = Math.max(0, Math.floor(t));
    const h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
    return (h ? h + ':' + String(m).padStart(2, '0') : m) + ':' + String(s).padStart(2, '0');
  }
  function at(t) { seek.value = t; clock.textContent = fmt(t) + ' / ' + fmt(Number(seek.max)); }
  function stopPlayer() {
    if (player) { player.close(); player = null; }
    playBtn.textContent = 'play';
  }
  function moment(t) {
    stopLive();
    stopPlayer();
    at(t);
    show('replay ' + fmt(t));
    fetch(base + '/at?t=' + t).then(function (r) { return r.json(); }).then(whole);
  }
  function play() {
    stopLive();
    stopPlayer();
    const from = Number(seek.value) >= Number(seek.max) ? 0 : Number(seek.value);
    player = new EventSource(base + '/play?t=' + from + '&speed=' + speed.value);
    playBtn.textContent = 'pause';
    show('playing ' + speed.value + 'x');
    player.addEventListener('screen', function (e) { whole(JSON.parse(e.data)); });
    player.addEventListener('rows', rows);
    player.addEventListener('time', function (e) { at(Number(e.data)); });
    player.addEventListener('end', function () { stopPlayer(); show('replay ' + fmt(Number(seek.value))); });
    player.addEventListener('error', function () { stopPlayer(); });
  }
  playBtn.addEventListener('click', function () { if (player) { stopPlayer(); show('paused'); } else { play(); } });
  seek.addEventListener('change', function () { moment(Number(seek.value)); });
  $('golive').addEventListener('click', function () { if (timeline && timeline.live) { openLive(); } });
  $('jump').addEventListener('change', function (e) {
    if (e.target.value !== '') { moment(Number(e.target.value)); e.target.value = ''; }
  });
  fetch(base + '/timeline').then(function (r) {
    if (!r.ok) { throw new Error('no timeline'); }
    return r.json();
  }).then(function (tl) {
    timeline = tl;
    $('dvr').hidden = false;
    $('golive').disabled = !tl.live;
    seek.max = tl.duration;
    for (const [t, text] of tl.markers) {
      const o = document.createElement('option');
      o.value = t;
      $('marks').appendChild(o);
      const j = document.createElement('option');
      j.value = t;
      j.textContent = fmt(t) + ' ' + text;
      $('jump').appendChild(j);
    }
    at(tl.duration);
    if (tl.live) { openLive(); } else { moment(tl.duration); }
  }).catch(function () { openLive(); });
})();
"#;
