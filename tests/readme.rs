//! The README's parameter and Spark mapping tables are generated from their registries; this
//! keeps the copies current.

#[test]
fn readme_parameter_table_is_current() {
    check_region("params", &submit::config::params::markdown_table());
}

#[test]
fn readme_serve_settings_table_is_current() {
    check_region("serve-params", &submit::config::serve::markdown_table());
}

#[test]
fn readme_spark_mapping_table_is_current() {
    check_region("spark-mapping", &submit::config::spark::markdown_table());
}

/// Blessing rewrites one file from two tests: one at a time.
static README: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check_region(name: &str, generated: &str) {
    let _guard = README
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let start = readme.find(&begin).expect("README has the begin marker") + begin.len();
    let stop = readme.find(&end).expect("README has the end marker");
    if readme[start..stop] != *generated {
        if std::env::var_os("SUBMIT_BLESS").is_some() {
            let updated = format!("{}{generated}{}", &readme[..start], &readme[stop..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "README {name} table is stale: run `SUBMIT_BLESS=1 cargo test --release readme`"
            );
        }
    }
}
