//! Tokens of the native rules language, read lazily from raw bytes.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A run of `[A-Za-z0-9_.:/-]`: keywords, names, numbers, addresses, ranges.
    Word,
    /// `$name`: a set reference.
    Var,
    /// `!`
    Bang,
    /// `,`
    Comma,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `"..."` (the text excludes the quotes).
    Str,
    /// End of a line.
    Newline,
    /// End of input.
    Eof,
    /// A character that cannot start a token.
    Bad,
    /// A string without its closing quote.
    Unterminated,
}

/// A token and where it is.
#[derive(Clone, Copy, Debug)]
pub struct Token {
    /// What it is.
    pub kind: Kind,
    /// Byte offset of its text.
    pub start: usize,
    /// Byte offset past its text.
    pub end: usize,
    /// 1-based line.
    pub line: u32,
    /// Byte offset of the line's start.
    pub line_start: usize,
}

/// A lazy tokenizer over one file.
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    line_start: usize,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a [u8]) -> Self {
        Lexer { src, pos: 0, line: 1, line_start: 0 }
    }

    /// The text of a token (empty if it is not ASCII).
    pub fn text(&self, t: &Token) -> &'a str {
        self.src.get(t.start..t.end).and_then(|b| core::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// The raw bytes of a token.
    pub fn bytes(&self, t: &Token) -> &'a [u8] {
        self.src.get(t.start..t.end).unwrap_or(&[])
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    fn skip_blanks(&mut self) {
        while let Some(b) = self.at(self.pos) {
            match b {
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    let rest = self.src.get(self.pos..).unwrap_or(&[]);
                    self.pos += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                }
                _ => break,
            }
        }
    }

    /// The next token.
    pub fn next_token(&mut self) -> Token {
        self.skip_blanks();
        let start = self.pos;
        let mut tok = Token { kind: Kind::Eof, start, end: start, line: self.line, line_start: self.line_start };
        let Some(b) = self.at(start) else { return tok };
        self.pos += 1;
        tok.kind = match b {
            b'\n' => {
                self.line = self.line.saturating_add(1);
                self.line_start = self.pos;
                Kind::Newline
            }
            b'!' => Kind::Bang,
            b',' => Kind::Comma,
            b'{' => Kind::LBrace,
            b'}' => Kind::RBrace,
            b'"' => return self.string(tok),
            b'$' => {
                self.eat_word();
                tok.start += 1;
                Kind::Var
            }
            _ if is_word(b) => {
                self.eat_word();
                Kind::Word
            }
            _ => {
                self.pos = start + utf8_len(self.src.get(start..).unwrap_or(&[])).unwrap_or(1);
                Kind::Bad
            }
        };
        tok.end = self.pos;
        tok
    }

    fn eat_word(&mut self) {
        while self.at(self.pos).is_some_and(is_word) {
            self.pos += 1;
        }
    }

    fn string(&mut self, mut tok: Token) -> Token {
        let rest = self.src.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&c| c == b'"' || c == b'\n') {
            Some(n) if rest.get(n) == Some(&b'"') => {
                tok.kind = Kind::Str;
                tok.start = self.pos;
                tok.end = self.pos + n;
                self.pos += n + 1;
            }
            n => {
                tok.kind = Kind::Unterminated;
                self.pos += n.unwrap_or(rest.len());
                tok.end = self.pos;
            }
        }
        tok
    }
}

/// Length of the UTF-8 character at the start of `b`, if it is one.
pub fn utf8_len(b: &[u8]) -> Option<usize> {
    let n = match b.first()? {
        0..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    core::str::from_utf8(b.get(..n)?).ok().map(|_| n)
}
