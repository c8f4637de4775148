//! Reading the config's JSON tree field by field, with the field's path in every error.
//!
//! The config used to be read by `serde` derives: one `Deserialize` instantiation per config
//! type, each with its own copy of the parser's map loop, about 45 KB of the proxy-wasm
//! filter (which every Envoy downloads, within a 512 KiB budget) for code that runs once.
//! Now the document is parsed once into a [`Value`] tree (the parser is there anyway, for
//! JSON-RPC bodies) that refuses duplicate member names, and [`super::raw`] reads it with
//! these few helpers, which know the path they are at: `resources[0].issuers[1].typ`.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ConfigError;

/// A JSON document whose objects have unique member names (a duplicate setting is an
/// error, not a silent "last one wins").
pub(super) struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
                Ok(Strict(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
                Ok(Strict(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
                Ok(Strict(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Strict, E> {
                Ok(Strict(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Strict, E> {
                Ok(Strict(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
                let mut out = Vec::new();
                while let Some(Strict(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Strict(Value::Array(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
                let mut out = Map::new();
                while let Some(k) = map.next_key::<String>()? {
                    let Strict(v) = map.next_value()?;
                    if out.contains_key(&k) {
                        return Err(A::Error::custom(format!("duplicate field `{k}`")));
                    }
                    out.insert(k, v);
                }
                Ok(Strict(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a value is, for "invalid type" errors (never the value itself: it may be a secret).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(path: &str, v: &Value, expected: &str) -> ConfigError {
    ConfigError::new(
        path,
        format!("invalid type: {}, expected {expected}", kind(v)),
    )
}

/// An object of the config, at `path`.
pub(super) struct Obj<'v> {
    map: &'v Map<String, Value>,
    path: String,
}

impl<'v> Obj<'v> {
    /// `v` as an object, refusing members not in `fields`.
    pub fn new(v: &'v Value, path: String, fields: &[&str]) -> Result<Obj<'v>, ConfigError> {
        let Value::Object(map) = v else {
            return Err(invalid(&path, v, "an object"));
        };
        let o = Obj { map, path };
        if let Some(k) = o.map.keys().find(|k| !fields.contains(&k.as_str())) {
            let list: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
            return Err(ConfigError::new(
                o.at(k),
                format!("unknown field `{k}`, expected one of {}", list.join(", ")),
            ));
        }
        Ok(o)
    }

    /// The path of member `k`.
    pub fn at(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    /// Member `k`; `null` counts as absent.
    fn get(&self, k: &str) -> Option<&'v Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn required<T>(&self, k: &str, v: Option<T>) -> Result<T, ConfigError> {
        v.ok_or_else(|| ConfigError::new(self.path.clone(), format!("missing field `{k}`")))
    }

    pub fn str(&self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(invalid(&self.at(k), v, "a string")),
        }
    }

    pub fn req_str(&self, k: &str) -> Result<String, ConfigError> {
        let v = self.str(k)?;
        self.required(k, v)
    }

    pub fn bool(&self, k: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(invalid(&self.at(k), v, "a boolean")),
        }
    }

    pub fn u32(&self, k: &str) -> Result<Option<u32>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::new(
                        self.at(k),
                        "invalid value: expected a whole number from 0 to 4294967295",
                    )
                }),
            Some(v) => Err(invalid(&self.at(k), v, "a number")),
        }
    }

    fn array(&self, k: &str) -> Result<Option<&'v Vec<Value>>, ConfigError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(invalid(&self.at(k), v, "an array")),
        }
    }

    pub fn strs(&self, k: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(a) = self.array(k)? else {
            return Ok(None);
        };
        strings(a, &self.at(k)).map(Some)
    }

    pub fn req_strs(&self, k: &str) -> Result<Vec<String>, ConfigError> {
        let v = self.strs(k)?;
        self.required(k, v)
    }

    /// The raw values of an array member.
    pub fn values(&self, k: &str) -> Result<Option<Vec<Value>>, ConfigError> {
        Ok(self.array(k)?.cloned())
    }

    /// An object member, read by `read` (given the value and its path).
    pub fn obj<T>(
        &self,
        k: &str,
        read: impl FnOnce(&'v Value, String) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(k).map(|v| read(v, self.at(k))).transpose()
    }

    pub fn req_obj<T>(
        &self,
        k: &str,
        read: impl FnOnce(&'v Value, String) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        let v = self.obj(k, read)?;
        self.required(k, v)
    }

    /// An array member of objects, each read by `read` (given the value and `k[i]`).
    pub fn objs<T>(
        &self,
        k: &str,
        mut read: impl FnMut(&'v Value, String) -> Result<T, ConfigError>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some(a) = self.array(k)? else {
            return Ok(None);
        };
        let base = self.at(k);
        a.iter()
            .enumerate()
            .map(|(i, v)| read(v, format!("{base}[{i}]")))
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }

    pub fn req_objs<T>(
        &self,
        k: &str,
        read: impl FnMut(&'v Value, String) -> Result<T, ConfigError>,
    ) -> Result<Vec<T>, ConfigError> {
        let v = self.objs(k, read)?;
        self.required(k, v)
    }

    /// An object member mapping names to string arrays.
    pub fn string_lists(
        &self,
        k: &str,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>, ConfigError> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let path = self.at(k);
        let Value::Object(m) = v else {
            return Err(invalid(&path, v, "an object"));
        };
        m.iter()
            .map(|(name, v)| {
                let p = format!("{path}.{name}");
                match v {
                    Value::Array(a) => Ok((name.clone(), strings(a, &p)?)),
                    other => Err(invalid(&p, other, "an array")),
                }
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some)
    }
}

fn strings(a: &[Value], path: &str) -> Result<Vec<String>, ConfigError> {
    a.iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(invalid(&format!("{path}[{i}]"), other, "a string")),
        })
        .collect()
}
