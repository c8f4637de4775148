//! The field path of a JSON position, for config errors that name the field.
//!
//! serde reports a type or shape error with the line and column where it noticed it, not with
//! the field. Wrapping the deserializer to track the path (`serde_path_to_error`) doubles
//! every `Deserialize` instantiation of the config types: about 60 KB of the proxy-wasm
//! filter, which is shipped to every Envoy. Only failing configs need the path, so it is
//! recovered afterwards: this walks the document up to the error's position and reports
//! where it stands (`resources[0].issuers[1].jwks_uri`).
//!
//! The walk is a lexer over bytes that only tracks nesting, object keys and array indexes;
//! it runs on text serde already parsed up to that point, never panics, and gives up (an
//! empty path) on anything it does not expect.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

enum Frame {
    /// An object, with the key of the member being read (once it has been read).
    Object {
        key: Option<String>,
        expect_key: bool,
    },
    /// An array, with the index of the element being read.
    Array { index: usize },
}

/// The byte offset of a serde_json (line, column) position: lines and columns count from 1,
/// and the column is the number of bytes read on that line.
fn offset(json: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    let mut seen = 1;
    for (i, b) in json.iter().enumerate() {
        if seen == line {
            break;
        }
        if *b == b'\n' {
            seen += 1;
            start = i + 1;
        }
    }
    start.saturating_add(column).min(json.len())
}

/// The path of the value being read at (`line`, `column`) of `json`, in the form
/// `a.b[2].c`; empty at the top level.
pub(super) fn at(json: &[u8], line: usize, column: usize) -> String {
    let end = offset(json, line, column);
    let text = json.get(..end).unwrap_or(json);
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'{' => stack.push(Frame::Object {
                key: None,
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array { index: 0 }),
            b'}' | b']' => {
                if i + 1 < text.len() {
                    stack.pop();
                } else if let Some(Frame::Object { key, .. }) = stack.last_mut() {
                    // A closing brace at the very end is where serde noticed a missing
                    // field: the path is that object's, not its last member's.
                    *key = None;
                }
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array { index }) => *index += 1,
                Some(Frame::Object { key, expect_key }) => {
                    *key = None;
                    *expect_key = true;
                }
                None => {}
            },
            b'"' => {
                let (s, next) = string(text, i + 1);
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *key = Some(s);
                        *expect_key = false;
                    }
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object { key: Some(k), .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object { key: None, .. } => break,
            Frame::Array { index } => {
                let _ = write!(path, "[{index}]");
            }
        }
    }
    path
}

/// A JSON string starting after its opening quote: its text (escapes kept as written, which
/// is enough for config field names) and the position after the closing quote.
fn string(text: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while let Some(&b) = text.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => {
                let s = text.get(start..i).unwrap_or_default();
                return (String::from_utf8_lossy(s).into_owned(), i + 1);
            }
            _ => i += 1,
        }
    }
    let s = text.get(start..).unwrap_or_default();
    (String::from_utf8_lossy(s).into_owned(), text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of_error(json: &str) -> String {
        let e = serde_json::from_str::<serde_json::Value>(json).err();
        match e {
            Some(e) => at(json.as_bytes(), e.line(), e.column()),
            None => at(json.as_bytes(), 1, json.len()),
        }
    }

    #[test]
    fn paths() {
        let doc = "{\"a\": {\"b\": [1, {\"c\": \"x\"}]}}";
        let at_x = doc.find("\"x\"").map_or(0, |p| p + 3);
        assert_eq!(at(doc.as_bytes(), 1, at_x), "a.b[1].c");
        let at_1 = doc.find('1').map_or(0, |p| p + 1);
        assert_eq!(at(doc.as_bytes(), 1, at_1), "a.b[0]");
        assert_eq!(at(doc.as_bytes(), 1, 0), "");
        // Multi-line documents and escaped quotes in strings.
        let doc = "{\n  \"k\\\"q\": 1,\n  \"next\": [true,\n false]\n}";
        assert_eq!(at(doc.as_bytes(), 4, 6), "next[1]");
        // At an object's closing brace (a missing field): the object's path.
        let doc = "{\"a\": [{\"b\": 1}]}";
        let at_close = doc.find('}').map_or(0, |p| p + 1);
        assert_eq!(at(doc.as_bytes(), 1, at_close), "a[0]");
        // Anything, even truncated input, gives some path and never panics.
        assert_eq!(path_of_error("{\"a\": [1, 2"), "a[1]");
        for n in 0..40 {
            let _ = at(b"{\"a\": [\"\\", 1, n);
            let _ = at(b"]]]}}}\"", n, n);
        }
    }
}
