//! The `!>` pause menu: a per-client overlay. [`detector`] finds the trigger in a client's
//! input; [`Menu`] is the menu's state machine (keys in, [`Action`]s out); [`view`] draws it
//! with ratatui into bytes for that one client's channel.
//!
//! Pure: no I/O, no session access. The SSH adapter feeds keys, performs the actions and
//! sends the drawn bytes. [`MenuConfig`] and its validators (used by the config file and
//! `server --menu-key/--menu-window`) live here too.

pub mod detector;
pub mod view;

use std::time::Duration;

/// How a session's menu is opened; `None` for a session turns it off.
#[derive(Debug, Clone)]
pub struct MenuConfig {
    pub trigger: Vec<u8>,
    pub window: Duration,
}

impl Default for MenuConfig {
    fn default() -> Self {
        MenuConfig {
            trigger: b"!>".to_vec(),
            window: Duration::from_millis(250),
        }
    }
}

/// A trigger must be 1 to 8 printable characters.
pub fn check_trigger(key: &str) -> Result<(), String> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 8 || bytes.iter().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "'{key}': use 1 to 8 printable characters, e.g. '!>'"
        ));
    }
    Ok(())
}

/// The window between the trigger's bytes, in ms.
pub fn check_window(ms: u64) -> Result<(), String> {
    if (10..=5000).contains(&ms) {
        Ok(())
    } else {
        Err(format!("{ms} ms: use 10 to 5000"))
    }
}

/// A key press decoded from the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
    Char(char),
}

/// Decode keys. An `ESC` that starts no known sequence is Esc.
pub fn parse_keys(bytes: &[u8]) -> Vec<Key> {
    parse_keys_at(bytes)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// [`parse_keys`], each key with the offset just past its bytes (so what follows a key
/// that leaves the menu can go back to the program).
pub fn parse_keys_at(bytes: &[u8]) -> Vec<(Key, usize)> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        let key = match b {
            0x1b => match bytes.get(i) {
                Some(b'[') | Some(b'O') => {
                    i += 1;
                    // Parameters up to the final byte.
                    let start = i;
                    let mut fin = None;
                    while let Some(&c) = bytes.get(i) {
                        i += 1;
                        if c.is_ascii_alphabetic() || c == b'~' {
                            fin = Some(c);
                            break;
                        }
                    }
                    let params = &bytes[start..i - usize::from(fin.is_some())];
                    match (fin, params) {
                        (Some(b'A'), _) => Some(Key::Up),
                        (Some(b'B'), _) => Some(Key::Down),
                        (Some(b'H'), _) | (Some(b'~'), b"1" | b"7") => Some(Key::Home),
                        (Some(b'F'), _) | (Some(b'~'), b"4" | b"8") => Some(Key::End),
                        (Some(b'~'), b"5") => Some(Key::PageUp),
                        (Some(b'~'), b"6") => Some(Key::PageDown),
                        _ => None,
                    }
                }
                _ => Some(Key::Esc),
            },
            b'\r' | b'\n' => Some(Key::Enter),
            0x7f | 0x08 => Some(Key::Backspace),
            b if b.is_ascii_control() => None,
            b if b.is_ascii() => Some(Key::Char(char::from(b))),
            lead => {
                // One UTF-8 character; a bad byte is one U+FFFD.
                let width = match lead {
                    0xc0..=0xdf => 2,
                    0xe0..=0xef => 3,
                    0xf0..=0xf7 => 4,
                    _ => 1,
                };
                let end = (i - 1 + width).min(bytes.len());
                match std::str::from_utf8(&bytes[i - 1..end])
                    .ok()
                    .and_then(|s| s.chars().next())
                {
                    Some(c) => {
                        i = end;
                        (!c.is_control()).then_some(Key::Char(c))
                    }
                    None => Some(Key::Char(char::REPLACEMENT_CHARACTER)),
                }
            }
        };
        if let Some(key) = key {
            keys.push((key, i));
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
    /// Scroll back through the session's history.
    Rewind,
    /// Owner only: pick a client to disconnect.
    Kick,
    /// Owner only: refuse or accept new joins.
    Lock,
    /// Owner only: pick a client to switch between viewer and collaborator.
    Role,
    /// Back to the lobby's list of sessions (only for a client that came from the lobby).
    Sessions,
}

const EVERYONE: [Item; 6] = [
    Item::Resume,
    Item::Detach,
    Item::Peers,
    Item::ReadOnly,
    Item::Message,
    Item::Redraw,
];
const OWNER: [Item; 3] = [Item::Kick, Item::Lock, Item::Role];

/// The items a client sees: "Sessions..." second for a client that came from the lobby,
/// rewind where the session's policy allows it, owner powers for owners. Digits 1-9 and 0
/// pick the first ten.
pub fn items(owner: bool, rewind: bool, lobby: bool) -> Vec<Item> {
    let mut v = EVERYONE.to_vec();
    if lobby {
        v.insert(1, Item::Sessions);
    }
    if rewind {
        v.push(Item::Rewind);
    }
    if owner {
        v.extend_from_slice(&OWNER);
    }
    v
}

/// Keys that pick an item directly: 1-9, 0, then letters that are not menu keys (`j`, `k`
/// and `q` move and leave). An owner who came from the lobby has eleven items.
const PICK_KEYS: &[char] = &[
    '1', '2', '3', '4', '5', '6', '7', '8', '9', '0', 'a', 'b', 'c', 'd', 'e', 'f', 'g',
];

/// The key that picks item `i`, if it has one.
pub fn pick_key(i: usize) -> Option<char> {
    PICK_KEYS.get(i).copied()
}

/// The item `key` picks, if any.
fn picked_by(key: char) -> Option<usize> {
    PICK_KEYS.iter().position(|&k| k == key)
}

impl Item {
    pub fn label(self, read_only: bool, locked: bool) -> String {
        match self {
            Item::Resume => "Resume".into(),
            Item::Detach => "Detach".into(),
            Item::Peers => "Peers".into(),
            Item::ReadOnly => format!("Read-only: {}", if read_only { "on" } else { "off" }),
            Item::Message => "Send message".into(),
            Item::Redraw => "Redraw".into(),
            Item::Rewind => "Rewind".into(),
            Item::Kick => "Kick a client".into(),
            Item::Lock => if locked {
                "Unlock session"
            } else {
                "Lock session"
            }
            .into(),
            Item::Role => "Change a role".into(),
            Item::Sessions => "Sessions...".into(),
        }
    }
}

/// Why a client is being picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Kick,
    Role,
}

/// What the menu shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Main,
    Peers,
    /// Typing a message; the text so far.
    Message(String),
    /// Choosing a client (index into the peer list).
    Pick(Pick, usize),
    /// Looking at history, this many rows back (0 = the live screen's top).
    Rewind(usize),
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
    /// Owner: disconnect the client at this index of the peer list; then draw.
    Kick(usize),
    /// Owner: switch the client at this index between viewer and collaborator; then draw.
    ToggleRole(usize),
    /// Owner: lock or unlock the session; then draw.
    ToggleLock,
    /// Leave the session for the lobby's list of sessions.
    Lobby,
    /// Rewind: scroll to the newest row with this text more than `older_than` rows back
    /// (`None`: anywhere); then draw.
    Find {
        text: String,
        older_than: Option<usize>,
    },
}

/// Longest search typed in Rewind, in characters.
pub const MAX_SEARCH: usize = 100;

/// Longest message, in characters.
pub const MAX_MESSAGE: usize = 200;

#[derive(Debug, Clone)]
pub struct Menu {
    pub page: Page,
    pub selected: usize,
    /// Owners see the owner-only items.
    pub owner: bool,
    /// The session lets this client rewind.
    pub rewind: bool,
    /// The client came from the lobby (it may go back: "Sessions...").
    pub lobby: bool,
    /// A one-line status shown under the items (e.g. "message sent"), or in Rewind's
    /// status line ("not found").
    pub status: Option<String>,
    /// Rewind: the search being typed after `/`.
    pub search: Option<String>,
    /// Rewind: the last search (`n` finds the next older row with it).
    pub last_search: Option<String>,
}

impl Menu {
    pub fn new(owner: bool, rewind: bool) -> Menu {
        Menu {
            page: Page::Main,
            selected: 0,
            owner,
            rewind,
            lobby: false,
            status: None,
            search: None,
            last_search: None,
        }
    }

    /// The same menu for a client that came from the lobby.
    pub fn from_lobby(self) -> Menu {
        Menu {
            lobby: true,
            ..self
        }
    }

    pub fn items(&self) -> Vec<Item> {
        items(self.owner, self.rewind, self.lobby)
    }

    /// Handle a key; `peers` is the length of the peer list shown (for picking), `rows`
    /// the client's height (a page, when rewinding).
    pub fn key(&mut self, key: Key, peers: usize, rows: u16) -> Action {
        match &self.page {
            Page::Rewind(_) => self.rewind_key(key, rows),
            Page::Main => self.main_key(key),
            Page::Peers => match key {
                Key::Esc | Key::Enter | Key::Char('q') | Key::Backspace => {
                    self.page = Page::Main;
                    Action::Draw
                }
                _ => Action::Draw,
            },
            Page::Pick(..) => self.pick_key(key, peers),
            Page::Message(_) => self.message_key(key),
        }
    }

    /// A key while rewinding: a search being typed takes it, else it moves through the
    /// history (a page is the client's height less the status line).
    fn rewind_key(&mut self, key: Key, rows: u16) -> Action {
        self.status = None;
        if self.search.is_some() {
            return self.search_key(key);
        }
        let Page::Rewind(back) = &mut self.page else {
            return Action::Draw;
        };
        let page = usize::from(rows.max(2) - 1);
        match key {
            Key::Char('/') => self.search = Some(String::new()),
            Key::Char('n') => {
                if let Some(text) = self.last_search.clone() {
                    return Action::Find {
                        text,
                        older_than: Some(*back),
                    };
                }
            }
            Key::Up | Key::Char('k') => *back += 1,
            Key::Down | Key::Char('j') => *back = back.saturating_sub(1),
            Key::PageUp | Key::Char('b') => *back += page,
            Key::PageDown | Key::Char(' ') => *back = back.saturating_sub(page),
            Key::Home | Key::Char('g') => *back = usize::MAX / 2,
            Key::End | Key::Char('G') => *back = 0,
            // Esc goes straight back to live.
            Key::Esc | Key::Char('q') => return Action::Resume,
            _ => {}
        }
        Action::Draw
    }

    /// A key while a search is typed after `/` in Rewind.
    fn search_key(&mut self, key: Key) -> Action {
        let Some(typed) = self.search.as_mut() else {
            return Action::Draw;
        };
        match key {
            Key::Char(c) if typed.chars().count() < MAX_SEARCH => typed.push(c),
            Key::Backspace => {
                typed.pop();
            }
            Key::Esc => self.search = None,
            Key::Enter => {
                let text = self.search.take().unwrap_or_default();
                if !text.is_empty() {
                    self.last_search = Some(text.clone());
                    return Action::Find {
                        text,
                        older_than: None,
                    };
                }
            }
            _ => {}
        }
        Action::Draw
    }

    /// A key while picking a peer (to kick, or to switch its role).
    fn pick_key(&mut self, key: Key, peers: usize) -> Action {
        let Page::Pick(why, at) = &mut self.page else {
            return Action::Draw;
        };
        let n = peers.max(1);
        match key {
            Key::Up | Key::Char('k') => {
                *at = (*at + n - 1) % n;
                Action::Draw
            }
            Key::Down | Key::Char('j') => {
                *at = (*at + 1) % n;
                Action::Draw
            }
            Key::Enter if peers > 0 => {
                let (why, at) = (*why, *at);
                self.page = Page::Main;
                match why {
                    Pick::Kick => Action::Kick(at),
                    Pick::Role => Action::ToggleRole(at),
                }
            }
            Key::Esc | Key::Char('q') | Key::Backspace => {
                self.page = Page::Main;
                Action::Draw
            }
            _ => Action::Draw,
        }
    }

    /// A key while a message to the others is typed.
    fn message_key(&mut self, key: Key) -> Action {
        let Page::Message(text) = &mut self.page else {
            return Action::Draw;
        };
        match key {
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
        }
    }

    fn main_key(&mut self, key: Key) -> Action {
        let items = self.items();
        let n = items.len();
        match key {
            Key::Up | Key::Char('k') => {
                self.selected = (self.selected + n - 1) % n;
                Action::Draw
            }
            Key::Down | Key::Char('j') => {
                self.selected = (self.selected + 1) % n;
                Action::Draw
            }
            Key::Esc | Key::Char('q') => Action::Resume,
            Key::Enter => self.activate(items[self.selected.min(n - 1)]),
            Key::Char(c) if picked_by(c).is_some() => {
                let i = picked_by(c).unwrap_or(0);
                match items.get(i) {
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
            Item::Sessions => Action::Lobby,
            Item::Peers => {
                self.page = Page::Peers;
                Action::Draw
            }
            Item::ReadOnly => Action::ToggleReadOnly,
            Item::Message => {
                self.page = Page::Message(String::new());
                Action::Draw
            }
            Item::Kick => {
                self.page = Page::Pick(Pick::Kick, 0);
                Action::Draw
            }
            Item::Role => {
                self.page = Page::Pick(Pick::Role, 0);
                Action::Draw
            }
            Item::Lock => Action::ToggleLock,
            Item::Rewind => {
                self.page = Page::Rewind(0);
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
    fn keys_carry_the_offset_past_their_bytes() {
        let bytes = b"\x1b[5~\xc3\xa9\x03q\xffz";
        let keys = parse_keys_at(bytes);
        let ends: Vec<usize> = keys.iter().map(|(_, end)| *end).collect();
        assert_eq!(
            keys.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            vec![
                Key::PageUp,
                Key::Char('é'),
                Key::Char('q'),
                Key::Char('\u{fffd}'),
                Key::Char('z')
            ]
        );
        // The Ctrl-C makes no key; `q` ends after it.
        assert_eq!(ends, vec![4, 6, 8, 9, 10]);
    }

    #[test]
    fn navigation_wraps_and_digits_activate() {
        let mut m = Menu::new(false, false);
        assert_eq!(m.key(Key::Up, 0, 24), Action::Draw);
        assert_eq!(m.items()[m.selected], Item::Redraw);
        assert_eq!(m.key(Key::Down, 0, 24), Action::Draw);
        assert_eq!(m.selected, 0);
        assert_eq!(m.key(Key::Char('2'), 0, 24), Action::Detach);
        assert_eq!(m.key(Key::Char('4'), 0, 24), Action::ToggleReadOnly);
        assert_eq!(
            m.key(Key::Char('7'), 0, 24),
            Action::Draw,
            "owner item for a non-owner"
        );
        assert_eq!(m.key(Key::Esc, 0, 24), Action::Resume);
        assert_eq!(m.key(Key::Char('q'), 0, 24), Action::Resume);
    }

    /// An owner from the lobby has eleven items: every one has a key (the eleventh had
    /// none), and the keys never clash with moving or leaving.
    #[test]
    fn every_item_has_a_key_even_the_eleventh() {
        let mut m = Menu::new(true, true).from_lobby();
        let items = m.items();
        assert_eq!(items.len(), 11);
        assert_eq!(items[10], Item::Role);
        assert_eq!(pick_key(10), Some('a'));
        m.key(Key::Char('a'), 0, 24);
        assert_eq!(m.selected, 10);
        assert!(matches!(m.page, Page::Pick(Pick::Role, _)), "{:?}", m.page);
        for k in ['j', 'k', 'q'] {
            assert!(!PICK_KEYS.contains(&k));
        }
    }

    #[test]
    fn a_message_is_typed_edited_and_sent() {
        let mut m = Menu::new(false, false);
        m.key(Key::Char('5'), 0, 24);
        for c in "hix".chars() {
            m.key(Key::Char(c), 0, 24);
        }
        m.key(Key::Backspace, 0, 24);
        assert_eq!(m.page, Page::Message("hi".into()));
        assert_eq!(m.key(Key::Enter, 0, 24), Action::Send("hi".into()));
        assert_eq!(m.page, Page::Main);
        m.key(Key::Char('5'), 0, 24);
        assert_eq!(m.key(Key::Esc, 0, 24), Action::Draw);
        assert_eq!(m.page, Page::Main);
    }

    #[test]
    fn rewind_scrolls_by_line_and_page_and_esc_is_live() {
        let mut m = Menu::new(false, true);
        assert_eq!(m.key(Key::Char('7'), 1, 11), Action::Draw);
        assert_eq!(m.page, Page::Rewind(0));
        m.key(Key::Up, 1, 11);
        m.key(Key::PageUp, 1, 11);
        assert_eq!(m.page, Page::Rewind(11));
        m.key(Key::Down, 1, 11);
        m.key(Key::End, 1, 11);
        assert_eq!(m.page, Page::Rewind(0));
        assert_eq!(m.key(Key::Esc, 1, 11), Action::Resume);
        assert_eq!(
            parse_keys(b"\x1b[5~\x1b[6~\x1b[H\x1b[4~"),
            vec![Key::PageUp, Key::PageDown, Key::Home, Key::End]
        );
    }

    #[test]
    fn rewind_finds_typed_text_and_n_goes_older() {
        let mut m = Menu::new(false, true);
        m.key(Key::Char('7'), 1, 11);
        assert_eq!(
            m.key(Key::Char('n'), 1, 11),
            Action::Draw,
            "nothing searched yet"
        );
        m.key(Key::Char('/'), 1, 11);
        for c in "errx".chars() {
            m.key(Key::Char(c), 1, 11);
        }
        m.key(Key::Backspace, 1, 11);
        assert_eq!(m.search.as_deref(), Some("err"));
        // Keys while typing are text, not scrolling.
        m.key(Key::Char('k'), 1, 11);
        assert_eq!(m.page, Page::Rewind(0));
        assert_eq!(
            m.key(Key::Enter, 1, 11),
            Action::Find {
                text: "errk".into(),
                older_than: None
            }
        );
        assert_eq!(m.search, None);
        m.page = Page::Rewind(40);
        assert_eq!(
            m.key(Key::Char('n'), 1, 11),
            Action::Find {
                text: "errk".into(),
                older_than: Some(40)
            }
        );
        // Esc leaves the search, then Rewind.
        m.key(Key::Char('/'), 1, 11);
        assert_eq!(m.key(Key::Esc, 1, 11), Action::Draw);
        assert_eq!(m.key(Key::Esc, 1, 11), Action::Resume);
        // Bounded.
        m.page = Page::Rewind(0);
        m.key(Key::Char('/'), 1, 11);
        for _ in 0..500 {
            m.key(Key::Char('x'), 1, 11);
        }
        assert_eq!(m.search.as_ref().map(|s| s.len()), Some(MAX_SEARCH));
    }

    #[test]
    fn owners_pick_a_client_to_kick_or_change() {
        let mut m = Menu::new(true, true);
        assert_eq!(m.items().len(), 10);
        assert_eq!(m.key(Key::Char('9'), 3, 24), Action::ToggleLock);
        m.key(Key::Char('8'), 3, 24);
        assert_eq!(m.page, Page::Pick(Pick::Kick, 0));
        m.key(Key::Up, 3, 24);
        assert_eq!(m.key(Key::Enter, 3, 24), Action::Kick(2));
        m.key(Key::Char('0'), 3, 24);
        m.key(Key::Char('j'), 3, 24);
        assert_eq!(m.key(Key::Enter, 3, 24), Action::ToggleRole(1));
        m.key(Key::Char('0'), 0, 24);
        assert_eq!(m.key(Key::Enter, 0, 24), Action::Draw, "nobody to pick");
    }

    #[test]
    fn a_client_from_the_lobby_may_go_back_to_it() {
        assert!(!Menu::new(true, true).items().contains(&Item::Sessions));
        let mut m = Menu::new(true, true).from_lobby();
        assert_eq!(m.items()[1], Item::Sessions);
        assert_eq!(m.items()[1].label(false, false), "Sessions...");
        assert_eq!(m.key(Key::Char('2'), 0, 24), Action::Lobby);
        assert_eq!(m.key(Key::Char('3'), 0, 24), Action::Detach);
    }
}
