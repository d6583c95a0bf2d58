//! Diagnostics: `FILE:LINE:COLUMN: message`, the offending text and a caret.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::limits::{quote, MAX_QUOTE, MAX_WORD};

/// At most this many errors are reported; the parsers stop at the last
/// (no more per-item work: total time stays linear in the input), and later
/// stages only count theirs.
pub const MAX_ERRORS: usize = 50;

/// Longest excerpt of the offending line shown under a diagnostic.
const EXCERPT: usize = MAX_QUOTE;

/// One error or warning about a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to the compiler (or as the include named it).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (bytes).
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// An excerpt of the offending line (printable ASCII), may be empty.
    pub text: String,
    /// Column of the caret inside `text` (0-based).
    pub caret: usize,
}

impl Diagnostic {
    /// A diagnostic at `offset` (byte offset of the line start `line_start`) in `src`.
    pub fn at(file: &str, src: &[u8], line: u32, line_start: usize, offset: usize, message: String) -> Self {
        let line_start = line_start.min(src.len());
        let rest = src.get(line_start..).unwrap_or(&[]);
        // Only the excerpt's window is scanned, never the whole line: many
        // errors on one long line must not cost the line each.
        let col = offset.saturating_sub(line_start).min(rest.len());
        let head = rest.get(..(EXCERPT + 1).min(rest.len())).unwrap_or(&[]);
        let fits = head.iter().position(|&b| b == b'\n').unwrap_or(head.len()) <= EXCERPT;
        // A short line is quoted whole; a long one around the caret.
        let from = if fits { 0 } else { col.saturating_sub(EXCERPT / 4) };
        let window = rest.get(from..(from + EXCERPT + 1).min(rest.len())).unwrap_or(&[]);
        let line_len = from + window.iter().position(|&b| b == b'\n').unwrap_or(window.len());
        let col = col.min(line_len);
        let from = from.min(col);
        let to = (from + EXCERPT).min(line_len);
        let mut text = String::new();
        if from > 0 {
            text.push_str("...");
        }
        for &b in rest.get(from..to).unwrap_or(&[]) {
            text.push(if (0x20..0x7f).contains(&b) || b == b'\t' { b as char } else { '?' });
        }
        if to < line_len {
            text.push_str("...");
        }
        let caret = col - from + if from > 0 { 3 } else { 0 };
        Diagnostic { file: file.into(), line, column: col as u32 + 1, message: cut_quotes(message), text, caret }
    }

    /// A diagnostic without source text (e.g. about the file as a whole).
    pub fn plain(file: &str, line: u32, column: u32, message: String) -> Self {
        Diagnostic { file: file.into(), line, column, message: cut_quotes(message), text: String::new(), caret: 0 }
    }
}

/// `message` with every `quoted` span cut to [`MAX_WORD`] characters: a
/// message quotes the offending word, which may be a whole line.
fn cut_quotes(message: String) -> String {
    let mut parts = message.split('`');
    let Some(first) = parts.next() else { return message };
    if !message.split('`').skip(1).step_by(2).any(|q| q.len() > MAX_WORD) {
        return message;
    }
    let mut out = String::from(first);
    for (i, part) in parts.enumerate() {
        out.push('`');
        out.push_str(&if i % 2 == 0 { quote(part) } else { part.into() });
    }
    out
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)?;
        if !self.text.is_empty() {
            let pad: String = self.text.chars().take(self.caret).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            write!(f, "\n    {}\n    {}^", self.text, pad)?;
        }
        Ok(())
    }
}

/// All errors of one compilation (up to [`MAX_ERRORS`]) and the number left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// The errors kept, in the order found.
    pub errors: Vec<Diagnostic>,
    /// How many more errors later stages found (the parsers stop instead).
    pub suppressed: usize,
    /// Unsupported features and how many rules use each, most used first
    /// (counted over the whole input, past the cap too).
    pub unsupported: Vec<(String, usize)>,
}

impl Diagnostics {
    /// Records an error, or counts it once the cap is reached.
    pub fn push(&mut self, d: Diagnostic) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(d);
        } else {
            self.suppressed += 1;
        }
    }

    /// Whether [`MAX_ERRORS`] are recorded: the parsers stop there.
    pub fn is_full(&self) -> bool {
        self.errors.len() >= MAX_ERRORS
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.suppressed == 0
    }

    /// Total number of errors, kept or not.
    pub fn count(&self) -> usize {
        self.errors.len() + self.suppressed
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.errors {
            writeln!(f, "{d}")?;
        }
        if self.suppressed > 0 {
            writeln!(f, "{} more errors", self.suppressed)?;
        } else if self.is_full() {
            writeln!(f, "stopped after {MAX_ERRORS} errors")?;
        }
        if !self.unsupported.is_empty() {
            let list: Vec<String> = self
                .unsupported
                .iter()
                .map(|(what, n)| alloc::format!("{what} ({n} rule{})", if *n == 1 { "" } else { "s" }))
                .collect();
            writeln!(f, "unsupported: {}", list.join(", "))?;
        }
        let n = self.count();
        write!(f, "{n} error{}", if n == 1 { "" } else { "s" })
    }
}
