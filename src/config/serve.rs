//! `submit serve`'s settings: the `[serve]` table of `conf/defaults.toml` under the flags, each
//! key documented once here (the README's serve table is generated from [`SERVE_PARAMS`]) and
//! checked like a job key: unknown keys with did-you-mean, types and ranges with `file:line:col`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use super::layer::{self, Layered, Origin};
use super::params::{Kind, Param, param, suggestions_in};
use super::validate::type_matches;
use super::{ByteSize, ConfigError, Master};

use Kind::{Integer, Section};

pub const SERVE_PARAMS: &[Param] = &[
    param(
        "serve",
        Section,
        None,
        "",
        "`submit serve`: read from `conf/defaults.toml` (in `$SUBMIT_CONF_DIR`, else `./conf`); flags override it. Job files do not read it.",
    ),
    param(
        "serve.models",
        Kind::String,
        Some("\"models\""),
        "a folder; relative to the file that sets it (a flag: the working directory)",
        "The output folder whose jobs are served, each from its `latest` version (`--models`).",
    ),
    param(
        "serve.jobs",
        Kind::String,
        Some("\"jobs\""),
        "a folder; relative to the file that sets it",
        "Job files the training endpoint may run: `POST /v1/jobs/{name}/runs` runs `{jobs}/{name}.toml` and nothing else (`--jobs`).",
    ),
    param(
        "serve.addr",
        Kind::String,
        Some("\"127.0.0.1:8080\""),
        "`HOST:PORT` with an IP address; port 0 picks a free one",
        "Address to listen on; loopback unless told otherwise (`--addr`).",
    ),
    param(
        "serve.master",
        Kind::String,
        Some("\"local[2]\""),
        "`local`, `local[N]`, `local[*]`",
        "Threads that answer requests (`--master`).",
    ),
    param(
        "serve.train_master",
        Kind::String,
        Some("\"local[1]\""),
        "`local`, `local[N]`, `local[*]`",
        "The pool each training run gets: runs are child processes at lower CPU priority (nice 10) with this `--master`, so answering keeps its cores (`--train-master`).",
    ),
    param(
        "serve.train_queue",
        Integer,
        Some("8"),
        "0 to 1000",
        "Training runs that may wait while another runs; one more is answered 429. One run per job at a time, one run at a time in all.",
    ),
    param(
        "serve.token_file",
        Kind::String,
        None,
        "a file holding the token (surrounding whitespace ignored); relative to the file that sets it",
        "Bearer token for the training and feedback endpoints (`Authorization: Bearer ...`). Without one those endpoints answer 403 (`--token-file`).",
    ),
    param(
        "serve.max_body",
        Kind::String,
        Some("\"8M\""),
        "a size from 1K to 16G",
        "Largest request body; larger is 413 (`--max-body`).",
    ),
    param(
        "serve.max_rows",
        Integer,
        Some("100000"),
        "1 to 100000000",
        "Most rows (or events) in one request; more is 413 (`--max-rows`).",
    ),
    param(
        "serve.request_timeout_ms",
        Integer,
        Some("30000"),
        "100 to 3600000",
        "A request whose body has not arrived within it is answered 408; one whose answer is not ready within it, 503 (`--request-timeout-ms`).",
    ),
    param(
        "serve.poll_ms",
        Integer,
        Some("500"),
        "1 to 3600000",
        "How often each job's `latest` is checked for a new version (`--poll-ms`).",
    ),
    param(
        "serve.driver_memory",
        Kind::String,
        Some("\"1G\""),
        "a size such as `512M` or `2G`; 16M to 16T",
        "Memory budget for loaded versions: pinned versions (`/versions/{N}/`) are evicted least recently used when the estimated size of everything loaded passes it (the served `latest` versions always stay) (`--driver-memory`).",
    ),
];

/// Checked settings for `submit serve`.
#[derive(Clone, Debug)]
pub struct ServeSettings {
    pub models_dir: PathBuf,
    pub jobs_dir: PathBuf,
    pub addr: String,
    pub threads: usize,
    pub train_master: Master,
    pub train_queue: usize,
    /// The token, read from the token file; `None` turns the token endpoints off.
    pub token: Option<String>,
    pub body_limit: usize,
    pub max_rows: usize,
    pub request_timeout: Duration,
    pub poll: Duration,
    pub memory_budget: u64,
}

/// Values given on serve's command line, by key (`serve.addr` -> "127.0.0.1:0").
pub struct ServeFlags {
    pub values: Vec<(&'static str, &'static str, String)>,
}

fn find(key: &str) -> Option<&'static Param> {
    SERVE_PARAMS.iter().find(|param| param.key == key)
}

/// The serve table: the defaults file's `[serve]` (when there is a file), then the flags.
pub fn load(
    defaults_file: Option<&Path>,
    flags: &ServeFlags,
) -> Result<ServeSettings, ConfigError> {
    let mut layered = Layered::default();
    if let Some(path) = defaults_file {
        let file = layer::load_file(path)?;
        if let Some(Value::Table(table)) = file.table.get("serve") {
            for (key, value) in table {
                let dotted = format!("serve.{key}");
                let Some(param) = find(&dotted) else {
                    let error = ConfigError::new(format!("unknown key `{dotted}`"))
                        .origin(file.key_origin(&dotted));
                    return Err(match suggestions_in(SERVE_PARAMS, &dotted).first() {
                        Some(best) => error.hint(format!("did you mean `{best}`?")),
                        None => {
                            let known: Vec<&str> = SERVE_PARAMS
                                .iter()
                                .filter_map(|param| param.key.strip_prefix("serve."))
                                .collect();
                            error.hint(format!("known keys in serve: {}", known.join(", ")))
                        }
                    });
                };
                if !type_matches(param.kind, value) {
                    return Err(ConfigError::new(format!("wrong type for `{dotted}`"))
                        .origin(file.origin(&dotted))
                        .found(value.to_string())
                        .allowed(format!("{}: {}", param.kind.with_article(), param.allowed)));
                }
                layered.set(&dotted, value.clone(), file.origin(&dotted));
            }
        }
    }
    for (flag, key, value) in &flags.values {
        let typed = match find(key).map(|param| param.kind) {
            Some(Integer) => value.parse::<i64>().map(Value::Integer).map_err(|_| {
                ConfigError::new(format!("`{flag} {value}` is not a whole number"))
                    .origin(Origin::Flag(flag))
            })?,
            _ => Value::String(value.clone()),
        };
        layered.set(key, typed, Origin::Flag(flag));
    }
    Settings { layered: &layered }.check()
}

struct Settings<'a> {
    layered: &'a Layered,
}

impl Settings<'_> {
    fn value(&self, key: &str) -> Option<Value> {
        self.layered
            .get(key)
            .cloned()
            .or_else(|| find(key).and_then(Param::default_value))
    }

    fn invalid(&self, key: &str) -> ConfigError {
        let origin = self.layered.origin(key);
        let mut error = ConfigError::new(format!("invalid value for `{key}`")).origin(origin);
        if let Some(value) = self.layered.get(key) {
            error = error.found(value.to_string());
        }
        if let Some(param) = find(key) {
            error = error.allowed(param.allowed);
        }
        error
    }

    fn string(&self, key: &str) -> Option<std::string::String> {
        self.value(key)
            .and_then(|value| value.as_str().map(str::to_owned))
    }

    /// A path, relative to the file that set it (flags and built-in defaults: the working
    /// directory).
    fn path(&self, key: &str) -> Option<PathBuf> {
        let text = self.string(key)?;
        let path = PathBuf::from(&text);
        Some(match self.layered.origin(key).base_dir() {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        })
    }

    fn integer(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, ConfigError> {
        self.value(key)
            .and_then(|value| value.as_integer())
            .filter(|number| range.contains(number))
            .ok_or_else(|| self.invalid(key))
    }

    fn local_master(&self, key: &str) -> Result<Master, ConfigError> {
        self.string(key)
            .and_then(|text| Master::parse(&text))
            .filter(|master| !master.is_cluster())
            .ok_or_else(|| self.invalid(key))
    }

    fn size(&self, key: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, ConfigError> {
        self.string(key)
            .and_then(|text| ByteSize::parse(&text))
            .map(|size| size.0)
            .filter(|bytes| range.contains(bytes))
            .ok_or_else(|| self.invalid(key))
    }

    fn check(&self) -> Result<ServeSettings, ConfigError> {
        let addr = self.string("serve.addr").unwrap_or_default();
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(self.invalid("serve.addr"));
        }
        let token = match self.path("serve.token_file") {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|error| {
                    ConfigError::new(format!(
                        "cannot read the token file {}: {error}",
                        path.display()
                    ))
                    .origin(self.layered.origin("serve.token_file"))
                })?;
                let token = text.trim().to_owned();
                if token.len() < 16 || token.chars().any(char::is_whitespace) {
                    return Err(ConfigError::new(format!(
                        "the token in {} must be one word of at least 16 characters",
                        path.display()
                    ))
                    .origin(self.layered.origin("serve.token_file"))
                    .hint("e.g. `head -c 32 /dev/urandom | base64 > token`; the token itself is never printed"));
                }
                Some(token)
            }
        };
        Ok(ServeSettings {
            models_dir: self
                .path("serve.models")
                .unwrap_or_else(|| PathBuf::from("models")),
            jobs_dir: self
                .path("serve.jobs")
                .unwrap_or_else(|| PathBuf::from("jobs")),
            addr,
            threads: self.local_master("serve.master")?.threads(),
            train_master: self.local_master("serve.train_master")?,
            train_queue: self.integer("serve.train_queue", 0..=1000)? as usize,
            token,
            body_limit: self.size("serve.max_body", 1 << 10..=1 << 34)? as usize,
            max_rows: self.integer("serve.max_rows", 1..=100_000_000)? as usize,
            request_timeout: Duration::from_millis(
                self.integer("serve.request_timeout_ms", 100..=3_600_000)? as u64,
            ),
            poll: Duration::from_millis(self.integer("serve.poll_ms", 1..=3_600_000)? as u64),
            memory_budget: self.size("serve.driver_memory", 16 << 20..=1 << 44)?,
        })
    }
}

/// The README's serve table, generated from [`SERVE_PARAMS`].
pub fn markdown_table() -> std::string::String {
    super::params::table_of(SERVE_PARAMS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(values: &[(&'static str, &'static str, &str)]) -> ServeFlags {
        ServeFlags {
            values: values
                .iter()
                .map(|(flag, key, value)| (*flag, *key, (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn defaults_parse_and_flags_override_the_file() {
        let settings = load(None, &flags(&[])).unwrap();
        assert_eq!(settings.addr, "127.0.0.1:8080");
        assert_eq!(settings.threads, 2);
        assert_eq!(settings.body_limit, 8 << 20);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("defaults.toml");
        std::fs::write(&file, "[serve]\nmax_rows = 50\nmodels = \"../m\"\n").unwrap();
        let settings = load(
            Some(&file),
            &flags(&[("--max-rows", "serve.max_rows", "7")]),
        )
        .unwrap();
        assert_eq!(settings.max_rows, 7);
        assert_eq!(settings.models_dir, dir.path().join("../m"));
    }

    #[test]
    fn unknown_and_bad_keys_name_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("defaults.toml");
        std::fs::write(&file, "[serve]\nmax_rowz = 5\n").unwrap();
        let message = load(Some(&file), &flags(&[])).unwrap_err().to_string();
        assert!(
            message.contains("did you mean `serve.max_rows`"),
            "{message}"
        );
        assert!(message.contains("defaults.toml:2:1"), "{message}");
        std::fs::write(&file, "[serve]\nmax_rows = 0\n").unwrap();
        let message = load(Some(&file), &flags(&[])).unwrap_err().to_string();
        assert!(
            message.contains("serve.max_rows") && message.contains("1 to 100000000"),
            "{message}"
        );
        let message = load(None, &flags(&[("--addr", "serve.addr", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("--addr"), "{message}");
    }
}
