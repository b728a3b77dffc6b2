//! The PTY size: per-axis minimum over the clients that count (writers not in the menu).
//! A zero on an axis (`ssh -tt` without a local terminal sends 0x0) does not count on that
//! axis; absurd sizes are clamped. Pure.

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

/// The size the PTY should have, or `None` to keep the current one (nobody counts).
/// Each item is (cols, rows).
pub fn pty_size(clients: impl IntoIterator<Item = (u16, u16)>) -> Option<(u16, u16)> {
    let mut cols: Option<u16> = None;
    let mut rows: Option<u16> = None;
    for (c, r) in clients {
        if c > 0 {
            cols = Some(cols.map_or(c, |m| m.min(c)));
        }
        if r > 0 {
            rows = Some(rows.map_or(r, |m| m.min(r)));
        }
    }
    match (cols, rows) {
        (None, None) => None,
        (c, r) => Some((c.unwrap_or(80), r.unwrap_or(24))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_per_axis() {
        assert_eq!(pty_size([(100, 30), (80, 40)]), Some((80, 30)));
    }

    #[test]
    fn zero_axes_do_not_count_and_nobody_keeps_the_size() {
        assert_eq!(pty_size([(0, 0), (120, 40)]), Some((120, 40)));
        assert_eq!(pty_size([(0, 0)]), None);
        assert_eq!(pty_size([]), None);
        assert_eq!(pty_size([(0, 30)]), Some((80, 30)));
    }

    #[test]
    fn absurd_sizes_are_clamped() {
        assert_eq!(clamp(u32::MAX, 4_000_000), (MAX_COLS, MAX_ROWS));
        assert_eq!(clamp(80, 24), (80, 24));
    }
}
