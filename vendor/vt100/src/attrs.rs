use crate::term::BufWrite as _;
use alloc::vec::Vec;

/// Represents a foreground or background color for cells.
#[derive(Eq, PartialEq, Debug, Copy, Clone, Default)]
pub enum Color {
    /// The default terminal color.
    #[default]
    Default,

    /// An indexed terminal color.
    Idx(u8),

    /// An RGB terminal color. The parameters are (red, green, blue).
    Rgb(u8, u8, u8),
}

const TEXT_MODE_INTENSITY: u8 = 0b0000_0011;
const TEXT_MODE_BOLD: u8 = 0b0000_0001;
const TEXT_MODE_DIM: u8 = 0b0000_0010;
const TEXT_MODE_ITALIC: u8 = 0b0000_0100;
const TEXT_MODE_UNDERLINE: u8 = 0b0000_1000;
const TEXT_MODE_INVERSE: u8 = 0b0001_0000;
// hearth: an indexed colour below 16 given as `38;5;n` / `48;5;n` (not `3n`/`9n`), so it
// is written back the way the program wrote it.
const TEXT_MODE_FG_256: u8 = 0b0010_0000;
const TEXT_MODE_BG_256: u8 = 0b0100_0000;

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Attrs {
    pub fgcolor: Color,
    pub bgcolor: Color,
    pub mode: u8,
}

impl Attrs {
    pub fn bold(&self) -> bool {
        self.mode & TEXT_MODE_BOLD != 0
    }

    pub fn dim(&self) -> bool {
        self.mode & TEXT_MODE_DIM != 0
    }

    fn intensity(&self) -> u8 {
        self.mode & TEXT_MODE_INTENSITY
    }

    // hearth: bold and dim are independent (xterm, tmux and every terminal hearth serves
    // show both at once); only SGR 22 (or 0) clears them.
    pub fn set_bold(&mut self) {
        self.mode |= TEXT_MODE_BOLD;
    }

    pub fn set_dim(&mut self) {
        self.mode |= TEXT_MODE_DIM;
    }

    /// hearth: whether the foreground / background was given as a 256-colour index.
    pub(crate) fn set_fg_256(&mut self, on: bool) {
        if on {
            self.mode |= TEXT_MODE_FG_256;
        } else {
            self.mode &= !TEXT_MODE_FG_256;
        }
    }

    pub(crate) fn set_bg_256(&mut self, on: bool) {
        if on {
            self.mode |= TEXT_MODE_BG_256;
        } else {
            self.mode &= !TEXT_MODE_BG_256;
        }
    }

    fn fg_256(&self) -> bool {
        self.mode & TEXT_MODE_FG_256 != 0
    }

    fn bg_256(&self) -> bool {
        self.mode & TEXT_MODE_BG_256 != 0
    }

    /// hearth: the attributes an erase or a scroll fills cells with: the background only
    /// (as xterm and tmux do), never the foreground, bold, underline or inverse.
    pub(crate) fn bg_only(&self) -> Self {
        Self {
            fgcolor: crate::Color::Default,
            bgcolor: self.bgcolor,
            mode: self.mode & TEXT_MODE_BG_256,
        }
    }

    pub fn set_normal_intensity(&mut self) {
        self.mode &= !TEXT_MODE_INTENSITY;
    }

    pub fn italic(&self) -> bool {
        self.mode & TEXT_MODE_ITALIC != 0
    }

    pub fn set_italic(&mut self, italic: bool) {
        if italic {
            self.mode |= TEXT_MODE_ITALIC;
        } else {
            self.mode &= !TEXT_MODE_ITALIC;
        }
    }

    pub fn underline(&self) -> bool {
        self.mode & TEXT_MODE_UNDERLINE != 0
    }

    pub fn set_underline(&mut self, underline: bool) {
        if underline {
            self.mode |= TEXT_MODE_UNDERLINE;
        } else {
            self.mode &= !TEXT_MODE_UNDERLINE;
        }
    }

    pub fn inverse(&self) -> bool {
        self.mode & TEXT_MODE_INVERSE != 0
    }

    pub fn set_inverse(&mut self, inverse: bool) {
        if inverse {
            self.mode |= TEXT_MODE_INVERSE;
        } else {
            self.mode &= !TEXT_MODE_INVERSE;
        }
    }

    pub fn write_escape_code_diff(
        &self,
        contents: &mut Vec<u8>,
        other: &Self,
    ) {
        if self != other && self == &Self::default() {
            crate::term::ClearAttrs.write_buf(contents);
            return;
        }

        let attrs = crate::term::Attrs::default();

        let attrs = if self.fgcolor == other.fgcolor && self.fg_256() == other.fg_256() {
            attrs
        } else {
            attrs.fgcolor(self.fgcolor, self.fg_256())
        };
        let attrs = if self.bgcolor == other.bgcolor && self.bg_256() == other.bg_256() {
            attrs
        } else {
            attrs.bgcolor(self.bgcolor, self.bg_256())
        };
        // hearth: bold and dim are separate; turning either off takes SGR 22, which turns
        // both off, so whatever stays on is set again after it.
        let attrs = if self.intensity() == other.intensity() {
            attrs
        } else {
            let dropped = other.intensity() & !self.intensity() != 0;
            attrs.intensity(crate::term::Intensity {
                reset: dropped,
                bold: self.bold() && (dropped || !other.bold()),
                dim: self.dim() && (dropped || !other.dim()),
            })
        };
        let attrs = if self.italic() == other.italic() {
            attrs
        } else {
            attrs.italic(self.italic())
        };
        let attrs = if self.underline() == other.underline() {
            attrs
        } else {
            attrs.underline(self.underline())
        };
        let attrs = if self.inverse() == other.inverse() {
            attrs
        } else {
            attrs.inverse(self.inverse())
        };

        attrs.write_buf(contents);
    }
}
