//! Configuration errors through the CLI: exit code 2 and a message naming file, line:column,
//! key, value and what is allowed (snapshots keep the wording stable).

mod common;

use common::*;

fn config_error(job: &str, extra_args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "job.toml", job);
    let output = run(submit(dir.path()).arg("job.toml").args(extra_args));
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
    assert!(
        !dir.path().join("models").exists(),
        "nothing is written on a config error"
    );
    stderr(&output)
}

const VALID_INPUT: &str = "[input]\npath = \"r.csv\"\n";

#[test]
fn unknown_key_suggests_the_close_one() {
    let message = config_error(&format!("{VALID_INPUT}[model]\nrnk = 3\n"), &[]);
    insta::assert_snapshot!(message);
}

#[test]
fn key_in_the_wrong_section_points_to_the_right_one() {
    let message = config_error(&format!("[job]\nrank = 3\n{VALID_INPUT}"), &[]);
    assert!(message.contains("did you mean `model.rank`?"), "{message}");
}

#[test]
fn unknown_section_lists_the_known_ones() {
    let message = config_error(&format!("{VALID_INPUT}[modle]\nrank = 3\n"), &[]);
    assert!(message.contains("unknown key `modle`"), "{message}");
    assert!(message.contains("did you mean `model`?"), "{message}");
}

#[test]
fn wrong_type() {
    let message = config_error(&format!("{VALID_INPUT}[model]\nrank = \"ten\"\n"), &[]);
    insta::assert_snapshot!(message);
}

#[test]
fn out_of_range() {
    let message = config_error(&format!("{VALID_INPUT}[model]\nrank = 0\n"), &[]);
    insta::assert_snapshot!(message);
}

#[test]
fn float_out_of_range() {
    let message = config_error(&format!("{VALID_INPUT}[split]\ntest_fraction = 1.5\n"), &[]);
    assert!(message.contains("job.toml:4:17"), "{message}");
    assert!(message.contains("found: number 1.5"), "{message}");
}

#[test]
fn missing_source() {
    let message = config_error("[job]\nname = \"x\"\n", &[]);
    insta::assert_snapshot!(message);
}

#[test]
fn unparseable_memory_size() {
    let message = config_error(
        &format!("[job]\ndriver_memory = \"2X\"\n{VALID_INPUT}"),
        &[],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn memory_size_out_of_range() {
    let message = config_error(
        &format!("[job]\ndriver_memory = \"1M\"\n{VALID_INPUT}"),
        &[],
    );
    assert!(message.contains("memory size out of range"), "{message}");
}

#[test]
fn bad_master_string() {
    let message = config_error(&format!("[job]\nmaster = \"yarn\"\n{VALID_INPUT}"), &[]);
    insta::assert_snapshot!(message);
}

#[test]
fn bad_master_from_a_flag_names_the_flag() {
    let message = config_error(VALID_INPUT, &["--master", "local[0]"]);
    assert!(message.contains("command-line flag --master"), "{message}");
}

#[test]
fn path_and_synthetic_together() {
    let message = config_error(
        "[input]\npath = \"r.csv\"\nsynthetic = { kind = \"ratings\" }\n",
        &[],
    );
    insta::assert_snapshot!(message);
}

#[test]
fn broken_toml() {
    let message = config_error("[job\nname = \"x\"\n", &[]);
    insta::assert_snapshot!(message);
}

#[test]
fn unknown_conf_key() {
    let message = config_error(VALID_INPUT, &["--conf", "model.rnak=3"]);
    assert!(message.contains("--conf model.rnak=3"), "{message}");
    assert!(message.contains("did you mean `model.rank`?"), "{message}");
}

#[test]
fn conf_without_equals() {
    let message = config_error(VALID_INPUT, &["--conf", "model.rank"]);
    assert!(message.contains("key=value"), "{message}");
}

#[test]
fn synthetic_key_for_another_kind() {
    let message = config_error(
        "[input]\nsynthetic = { kind = \"ratings\", rows = 10 }\n",
        &[],
    );
    assert!(message.contains("does not apply"), "{message}");
    assert!(message.contains("input.synthetic.rows"), "{message}");
}

#[test]
fn column_name_without_header() {
    let message = config_error(
        "[input]\npath = \"r.txt\"\nheader = false\n[input.columns]\nuser = \"userId\"\n",
        &[],
    );
    assert!(
        message.contains("a column name needs a header"),
        "{message}"
    );
    assert!(message.contains("job.toml:5:8"), "{message}");
}

#[test]
fn unknown_extension_asks_for_a_format() {
    let message = config_error("[input]\npath = \"r.xyz\"\n", &[]);
    assert!(message.contains("set `input.format`"), "{message}");
}

#[test]
fn libsvm_cannot_train_als() {
    let message = config_error("[input]\npath = \"r.libsvm\"\n", &[]);
    assert!(
        message.contains("libsvm input cannot train als"),
        "{message}"
    );
}

#[test]
fn glob_without_matches() {
    let message = config_error("[input]\npath = \"data/*.csv\"\n", &[]);
    assert!(message.contains("no file matches"), "{message}");
}

#[test]
fn missing_job_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(submit(dir.path()).arg("nope.toml"));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot read nope.toml"));
}

#[test]
fn errors_are_json_with_json() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.toml",
        "[model]\nrank = -1\n[input]\npath = \"r.csv\"\n",
    );
    let output = run(submit(dir.path()).args(["job.toml", "--json"]));
    assert_eq!(output.status.code(), Some(2));
    let object = json(&output);
    assert_eq!(object["status"], "error");
    assert_eq!(object["exit_code"], 2);
    assert!(object["error"].as_str().unwrap().contains("model.rank"));
}

#[test]
fn clap_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(submit(dir.path()).args(["--no-such-flag", "job.toml"]));
    assert_eq!(output.status.code(), Some(2));
}
