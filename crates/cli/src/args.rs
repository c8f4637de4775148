//! A small command-line parser: `--name value`, `--name=value`, boolean flags, positionals,
//! and `-h`/`--help` anywhere. Enough for four commands without a dependency.

use std::collections::BTreeMap;

/// Parsed arguments of one command.
#[derive(Debug, Default)]
pub struct Args {
    /// `--name value` options (the last one wins), by name without dashes.
    pub options: BTreeMap<String, Vec<String>>,
    /// Flags given (`--help`, …).
    pub flags: Vec<String>,
    /// Everything else, in order (`-` included: it means stdin).
    pub positionals: Vec<String>,
}

impl Args {
    /// Parses `argv` for a command whose options taking a value are `with_value` and whose
    /// boolean flags are `flags`. Unknown `--options` are an error naming them.
    pub fn parse(argv: &[String], with_value: &[&str], flags: &[&str]) -> Result<Args, String> {
        let mut out = Args::default();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            if a == "-h" || a == "--help" {
                out.flags.push("help".into());
                continue;
            }
            if a == "--" {
                out.positionals.extend(it.by_ref().cloned());
                break;
            }
            let Some(name) = a.strip_prefix("--") else {
                out.positionals.push(a.clone());
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if with_value.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                };
                out.options.entry(name.to_string()).or_default().push(value);
            } else if flags.contains(&name) && inline.is_none() {
                out.flags.push(name.to_string());
            } else {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(out)
    }

    /// The last value of `--name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.options
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable `--name`.
    pub fn all(&self, name: &str) -> &[String] {
        self.options.get(name).map_or(&[], Vec::as_slice)
    }

    /// Whether `--name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if path == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(v)
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_flags_and_positionals() {
        let a = Args::parse(
            &v(&["--host", "envoy", "a.json", "--x=1", "-", "--help"]),
            &["host", "x"],
            &[],
        )
        .unwrap();
        assert_eq!(a.get("host"), Some("envoy"));
        assert_eq!(a.get("x"), Some("1"));
        assert_eq!(a.positionals, v(&["a.json", "-"]));
        assert!(a.flag("help"));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            Args::parse(&v(&["--bogus"]), &[], &[]).unwrap_err(),
            "unknown option --bogus"
        );
        assert_eq!(
            Args::parse(&v(&["--host"]), &["host"], &[]).unwrap_err(),
            "--host needs a value"
        );
    }
}
