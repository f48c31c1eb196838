//! `s3://` inputs: globs are listed and the objects fetched into a private temporary directory
//! before anything reads them, so every reader (CSV with exact row errors, the LIBSVM parser,
//! lazy scans, Hive `key=value` directories) and every content fingerprint works as it does for
//! a local file. The manifest names the object's URL, not the temporary copy.
//!
//! Fetching whole objects trades Parquet's remote column pruning for one code path with the
//! same checks as local files; the copies are removed when the job ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::IngestError;
use crate::config::{FileSource, InputConfig, S3Options, Source};

/// Staged local copies and the URLs they came from, for fingerprints.
static ORIGINS: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

/// The name the manifest gives a file: its `s3://` URL for a staged copy, else the path.
pub fn source_name(path: &Path) -> String {
    let origins = ORIGINS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    origins
        .iter()
        .find(|(local, _)| local == path)
        .map_or_else(|| path.display().to_string(), |(_, url)| url.clone())
}

/// The temporary directory holding one job's fetched objects; removed when dropped.
pub struct Staged {
    dir: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let mut origins = ORIGINS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        origins.retain(|(local, _)| !local.starts_with(&self.dir));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `path` names an object (`s3://...`) rather than a local file.
fn is_remote(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|text| crate::text::uri_scheme(text).is_some())
}

/// Whether any source of `input` (the main one or a named table) is in object storage.
pub fn has_remote(input: &InputConfig) -> bool {
    let main = match &input.source {
        Source::Files(files) => files.paths.iter().any(|path| is_remote(path)),
        Source::Synthetic(_) => false,
    };
    main || input.preparation.as_ref().is_some_and(|preparation| {
        preparation
            .tables
            .iter()
            .any(|table| table.files.paths.iter().any(|path| is_remote(path)))
    })
}

/// Replaces every `s3://` path of `input` with a local copy (globs expanded to the objects
/// they match, in key order); returns the directory holding the copies, which lives until
/// dropped, or `None` when nothing is remote.
pub fn stage(input: &mut InputConfig) -> Result<Option<Staged>, IngestError> {
    if !has_remote(input) {
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!(
        "submit-s3-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|error| IngestError::Unreadable {
        path: dir.clone(),
        reason: format!("cannot create the directory for s3:// objects: {error}"),
    })?;
    let staged = Staged { dir };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| IngestError::Unreadable {
            path: PathBuf::from("s3://"),
            reason: format!("cannot start the network runtime: {error}"),
        })?;
    let options = input.s3.clone();
    let mut fetcher = Fetcher {
        options: &options,
        stores: HashMap::new(),
        dir: &staged.dir,
        runtime: &runtime,
    };
    if let Source::Files(files) = &mut input.source {
        fetcher.localize(files)?;
    }
    if let Some(preparation) = &mut input.preparation {
        for table in &mut preparation.tables {
            fetcher.localize(&mut table.files)?;
        }
    }
    Ok(Some(staged))
}

struct Fetcher<'a> {
    options: &'a S3Options,
    stores: HashMap<String, AmazonS3>,
    dir: &'a Path,
    runtime: &'a tokio::runtime::Runtime,
}

impl Fetcher<'_> {
    fn localize(&mut self, files: &mut FileSource) -> Result<(), IngestError> {
        let mut paths = Vec::with_capacity(files.paths.len());
        for path in &files.paths {
            match path.to_str() {
                Some(url) if is_remote(path) => paths.extend(self.fetch(url)?),
                _ => paths.push(path.clone()),
            }
        }
        files.paths = paths;
        Ok(())
    }

    fn store(&mut self, url: &str, bucket: &str) -> Result<&AmazonS3, IngestError> {
        if !self.stores.contains_key(bucket) {
            // AWS_* variables first; `[s3]` settings win over them.
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let region = self
                .options
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .or_else(profile_region)
                .unwrap_or_else(|| "us-east-1".to_owned());
            builder = builder.with_region(region);
            if let Some((key, secret)) = profile_credentials()
                && std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            {
                builder = builder
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
            }
            let endpoint = self
                .options
                .endpoint_url
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            let store = builder.build().map_err(|error| IngestError::Unreadable {
                path: PathBuf::from(url),
                reason: format!("cannot set up S3 access: {error}"),
            })?;
            self.stores.insert(bucket.to_owned(), store);
        }
        Ok(&self.stores[bucket])
    }

    /// The local copies of the objects `url` names (one, or every match of a glob).
    fn fetch(&mut self, url: &str) -> Result<Vec<PathBuf>, IngestError> {
        let unreadable = |reason: String| IngestError::Unreadable {
            path: PathBuf::from(url),
            reason,
        };
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(unreadable(
                "the native engine reads local files and s3:// objects".to_owned(),
            ));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || key.is_empty() {
            return Err(unreadable(
                "an s3:// path names a bucket and a key: s3://BUCKET/KEY".to_owned(),
            ));
        }
        let (runtime, dir) = (self.runtime, self.dir);
        let store = self.store(url, bucket)?;
        let keys = if key.contains(['*', '?', '[']) {
            let pattern = glob::Pattern::new(key)
                .map_err(|error| unreadable(format!("not a valid glob pattern: {error}")))?;
            let literal = &key[..key.find(['*', '?', '[']).unwrap_or(key.len())];
            let prefix = &literal[..literal.rfind('/').map_or(0, |slash| slash + 1)];
            let mut keys = runtime
                .block_on(list_under(store, prefix))
                .map_err(|error| {
                    unreadable(format!("cannot list s3://{bucket}/{prefix}: {error}"))
                })?;
            let options = glob::MatchOptions {
                require_literal_separator: true,
                ..glob::MatchOptions::new()
            };
            keys.retain(|candidate| pattern.matches_with(candidate, options));
            keys.sort();
            if keys.is_empty() {
                return Err(unreadable("no object matches the pattern".to_owned()));
            }
            keys
        } else {
            vec![key.to_owned()]
        };
        let mut local = Vec::with_capacity(keys.len());
        for key in keys {
            let object = ObjectPath::from(key.as_str());
            let bytes = runtime
                .block_on(async { store.get(&object).await?.bytes().await })
                .map_err(|error| match error {
                    object_store::Error::NotFound { .. } => IngestError::NotFound {
                        path: PathBuf::from(format!("s3://{bucket}/{key}")),
                    },
                    other => IngestError::Unreadable {
                        path: PathBuf::from(format!("s3://{bucket}/{key}")),
                        reason: other.to_string(),
                    },
                })?;
            let path = dir.join(bucket).join(&key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|error| IngestError::Unreadable {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            }
            std::fs::write(&path, &bytes).map_err(|error| IngestError::Unreadable {
                path: path.clone(),
                reason: format!("cannot keep the fetched object: {error}"),
            })?;
            ORIGINS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push((path.clone(), format!("s3://{bucket}/{key}")));
            local.push(path);
        }
        Ok(local)
    }
}

/// Every key under `prefix`, all levels down.
async fn list_under(store: &AmazonS3, prefix: &str) -> object_store::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pending = vec![(!prefix.is_empty()).then(|| ObjectPath::from(prefix))];
    while let Some(at) = pending.pop() {
        let listed = store.list_with_delimiter(at.as_ref()).await?;
        keys.extend(
            listed
                .objects
                .into_iter()
                .map(|object| object.location.to_string()),
        );
        pending.extend(listed.common_prefixes.into_iter().map(Some));
    }
    Ok(keys)
}

/// The default profile's keys in `~/.aws/credentials`, when the file has them.
fn profile_credentials() -> Option<(String, String)> {
    let text = read_profile_file("credentials")?;
    let key = profile_value(&text, "aws_access_key_id")?;
    let secret = profile_value(&text, "aws_secret_access_key")?;
    Some((key, secret))
}

/// The default profile's region in `~/.aws/config`.
fn profile_region() -> Option<String> {
    profile_value(&read_profile_file("config")?, "region")
}

fn read_profile_file(name: &str) -> Option<String> {
    let home = std::env::var_os("HOME")?;
    std::fs::read_to_string(Path::new(&home).join(".aws").join(name)).ok()
}

/// `key = value` in the `[default]` section of an AWS profile file.
fn profile_value(text: &str, key: &str) -> Option<String> {
    let mut in_default = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_default = line == "[default]";
            continue;
        }
        if !in_default {
            continue;
        }
        if let Some((name, value)) = line.split_once('=')
            && name.trim() == key
        {
            return Some(value.trim().to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_files_are_read_from_the_default_section() {
        let text =
            "[other]\nregion = us-west-2\n[default]\nregion = eu-west-1\naws_access_key_id=AK\n";
        assert_eq!(profile_value(text, "region").as_deref(), Some("eu-west-1"));
        assert_eq!(
            profile_value(text, "aws_access_key_id").as_deref(),
            Some("AK")
        );
        assert_eq!(profile_value(text, "missing"), None);
    }
}
