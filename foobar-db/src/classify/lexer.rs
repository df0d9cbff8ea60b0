//! A byte-level lexer for the MySQL/MariaDB SQL dialect.
//!
//! It only splits text into tokens; it never builds a tree and never
//! allocates. Token boundaries fall on ASCII bytes or at the end of the
//! input, and all work is done on bytes, so no input can make it panic.
//!
//! What it knows about the dialect:
//! - `-- ` comments (MySQL requires a space or control character after `--`;
//!   `1--1` is `1 - -1`), `#` comments, `/* */` comments and `/*+ */`
//!   optimizer hints, all reported as comment tokens;
//! - `/*! … */`, `/*!50700 … */` and MariaDB's `/*M!100100 … */` executable
//!   comments: their content is code to the server, so it is lexed as code and
//!   the comment markers vanish;
//! - `'…'` and `"…"` strings with backslash and doubled-quote escapes (see
//!   [`SqlMode`] for `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES`), `` `…` ``
//!   identifiers with doubled backticks, `X'…'`/`B'…'` literals;
//! - numbers including `0x…`/`0b…`, `?` placeholders, `@user` and `@@system`
//!   variables, `:=`, and `;` between statements.

use super::SqlMode;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// A `` `quoted` `` identifier (or `"quoted"` under `ANSI_QUOTES`).
    QuotedIdent,
    /// A `'…'` or `"…"` string.
    String,
    /// A `X'…'` hex or `B'…'` bit literal.
    BinaryLiteral,
    /// A number: `12`, `1.5e3`, `0x1F`, `0b101`.
    Number,
    /// `@name`, `@'name'`, `` @`name` ``.
    UserVar,
    /// `@@name`, `@@session.name`, `@@global.name`.
    SysVar,
    /// A `?` placeholder.
    Placeholder,
    /// Punctuation and operators: one byte each, except `:=`.
    Punct,
    /// A `-- `, `#` or `/* */` comment; the text is its content.
    Comment,
    /// A `/*+ … */` optimizer hint; the text is its content.
    OptimizerHint,
}

/// One token: its kind and its bytes in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub(crate) kind: Kind,
    pub(crate) text: &'a [u8],
}

/// The lexer: an iterator of tokens over the input.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: SqlMode,
    /// Inside a `/*! … */` executable comment: a `*/` closes it.
    in_executable_comment: bool,
    /// A string, identifier or comment ran to the end of the input.
    unterminated: bool,
}

/// Bytes that may appear in an unquoted identifier (MySQL allows any
/// character from U+0080 up, which are all bytes >= 0x80 in UTF-8).
fn is_ident_byte(b: u8) -> bool {
    IDENT_BYTES[usize::from(b)]
}

/// [`is_ident_byte`] as a table: the lexer's innermost loop.
const IDENT_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        i += 1;
    }
    table
};

/// Whitespace as the server's lexer counts it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a [u8], mode: SqlMode) -> Self {
        Self {
            src,
            pos: 0,
            mode,
            in_executable_comment: false,
            unterminated: false,
        }
    }

    /// Whether a string, quoted identifier or comment (including an
    /// executable one) was left open at the end of the input. Meaningful
    /// once the lexer returned `None`.
    pub(crate) fn unterminated(&self) -> bool {
        self.unterminated || self.in_executable_comment
    }

    /// Advances past the bytes that satisfy `keep`.
    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) {
        let rest = self.src.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().position(|&b| !keep(b)).unwrap_or(rest.len());
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos.wrapping_add(offset)).copied()
    }

    fn slice(&self, start: usize, end: usize) -> &'a [u8] {
        self.src.get(start..end).unwrap_or_default()
    }

    fn token(&self, kind: Kind, start: usize) -> Token<'a> {
        Token {
            kind,
            text: self.slice(start, self.pos),
        }
    }

    /// Skips a quoted run starting at the opening `quote`, to just after the
    /// closing quote, or to the end of input (then marked unterminated).
    fn skip_quoted(&mut self, quote: u8, backslash_escapes: bool) {
        self.pos += 1;
        while let Some(&b) = self.src.get(self.pos) {
            if b == b'\\' && backslash_escapes {
                self.pos += 2;
            } else if b == quote {
                if self.peek_at(1) == Some(quote) {
                    self.pos += 2;
                } else {
                    self.pos += 1;
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
        // Ran off the end (an escape may have stepped one past it).
        self.pos = self.src.len();
        self.unterminated = true;
    }

    fn string(&mut self, quote: u8) -> Token<'a> {
        let start = self.pos;
        let ansi_ident = quote == b'"' && self.mode.ansi_quotes;
        if quote == b'`' || ansi_ident {
            self.skip_quoted(quote, false);
            self.token(Kind::QuotedIdent, start)
        } else {
            self.skip_quoted(quote, !self.mode.no_backslash_escapes);
            self.token(Kind::String, start)
        }
    }

    fn line_comment(&mut self, marker_len: usize) -> Token<'a> {
        let start = self.pos + marker_len;
        let end = self.src[start.min(self.src.len())..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.src.len(), |i| start + i);
        self.pos = end;
        Token {
            kind: Kind::Comment,
            text: self.slice(start, end),
        }
    }

    /// A `/* … */` comment or optimizer hint; `self.pos` is at the `/`.
    fn block_comment(&mut self, kind: Kind, marker_len: usize) -> Token<'a> {
        let start = self.pos + marker_len;
        let rest = self.src.get(start..).unwrap_or_default();
        match rest.windows(2).position(|w| w == b"*/") {
            Some(i) => {
                self.pos = start + i + 2;
                Token {
                    kind,
                    text: self.slice(start, start + i),
                }
            }
            None => {
                self.pos = self.src.len();
                self.unterminated = true;
                Token { kind, text: rest }
            }
        }
    }

    /// Enters a `/*!` or `/*M!` executable comment: skips the marker and its
    /// optional version number, so that its content is lexed as code.
    fn enter_executable_comment(&mut self, marker_len: usize) {
        self.pos += marker_len;
        let mut digits = 0;
        while digits < 6 && self.peek_at(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            digits += 1;
        }
        self.in_executable_comment = true;
    }

    fn variable(&mut self) -> Token<'a> {
        let start = self.pos;
        if self.peek_at(1) == Some(b'@') {
            // `@@name`, `@@session.name`: names and dots.
            self.pos += 2;
            self.skip_while(|b| is_ident_byte(b) || b == b'.');
            return self.token(Kind::SysVar, start);
        }
        self.pos += 1;
        match self.peek_at(0) {
            Some(q @ (b'\'' | b'"' | b'`')) => {
                self.skip_quoted(q, q != b'`' && !self.mode.no_backslash_escapes);
            }
            _ => {
                self.skip_while(|b| is_ident_byte(b) || b == b'.');
            }
        }
        self.token(Kind::UserVar, start)
    }

    fn number(&mut self) -> Token<'a> {
        let start = self.pos;
        // Digits and identifier bytes together: `12`, `0x1F`, `0b01`, and
        // also MySQL identifiers that start with digits (`1abc`), which are
        // never keywords, so lumping them in is harmless.
        self.skip_while(is_ident_byte);
        if self.peek_at(0) == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
            self.skip_while(is_ident_byte);
        }
        // Exponent with a sign: `1.5e-3` (but `0x1e-1` is a subtraction).
        let hex = matches!(self.src.get(start..start + 2), Some(b"0x" | b"0X"));
        let ends_in_e = !hex
            && self
                .pos
                .checked_sub(1)
                .and_then(|i| self.src.get(i))
                .is_some_and(|b| b.eq_ignore_ascii_case(&b'e'));
        if ends_in_e
            && matches!(self.peek_at(0), Some(b'+' | b'-'))
            && self.peek_at(1).is_some_and(|b| b.is_ascii_digit())
        {
            self.pos += 1;
            self.skip_while(|b| b.is_ascii_digit());
        }
        self.token(Kind::Number, start)
    }

    fn word(&mut self) -> Token<'a> {
        let start = self.pos;
        let first = self.src.get(start).copied().unwrap_or_default();
        // `X'0A'`, `B'01'`: binary literals.
        if matches!(first, b'x' | b'X' | b'b' | b'B') && self.peek_at(1) == Some(b'\'') {
            self.pos += 1;
            self.skip_quoted(b'\'', false);
            return self.token(Kind::BinaryLiteral, start);
        }
        self.skip_while(is_ident_byte);
        self.token(Kind::Word, start)
    }

    fn punct(&mut self, len: usize) -> Token<'a> {
        let start = self.pos;
        self.pos += len;
        self.token(Kind::Punct, start)
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    // Inlined into its one caller so that tokens stay in registers.
    #[inline(always)]
    fn next(&mut self) -> Option<Token<'a>> {
        loop {
            self.skip_while(is_space);
            let b = *self.src.get(self.pos)?;
            let next = self.peek_at(1);
            return Some(match b {
                b'\'' | b'"' | b'`' => self.string(b),
                b'#' => self.line_comment(1),
                b'-' if next == Some(b'-') && self.peek_at(2).is_none_or(|c| c <= b' ') => {
                    self.line_comment(2)
                }
                b'/' if next == Some(b'*') => match (self.peek_at(2), self.peek_at(3)) {
                    (Some(b'!'), _) => {
                        self.enter_executable_comment(3);
                        continue;
                    }
                    (Some(b'M'), Some(b'!')) => {
                        self.enter_executable_comment(4);
                        continue;
                    }
                    (Some(b'+'), _) => self.block_comment(Kind::OptimizerHint, 3),
                    _ => self.block_comment(Kind::Comment, 2),
                },
                b'*' if next == Some(b'/') && self.in_executable_comment => {
                    self.pos += 2;
                    self.in_executable_comment = false;
                    continue;
                }
                b'@' => self.variable(),
                b'?' => {
                    self.pos += 1;
                    self.token(Kind::Placeholder, self.pos - 1)
                }
                b':' if next == Some(b'=') => self.punct(2),
                b'0'..=b'9' => self.number(),
                _ if is_ident_byte(b) => self.word(),
                _ => self.punct(1),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(sql: &str) -> Vec<(Kind, String)> {
        Lexer::new(sql.as_bytes(), SqlMode::new())
            .map(|t| (t.kind, String::from_utf8_lossy(t.text).into_owned()))
            .collect()
    }

    fn kinds(sql: &str) -> Vec<Kind> {
        lex(sql).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn dash_dash_needs_whitespace() {
        use Kind::*;
        assert_eq!(kinds("1--1"), [Number, Punct, Punct, Number]);
        assert_eq!(kinds("1-- x"), [Number, Comment]);
        assert_eq!(kinds("1--\tx\n2"), [Number, Comment, Number]);
        assert_eq!(kinds("1--"), [Number, Comment]);
    }

    #[test]
    fn comments_carry_their_content() {
        assert_eq!(
            lex("a /* b */ # c\n-- d\n/*+ e */"),
            [
                (Kind::Word, "a".into()),
                (Kind::Comment, " b ".into()),
                (Kind::Comment, " c".into()),
                (Kind::Comment, " d".into()),
                (Kind::OptimizerHint, " e ".into()),
            ]
        );
    }

    #[test]
    fn executable_comments_are_code() {
        let words: Vec<String> = lex("/*!40101 SET NAMES utf8 */ /*M!100100 x*/ /*!y */")
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        assert_eq!(words, ["SET", "NAMES", "utf8", "x", "y"]);
        let mut lexer = Lexer::new(b"/*!50700 SELECT", SqlMode::new());
        assert_eq!(lexer.by_ref().count(), 1);
        assert!(lexer.unterminated());
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            lex(r"'a\'b' x"),
            [(Kind::String, r"'a\'b'".into()), (Kind::Word, "x".into())]
        );
        assert_eq!(lex("'a''b' x")[0], (Kind::String, "'a''b'".into()));
        assert_eq!(lex(r#""a\"b""#), [(Kind::String, r#""a\"b""#.into())]);
        assert_eq!(lex("`a``b`.c")[0], (Kind::QuotedIdent, "`a``b`".into()));
        assert_eq!(kinds(r"`a\` x"), [Kind::QuotedIdent, Kind::Word]);
        let mut lexer = Lexer::new(br"'abc\", SqlMode::new());
        assert_eq!(lexer.by_ref().count(), 1);
        assert!(lexer.unterminated());
    }

    #[test]
    fn sql_mode_changes_quotes() {
        let mode = SqlMode::new().no_backslash_escapes(true);
        let toks: Vec<Kind> = Lexer::new(br"'a\' x", mode).map(|t| t.kind).collect();
        assert_eq!(toks, [Kind::String, Kind::Word]);
        let mode = SqlMode::new().ansi_quotes(true);
        let toks: Vec<Kind> = Lexer::new(br#""col" 'v'"#, mode).map(|t| t.kind).collect();
        assert_eq!(toks, [Kind::QuotedIdent, Kind::String]);
    }

    #[test]
    fn literals_variables_placeholders() {
        use Kind::*;
        assert_eq!(
            kinds("X'0A' b'01' 0x1F 0b01 1.5e-3 ? @x @'y z' @@session.autocommit := ;"),
            [
                BinaryLiteral,
                BinaryLiteral,
                Number,
                Number,
                Number,
                Placeholder,
                UserVar,
                UserVar,
                SysVar,
                Punct,
                Punct
            ]
        );
        assert_eq!(lex("@@global.read_only")[0].1, "@@global.read_only");
        assert_eq!(lex("x:=1")[1].1, ":=");
        assert_eq!(lex("1e+10-2")[0].1, "1e+10");
        assert_eq!(lex("0x1e-1")[0].1, "0x1e");
    }

    #[test]
    fn unicode_identifiers_are_words() {
        assert_eq!(
            lex("SELECT café FROM tëst"),
            [
                (Kind::Word, "SELECT".into()),
                (Kind::Word, "café".into()),
                (Kind::Word, "FROM".into()),
                (Kind::Word, "tëst".into()),
            ]
        );
    }
}
