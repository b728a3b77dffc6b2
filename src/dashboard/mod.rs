//! The dashboard: every session at a glance, with a live preview of the selected one's
//! screen, and one key to act on it. One implementation, fed by a state model
//! ([`model::Model`], kept current by the event stream) and drawn by [`view::draw`] into any
//! ratatui backend; `hearth top` (`cli/top.rs`) is the terminal adapter that does the I/O.
//!
//! This module is pure: keys in ([`Key`], the menu's, from any input adapter), [`Action`]s out, a
//! frame drawn. It must not call the daemon, spawn anything or touch the terminal.

pub mod live;
pub mod model;
pub mod view;

use std::collections::HashMap;

pub use crate::menu::Key;
use hearth_rpc::SessionInfo;
use model::Model;

/// Ctrl-C (as `menu::parse_keys` decodes it from a client's bytes): quits from anywhere.
pub const INTERRUPT: Key = Key::Char('\u{3}');

/// What the adapter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand the terminal to this session (and come back when it ends).
    Attach(Box<SessionInfo>),
    Send {
        id: String,
        text: String,
    },
    Kill(String),
    /// Start a session running this command line (`sh -c`), or the shell when empty.
    New(String),
    /// Play its recording; with `find`, from the last line with that text.
    Replay {
        id: String,
        find: Option<String>,
    },
    Message {
        id: String,
        text: String,
    },
    /// The selection changed: show that session's screen.
    Preview(String),
    Quit,
}

/// What the bottom line is asking for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Send(String),
    Message(String),
    /// `f`: text to find in its recording, to replay from there.
    Find(String),
    New,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    /// Typing the filter (`/`).
    Filter,
    /// Typing a line for a prompt.
    Prompt(Prompt, String),
    /// `k`: kill this session? (y/n)
    ConfirmKill(String),
    Help,
}

/// Longest line a prompt takes (a stranger on the lobby must not grow it without bound).
pub const MAX_INPUT: usize = 4096;

#[derive(Debug, Default)]
pub struct Dashboard {
    pub model: Model,
    pub mode: Mode,
    /// The selected session's screen, as text.
    pub preview: String,
    /// Last non-empty screen line per session id (shown when it set no title).
    pub last_lines: HashMap<String, String>,
    /// A one-line message: the outcome of the last action, or an error.
    pub status: Option<String>,
    /// Where the sessions are ("this machine", or a host name), for the header.
    pub host: String,
    /// What the header calls this view ("hearth top", "hearth lobby").
    pub title: &'static str,
    /// Draw without colours (`NO_COLOR`).
    pub no_color: bool,
}

impl Dashboard {
    pub fn new(host: impl Into<String>, no_color: bool) -> Dashboard {
        Dashboard {
            host: host.into(),
            title: "hearth top",
            no_color,
            ..Dashboard::default()
        }
    }

    /// Remember a session's screen: its last non-empty line, and the preview if selected.
    pub fn set_screen(&mut self, id: &str, text: &str) {
        if let Some(line) = text
            .lines()
            .rev()
            .map(str::trim_end)
            .find(|l| !l.trim().is_empty())
        {
            self.last_lines
                .insert(id.to_string(), line.trim().chars().take(200).collect());
        }
        if self.model.selected().is_some_and(|s| s.id == id) {
            self.preview = text.to_string();
        }
    }

    fn selected_id(&self) -> Option<String> {
        self.model.selected().map(|s| s.id.clone())
    }

    /// Move and report the new selection.
    fn step(&mut self, delta: isize) -> Option<Action> {
        let before = self.selected_id();
        self.model.step(delta);
        let after = self.selected_id();
        (after != before)
            .then_some(after.map(Action::Preview))
            .flatten()
    }

    pub fn key(&mut self, key: Key) -> Option<Action> {
        if key == INTERRUPT {
            return Some(Action::Quit);
        }
        match std::mem::take(&mut self.mode) {
            Mode::Normal => self.normal(key),
            Mode::Help => None,
            Mode::Filter => {
                let before = self.selected_id();
                let mut filter = self.model.filter.clone();
                match key {
                    Key::Enter => return None,
                    Key::Esc => filter.clear(),
                    Key::Backspace => {
                        filter.pop();
                    }
                    Key::Char(c) if !c.is_control() && filter.len() < 200 => filter.push(c),
                    _ => {}
                }
                let keep = key != Key::Esc;
                self.model.set_filter(filter);
                if keep {
                    self.mode = Mode::Filter;
                }
                let after = self.selected_id();
                (after != before)
                    .then_some(after.map(Action::Preview))
                    .flatten()
            }
            Mode::ConfirmKill(id) => match key {
                Key::Char('y') | Key::Char('Y') => Some(Action::Kill(id)),
                _ => {
                    self.status = Some("not killed".into());
                    None
                }
            },
            Mode::Prompt(prompt, mut text) => match key {
                Key::Esc => None,
                Key::Enter => match prompt {
                    Prompt::Send(id) => Some(Action::Send { id, text }),
                    Prompt::Message(id) if text.trim().is_empty() => {
                        self.status = Some(format!("no message sent to {id}"));
                        None
                    }
                    Prompt::Message(id) => Some(Action::Message { id, text }),
                    Prompt::Find(id) if text.trim().is_empty() => {
                        self.status = Some(format!("nothing to find in {id}"));
                        None
                    }
                    Prompt::Find(id) => Some(Action::Replay {
                        id,
                        find: Some(text),
                    }),
                    Prompt::New => Some(Action::New(text)),
                },
                Key::Backspace => {
                    text.pop();
                    self.mode = Mode::Prompt(prompt, text);
                    None
                }
                Key::Char(c) if !c.is_control() && text.len() < MAX_INPUT => {
                    text.push(c);
                    self.mode = Mode::Prompt(prompt, text);
                    None
                }
                _ => {
                    self.mode = Mode::Prompt(prompt, text);
                    None
                }
            },
        }
    }

    fn normal(&mut self, key: Key) -> Option<Action> {
        self.status = None;
        let selected = self.model.selected().cloned();
        match key {
            Key::Up | Key::Char('k') => self.step(-1),
            Key::Char('j') | Key::Down => self.step(1),
            Key::PageUp => self.step(-10),
            Key::PageDown => self.step(10),
            Key::Home | Key::Char('g') => self.step(-10_000),
            Key::End | Key::Char('G') => self.step(10_000),
            Key::Char('q') | Key::Esc => Some(Action::Quit),
            Key::Char('?') => {
                self.mode = Mode::Help;
                None
            }
            Key::Char('/') => {
                self.mode = Mode::Filter;
                None
            }
            Key::Char('n') => {
                self.mode = Mode::Prompt(Prompt::New, String::new());
                None
            }
            _ => {
                let Some(s) = selected else {
                    self.status = Some("no session selected (n starts one)".into());
                    return None;
                };
                match key {
                    Key::Enter if s.exit_code.is_some() => {
                        self.status =
                            Some(format!("{} has exited; r replays its recording", label(&s)));
                        None
                    }
                    Key::Enter => Some(Action::Attach(Box::new(s))),
                    Key::Char('s') => {
                        self.mode = Mode::Prompt(Prompt::Send(s.id), String::new());
                        None
                    }
                    Key::Char('m') => {
                        self.mode = Mode::Prompt(Prompt::Message(s.id), String::new());
                        None
                    }
                    Key::Char('x') | Key::Char('K') => {
                        self.mode = Mode::ConfirmKill(s.id);
                        None
                    }
                    Key::Char('r') => Some(Action::Replay {
                        id: s.id,
                        find: None,
                    }),
                    Key::Char('f') => {
                        self.mode = Mode::Prompt(Prompt::Find(s.id), String::new());
                        None
                    }
                    _ => None,
                }
            }
        }
    }
}

/// `name (id)` or the id.
pub fn label(s: &SessionInfo) -> String {
    match &s.name {
        Some(n) => format!("{n} ({})", s.id),
        None => s.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::model::tests::info;
    use super::*;

    fn dash() -> Dashboard {
        let mut d = Dashboard::new("here", false);
        d.model.set_sessions(vec![
            info("aaaa0001", Some("api")),
            info("bbbb0002", Some("web")),
        ]);
        d
    }

    fn typed(d: &mut Dashboard, text: &str) {
        for c in text.chars() {
            assert_eq!(d.key(Key::Char(c)), None);
        }
    }

    #[test]
    fn keys_move_filter_and_act_on_the_selection() {
        let mut d = dash();
        assert_eq!(
            d.key(Key::Char('j')),
            Some(Action::Preview("bbbb0002".into()))
        );
        assert_eq!(d.key(Key::Down), None, "already last");
        assert_eq!(d.key(Key::Up), Some(Action::Preview("aaaa0001".into())));
        match d.key(Key::Enter) {
            Some(Action::Attach(s)) => assert_eq!(s.id, "aaaa0001"),
            other => panic!("{other:?}"),
        }
        d.key(Key::Char('s'));
        typed(&mut d, "make test");
        assert_eq!(
            d.key(Key::Enter),
            Some(Action::Send {
                id: "aaaa0001".into(),
                text: "make test".into()
            })
        );
        assert_eq!(d.mode, Mode::Normal);
        // f: text to find, then a replay from its last hit.
        d.key(Key::Char('f'));
        assert_eq!(d.key(Key::Enter), None, "nothing to find");
        d.key(Key::Char('f'));
        typed(&mut d, "error");
        assert_eq!(
            d.key(Key::Enter),
            Some(Action::Replay {
                id: "aaaa0001".into(),
                find: Some("error".into())
            })
        );
        // Kill asks first; anything but y keeps the session.
        d.key(Key::Char('x'));
        assert_eq!(d.mode, Mode::ConfirmKill("aaaa0001".into()));
        assert_eq!(d.key(Key::Char('n')), None);
        d.key(Key::Char('x'));
        assert_eq!(d.key(Key::Char('y')), Some(Action::Kill("aaaa0001".into())));
        d.key(Key::Char('/'));
        assert_eq!(
            d.key(Key::Char('w')),
            Some(Action::Preview("bbbb0002".into()))
        );
        assert_eq!(d.model.visible().len(), 1);
        d.key(Key::Enter);
        assert_eq!(d.mode, Mode::Normal, "Enter keeps the filter and leaves it");
        assert_eq!(d.model.visible().len(), 1);
        d.key(Key::Char('/'));
        d.key(Key::Esc);
        assert_eq!(d.model.visible().len(), 2, "Esc clears it");
        d.key(Key::Char('n'));
        typed(&mut d, "claude");
        assert_eq!(d.key(Key::Enter), Some(Action::New("claude".into())));
        d.key(Key::Char('m'));
        assert_eq!(d.key(Key::Enter), None, "an empty message is not sent");
        assert_eq!(
            d.key(Key::Char('r')),
            Some(Action::Replay {
                id: "bbbb0002".into(),
                find: None
            })
        );
        d.key(Key::Char('?'));
        assert_eq!(d.mode, Mode::Help);
        assert_eq!(d.key(Key::Char('q')), None, "any key closes the help");
        assert_eq!(d.key(Key::Char('q')), Some(Action::Quit));
        assert_eq!(d.key(INTERRUPT), Some(Action::Quit));
    }

    #[test]
    fn prompts_are_bounded_and_exited_sessions_are_not_attached() {
        let mut d = dash();
        d.key(Key::Char('s'));
        for _ in 0..MAX_INPUT + 100 {
            d.key(Key::Char('x'));
        }
        match &d.mode {
            Mode::Prompt(_, text) => assert_eq!(text.len(), MAX_INPUT),
            m => panic!("{m:?}"),
        }
        d.key(Key::Esc);
        let mut done = info("aaaa0001", Some("api"));
        done.exit_code = Some(0);
        d.model.set_sessions(vec![done]);
        assert_eq!(d.key(Key::Enter), None);
        assert!(d.status.as_deref().unwrap().contains("has exited"));
    }

    #[test]
    fn the_screen_gives_the_last_line_and_the_preview() {
        let mut d = dash();
        d.set_screen("aaaa0001", "$ make\nok   \n\n   \n");
        assert_eq!(d.last_lines["aaaa0001"], "ok");
        assert!(d.preview.contains("$ make"), "selected: previewed");
        d.set_screen("bbbb0002", "other");
        assert!(!d.preview.contains("other"), "not selected: not previewed");
    }
}
