//! Terminal queries in the output stream, answered once, by the session itself.
//!
//! A program that asks "where is the cursor?" (CPR, `ESC[6n`), "are you OK?" (DSR,
//! `ESC[5n`) or "what are you?" (DA1 `ESC[c`, DA2 `ESC[>c`) would get one reply per
//! attached terminal, and none at all while nobody is attached. So these queries are cut
//! out of the stream before it reaches the log, and the session answers from its screen
//! model (`adr/0002-terminal-queries.md`). Everything else passes through unchanged, in
//! order. A query split across reads is recognised; a CSI sequence is held back only until
//! its final byte (at most [`MAX_CSI`] bytes). Every read passes here, so plain text, whole
//! sequences and long OSC strings within a read are handled in one go; only a sequence cut
//! by a read's end goes byte by byte (a property test holds the two to the same result).
//! Pure: no I/O.

/// A query the session answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// `ESC[c` / `ESC[0c`: primary device attributes.
    PrimaryAttributes,
    /// `ESC[>c` / `ESC[>0c`: secondary device attributes.
    SecondaryAttributes,
    /// `ESC[5n`: device status.
    Status,
    /// `ESC[6n`: cursor position.
    CursorPosition,
    /// `ESC[?6n`: extended cursor position (DECXCPR).
    ExtendedCursorPosition,
    /// `ESC[>q` / `ESC[>0q`: terminal name and version (XTVERSION).
    Version,
    /// `ESC[?u`: kitty keyboard protocol flags. Not supported, so no reply (as any terminal
    /// without it): otherwise each attached terminal that supports it would answer, and the
    /// program would switch keyboard encodings that only some clients speak.
    KeyboardFlags,
}

impl Query {
    /// The reply a VT220-class terminal (xterm-compatible) gives; `cursor` is the 0-based
    /// (row, col) at the moment of the query.
    pub fn reply(self, cursor: (u16, u16)) -> Vec<u8> {
        let (row, col) = (cursor.0 as u32 + 1, cursor.1 as u32 + 1);
        match self {
            // VT220 with ANSI colour; what tmux answers.
            Query::PrimaryAttributes => b"\x1b[?62;22c".to_vec(),
            Query::SecondaryAttributes => b"\x1b[>1;10;0c".to_vec(),
            Query::Status => b"\x1b[0n".to_vec(),
            Query::CursorPosition => format!("\x1b[{row};{col}R").into_bytes(),
            Query::ExtendedCursorPosition => format!("\x1b[?{row};{col};1R").into_bytes(),
            Query::Version => {
                format!("\x1bP>|hearth({})\x1b\\", env!("CARGO_PKG_VERSION")).into_bytes()
            }
            Query::KeyboardFlags => Vec::new(),
        }
    }
}

/// A piece of filtered output.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Output(bytes::Bytes),
    Query(Query),
    /// A query only a real terminal can answer (OSC 10/11/12: colours): sent to one client,
    /// whose terminal's answer goes to the program, instead of to everyone.
    Ask(Vec<u8>),
}

/// Longest OSC string held back to see whether it is a colour query.
pub const MAX_OSC: usize = 64;

/// Longest CSI sequence held back while waiting for its final byte.
pub const MAX_CSI: usize = 64;

#[derive(Debug, Default)]
enum State {
    #[default]
    Ground,
    Escape,
    /// Inside `ESC [`, with the bytes after `[` so far.
    Csi(Vec<u8>),
    /// Inside `ESC ]`, with the bytes after `]` so far (held back while short).
    Osc(Vec<u8>),
    /// Inside `ESC ]` ... with `ESC` just seen (maybe the `ESC \` terminator).
    OscEsc(Vec<u8>),
    /// Inside a long OSC string, passed through until its terminator.
    OscPass,
    OscPassEsc,
}

/// Streaming filter; feed it reads in order.
#[derive(Debug, Default)]
pub struct QueryFilter {
    state: State,
}

impl QueryFilter {
    pub fn feed(&mut self, input: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut out: Vec<u8> = Vec::with_capacity(input.len());
        let mut i = 0;
        while i < input.len() {
            // Fast paths: plain text up to the next ESC, or a long OSC string passed through
            // up to its possible end, in one go; then, in plain text, a whole CSI or short
            // OSC sequence within this read in one go. A sequence cut by the end of the
            // read, or anything unusual, goes byte by byte through `step`.
            let stop = match self.state {
                State::Ground => Some(memchr::memchr(0x1b, &input[i..])),
                State::OscPass => Some(memchr::memchr2(0x07, 0x1b, &input[i..])),
                _ => None,
            };
            if let Some(stop) = stop {
                let run = stop.unwrap_or(input.len() - i);
                out.extend_from_slice(&input[i..i + run]);
                i += run;
                if i == input.len() {
                    break;
                }
                if matches!(self.state, State::Ground)
                    && let Some(len) = whole_sequence(&input[i..], &mut out, &mut pieces)
                {
                    i += len;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.step(b, &mut out, &mut pieces);
        }
        if !out.is_empty() {
            pieces.push(Piece::Output(out.into()));
        }
        pieces
    }

    /// One byte outside the plain-text fast path.
    #[inline]
    fn step(&mut self, b: u8, out: &mut Vec<u8>, pieces: &mut Vec<Piece>) {
        match &mut self.state {
            State::Ground => {
                if b == 0x1b {
                    self.state = State::Escape;
                } else {
                    out.push(b);
                }
            }
            State::Escape => {
                if b == b'[' {
                    self.state = State::Csi(Vec::new());
                } else if b == b']' {
                    self.state = State::Osc(Vec::new());
                } else if b == 0x1b {
                    out.push(0x1b);
                } else {
                    out.extend_from_slice(&[0x1b, b]);
                    self.state = State::Ground;
                }
            }
            State::Osc(_) | State::OscEsc(_) | State::OscPass | State::OscPassEsc => {
                self.step_osc(b, out, pieces)
            }
            State::Csi(params) => {
                if (0x40..=0x7e).contains(&b) {
                    if let Some(q) = classify(params, b) {
                        cut(pieces, out, Piece::Query(q));
                    } else {
                        out.extend_from_slice(b"\x1b[");
                        out.extend_from_slice(params);
                        out.push(b);
                    }
                    self.state = State::Ground;
                } else if params.len() >= MAX_CSI || !(0x20..=0x3f).contains(&b) {
                    // Not a well-formed CSI (or absurdly long): pass it through as is.
                    out.extend_from_slice(b"\x1b[");
                    out.extend_from_slice(params);
                    self.state = State::Ground;
                    if b == 0x1b {
                        self.state = State::Escape;
                    } else {
                        out.push(b);
                    }
                } else {
                    params.push(b);
                }
            }
        }
    }

    /// One byte of an OSC string (or of one passed through because it is too long).
    fn step_osc(&mut self, b: u8, out: &mut Vec<u8>, pieces: &mut Vec<Piece>) {
        match &mut self.state {
            State::Osc(body) => match b {
                0x07 => {
                    let body = std::mem::take(body);
                    self.state = State::Ground;
                    Self::end_osc(pieces, out, &body, b"\x07");
                }
                0x1b => self.state = State::OscEsc(std::mem::take(body)),
                _ if body.len() >= MAX_OSC => {
                    out.extend_from_slice(b"\x1b]");
                    out.extend_from_slice(body);
                    out.push(b);
                    self.state = State::OscPass;
                }
                _ => body.push(b),
            },
            State::OscEsc(body) => {
                let body = std::mem::take(body);
                if b == b'\\' {
                    self.state = State::Ground;
                    Self::end_osc(pieces, out, &body, b"\x1b\\");
                } else {
                    // ESC inside OSC that is not ST: the string ended abnormally;
                    // pass it through and treat this byte afresh after ESC.
                    out.extend_from_slice(b"\x1b]");
                    out.extend_from_slice(&body);
                    out.push(0x1b);
                    self.state = State::Ground;
                    if b == b'[' {
                        out.pop();
                        self.state = State::Csi(Vec::new());
                    } else {
                        out.push(b);
                    }
                }
            }
            State::OscPass => {
                out.push(b);
                match b {
                    0x07 => self.state = State::Ground,
                    0x1b => self.state = State::OscPassEsc,
                    _ => {}
                }
            }
            State::OscPassEsc => {
                out.push(b);
                self.state = if b == b'\\' {
                    State::Ground
                } else {
                    State::OscPass
                };
            }
            _ => {}
        }
    }
}

impl QueryFilter {
    /// A complete short OSC string: a colour query goes to one client, anything else
    /// passes through unchanged.
    fn end_osc(pieces: &mut Vec<Piece>, out: &mut Vec<u8>, body: &[u8], terminator: &[u8]) {
        let mut whole = b"\x1b]".to_vec();
        whole.extend_from_slice(body);
        whole.extend_from_slice(terminator);
        if matches!(body, b"10;?" | b"11;?" | b"12;?") {
            cut(pieces, out, Piece::Ask(whole));
        } else {
            out.extend_from_slice(&whole);
        }
    }
}

/// `piece` (a query or an ask) after the output so far, which becomes a piece of its own.
fn cut(pieces: &mut Vec<Piece>, out: &mut Vec<u8>, piece: Piece) {
    if !out.is_empty() {
        pieces.push(Piece::Output(std::mem::take(out).into()));
    }
    pieces.push(piece);
}

/// `s` starts with ESC: if it holds a whole, well-formed CSI sequence (at most [`MAX_CSI`]
/// parameter bytes, then a final byte) or short OSC string (at most [`MAX_OSC`] bytes, then
/// BEL or ST), handle it as `step` would byte by byte and say how long it was. `None`
/// leaves it to `step`: cut by the end of the read, too long, or malformed.
fn whole_sequence(s: &[u8], out: &mut Vec<u8>, pieces: &mut Vec<Piece>) -> Option<usize> {
    match *s.get(1)? {
        b'[' => {
            let len = s[2..]
                .iter()
                .take(MAX_CSI + 1)
                .position(|b| !(0x20..=0x3f).contains(b))?;
            let (params, fin) = (&s[2..2 + len], s[2 + len]);
            if !(0x40..=0x7e).contains(&fin) {
                return None;
            }
            match classify(params, fin) {
                Some(q) => cut(pieces, out, Piece::Query(q)),
                None => out.extend_from_slice(&s[..3 + len]),
            }
            Some(3 + len)
        }
        b']' => {
            let len = s[2..]
                .iter()
                .take(MAX_OSC + 1)
                .position(|&b| b == 0x07 || b == 0x1b)?;
            let end = 2 + len;
            let terminator = match s[end] {
                0x07 => &s[end..end + 1],
                _ if *s.get(end + 1)? == b'\\' => &s[end..end + 2],
                _ => return None,
            };
            QueryFilter::end_osc(pieces, out, &s[2..end], terminator);
            Some(end + terminator.len())
        }
        _ => None,
    }
}

fn classify(params: &[u8], fin: u8) -> Option<Query> {
    match (params, fin) {
        (b"" | b"0", b'c') => Some(Query::PrimaryAttributes),
        (b">" | b">0", b'c') => Some(Query::SecondaryAttributes),
        (b"5", b'n') => Some(Query::Status),
        (b"6", b'n') => Some(Query::CursorPosition),
        (b"?6", b'n') => Some(Query::ExtendedCursorPosition),
        (b">" | b">0", b'q') => Some(Query::Version),
        (b"?", b'u') => Some(Query::KeyboardFlags),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flatten(pieces: Vec<Piece>) -> (Vec<u8>, Vec<Query>) {
        let mut out = Vec::new();
        let mut qs = Vec::new();
        for p in pieces {
            match p {
                Piece::Output(o) => out.extend_from_slice(&o),
                Piece::Query(q) => qs.push(q),
                Piece::Ask(a) => out.extend(a),
            }
        }
        (out, qs)
    }

    #[test]
    fn queries_are_cut_out_and_everything_else_kept_in_order() {
        let mut f = QueryFilter::default();
        let (out, qs) = flatten(f.feed(b"a\x1b[6nb\x1b[31mc\x1b[cd\x1b[>ce\x1b[5n\x1b]0;t\x07"));
        assert_eq!(out, b"ab\x1b[31mcde\x1b]0;t\x07".to_vec());
        assert_eq!(
            qs,
            vec![
                Query::CursorPosition,
                Query::PrimaryAttributes,
                Query::SecondaryAttributes,
                Query::Status
            ]
        );
    }

    #[test]
    fn a_query_split_across_reads_is_recognised() {
        let mut f = QueryFilter::default();
        let mut all = Vec::new();
        for b in b"x\x1b[6ny\x1b[2J".iter() {
            all.extend(f.feed(std::slice::from_ref(b)));
        }
        let (out, qs) = flatten(all);
        assert_eq!(out, b"xy\x1b[2J".to_vec());
        assert_eq!(qs, vec![Query::CursorPosition]);
    }

    #[test]
    fn malformed_and_overlong_sequences_pass_through() {
        let mut f = QueryFilter::default();
        let long = [b"\x1b[".as_slice(), &[b'1'; 100], b"m"].concat();
        let (out, qs) = flatten(f.feed(&long));
        assert_eq!(out, long);
        assert!(qs.is_empty());
        let (out, _) = flatten(f.feed(b"\x1b[1\x1b[6n"));
        assert_eq!(out, b"\x1b[1".to_vec());
    }

    #[test]
    fn keyboard_flags_are_swallowed_and_version_answered() {
        let mut f = QueryFilter::default();
        let (out, qs) = flatten(f.feed(b"a\x1b[?ub\x1b[>qc\x1b[>1u"));
        // Setting flags (`ESC[>1u`) is not a query: it passes through.
        assert_eq!(out, b"abc\x1b[>1u".to_vec());
        assert_eq!(qs, vec![Query::KeyboardFlags, Query::Version]);
        assert!(Query::KeyboardFlags.reply((0, 0)).is_empty());
        assert!(Query::Version.reply((0, 0)).starts_with(b"\x1bP>|hearth("));
    }

    #[test]
    fn colour_queries_are_asked_of_one_client_and_other_osc_passes() {
        let mut f = QueryFilter::default();
        let mut pieces = Vec::new();
        for b in b"a\x1b]11;?\x07b\x1b]0;title\x07c\x1b]10;?\x1b\\d".iter() {
            pieces.extend(f.feed(std::slice::from_ref(b)));
        }
        let asks: Vec<&Vec<u8>> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Ask(a) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(
            asks,
            vec![&b"\x1b]11;?\x07".to_vec(), &b"\x1b]10;?\x1b\\".to_vec()]
        );
        let out: Vec<u8> = pieces
            .into_iter()
            .flat_map(|p| match p {
                Piece::Output(o) => o.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(out, b"ab\x1b]0;title\x07cd".to_vec());
        // A long OSC (a hyperlink, a clipboard write) passes through whole.
        let long = [b"\x1b]8;;".as_slice(), &[b'x'; 200], b"\x07after"].concat();
        let (out, qs) = flatten(f.feed(&long));
        assert_eq!(out, long);
        assert!(qs.is_empty());
    }

    #[test]
    fn replies_are_one_based() {
        assert_eq!(Query::CursorPosition.reply((0, 4)), b"\x1b[1;5R".to_vec());
    }

    /// Reads filtered with the fast paths (whole sequences, runs of plain text and of long
    /// OSC strings) give exactly what the byte-by-byte machine gives: the same output, the
    /// same queries and asks in the same places, wherever the reads are cut.
    mod whole_reads {
        use super::*;
        use proptest::prelude::*;

        fn fragment() -> impl Strategy<Value = Vec<u8>> {
            let csi = (
                proptest::string::string_regex("[0-9;?>=! ]{0,70}").unwrap(),
                proptest::sample::select(b"cnqumHJK@~\x18\x1bx".to_vec()),
            )
                .prop_map(|(params, fin)| {
                    let mut v = b"\x1b[".to_vec();
                    v.extend_from_slice(params.as_bytes());
                    v.push(fin);
                    v
                });
            let osc = (
                proptest::string::string_regex("[0-9;?a-z/:.]{0,80}").unwrap(),
                proptest::sample::select(vec![&b"\x07"[..], b"\x1b\\", b"\x1bx", b"\x1b[6n", b""]),
            )
                .prop_map(|(body, end)| {
                    let mut v = b"\x1b]".to_vec();
                    v.extend_from_slice(body.as_bytes());
                    v.extend_from_slice(end);
                    v
                });
            prop_oneof![
                proptest::string::string_regex("[a-z ]{0,20}")
                    .unwrap()
                    .prop_map(String::into_bytes),
                csi,
                osc,
                proptest::sample::select(vec![
                    &b"\x1b[6n"[..],
                    b"\x1b[c",
                    b"\x1b[>q",
                    b"\x1b[?u",
                    b"\x1b[?6n",
                    b"\x1b]11;?\x07",
                    b"\x1b]10;?\x1b\\",
                    b"\x1b",
                    b"\x1b\x1b",
                    b"\x1b7",
                    b"\x07",
                ])
                .prop_map(<[u8]>::to_vec),
                proptest::collection::vec(any::<u8>(), 0..8),
            ]
        }

        /// Adjacent outputs joined: how reads are cut changes only where output splits.
        fn normal(pieces: Vec<Piece>) -> Vec<Piece> {
            let mut joined: Vec<Piece> = Vec::new();
            for p in pieces {
                match (joined.last_mut(), p) {
                    (Some(Piece::Output(a)), Piece::Output(b)) => {
                        let mut v = a.to_vec();
                        v.extend_from_slice(&b);
                        *a = v.into();
                    }
                    (_, p) => joined.push(p),
                }
            }
            joined
        }

        proptest! {
            #[test]
            fn as_byte_by_byte(
                fragments in proptest::collection::vec(fragment(), 0..40),
                cuts in proptest::collection::vec(1usize..200, 1..20),
            ) {
                let stream: Vec<u8> = fragments.concat();
                let mut fast = QueryFilter::default();
                let mut got = Vec::new();
                let (mut at, mut cut) = (0, cuts.iter().cycle());
                while at < stream.len() {
                    let end = (at + cut.next().unwrap()).min(stream.len());
                    got.extend(fast.feed(&stream[at..end]));
                    at = end;
                }
                let mut slow = QueryFilter::default();
                let want: Vec<Piece> = stream.iter().flat_map(|b| slow.feed(&[*b])).collect();
                prop_assert_eq!(normal(got), normal(want));
            }
        }
    }
}
