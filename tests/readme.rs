//! The README's parameter table is generated from the registry; this keeps the copy current.

#[test]
fn readme_parameter_table_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let begin = "<!-- params:begin -->\n";
    let end = "<!-- params:end -->";
    let start = readme
        .find(begin)
        .expect("README has the params:begin marker")
        + begin.len();
    let stop = readme.find(end).expect("README has the params:end marker");
    let generated = submit::config::params::markdown_table();
    if readme[start..stop] != generated {
        if std::env::var_os("SUBMIT_BLESS").is_some() {
            let updated = format!("{}{generated}{}", &readme[..start], &readme[stop..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "README parameter table is stale: run `SUBMIT_BLESS=1 cargo test --release readme`"
            );
        }
    }
}
