//! The feedback log: `POST /v1/models/{job}/events` appends `(user, item, value, timestamp)`
//! rows to `<models>/<job>/events/<YYYY-MM-DD>.csv` (the day the server received them, UTC),
//! so a nightly job can read the day's files as input (see `jobs/feedback-retrain.toml`).
//! Append-only: a whole request is checked first, then written with one `write` under an
//! `flock` and flushed to disk before the answer, so an acknowledged event survives a crash and
//! a reader never sees half a request interleaved with another writer's rows.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::score::{RequestError, bad_request};

/// Longest user or item id accepted, in bytes.
const MAX_ID: usize = 256;

/// One checked event.
struct Event {
    user: String,
    item: String,
    value: f64,
    /// Seconds since the Unix epoch.
    timestamp: f64,
}

fn id_text(row: usize, field: &str, value: Option<&Value>) -> Result<String, RequestError> {
    let text = match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        None | Some(Value::Null) => {
            return Err(bad_request(format!("event {row}: `{field}` is missing")));
        }
        Some(other) => {
            return Err(bad_request(format!(
                "event {row}: `{field}` must be a string or an integer, not {}",
                crate::text::shorten(&other.to_string(), 40)
            )));
        }
    };
    if text.is_empty() || text.len() > MAX_ID || text.chars().any(char::is_control) {
        return Err(bad_request(format!(
            "event {row}: `{field}` must be 1 to {MAX_ID} bytes without control characters"
        )));
    }
    Ok(text)
}

fn parse_event(row: usize, event: &Value, received: f64) -> Result<Event, RequestError> {
    let Some(fields) = event.as_object() else {
        return Err(bad_request(format!(
            "event {row} is not an object such as {{\"user\": 7, \"item\": 31, \"value\": 1}}"
        )));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !matches!(key.as_str(), "user" | "item" | "value" | "timestamp"))
    {
        return Err(bad_request(format!(
            "event {row}: unknown field `{}` (known: user, item, value, timestamp)",
            crate::text::shorten(unknown, 40)
        )));
    }
    let user = id_text(row, "user", fields.get("user"))?;
    let item = id_text(row, "item", fields.get("item"))?;
    let value = match fields.get("value") {
        None | Some(Value::Null) => 1.0,
        Some(value) => value
            .as_f64()
            .filter(|value| value.is_finite())
            .ok_or_else(|| bad_request(format!("event {row}: `value` must be a finite number")))?,
    };
    let timestamp = match fields.get("timestamp") {
        None | Some(Value::Null) => received,
        Some(Value::Number(number)) => number
            .as_f64()
            .filter(|seconds| (0.0..1e11).contains(seconds))
            .ok_or_else(|| {
                bad_request(format!(
                    "event {row}: `timestamp` must be seconds since 1970 or an RFC 3339 time"
                ))
            })?,
        Some(Value::String(text)) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|time| time.timestamp_millis() as f64 / 1000.0)
            .map_err(|_| {
                bad_request(format!(
                    "event {row}: `timestamp` {:?} is not an RFC 3339 time such as 2026-12-01T10:00:00Z",
                    crate::text::shorten(text, 40)
                ))
            })?,
        Some(_) => {
            return Err(bad_request(format!(
                "event {row}: `timestamp` must be a number or a string"
            )));
        }
    };
    Ok(Event {
        user,
        item,
        value,
        timestamp,
    })
}

/// The day file events received now go to.
pub fn day_file(job_dir: &Path) -> PathBuf {
    job_dir
        .join("events")
        .join(format!("{}.csv", chrono::Utc::now().format("%Y-%m-%d")))
}

/// Checks the body (`{"events": [...]}` or one event object) and appends it to the day file.
pub fn append(job_dir: &Path, body: &[u8], max_rows: usize) -> Result<Value, RequestError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("the body is not JSON: {error}")))?;
    let received = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let list = match &parsed {
        Value::Object(fields) if fields.contains_key("events") => match &fields["events"] {
            Value::Array(events) => events.as_slice(),
            _ => return Err(bad_request("`events` must be a list of event objects")),
        },
        Value::Object(_) => std::slice::from_ref(&parsed),
        _ => {
            return Err(bad_request(
                "expected {\"events\": [{\"user\": ..., \"item\": ..., \"value\": ..., \"timestamp\": ...}]}",
            ));
        }
    };
    if list.is_empty() {
        return Err(bad_request("`events` is empty"));
    }
    if list.len() > max_rows {
        return Err(RequestError {
            status: 413,
            code: "too_many_rows",
            message: format!("{} events; at most {max_rows} per request", list.len()),
        });
    }
    let events: Vec<Event> = list
        .iter()
        .enumerate()
        .map(|(row, event)| parse_event(row, event, received))
        .collect::<Result<_, _>>()?;
    let path = day_file(job_dir);
    write_events(&path, &events).map_err(|error| RequestError {
        status: 500,
        code: "write_failed",
        message: format!("cannot append to {}: {error}", path.display()),
    })?;
    Ok(json!({
        "appended": events.len(),
        "file": path.display().to_string(),
    }))
}

fn write_events(path: &Path, events: &[Event]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file: File = OpenOptions::new().create(true).append(true).open(path)?;
    file.lock()?;
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    if file.metadata()?.len() == 0 {
        writer.write_record(["user", "item", "value", "timestamp"])?;
    }
    for event in events {
        writer.write_record([
            event.user.as_str(),
            event.item.as_str(),
            &event.value.to_string(),
            &format!("{:.3}", event.timestamp),
        ])?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    if let Some(dir) = path.parent() {
        // A new day file's name is durable too.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_checked_rows_with_one_header() {
        let dir = tempfile::tempdir().unwrap();
        let body = br#"{"events": [{"user": 7, "item": "a,b", "value": 2.5, "timestamp": 1700000000}, {"user": "u", "item": 3}]}"#;
        let answer = append(dir.path(), body, 10).unwrap();
        assert_eq!(answer["appended"], 2);
        append(
            dir.path(),
            br#"{"user": 1, "item": 2, "timestamp": "2026-12-01T00:00:00Z"}"#,
            10,
        )
        .unwrap();
        let text = std::fs::read_to_string(day_file(dir.path())).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "user,item,value,timestamp");
        assert_eq!(lines[1], "7,\"a,b\",2.5,1700000000.000");
        assert!(lines[2].starts_with("u,3,1,"));
        assert_eq!(lines[3], "1,2,1,1796083200.000");
    }

    #[test]
    fn bad_events_name_the_row_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for (body, needle) in [
            (
                &br#"{"events": [{"user": 1, "item": 2}, {"item": 2}]}"#[..],
                "event 1: `user` is missing",
            ),
            (
                br#"{"events": [{"user": 1, "item": 2, "value": "x"}]}"#,
                "finite number",
            ),
            (
                br#"{"events": [{"user": 1, "item": 2, "when": 3}]}"#,
                "unknown field `when`",
            ),
            (
                br#"{"events": [{"user": 1, "item": 2, "timestamp": "yesterday"}]}"#,
                "RFC 3339",
            ),
            (br#"[1]"#, "expected"),
            (br#"{"events": []}"#, "empty"),
        ] {
            let error = append(dir.path(), body, 10).unwrap_err();
            assert_eq!(error.status, 400);
            assert!(error.message.contains(needle), "{}", error.message);
        }
        assert!(!day_file(dir.path()).exists());
        let many = format!(
            "{{\"events\": [{}]}}",
            [r#"{"user":1,"item":2}"#; 11].join(",")
        );
        assert_eq!(
            append(dir.path(), many.as_bytes(), 10).unwrap_err().status,
            413
        );
    }
}
