//! Quoting user data in messages: a value from a file can be a 200 MB line, and an error must
//! still fit on one screen.

/// `text` cut to at most `limit` characters, with a note of how much was left out.
pub fn shorten(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    if count <= limit {
        return text.to_owned();
    }
    let kept: String = text.chars().take(limit).collect();
    format!("{kept}... ({} more characters)", count - limit)
}

/// Column names for a "the file has: ..." list: at most 20, each cut to 60 characters.
pub fn column_list(names: &[String]) -> String {
    let mut list = names
        .iter()
        .take(20)
        .map(|name| shorten(name, 60))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 20 {
        list.push_str(&format!(", ... ({} columns)", names.len()));
    }
    list
}

/// Seconds since the Unix epoch of a date or time as people write them: `2026-11-01`,
/// `2026-11-01 12:30:00` or `2026-11-01T12:30:00` (fractions of a second allowed; UTC),
/// or RFC 3339 with an offset. The time splits read cutoffs and text columns with it.
pub fn parse_timestamp(text: &str) -> Option<f64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros() as f64 / 1e6);
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc().timestamp_micros() as f64 / 1e6);
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as f64)
}

/// The scheme of a URL such as `s3://bucket/key` (`s3`), or `None` for a file path. A scheme
/// is letters, digits, `+`, `-` or `.` after a letter, and must be followed by `://`.
pub fn uri_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_seconds() {
        assert_eq!(parse_timestamp("1970-01-02"), Some(86_400.0));
        assert_eq!(parse_timestamp("1970-01-01 00:01:00"), Some(60.0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5"), Some(1.5));
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn long_values_are_cut() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcdef", 3), "abc... (3 more characters)");
        let names: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        assert!(column_list(&names).ends_with(", ... (25 columns)"));
        assert!(column_list(&["x".repeat(1000)]).len() < 100);
    }
}
