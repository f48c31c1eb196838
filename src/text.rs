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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcdef", 3), "abc... (3 more characters)");
        let names: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        assert!(column_list(&names).ends_with(", ... (25 columns)"));
        assert!(column_list(&["x".repeat(1000)]).len() < 100);
    }
}
