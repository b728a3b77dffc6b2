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
  .w { display: inline-block; width: 2ch; }
  .c { outline: 1px solid #ddd; }
</style>
</head>
<body>
<div id="bar"><span id="state">connecting</span><span id="title"></span><span id="size"></span></div>
<pre id="screen" aria-live="off"></pre>
<script src="/app.js"></script>
</body>
</html>
"#;

pub const SCRIPT: &str = r#"'use strict';
(function () {
  const screen = document.getElementById('screen');
  const state = document.getElementById('state');
  const title = document.getElementById('title');
  const size = document.getElementById('size');
  const base = [[0,0,0],[205,0,0],[0,205,0],[205,205,0],[0,0,238],[205,0,205],[0,205,205],[229,229,229],
                [127,127,127],[255,0,0],[0,255,0],[255,255,0],[92,92,255],[255,0,255],[0,255,255],[255,255,255]];
  function palette(i) {
    if (i < 16) { return 'rgb(' + base[i].join(',') + ')'; }
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
  const live = new EventSource(location.pathname.replace(/\/$/, '') + '/live');
  live.addEventListener('open', function () { state.textContent = 'live'; state.className = 'live'; });
  live.addEventListener('error', function () {
    if (state.className !== 'gone') { state.textContent = 'reconnecting'; state.className = ''; }
  });
  live.addEventListener('screen', function (e) { whole(JSON.parse(e.data)); });
  live.addEventListener('rows', function (e) {
    const rows = JSON.parse(e.data);
    for (const i in rows) {
      const old = screen.children[Number(i)];
      if (old) { screen.replaceChild(row(rows[i]), old); }
    }
  });
  live.addEventListener('end', function (e) {
    const why = JSON.parse(e.data).reason;
    live.close();
    state.textContent = 'ended: ' + why;
    state.className = 'gone';
  });
})();
"#;
