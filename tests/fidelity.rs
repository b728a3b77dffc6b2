//! Differential test of the screen model against a reference terminal (tmux): generated
//! escape-sequence streams (attributes, 256 and RGB colours, wide and combining characters,
//! cursor moves, erases, scrolling regions, the alternate screen, inserting and deleting
//! lines and characters, scrolling, reverse index, DECSC/DECRC) are shown by tmux
//! directly, and through hearth's late-joiner repaint (the same bytes `screen --ansi` and
//! every joiner get); tmux's `capture-pane -e -N` of both must be equal, cell for cell with
//! attributes. A fixed seed, a few hundred cases.
//!
//! Left out of the generator on purpose (vt100 does not model them; see adr/0010): blink,
//! hidden and strikethrough (SGR 5, 8, 9), curly and coloured underlines, and the cursor
//! position (capture-pane does not show it; other tests check it). Not compared, because
//! capture-pane does not show them the way the screen does: blank cells after a row's last
//! text (see `same_cells`), and, with other seeds, about 1 case in 1000: tmux keeps the
//! orphaned half of a wide character that an erase split, and capture-pane then drops a
//! column the screen shows blank (adr/0010).

mod common;

use std::path::Path;

use common::*;
use hearth::session::screen::Screen;

const COLS: u16 = 40;
const ROWS: u16 = 12;
const CASES: usize = 240;
/// Cases shown at once (tmux windows open together).
const BATCH: usize = 40;

/// xorshift64*: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One SGR sequence with 1-4 random parameters.
fn sgr(r: &mut Rng) -> String {
    let mut params = Vec::new();
    for _ in 0..=r.below(3) {
        let p = match r.below(12) {
            0 => "0".to_string(),
            1 => r.pick(&["1", "2", "3", "4", "7"]).to_string(),
            2 => r.pick(&["22", "23", "24", "27"]).to_string(),
            3 => format!("{}", 30 + r.below(8)),
            4 => format!("{}", 40 + r.below(8)),
            5 => format!("{}", 90 + r.below(8)),
            6 => format!("{}", 100 + r.below(8)),
            7 => format!("38;5;{}", r.below(256)),
            8 => format!("48;5;{}", r.below(256)),
            9 => format!("38;2;{};{};{}", r.below(256), r.below(256), r.below(256)),
            10 => r.pick(&["39", "49"]).to_string(),
            _ => format!("48;2;{};{};{}", r.below(256), r.below(256), r.below(256)),
        };
        params.push(p);
    }
    format!("\x1b[{}m", params.join(";"))
}

/// What the generator may use beyond attributes, text, wide and combining characters,
/// line breaks and cursor moves.
#[derive(Clone, Copy)]
struct Extras {
    /// Cursor moves and wide characters (which moves can split).
    moves: bool,
    erase: bool,
    regions: bool,
    alternate: bool,
    /// Deleting lines, inserting and deleting characters, scrolling, reverse index,
    /// DECSC/DECRC. Not IL: tmux 3.3a leaves the rows alone when an insert outside the
    /// scroll region reaches the screen's bottom (its grid_view_insert_lines then moves
    /// no row and clears none), where xterm and hearth clear them; a unit test covers IL.
    edits: bool,
}

/// A random stream of a few dozen pieces.
fn case(r: &mut Rng, x: Extras) -> String {
    let mut s = String::new();
    for _ in 0..(10 + r.below(40)) {
        match r.below(17) {
            0..=3 => s.push_str(&sgr(r)),
            4..=6 => s.push_str(r.pick(&["hello", "world ", "x", "agent> ", "12345", "  ", "ok."])),
            7 if x.moves => s.push_str(r.pick(&["漢字", "é", "e\u{301}", "日本語 ", "★"])),
            7 => s.push_str(r.pick(&["é", "e\u{301}", "★"])),
            8 => s.push_str("\r\n"),
            9 | 10 if !x.moves => s.push_str("cd"),
            9 => s.push_str(&format!(
                "\x1b[{};{}H",
                1 + r.below(ROWS as u64),
                1 + r.below(COLS as u64)
            )),
            10 => s.push_str(&format!(
                "\x1b[{}{}",
                1 + r.below(5),
                r.pick(&["A", "B", "C", "D"])
            )),
            11 if x.erase => {
                s.push_str(r.pick(&["\x1b[K", "\x1b[1K", "\x1b[2K", "\x1b[J", "\x1b[2J"]))
            }
            12 if x.regions => {
                let top = 1 + r.below(ROWS as u64 / 2);
                let bottom = top + 1 + r.below(ROWS as u64 / 2);
                s.push_str(&format!("\x1b[{top};{bottom}r"));
            }
            13 if x.regions => s.push_str("\x1b[r"),
            14 if x.alternate => s.push_str(r.pick(&["\x1b[?1049h", "\x1b[?1049l"])),
            15 if x.edits => match r.below(3) {
                0 => s.push_str(r.pick(&["\x1bM", "\x1b7", "\x1b8"])),
                _ => s.push_str(&format!(
                    "\x1b[{}{}",
                    1 + r.below(4),
                    r.pick(&["M", "@", "P", "X", "S", "T"])
                )),
            },
            11..=15 => s.push_str("ab"),
            _ => {
                for _ in 0..r.below(5) {
                    s.push_str("line\n");
                }
            }
        }
    }
    s
}

/// Show `file` in a new window and wait until it was written out.
fn show(tmux: &Tmux, dir: &Path, name: &str, file: &Path) {
    let done = dir.join(format!("{name}.done"));
    tmux.run(
        name,
        COLS,
        ROWS,
        &format!(
            "stty -opost; cat {} && touch {}; sleep 1000",
            file.display(),
            done.display()
        ),
    );
    wait_until(&format!("{name} to be shown"), DEADLINE, || {
        done.exists().then_some(())
    });
}

/// Show `CASES` generated streams directly and through the repaint; the cases whose
/// captures differ.
fn differences(seed: u64, x: Extras) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let cases: Vec<String> = (0..CASES).map(|_| case(&mut rng, x)).collect();
    let mut failures = Vec::new();
    for (b, batch) in cases.chunks(BATCH).enumerate() {
        let tmux = Tmux::new(&dir.path().join(format!("b{b}")));
        std::fs::create_dir_all(dir.path().join(format!("b{b}"))).unwrap();
        for (i, stream) in batch.iter().enumerate() {
            let n = b * BATCH + i;
            // What a program's pty passes on (ONLCR): both sides get exactly these bytes.
            let stream = stream.replace('\n', "\r\n");
            let direct = dir.path().join(format!("{n}.direct"));
            std::fs::write(&direct, &stream).unwrap();
            let mut model = Screen::new(ROWS, COLS);
            model.process(stream.as_bytes());
            let painted = dir.path().join(format!("{n}.painted"));
            std::fs::write(&painted, model.repaint()).unwrap();
            show(&tmux, dir.path(), &format!("d{n}"), &direct);
            show(&tmux, dir.path(), &format!("p{n}"), &painted);
            let (want, got) = (
                tmux.capture_cells(&format!("d{n}")),
                tmux.capture_cells(&format!("p{n}")),
            );
            if !same_cells(&want, &got) {
                failures.push(format!(
                    "case {n}: {stream:?}\n  tmux:    {want:?}\n  repaint: {got:?}"
                ));
            }
        }
    }
    failures
}

/// The cells of a `capture-pane -e -N` capture, read back by the screen model's parser
/// (only text, SGR and line breaks: the part of it the attribute tests cover).
fn cells(capture: &str) -> vt100::Parser {
    let mut parser = vt100::Parser::new(ROWS + 1, COLS, 0);
    parser.process(capture.replace('\n', "\r\n").as_bytes());
    parser
}

/// Whether two captures show the same: every cell with text equal in text, width and
/// attributes (colour encodings included); a blank cell equal in what shows of it (the
/// background, and underline or inverse with the foreground). Blank cells after a row's
/// last text are not compared: capture-pane leaves out cells past the last one written
/// even when an erase gave them a background (so the same screen captures differently
/// whether the erase came from the program or from the repaint); the screen model's own
/// tests cover erased backgrounds.
fn same_cells(a: &str, b: &str) -> bool {
    // A space the capture writes is a blank cell too.
    let text = |c: &vt100::Cell| !c.contents().trim().is_empty();
    let (a, b) = (cells(a), cells(b));
    let (a, b) = (a.screen(), b.screen());
    (0..ROWS).all(|row| {
        let last = |s: &vt100::Screen| {
            (0..COLS)
                .rev()
                .find(|&col| s.cell(row, col).is_some_and(text))
                .map_or(0, |col| col + 1)
        };
        let end = last(a);
        end == last(b)
            && (0..end).all(|col| match (a.cell(row, col), b.cell(row, col)) {
                (Some(x), Some(y)) if text(x) || text(y) => x == y,
                (Some(x), Some(y)) => {
                    let shown = |c: &vt100::Cell| {
                        let fg = (c.inverse() || c.underline()).then(|| c.fgcolor());
                        (c.bgcolor(), c.inverse(), c.underline(), fg)
                    };
                    shown(x) == shown(y)
                }
                _ => false,
            })
    })
}

fn report(failures: &[String]) -> String {
    format!(
        "{} of {CASES} cases differ:\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Attributes (every SGR hearth models, in random combinations), 256 and RGB colours,
/// accented and combining characters and line breaks (with scrolling): the repaint equals
/// tmux, cell for cell. (Red with vt100 0.18 unpatched: bold with dim, `38;5;n`.)
#[test]
fn the_repaint_shows_what_a_reference_terminal_shows() {
    let none = Extras {
        moves: false,
        erase: false,
        regions: false,
        alternate: false,
        edits: false,
    };
    let failures = differences(0x5eed_1234_abcd_0001, none);
    assert!(failures.is_empty(), "{}", report(&failures));
}

/// The same with cursor moves, wide characters, erases, scrolling regions, the alternate
/// screen and line and character edits. (Red with vt100 0.18 as published, in about 150 of
/// 240 cases: DECSTBM did not home the cursor, scrolled-in rows and erased cells lost the
/// background, a half-overwritten wide character kept its attributes, the alternate screen
/// moved the cursor, CUD/CUU ignored the margins from outside the region, reverse index
/// on the top row scrolled the region; adr/0010.)
#[test]
fn the_repaint_with_erases_regions_and_the_alternate_screen() {
    let all = Extras {
        moves: true,
        erase: true,
        regions: true,
        alternate: true,
        edits: true,
    };
    let failures = differences(0x5eed_1234_abcd_0001, all);
    assert!(failures.is_empty(), "{}", report(&failures));
}
