//! `submit models ...`: the versions a job has published, read back from disk, and the few
//! changes a person makes to them by hand (which one is `latest`, removing old ones). Every
//! change to `latest` is one atomic rename under the job's lock, as when publishing.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::artifact::{self, store};
use crate::cli::ModelsAction;

/// A registry command that cannot be carried out (exit code 3, like other input problems).
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct RegistryError {
    pub path: PathBuf,
    pub problem: String,
}

fn problem(path: &Path, problem: impl Into<String>) -> RegistryError {
    RegistryError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// What a command prints: lines for a person and one JSON value for `--json`.
pub struct Output {
    pub human: String,
    pub json: Value,
}

pub fn run(action: &ModelsAction) -> anyhow::Result<Output> {
    match action {
        ModelsAction::List { dir } => list(dir),
        ModelsAction::Show { version } => show(version),
        ModelsAction::Diff { first, second } => diff(first, second),
        ModelsAction::Promote { version } => promote(version),
        ModelsAction::Rollback { job_dir } => rollback(job_dir),
        ModelsAction::Gc { job_dir, keep } => gc(job_dir, *keep),
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// The metric a version is listed by: the first of these its metrics.json has.
fn headline(metrics: &Value) -> Option<(&'static str, f64)> {
    ["rmse", "ndcg_at_k", "auc_roc", "f1", "accuracy", "r2"]
        .into_iter()
        .find_map(|name| metrics[name].as_f64().map(|value| (name, value)))
}

fn is_job_dir(dir: &Path) -> bool {
    dir.join(store::LATEST).exists()
        || store::versions(dir).is_ok_and(|versions| !versions.is_empty())
}

fn list(dir: &Path) -> anyhow::Result<Output> {
    if !dir.is_dir() {
        return Err(problem(
            dir,
            "no such directory (give a job's folder, e.g. models/quickstart, or the output folder)",
        )
        .into());
    }
    let job_dirs: Vec<PathBuf> = if is_job_dir(dir) {
        vec![dir.to_path_buf()]
    } else {
        let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|error| problem(dir, error.to_string()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_dir() && is_job_dir(path))
            .collect();
        dirs.sort();
        dirs
    };
    let mut human = String::new();
    let mut jobs = Vec::new();
    for job_dir in job_dirs {
        let latest = store::current_latest(&job_dir).map(|(version, _)| version);
        human.push_str(&format!(
            "{}\n  {:<8} {:<25} {:<14} {:<22} latest\n",
            job_dir.display(),
            "version",
            "created",
            "algorithm",
            "metric"
        ));
        let mut versions = Vec::new();
        for version in store::versions(&job_dir)? {
            let dir = job_dir.join(format!("v{version}"));
            let Some(manifest) = read_json(&dir.join(artifact::MANIFEST)) else {
                human.push_str(&format!(
                    "  v{version:<7} (incomplete: no readable manifest)\n"
                ));
                versions.push(json!({"version": version, "complete": false}));
                continue;
            };
            let metrics = read_json(&dir.join(artifact::METRICS)).unwrap_or(Value::Null);
            let metric = headline(&metrics);
            let is_latest = latest == Some(version);
            human.push_str(&format!(
                "  v{version:<7} {:<25} {:<14} {:<22} {}\n",
                manifest["created_at"].as_str().unwrap_or("-"),
                manifest["algorithm"].as_str().unwrap_or("-"),
                metric.map_or("-".to_owned(), |(name, value)| format!("{name} {value:.4}")),
                if is_latest { "*" } else { "" },
            ));
            versions.push(json!({
                "version": version,
                "complete": true,
                "created_at": manifest["created_at"],
                "algorithm": manifest["algorithm"],
                "metric": metric.map(|(name, _)| name),
                "value": metric.map(|(_, value)| value),
                "latest": is_latest,
                "dir": dir.display().to_string(),
            }));
        }
        jobs.push(json!({
            "job_dir": job_dir.display().to_string(),
            "latest": latest,
            "versions": versions,
        }));
    }
    if jobs.is_empty() {
        human.push_str(&format!("no published versions under {}\n", dir.display()));
    }
    Ok(Output {
        human,
        json: json!({"status": "ok", "jobs": jobs}),
    })
}

/// A version directory (or `latest`), resolved: (job dir, version number, version dir).
fn resolve_version(path: &Path) -> Result<(PathBuf, u32, PathBuf), RegistryError> {
    let resolved = fs::canonicalize(path).map_err(|error| problem(path, error.to_string()))?;
    let name = resolved
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();
    let version: u32 = name
        .strip_prefix('v')
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| {
            problem(
                path,
                "not a version directory (expected .../<job>/v<N> or .../<job>/latest)",
            )
        })?;
    let job_dir = resolved
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| problem(path, "a version directory has a job folder above it"))?;
    if !resolved.join(artifact::MANIFEST).is_file() {
        return Err(problem(path, "incomplete version: it has no manifest.json"));
    }
    Ok((job_dir, version, resolved))
}

fn show(version: &Path) -> anyhow::Result<Output> {
    let (_, _, dir) = resolve_version(version)?;
    let (manifest, metrics) = artifact::load_description(&dir)?;
    let value = json!({
        "status": "ok",
        "dir": dir.display().to_string(),
        "manifest": serde_json::to_value(&manifest)?,
        "metrics": metrics,
    });
    let human = format!(
        "{}\nmanifest.json:\n{}\nmetrics.json:\n{}\n",
        dir.display(),
        serde_json::to_string_pretty(&value["manifest"])?,
        serde_json::to_string_pretty(&value["metrics"])?
    );
    Ok(Output { human, json: value })
}

/// Top-level scalars of an object, as `key -> value` (nested objects flattened with dots).
fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    if let Value::Object(map) = value {
        for (key, inner) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match inner {
                Value::Object(_) => flatten(inner, &path, out),
                Value::Array(_) => {}
                scalar => out.push((path, scalar.clone())),
            }
        }
    }
}

fn diff(first: &Path, second: &Path) -> anyhow::Result<Output> {
    let (_, first_number, first_dir) = resolve_version(first)?;
    let (_, second_number, second_dir) = resolve_version(second)?;
    let mut human = format!(
        "{:<36} {:>20} {:>20} {:>14}\n",
        "",
        format!("v{first_number}"),
        format!("v{second_number}"),
        "delta"
    );
    let mut sections = serde_json::Map::new();
    for (section, file, key) in [
        ("params", artifact::MANIFEST, Some("params")),
        ("metrics", artifact::METRICS, None),
    ] {
        let read = |dir: &Path| {
            let value = read_json(&dir.join(file)).unwrap_or(Value::Null);
            let value = match key {
                Some(key) => value[key].clone(),
                None => value,
            };
            let mut flat = Vec::new();
            flatten(&value, "", &mut flat);
            flat
        };
        let (a, b) = (read(&first_dir), read(&second_dir));
        let mut keys: Vec<String> = a.iter().chain(&b).map(|(key, _)| key.clone()).collect();
        keys.sort();
        keys.dedup();
        keys.retain(|key| !key.starts_with("timings_s") && !key.starts_with("peak_"));
        human.push_str(&format!("{section}:\n"));
        let mut rows = Vec::new();
        for key in keys {
            let find = |list: &[(String, Value)]| {
                list.iter()
                    .find(|(name, _)| *name == key)
                    .map(|(_, value)| value.clone())
                    .unwrap_or(Value::Null)
            };
            let (old, new) = (find(&a), find(&b));
            let delta = match (old.as_f64(), new.as_f64()) {
                (Some(old), Some(new)) if old != new => Some(new - old),
                _ => None,
            };
            let show = |value: &Value| match value {
                Value::Null => "-".to_owned(),
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            human.push_str(&format!(
                "  {:<34} {:>20} {:>20} {:>14}{}\n",
                key,
                show(&old),
                show(&new),
                delta.map_or(String::new(), |delta| format!("{delta:+.6}")),
                if old != new { "  *" } else { "" },
            ));
            rows.push(json!({"key": key, "first": old, "second": new, "delta": delta, "changed": old != new}));
        }
        sections.insert(section.to_owned(), Value::Array(rows));
    }
    Ok(Output {
        human,
        json: json!({
            "status": "ok",
            "first": first_dir.display().to_string(),
            "second": second_dir.display().to_string(),
            "params": sections.remove("params"),
            "metrics": sections.remove("metrics"),
        }),
    })
}

fn promote(version: &Path) -> anyhow::Result<Output> {
    let (job_dir, number, _) = resolve_version(version)?;
    let _lock = store::lock_job(&job_dir)?;
    let previous = store::current_latest(&job_dir).map(|(version, _)| version);
    store::point_latest(&job_dir, number)?;
    Ok(moved(&job_dir, previous, number, "promote"))
}

fn moved(job_dir: &Path, previous: Option<u32>, now: u32, action: &str) -> Output {
    Output {
        human: format!(
            "{}: latest -> v{now}{}\n",
            job_dir.display(),
            previous.map_or(String::new(), |previous| format!(" (was v{previous})"))
        ),
        json: json!({"status": "ok", "action": action, "job_dir": job_dir.display().to_string(), "latest": now, "previous": previous}),
    }
}

fn rollback(job_dir: &Path) -> anyhow::Result<Output> {
    if !is_job_dir(job_dir) {
        return Err(problem(job_dir, "not a job folder with published versions").into());
    }
    let _lock = store::lock_job(job_dir)?;
    let current = store::current_latest(job_dir)
        .map(|(version, _)| version)
        .ok_or_else(|| problem(job_dir, "`latest` points at no complete version"))?;
    let previous = store::versions(job_dir)?
        .into_iter()
        .rfind(|&version| {
            version < current
                && job_dir
                    .join(format!("v{version}"))
                    .join(artifact::MANIFEST)
                    .is_file()
        })
        .ok_or_else(|| {
            problem(
                job_dir,
                format!("no complete version older than v{current} to roll back to"),
            )
        })?;
    store::point_latest(job_dir, previous)?;
    Ok(moved(job_dir, Some(current), previous, "rollback"))
}

fn gc(job_dir: &Path, keep: usize) -> anyhow::Result<Output> {
    if !is_job_dir(job_dir) {
        return Err(problem(job_dir, "not a job folder with published versions").into());
    }
    let _lock = store::lock_job(job_dir)?;
    let latest = store::current_latest(job_dir).map(|(version, _)| version);
    let versions = store::versions(job_dir)?;
    let cut = versions.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for &version in &versions[..cut] {
        if Some(version) == latest {
            continue;
        }
        // Renamed first, so a removal cut short never leaves a half version named v<N>.
        let dir = job_dir.join(format!("v{version}"));
        let doomed = job_dir.join(format!(".deleting-v{version}-{}", std::process::id()));
        fs::rename(&dir, &doomed).map_err(|error| problem(&dir, error.to_string()))?;
        fs::remove_dir_all(&doomed).map_err(|error| problem(&doomed, error.to_string()))?;
        removed.push(version);
    }
    let kept: Vec<u32> = store::versions(job_dir)?;
    Ok(Output {
        human: format!(
            "{}: removed {} version(s){}; kept {}\n",
            job_dir.display(),
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    removed
                        .iter()
                        .map(|v| format!("v{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            kept.iter()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        json: json!({"status": "ok", "action": "gc", "removed": removed, "kept": kept, "latest": latest}),
    })
}
