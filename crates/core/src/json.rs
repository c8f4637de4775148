//! A JSON object that refuses duplicate member names.
//!
//! RFC 7515 §4 / RFC 7519 §4: a JOSE header or claims set with duplicate names must be
//! rejected (or only the last taken). Parsers disagree on which duplicate wins, which is
//! exactly what a token smuggling attack exploits, so we refuse them outright.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, Visitor};
use serde_json::Value;

/// A top-level JSON object with unique member names.
#[derive(Debug, Default, Clone)]
pub(crate) struct StrictObject(pub BTreeMap<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictObject, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if out.insert(k, v).is_some() {
                        return Err(A::Error::custom("duplicate member name"));
                    }
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl StrictObject {
    /// Parses a JSON object from bytes, refusing duplicates and trailing data.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    pub fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k)
    }
}
