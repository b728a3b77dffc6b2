//! The `!>` pause menu: a per-client overlay. [`detector`] finds the trigger in a client's
//! input; [`Menu`] is the menu's state machine (keys in, [`Action`]s out); [`view`] draws it
//! with ratatui into bytes for that one client's channel.
//!
//! Pure: no I/O, no session access. The SSH adapter feeds keys, performs the actions and
//! sends the drawn bytes. Owner-only items (kick, lock, roles) and rewind slot in as more
//! [`Item`]s.

pub mod detector;
pub mod view;

/// A key press decoded from the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Enter,
    Esc,
    Backspace,
    Char(char),
}

/// Decode keys. An `ESC` that starts no known sequence is Esc.
pub fn parse_keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.peek() {
                Some('[') | Some('O') => {
                    chars.next();
                    // Skip parameters up to the final byte.
                    let mut fin = None;
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() || c == '~' {
                            fin = Some(c);
                            break;
                        }
                    }
                    match fin {
                        Some('A') => keys.push(Key::Up),
                        Some('B') => keys.push(Key::Down),
                        _ => {}
                    }
                }
                _ => keys.push(Key::Esc),
            },
            '\r' | '\n' => keys.push(Key::Enter),
            '\x7f' | '\x08' => keys.push(Key::Backspace),
            c if !c.is_control() => keys.push(Key::Char(c)),
            _ => {}
        }
    }
    keys
}

/// The menu's items, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Resume,
    Detach,
    Peers,
    ReadOnly,
    Message,
    Redraw,
}

pub const ITEMS: [Item; 6] = [
    Item::Resume,
    Item::Detach,
    Item::Peers,
    Item::ReadOnly,
    Item::Message,
    Item::Redraw,
];

impl Item {
    pub fn label(self, read_only: bool) -> String {
        match self {
            Item::Resume => "Resume".into(),
            Item::Detach => "Detach".into(),
            Item::Peers => "Peers".into(),
            Item::ReadOnly => format!("Read-only: {}", if read_only { "on" } else { "off" }),
            Item::Message => "Send message".into(),
            Item::Redraw => "Redraw".into(),
        }
    }
}

/// What the menu shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Main,
    Peers,
    /// Typing a message; the text so far.
    Message(String),
}

/// What the adapter must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Draw the menu again.
    Draw,
    /// Close the menu, repaint from the screen model, stream live again.
    Resume,
    Detach,
    ToggleReadOnly,
    /// Show this line to every other client; then draw.
    Send(String),
}

/// Longest message, in characters.
pub const MAX_MESSAGE: usize = 200;

#[derive(Debug, Clone)]
pub struct Menu {
    pub page: Page,
    pub selected: usize,
    /// A one-line status shown under the items (e.g. "message sent").
    pub status: Option<String>,
}

impl Default for Menu {
    fn default() -> Self {
        Menu {
            page: Page::Main,
            selected: 0,
            status: None,
        }
    }
}

impl Menu {
    pub fn key(&mut self, key: Key) -> Action {
        match &mut self.page {
            Page::Main => self.main_key(key),
            Page::Peers => match key {
                Key::Esc | Key::Enter | Key::Char('q') | Key::Backspace => {
                    self.page = Page::Main;
                    Action::Draw
                }
                _ => Action::Draw,
            },
            Page::Message(text) => match key {
                Key::Esc => {
                    self.page = Page::Main;
                    Action::Draw
                }
                Key::Enter => {
                    let text = std::mem::take(text).trim().to_string();
                    self.page = Page::Main;
                    if text.is_empty() {
                        Action::Draw
                    } else {
                        self.status = Some("message sent".into());
                        Action::Send(text)
                    }
                }
                Key::Backspace => {
                    text.pop();
                    Action::Draw
                }
                Key::Char(c) if text.chars().count() < MAX_MESSAGE => {
                    text.push(c);
                    Action::Draw
                }
                _ => Action::Draw,
            },
        }
    }

    fn main_key(&mut self, key: Key) -> Action {
        match key {
            Key::Up | Key::Char('k') => {
                self.selected = (self.selected + ITEMS.len() - 1) % ITEMS.len();
                Action::Draw
            }
            Key::Down | Key::Char('j') => {
                self.selected = (self.selected + 1) % ITEMS.len();
                Action::Draw
            }
            Key::Esc | Key::Char('q') => Action::Resume,
            Key::Enter => self.activate(ITEMS[self.selected]),
            Key::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                match ITEMS.get(i) {
                    Some(&item) => {
                        self.selected = i;
                        self.activate(item)
                    }
                    None => Action::Draw,
                }
            }
            _ => Action::Draw,
        }
    }

    fn activate(&mut self, item: Item) -> Action {
        self.status = None;
        match item {
            Item::Resume | Item::Redraw => Action::Resume,
            Item::Detach => Action::Detach,
            Item::Peers => {
                self.page = Page::Peers;
                Action::Draw
            }
            Item::ReadOnly => Action::ToggleReadOnly,
            Item::Message => {
                self.page = Page::Message(String::new());
                Action::Draw
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_arrows_in_both_cursor_modes_and_a_lone_escape() {
        assert_eq!(
            parse_keys(b"\x1b[A\x1bOBj\r\x1b\x7f2"),
            vec![
                Key::Up,
                Key::Down,
                Key::Char('j'),
                Key::Enter,
                Key::Esc,
                Key::Backspace,
                Key::Char('2')
            ]
        );
    }

    #[test]
    fn navigation_wraps_and_digits_activate() {
        let mut m = Menu::default();
        assert_eq!(m.key(Key::Up), Action::Draw);
        assert_eq!(ITEMS[m.selected], Item::Redraw);
        assert_eq!(m.key(Key::Down), Action::Draw);
        assert_eq!(m.selected, 0);
        assert_eq!(m.key(Key::Char('2')), Action::Detach);
        assert_eq!(m.key(Key::Char('4')), Action::ToggleReadOnly);
        assert_eq!(m.key(Key::Esc), Action::Resume);
        assert_eq!(m.key(Key::Char('q')), Action::Resume);
    }

    #[test]
    fn a_message_is_typed_edited_and_sent() {
        let mut m = Menu::default();
        m.key(Key::Char('5'));
        for c in "hix".chars() {
            m.key(Key::Char(c));
        }
        m.key(Key::Backspace);
        assert_eq!(m.page, Page::Message("hi".into()));
        assert_eq!(m.key(Key::Enter), Action::Send("hi".into()));
        assert_eq!(m.page, Page::Main);
        m.key(Key::Char('5'));
        assert_eq!(m.key(Key::Esc), Action::Draw);
        assert_eq!(m.page, Page::Main);
    }
}
