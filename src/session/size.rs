//! The PTY size: per-axis minimum over the clients that count (writers not in the menu).
//! A zero on an axis (`ssh -tt` without a local terminal sends 0x0) does not count on that
//! axis, nor does an axis below [`MIN_COLS`] x [`MIN_ROWS`] (a client that small gets the
//! clipped view instead of shrinking everyone's terminal); absurd sizes are clamped. Pure.

/// Smallest size on each axis that counts for the PTY.
pub const MIN_COLS: u16 = 20;
pub const MIN_ROWS: u16 = 5;

/// Largest size we let any client ask for.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

/// (cols, rows) as a client reported it, clamped to sane bounds (0 kept: "unknown").
pub fn clamp(cols: u32, rows: u32) -> (u16, u16) {
    (
        cols.min(MAX_COLS as u32) as u16,
        rows.min(MAX_ROWS as u32) as u16,
    )
}

/// The size the PTY should have given its `current` (cols, rows): on each axis the
/// minimum over the clients that report one; an axis nobody reports keeps its current
/// value (so with nobody attached the last size stays).
pub fn pty_size(current: (u16, u16), clients: impl IntoIterator<Item = (u16, u16)>) -> (u16, u16) {
    let mut cols: Option<u16> = None;
    let mut rows: Option<u16> = None;
    for (c, r) in clients {
        if c >= MIN_COLS {
            cols = Some(cols.map_or(c, |m| m.min(c)));
        }
        if r >= MIN_ROWS {
            rows = Some(rows.map_or(r, |m| m.min(r)));
        }
    }
    (cols.unwrap_or(current.0), rows.unwrap_or(current.1))
}

/// The view a client gets when it is smaller than the PTY on an axis it reports: the
/// top-left (cols, rows) of the screen; `None` when it can show the whole screen.
pub fn clip(client: (u16, u16), pty: (u16, u16)) -> Option<(u16, u16)> {
    let ((cols, rows), (pcols, prows)) = (client, pty);
    let smaller = (cols > 0 && cols < pcols) || (rows > 0 && rows < prows);
    smaller.then(|| {
        (
            if cols == 0 { pcols } else { cols.min(pcols) },
            if rows == 0 { prows } else { rows.min(prows) },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_per_axis() {
        assert_eq!(pty_size((1, 1), [(100, 30), (80, 40)]), (80, 30));
    }

    #[test]
    fn zero_axes_do_not_count_and_nobody_keeps_the_size() {
        let cur = (90, 33);
        assert_eq!(pty_size(cur, [(0, 0), (120, 40)]), (120, 40));
        assert_eq!(pty_size(cur, [(0, 0)]), cur);
        assert_eq!(pty_size(cur, []), cur);
        assert_eq!(pty_size(cur, [(0, 30)]), (90, 30));
        assert_eq!(pty_size(cur, [(120, 0), (100, 0)]), (100, 33));
    }

    #[test]
    fn tiny_axes_do_not_shrink_the_terminal() {
        let cur = (80, 24);
        assert_eq!(pty_size(cur, [(5, 2), (120, 40)]), (120, 40));
        assert_eq!(pty_size(cur, [(19, 30)]), (80, 30));
        assert_eq!(pty_size(cur, [(100, 4)]), (100, 24));
        assert_eq!(pty_size(cur, [(20, 5)]), (20, 5));
    }

    #[test]
    fn smaller_clients_get_the_top_left_and_others_the_stream() {
        assert_eq!(clip((80, 24), (80, 24)), None);
        assert_eq!(clip((100, 30), (80, 24)), None);
        assert_eq!(clip((40, 24), (80, 24)), Some((40, 24)));
        assert_eq!(clip((0, 10), (80, 24)), Some((80, 10)));
        assert_eq!(clip((10, 3), (80, 24)), Some((10, 3)));
    }

    #[test]
    fn absurd_sizes_are_clamped() {
        assert_eq!(clamp(u32::MAX, 4_000_000), (MAX_COLS, MAX_ROWS));
        assert_eq!(clamp(80, 24), (80, 24));
    }
}
