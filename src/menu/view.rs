//! Draws the menu with ratatui into bytes, at one client's size: a full-screen dimmed
//! background (styled, so every cell is emitted and nothing of the session shows through)
//! and a centred box. The caller sends the bytes to that client only, inside the
//! alternate screen.

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::{Terminal, TerminalOptions, Viewport};

use super::{Menu, Page, Pick};

/// One row of the Peers page.
#[derive(Debug, Clone)]
pub struct PeerRow {
    pub name: String,
    pub role: String,
    pub size: (u16, u16),
    pub idle_secs: u64,
    pub in_menu: bool,
    pub read_only: bool,
    pub me: bool,
}

/// What the menu needs to know about the session and this client.
#[derive(Debug, Clone)]
pub struct ViewModel {
    pub session: String,
    pub client: String,
    pub role: String,
    pub read_only: bool,
    pub locked: bool,
    pub peers: Vec<PeerRow>,
}

/// What a ratatui terminal writes, collected for one client's channel (the menu's frames
/// here, the lobby's in `ssh::lobby`).
#[derive(Clone, Default)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// What was written since the last take.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock())
    }
}

const BG: Color = Color::Rgb(24, 24, 32);
const BOX: Color = Color::Rgb(40, 44, 60);
const ACCENT: Color = Color::Rgb(255, 170, 60);

/// The bytes that draw `menu` on a `cols` x `rows` terminal (0 means unknown: 80x24).
pub fn render(menu: &Menu, ctx: &ViewModel, cols: u16, rows: u16) -> Vec<u8> {
    let cols = if cols == 0 { 80 } else { cols };
    let rows = if rows == 0 { 24 } else { rows };
    let sink = Sink::default();
    let area = Rect::new(0, 0, cols, rows);
    let mut out = b"\x1b[0m\x1b[H\x1b[2J".to_vec();
    let Ok(mut term) = Terminal::with_options(
        CrosstermBackend::new(sink.clone()),
        TerminalOptions {
            viewport: Viewport::Fixed(area),
        },
    ) else {
        return out;
    };
    let drawn = term.draw(|f| {
        let full = f.area();
        f.render_widget(Block::default().style(Style::default().bg(BG)), full);
        let lines = body(menu, ctx);
        let width = (lines.iter().map(Line::width).max().unwrap_or(20) as u16 + 4)
            .clamp(30.min(full.width), full.width);
        let height = (lines.len() as u16 + 2).min(full.height);
        let [_, mid, _] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(height),
            Constraint::Fill(1),
        ])
        .areas(full);
        let [_, boxed, _] = Layout::horizontal([
            Constraint::Fill(1),
            Constraint::Length(width),
            Constraint::Fill(1),
        ])
        .areas(mid);
        f.render_widget(Clear, boxed);
        let title = format!(" hearth · {} · {} ", ctx.session, ctx.client);
        let block = Block::default()
            .borders(Borders::ALL)
            .title(Span::styled(title, Style::default().fg(ACCENT)))
            .style(Style::default().bg(BOX).fg(Color::White));
        f.render_widget(Paragraph::new(lines).block(block), boxed);
    });
    if drawn.is_err() {
        return out;
    }
    drop(term);
    out.extend_from_slice(&sink.0.lock());
    out
}

fn body(menu: &Menu, ctx: &ViewModel) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    match &menu.page {
        Page::Main => main_page(&mut lines, menu, ctx),
        Page::Peers => peers_page(&mut lines, ctx),
        Page::Pick(why, at) => pick_page(&mut lines, ctx, *why, *at),
        // Drawn full-screen by the adapter from the screen model, not in the box.
        Page::Rewind(_) => {}
        Page::Message(text) => message_page(&mut lines, text),
    }
    lines
}

fn dim() -> Style {
    Style::default().fg(Color::Gray)
}

fn main_page(lines: &mut Vec<Line<'static>>, menu: &Menu, ctx: &ViewModel) {
    let dim = dim();
    let items = menu.items();
    for (i, item) in items.iter().enumerate() {
        let digit = super::pick_key(i).unwrap_or(' ');
        let text = format!(" {digit} {:<22}", item.label(ctx.read_only, ctx.locked));
        let style = if i == menu.selected {
            Style::default()
                .bg(ACCENT)
                .fg(Color::Black)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(text, style)));
    }
    lines.push(Line::from(""));
    if let Some(status) = &menu.status {
        lines.push(Line::from(Span::styled(
            status.clone(),
            Style::default().fg(ACCENT),
        )));
    }
    // Indented like the items above.
    lines.push(Line::from(Span::styled(
        format!(" you are {} ({})", ctx.client, ctx.role),
        dim,
    )));
    let last = super::pick_key(items.len().saturating_sub(1)).unwrap_or('1');
    lines.push(Line::from(Span::styled(
        format!(" ↑↓/jk move · Enter or 1-{last} select · Esc/q resume"),
        dim,
    )));
}

fn peers_page(lines: &mut Vec<Line<'static>>, ctx: &ViewModel) {
    let dim = dim();
    lines.push(Line::from(Span::styled(
        format!(
            "{:<16} {:<12} {:>9} {:>6}  state",
            "client", "role", "size", "idle"
        ),
        dim,
    )));
    for p in &ctx.peers {
        let mut state = Vec::new();
        if p.in_menu {
            state.push("in menu");
        }
        if p.read_only {
            state.push("read-only");
        }
        if p.me {
            state.push("you");
        }
        lines.push(Line::from(format!(
            "{:<16} {:<12} {:>9} {:>6}  {}",
            truncate(&p.name, 16),
            p.role,
            format!("{}x{}", p.size.0, p.size.1),
            idle(p.idle_secs),
            state.join(", ")
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Esc back", dim)));
}

fn pick_page(lines: &mut Vec<Line<'static>>, ctx: &ViewModel, why: Pick, at: usize) {
    let dim = dim();
    lines.push(Line::from(match why {
        Pick::Kick => "Disconnect which client?",
        Pick::Role => "Switch which client (viewer <-> collaborator)?",
    }));
    for (i, p) in ctx.peers.iter().enumerate() {
        let text = format!(
            " {:<16} {:<12}{}",
            truncate(&p.name, 16),
            p.role,
            if p.me { " (you)" } else { "" }
        );
        let style = if i == at {
            Style::default().bg(ACCENT).fg(Color::Black)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(text, style)));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Enter choose · Esc back", dim)));
}

fn message_page(lines: &mut Vec<Line<'static>>, text: &str) {
    let dim = dim();
    lines.push(Line::from("Message to everyone else:"));
    lines.push(Line::from(vec![
        Span::styled("> ", Style::default().fg(ACCENT)),
        Span::raw(text.to_string()),
        Span::styled("█", Style::default().fg(ACCENT)),
    ]));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Enter send · Esc cancel", dim)));
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn idle(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ViewModel {
        ViewModel {
            session: "1a2b3c4d".into(),
            client: "alice-1".into(),
            role: "owner".into(),
            read_only: false,
            locked: false,
            peers: vec![PeerRow {
                name: "bob-1".into(),
                role: "collaborator".into(),
                size: (80, 24),
                idle_secs: 75,
                in_menu: true,
                read_only: false,
                me: false,
            }],
        }
    }

    fn screen_of(bytes: &[u8], cols: u16, rows: u16) -> String {
        let mut p = vt100::Parser::new(rows, cols, 0);
        p.process(bytes);
        p.screen().contents()
    }

    #[test]
    fn the_menu_lists_its_items_at_the_clients_size() {
        let m = Menu::new(false, false);
        let text = screen_of(&render(&m, &ctx(), 60, 20), 60, 20);
        for item in [
            "1 Resume",
            "2 Detach",
            "3 Peers",
            "4 Read-only: off",
            "5 Send message",
            "6 Redraw",
        ] {
            assert!(text.contains(item), "{item} missing from\n{text}");
        }
        // Tiny and unknown sizes do not panic.
        let _ = render(&m, &ctx(), 5, 3);
        let _ = render(&m, &ctx(), 0, 0);
    }

    #[test]
    fn the_peers_page_shows_role_size_idle_and_menu_state() {
        let m = Menu {
            page: Page::Peers,
            ..Menu::new(false, false)
        };
        let text = screen_of(&render(&m, &ctx(), 80, 24), 80, 24);
        assert!(text.contains("bob-1"), "{text}");
        assert!(text.contains("collaborator") && text.contains("80x24"));
        assert!(text.contains("1m") && text.contains("in menu"), "{text}");
    }

    #[test]
    fn every_cell_is_covered() {
        let m = Menu::new(false, false);
        let bytes = render(&m, &ctx(), 80, 24);
        // At 80x24 the box leaves a margin the background must cover. Without the frame's leading clear-screen, every cell must still be drawn over:
        // the clear alone would hide a frame that leaves cells untouched.
        let clear = b"\x1b[2J";
        let at = bytes
            .windows(clear.len())
            .position(|w| w == clear)
            .expect("the frame clears the screen first");
        let mut frame = bytes[..at].to_vec();
        frame.extend_from_slice(&bytes[at + clear.len()..]);
        let mut p = vt100::Parser::new(24, 80, 0);
        for row in 1..=24 {
            p.process(format!("\x1b[{row};1H{}", "X".repeat(80)).as_bytes());
        }
        p.process(&frame);
        let left = p.screen().contents();
        assert!(!left.contains('X'), "cells not covered:\n{left}");
    }
}
