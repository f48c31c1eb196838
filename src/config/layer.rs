//! Reads the configuration layers (built-in defaults, defaults file, job file, flags, `--conf`)
//! and merges them into one TOML table that remembers where every key came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Table;
use toml::Value;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::params::{self, Kind, PARAMS};

/// Where a configuration value was set; error messages point here.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    Default,
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        text: String,
    },
    Flag(&'static str),
    Conf(String),
}

impl Origin {
    /// The directory relative paths set here resolve against (`None`: the working directory).
    pub fn base_dir(&self) -> Option<&Path> {
        match self {
            Origin::File { path, .. } => path.parent(),
            _ => None,
        }
    }

    pub fn is_default(&self) -> bool {
        matches!(self, Origin::Default)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "built-in default"),
            Origin::File {
                path, line, column, ..
            } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
            Origin::Conf(argument) => write!(f, "--conf {argument}"),
        }
    }
}

/// A merged configuration: the values plus, for every dotted key, where it was set.
#[derive(Clone, Debug, Default)]
pub struct Layered {
    pub table: Table,
    /// Where each key's value was set (errors about a value point here).
    pub origins: BTreeMap<String, Origin>,
    /// Where each key's name is, for keys read from files (errors about a key point here).
    pub key_origins: BTreeMap<String, Origin>,
}

/// The keys that name the data source; a higher layer setting one replaces the others.
const SOURCE_KEYS: [&str; 3] = ["path", "paths", "synthetic"];

impl Layered {
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut value = self.table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// Where the key's name was written, when it came from a file; else where it was set.
    pub fn key_origin(&self, key: &str) -> Origin {
        self.key_origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.origin(key))
    }

    /// Puts `value` at `key`, creating sections on the way.
    pub fn set(&mut self, key: &str, value: Value, origin: Origin) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let Some(leaf) = parts.pop() else { return };
        // The sections on the way were named here too: an error about one of them (an unknown
        // `--conf a.b.c=1`) points at this origin, not at the built-in defaults.
        for depth in 1..=parts.len() {
            self.key_origins
                .entry(parts[..depth].join("."))
                .or_insert_with(|| origin.clone());
        }
        let mut table = &mut self.table;
        for part in parts {
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            let Value::Table(inner) = entry else { return };
            table = inner;
        }
        record_origins(key, &value, &origin, &mut self.origins);
        table.insert(leaf.to_owned(), value);
    }

    /// Drops a whole section (the defaults file's `[serve]`, which only `submit serve` reads).
    pub fn remove_section(&mut self, name: &str) {
        self.table.remove(name);
        let inside = |key: &String| key == name || key.starts_with(&format!("{name}."));
        self.origins.retain(|key, _| !inside(key));
        self.key_origins.retain(|key, _| !inside(key));
    }

    /// Lays `over` on top of `self`: `over` wins key by key, sections merge.
    pub fn merge(&mut self, over: Layered) -> Result<(), ConfigError> {
        if let Some(Value::Table(input)) = over.table.get("input") {
            let given: Vec<&str> = SOURCE_KEYS
                .into_iter()
                .filter(|key| input.contains_key(*key))
                .collect();
            if given.len() > 1 {
                let key = format!("input.{}", given[1]);
                return Err(ConfigError::new(format!(
                    "`input.{}` and `input.{}` are both given",
                    given[0], given[1]
                ))
                .key(&key)
                .origin(over.origin(&key))
                .allowed("exactly one of `input.path`, `input.paths`, `input.synthetic`"));
            }
            if let Some(source) = given.first() {
                for other in SOURCE_KEYS.into_iter().filter(|key| key != source) {
                    self.remove(&format!("input.{other}"));
                }
            }
        }
        for (key, value) in flatten_leaves(&over.table) {
            let origin = over.origin(&key);
            self.set(&key, value, origin);
        }
        for (key, origin) in over.origins {
            self.origins.entry(key).or_insert(origin);
        }
        self.key_origins.extend(over.key_origins);
        Ok(())
    }

    /// Drops one key of the top level or of a top-level section.
    pub fn remove(&mut self, key: &str) {
        let (section, leaf) = key.split_at(key.rfind('.').unwrap_or(0));
        let leaf = leaf.trim_start_matches('.');
        let table = if section.is_empty() {
            Some(&mut self.table)
        } else {
            self.table.get_mut(section).and_then(Value::as_table_mut)
        };
        if let Some(table) = table {
            table.remove(leaf);
        }
        let prefix = format!("{key}.");
        self.origins
            .retain(|known, _| known != key && !known.starts_with(&prefix));
    }
}

/// Every value that is not a section (inline tables of a `Kind::Section` key are flattened too).
fn flatten_leaves(table: &Table) -> Vec<(String, Value)> {
    fn walk(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                Value::Table(inner)
                    if params::find(&path).is_some_and(|param| param.kind == Kind::Section) =>
                {
                    walk(&path, inner, out)
                }
                _ => out.push((path, value.clone())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

fn record_origins(
    key: &str,
    value: &Value,
    origin: &Origin,
    origins: &mut BTreeMap<String, Origin>,
) {
    origins.insert(key.to_owned(), origin.clone());
    if let Value::Table(table) = value {
        for (inner_key, inner) in table {
            record_origins(&format!("{key}.{inner_key}"), inner, origin, origins);
        }
    }
}

/// The built-in defaults, straight from the parameter registry.
pub fn defaults() -> Layered {
    let mut layered = Layered::default();
    // Synthetic keys default only once a synthetic source is chosen (see validate).
    for param in PARAMS
        .iter()
        .filter(|param| !param.key.starts_with("input.synthetic."))
    {
        if let Some(literal) = param.default {
            let parsed: Table = toml::from_str(&format!("v = {literal}"))
                .expect("registry defaults are checked by a unit test");
            if let Some(value) = parsed.get("v") {
                layered.set(param.key, value.clone(), Origin::Default);
            }
        }
    }
    layered
}

/// Reads one TOML file (job or defaults file) with the position of every key.
pub fn load_file(path: &Path) -> Result<Layered, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(format!("cannot read {}: {error}", path.display()))
            .hint("check the path; relative paths are taken from the working directory")
    })?;
    parse_text(path, &text)
}

/// Parses TOML `text` read from `path` (named in errors and origins).
pub fn parse_text(path: &Path, text: &str) -> Result<Layered, ConfigError> {
    let text = text.to_owned();
    let spanned = DeTable::parse(&text).map_err(|error| {
        let origin = error
            .span()
            .map(|span| file_origin(path, &text, span.start))
            .unwrap_or(Origin::Default);
        ConfigError::new(format!("invalid TOML: {}", error.message().trim())).origin(origin)
    })?;
    let table: Table = toml::from_str(&text)
        .map_err(|error| ConfigError::new(format!("invalid TOML: {}", error.message().trim())))?;
    let mut origins = BTreeMap::new();
    let mut key_origins = BTreeMap::new();
    collect_positions(
        "",
        spanned.get_ref(),
        path,
        &text,
        &mut origins,
        &mut key_origins,
    );
    Ok(Layered {
        table,
        origins,
        key_origins,
    })
}

fn collect_positions(
    prefix: &str,
    table: &DeTable<'_>,
    path: &Path,
    text: &str,
    origins: &mut BTreeMap<String, Origin>,
    key_origins: &mut BTreeMap<String, Origin>,
) {
    for (key, value) in table.iter() {
        let dotted = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        let at = match value.get_ref() {
            DeValue::Table(_) => key.span().start,
            _ => value.span().start,
        };
        origins.insert(dotted.clone(), file_origin(path, text, at));
        key_origins.insert(dotted.clone(), file_origin(path, text, key.span().start));
        match value.get_ref() {
            DeValue::Table(inner) => {
                collect_positions(&dotted, inner, path, text, origins, key_origins)
            }
            // `[[input.steps]]`: element N's keys are `input.steps.N.KEY`.
            DeValue::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        let element = format!("{dotted}.{index}");
                        let at = file_origin(path, text, item.span().start);
                        origins.insert(element.clone(), at.clone());
                        key_origins.insert(element.clone(), at);
                        collect_positions(&element, inner, path, text, origins, key_origins);
                    }
                }
            }
            _ => {}
        }
    }
}

fn file_origin(path: &Path, text: &str, offset: usize) -> Origin {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let line_end = text[offset..]
        .find('\n')
        .map_or(text.len(), |at| offset + at);
    Origin::File {
        path: path.to_path_buf(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        text: text[line_start..line_end].trim_end_matches('\r').to_owned(),
    }
}

/// One `--conf key=value`: the value is read as a TOML literal when it is one, else as a string.
pub fn conf_argument(argument: &str) -> Result<(String, Value), ConfigError> {
    let Some((key, raw)) = argument.split_once('=') else {
        return Err(
            ConfigError::new(format!("--conf expects key=value, got `{argument}`"))
                .origin(Origin::Conf(argument.to_owned()))
                .hint("for example --conf model.rank=20"),
        );
    };
    let key = key.trim();
    let value = toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()));
    Ok((key.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_are_typed_when_they_parse() {
        assert_eq!(
            conf_argument("model.rank=20").unwrap().1,
            Value::Integer(20)
        );
        assert_eq!(
            conf_argument("job.master=local[4]").unwrap().1,
            Value::String("local[4]".into())
        );
        assert!(conf_argument("model.rank").is_err());
    }

    #[test]
    fn higher_source_replaces_lower_source() {
        let mut base = defaults();
        let mut job = Layered::default();
        job.set(
            "input.path",
            Value::String("a.csv".into()),
            Origin::Flag("x"),
        );
        base.merge(job).unwrap();
        let mut conf = Layered::default();
        conf.set(
            "input.synthetic",
            toml::from_str::<Table>("v = { kind = \"ratings\" }").unwrap()["v"].clone(),
            Origin::Conf("c".into()),
        );
        base.merge(conf).unwrap();
        assert!(base.get("input.path").is_none());
        assert!(base.get("input.synthetic.kind").is_some());
    }
}
