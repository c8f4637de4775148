//! A JSON scanner that finds where values are, without building them: a list answer is
//! rewritten by cutting entries out of the upstream's own bytes, so that everything else
//! stays byte for byte as the upstream wrote it, and a 100-tool answer costs one pass
//! instead of a parse into a tree and a serialisation back.
//!
//! It checks the grammar as far as the structure depends on it (strings and their escapes,
//! nesting, separators, literals; numbers loosely, which cannot move a boundary), so that
//! what it sees is what any JSON parser sees; anything else is `None` and the caller fails
//! closed. Keys and names with escapes are decoded (by `serde_json`) before they are compared.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

/// Deepest nesting accepted (`serde_json`'s own limit is 128).
const MAX_DEPTH: usize = 128;

/// Where a value is: `bytes[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub start: usize,
    pub end: usize,
}

/// A cursor over a JSON text.
pub(super) struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Scanner { b, i: 0 }
    }

    /// A scanner at `span`'s start (a value found by an earlier walk of the same text).
    pub fn at(b: &'a [u8], span: Span) -> Self {
        Scanner { b, i: span.start }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    /// Skips one value.
    pub fn value(&mut self, depth: usize) -> Option<Span> {
        self.ws();
        let start = self.i;
        match self.peek()? {
            b'{' => {
                self.members(depth, |_, _, _| Some(()))?;
            }
            b'[' => {
                self.elements(depth, |_, _| Some(()))?;
            }
            b'"' => {
                self.string()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
            }
            _ => return None,
        }
        Some(Span { start, end: self.i })
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// Skips a string (at its opening quote); its span, quotes included, and whether it has
    /// escapes.
    fn string(&mut self) -> Option<(Span, bool)> {
        let start = self.i;
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        let mut escaped = false;
        loop {
            // The plain run up to the next quote, escape or control character in one go.
            self.i += plain_run(self.b.get(self.i..)?);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some((Span { start, end: self.i }, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
    }

    /// Walks an object (at its `{`), calling `f(key, value_start, self)` for each member:
    /// `f` must consume the value (with [`Scanner::value`] or another walk).
    pub fn members(
        &mut self,
        depth: usize,
        mut f: impl FnMut(&mut Self, Key<'a>, usize) -> Option<()>,
    ) -> Option<Span> {
        self.ws();
        let start = self.i;
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(Span { start, end: self.i });
        }
        loop {
            self.ws();
            let (span, escaped) = self.string()?;
            let key = Key {
                raw: self.b.get(span.start..span.end)?,
                escaped,
            };
            self.eat(b':')?;
            self.ws();
            let before = self.i;
            f(self, key, depth + 1)?;
            if self.i == before {
                // The callback did not consume the value: skip it.
                self.value(depth + 1)?;
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Span { start, end: self.i });
                }
                _ => return None,
            }
        }
    }

    /// Walks an array (at its `[`), calling `f(self, depth)` for each element, which must
    /// consume it.
    pub fn elements(
        &mut self,
        depth: usize,
        mut f: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<Span> {
        self.ws();
        let start = self.i;
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(Span { start, end: self.i });
        }
        loop {
            self.ws();
            let before = self.i;
            f(self, depth + 1)?;
            if self.i == before {
                self.value(depth + 1)?;
            }
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(Span { start, end: self.i });
                }
                _ => return None,
            }
        }
    }

    /// The next value's first byte (after whitespace).
    pub fn next_byte(&mut self) -> Option<u8> {
        self.ws();
        self.peek()
    }

    /// The bytes of `span`.
    pub fn bytes(&self, span: Span) -> &'a [u8] {
        self.b.get(span.start..span.end).unwrap_or_default()
    }

    /// Skips a string value and answers it decoded (`None` for another kind of value: it is
    /// still skipped).
    pub fn string_value(&mut self, depth: usize) -> Option<Option<Cow<'a, str>>> {
        if self.next_byte()? != b'"' {
            self.value(depth)?;
            return Some(None);
        }
        let (span, escaped) = self.string()?;
        Some(Some(decode(self.bytes(span), escaped)?))
    }
}

/// How many bytes of `rest` hold neither a quote, nor a backslash, nor a control
/// character: eight bytes at a time (the "has a zero byte" trick on a `u64`), then one by one.
fn plain_run(rest: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte of `v` is zero / below 0x20 (exact as an "any" test).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut n = 0;
    for chunk in rest.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes);
        let hits = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if hits != 0 {
            break;
        }
        n += 8;
    }
    let tail = rest.get(n..).unwrap_or_default();
    n + tail
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .unwrap_or(tail.len())
}

/// Where the first line break (LF or CR) of `rest` is: eight bytes at a time, as
/// [`plain_run`] (an SSE event's data line is often a whole list answer).
pub(super) fn line_break(rest: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut n = 0;
    for chunk in rest.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(bytes);
        if zero(x ^ (ONES * u64::from(b'\n'))) | zero(x ^ (ONES * u64::from(b'\r'))) != 0 {
            break;
        }
        n += 8;
    }
    let tail = rest.get(n..)?;
    tail.iter()
        .position(|b| *b == b'\n' || *b == b'\r')
        .map(|i| n + i)
}

/// A member name as written (quotes included).
#[derive(Clone, Copy)]
pub(super) struct Key<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl Key<'_> {
    /// Whether it is `name` (decoded first when written with escapes).
    pub fn is(&self, name: &str) -> bool {
        if !self.escaped {
            return self.raw.len() == name.len() + 2
                && self.raw.get(1..self.raw.len() - 1) == Some(name.as_bytes());
        }
        decode(self.raw, true).is_some_and(|k| k == name)
    }
}

/// A string (quotes included) as text.
fn decode(raw: &[u8], escaped: bool) -> Option<Cow<'_, str>> {
    if escaped {
        return serde_json::from_slice::<String>(raw).ok().map(Cow::Owned);
    }
    let inner = raw.get(1..raw.len().checked_sub(1)?)?;
    core::str::from_utf8(inner).ok().map(Cow::Borrowed)
}

/// `bytes` with each span replaced by its bytes (spans sorted, not overlapping).
pub(super) fn splice(bytes: &[u8], edits: &[(Span, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for (span, with) in edits {
        out.extend_from_slice(bytes.get(at..span.start).unwrap_or_default());
        out.extend_from_slice(with);
        at = span.end;
    }
    out.extend_from_slice(bytes.get(at..).unwrap_or_default());
    out
}
