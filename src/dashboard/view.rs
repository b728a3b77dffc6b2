//! Draws the dashboard into a ratatui frame, at any size from 80x24 up: a header, the
//! session table (name, id, badge, clients, age, title or last screen line), the selected
//! session's screen below it, and a bottom line (keys, a prompt, or the last outcome).
//! With `no_color` nothing is coloured (reverse video marks the selection).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState};

use super::model::{Tone, badge, host_of, short_age, short_id};
use super::{Dashboard, Mode, Prompt, label};
use crate::text::safe;

const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move"),
    ("Enter", "attach to the session (its !> menu detaches)"),
    ("/", "filter by name, id or command (Esc clears)"),
    ("s", "send a line (Enter is added)"),
    ("m", "show a message to everyone attached"),
    ("x", "kill the session (asks first)"),
    ("n", "start a new session (asks for a command)"),
    ("r", "replay its recording"),
    ("f", "find text in its recording, replay from the last hit"),
    ("?", "this help"),
    ("q", "quit"),
];

pub fn draw(frame: &mut Frame, d: &Dashboard) {
    let area = frame.area();
    let style = |s: Style| if d.no_color { Style::default() } else { s };
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    let rows = d.model.visible();
    let busy = rows.iter().filter(|s| badge(s).tone == Tone::Busy).count();
    let title = format!(
        " {} · {} · {} session{}, {busy} busy",
        d.title,
        d.host,
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    frame.render_widget(
        Paragraph::new(title).style(style(
            Style::default()
                .fg(Color::Black)
                .bg(Color::Rgb(255, 170, 60))
                .add_modifier(Modifier::BOLD),
        )),
        head,
    );
    // The table gets what it needs (at most half), the preview the rest.
    let table_height = (rows.len() as u16 + 3).min((body.height / 2).max(4));
    let [list, preview] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(1)]).areas(body);
    draw_table(frame, d, list, &style);
    draw_preview(frame, d, preview);
    draw_foot(frame, d, foot, &style);
    if d.mode == Mode::Help {
        draw_help(frame, area);
    }
}

fn draw_table(frame: &mut Frame, d: &Dashboard, area: Rect, style: &dyn Fn(Style) -> Style) {
    let rows = d.model.visible();
    let now_ms = super::model::now_ms();
    let now = now_ms / 1000;
    // Sessions of several hosts: a HOST column first.
    let hosts = rows.iter().any(|s| s.id.contains('/'));
    let mut titles = vec!["NAME", "ID", "STATUS", "CL", "AGE", "TITLE / LAST LINE"];
    if hosts {
        titles.insert(0, "HOST");
    }
    let header = Row::new(titles).style(Style::default().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = rows
        .iter()
        .map(|s| {
            let b = d.model.badge(s, now_ms);
            let colour = match b.tone {
                Tone::Attention => Color::Magenta,
                Tone::Busy => Color::Green,
                Tone::Idle => Color::Gray,
                Tone::Exited => Color::Blue,
                Tone::Failed => Color::Red,
                Tone::Down | Tone::Locked => Color::Yellow,
            };
            let line = s
                .title
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| d.last_lines.get(&s.id).cloned())
                .unwrap_or_else(|| s.command.join(" "));
            let mut cells = vec![
                Cell::from(safe(s.name.as_deref().unwrap_or("-")).into_owned()),
                Cell::from(short_id(&s.id).to_string()),
                Cell::from(b.text).style(style(Style::default().fg(colour))),
                Cell::from(s.clients.to_string()),
                Cell::from(short_age(now.saturating_sub(s.created_unix))),
                Cell::from(safe(&line).into_owned()),
            ];
            if hosts {
                cells.insert(0, Cell::from(host_of(&s.id).to_string()));
            }
            Row::new(cells)
        })
        .collect();
    let empty = body.is_empty();
    let mut widths = vec![
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Min(10),
    ];
    if hosts {
        widths.insert(0, Constraint::Length(12));
    }
    let table = Table::new(body, widths)
        .header(header)
        .block(Block::default().borders(Borders::BOTTOM))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(d.model.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
    if empty {
        let msg = if d.model.filter.is_empty() {
            "no sessions: n starts one"
        } else {
            "no session matches the filter (/ then Esc clears it)"
        };
        let at = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(msg), at);
    }
}

fn draw_preview(frame: &mut Frame, d: &Dashboard, area: Rect) {
    let Some(s) = d.model.selected() else {
        return;
    };
    let [head, screen] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    frame.render_widget(
        Paragraph::new(format!(
            " {} · {} · {}x{} · {}",
            safe(&label(s)),
            safe(&s.command.join(" ")),
            s.cols,
            s.rows,
            s.join
        ))
        .style(Style::default().add_modifier(Modifier::BOLD)),
        head,
    );
    // The bottom of the screen (where the prompt usually is) when it does not fit.
    let lines: Vec<&str> = d.preview.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    let from = last.saturating_sub(screen.height as usize);
    let text: Vec<Line> = lines[from..last]
        .iter()
        .map(|l| Line::raw(safe(l).into_owned()))
        .collect();
    frame.render_widget(Paragraph::new(text), screen);
}

fn draw_foot(frame: &mut Frame, d: &Dashboard, area: Rect, style: &dyn Fn(Style) -> Style) {
    let prompt = |label: &str, text: &str| {
        Line::from(vec![
            Span::styled(
                format!("{label} "),
                style(Style::default().fg(Color::Rgb(255, 170, 60))),
            ),
            Span::raw(text.to_string()),
            Span::styled(" ", Style::default().add_modifier(Modifier::REVERSED)),
        ])
    };
    let line = match &d.mode {
        Mode::Filter => prompt("filter:", &d.model.filter),
        Mode::Prompt(Prompt::Send(id), t) => prompt(&format!("send to {id}:"), t),
        Mode::Prompt(Prompt::Message(id), t) => prompt(&format!("message to {id}:"), t),
        Mode::Prompt(Prompt::New, t) => prompt("new session, command (empty: shell):", t),
        Mode::Prompt(Prompt::Find(id), t) => prompt(&format!("find in {id}'s recording:"), t),
        Mode::ConfirmKill(id) => Line::from(Span::styled(
            format!("kill {id}? y/n"),
            style(Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)),
        )),
        Mode::Normal | Mode::Help => match &d.status {
            Some(s) => Line::raw(safe(s).into_owned()),
            None if !d.model.filter.is_empty() => Line::raw(format!(
                "filter: {}  ·  Enter attach  s send  x kill  n new  ? help  q quit",
                d.model.filter
            )),
            None => {
                Line::raw("Enter attach · / filter · s send · x kill · n new · ? help · q quit")
            }
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = 60.min(area.width);
    let height = (HELP.len() as u16 + 4).min(area.height);
    let at = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:>10}  "),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, at);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        at,
    );
}

#[cfg(test)]
mod tests {
    use super::super::model::tests::{event, info};
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn text(d: &Dashboard, cols: u16, rows: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(cols, rows)).unwrap();
        t.draw(|f| draw(f, d)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..rows)
            .map(|y| {
                (0..cols)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn dash() -> Dashboard {
        let mut d = Dashboard::new("this machine", true);
        let an_hour_ago = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 3600;
        let info = |id: &str, name: Option<&str>| hearth_rpc::SessionInfo {
            created_unix: an_hour_ago,
            ..info(id, name)
        };
        let mut agent = info("aaaa0001", Some("agent"));
        agent.title = Some("Claude Code".into());
        let mut done = info("bbbb0002", Some("build"));
        done.exit_code = Some(2);
        d.model
            .set_sessions(vec![agent, done, info("cccc0003", None)]);
        d.model
            .apply(&event("aaaa0001", hearth_rpc::EventKind::Busy));
        d.set_screen("cccc0003", "$ ls\nREADME.md\n$ ");
        d.set_screen(
            "aaaa0001",
            "> refactor the parser\n\nWorking... (esc to interrupt)\n",
        );
        d
    }

    /// A title, name, command or screen line with escape sequences or a bidi override is
    /// drawn escaped: nothing a program chose reaches the terminal as control.
    #[test]
    fn program_strings_are_drawn_escaped() {
        let mut d = dash();
        let mut evil = info("dddd0004", Some("evil"));
        evil.title = Some("\u{1b}]0;PWN\u{7}\u{202e}gnp".into());
        evil.command = vec!["sh".into(), "\u{1b}[2J".into()];
        d.model.set_sessions(vec![evil]);
        d.set_screen("dddd0004", "line \u{1b}[31m red \u{202e}x");
        let screen = text(&d, 100, 24);
        assert!(
            !screen.contains('\u{1b}') && !screen.contains('\u{202e}') && !screen.contains('\u{7}'),
            "{screen:?}"
        );
        assert!(screen.contains("\\e]0;PWN\\x07gnp"), "{screen}");
        assert!(screen.contains("sh \\e[2J"), "{screen}");
    }

    #[test]
    fn at_80x24_every_session_shows_with_its_badge_and_the_preview() {
        let d = dash();
        let screen = text(&d, 80, 24);
        let snapshot = concat!(
            " hearth top · this machine · 3 sessions, 1 busy\n",
            "NAME           ID       STATUS     CL  AGE  TITLE / LAST LINE\n",
            "agent          aaaa0001 busy       0   1h   Claude Code\n",
            "-              cccc0003 idle 3m    0   1h   $\n",
            "build          bbbb0002 exited 2   0   1h   claude\n",
        );
        assert_eq!(&screen[..snapshot.len()], snapshot);
        for needle in [
            "Claude Code",
            "build          bbbb0002 exited 2",
            "-              cccc0003 idle 3m",
            "$",
            "> refactor the parser",
            "Working... (esc to interrupt)",
            "agent (aaaa0001) · claude · 80x24 · ssh -p 2222 127.0.0.1",
            "Enter attach · / filter · s send · x kill · n new · ? help · q quit",
        ] {
            assert!(screen.contains(needle), "missing {needle:?}:\n{screen}");
        }
        assert_eq!(screen.lines().count(), 24);
        assert!(screen.lines().all(|l| l.chars().count() <= 80));
    }

    #[test]
    fn sessions_of_several_hosts_are_grouped_under_a_host_column() {
        let mut d = Dashboard::new("local, box", true);
        d.model.set_sessions(vec![
            info("box/bbbb0002", Some("api")),
            info("local/aaaa0001", Some("web")),
            info("box/cccc0003", Some("zeta")),
        ]);
        let screen = text(&d, 100, 24);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines[1].starts_with("HOST         NAME"), "{screen}");
        assert!(
            lines[2].starts_with("box          api            bbbb0002"),
            "{screen}"
        );
        assert!(lines[3].starts_with("box          zeta"), "{screen}");
        assert!(
            lines[4].starts_with("local        web            aaaa0001"),
            "{screen}"
        );
    }

    #[test]
    fn at_200x60_the_preview_gets_the_room_and_help_and_prompts_draw() {
        let mut d = dash();
        let screen = text(&d, 200, 60);
        assert!(screen.contains("Working... (esc to interrupt)"), "{screen}");
        d.key(super::super::Key::Char('?'));
        let help = text(&d, 200, 60);
        assert!(help.contains("keys (any key closes)") && help.contains("kill the session"));
        d.key(super::super::Key::Char('?'));
        d.key(super::super::Key::Char('s'));
        for c in "make".chars() {
            d.key(super::super::Key::Char(c));
        }
        assert!(text(&d, 80, 24).contains("send to aaaa0001: make"));
        d.key(super::super::Key::Esc);
        d.key(super::super::Key::Char('/'));
        d.key(super::super::Key::Char('z'));
        let filtered = text(&d, 80, 24);
        assert!(
            filtered.contains("no session matches the filter"),
            "{filtered}"
        );
        // Tiny terminals do not panic.
        text(&d, 10, 3);
        text(&d, 1, 1);
    }
}
