//! `s3://` inputs against a real S3-compatible server on 127.0.0.1 (moto in server mode, which
//! `.ci/run` installs from PyPI), and the configuration errors for URLs that need no server.

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, stderr, submit, write};

/// moto's server, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
    python: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SUBMIT_MOTO_SERVER`, or `moto_server` on the PATH.
fn moto_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SUBMIT_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("moto_server"))
        .find(|path| path.is_file())
}

fn start_moto() -> Moto {
    let server =
        moto_server().expect("moto_server (pip install \"moto[server]\"), or SUBMIT_MOTO_SERVER");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        // The Python beside moto_server has boto3 (a dependency of moto).
        python: server.with_file_name("python"),
    };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto_server did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    moto
}

impl Moto {
    /// Creates `bucket` and puts each `(key, body)` into it.
    fn put(&self, bucket: &str, objects: &[(&str, &str)]) {
        let script = r#"
import json, sys, boto3
endpoint, bucket, objects = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
s3.create_bucket(Bucket=bucket)
for key, body in objects:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
"#;
        let objects = serde_json::to_string(objects).unwrap();
        let status = Command::new(&self.python)
            .args(["-c", script, &self.endpoint, bucket, &objects])
            .status()
            .expect("python runs");
        assert!(status.success(), "uploading to moto failed");
    }
}

const DAY_ONE: &str = "user,item,rating\n1,10,4.0\n1,11,3.0\n2,10,5.0\n2,12,1.0\n";
const DAY_TWO: &str = "user,item,rating\n3,11,2.0\n3,12,4.5\n1,12,2.0\n";

fn s3_job(endpoint: &str, input: &str) -> String {
    format!(
        "[job]\nmaster = \"local[2]\"\n[input]\n{input}\n[model]\nrank = 2\nmax_iter = 2\n[split]\ntest_fraction = 0.0\n[s3]\nendpoint_url = \"{endpoint}\"\n[output]\ndir = \"models\"\n"
    )
}

/// Runs `submit` with test credentials in the environment.
fn submit_s3(dir: &std::path::Path) -> Command {
    let mut command = submit(dir);
    command
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("HOME", dir);
    command
}

#[test]
#[ignore = "needs moto_server (pip install \"moto[server]\"; .ci/run installs it)"]
fn s3_globs_hive_directories_and_errors_against_a_local_server() {
    let moto = start_moto();
    moto.put(
        "ratings",
        &[
            ("events/dt=2026-11-01/part-0.csv", DAY_ONE),
            ("events/dt=2026-11-02/part-0.csv", DAY_TWO),
            ("other/ignored.csv", DAY_TWO),
        ],
    );
    let dir = tempfile::tempdir().unwrap();

    // A glob over Hive-style directories: both days, `dt` a column, URLs in the manifest.
    write(
        dir.path(),
        "all.toml",
        &s3_job(
            &moto.endpoint,
            "path = \"s3://ratings/events/dt=2026-11-*/part-*.csv\"",
        ),
    );
    let output = run(submit_s3(dir.path()).args(["all.toml", "--json", "--quiet"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = common::json(&output);
    assert_eq!(summary["metrics"]["counts"]["ratings"].as_u64(), Some(7));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("models/all/v1/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["inputs"][1]["source"],
        "s3://ratings/events/dt=2026-11-02/part-0.csv"
    );
    assert_eq!(manifest["inputs"][1]["rows"], 3);

    // The partition column in SQL.
    write(
        dir.path(),
        "day.toml",
        &s3_job(
            &moto.endpoint,
            "path = \"s3://ratings/events/**/*.csv\"\nsql = \"SELECT \\\"user\\\", item, rating FROM input WHERE dt = '2026-11-02'\"",
        ),
    );
    let output = run(submit_s3(dir.path()).args(["day.toml", "--json", "--quiet"]));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        common::json(&output)["metrics"]["counts"]["ratings"].as_u64(),
        Some(3)
    );
    // --dry-run plans the SQL over the fetched objects' schema.
    let output = run(submit_s3(dir.path()).args(["day.toml", "--dry-run", "--verbose"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = common::stdout(&output) + &stderr(&output);
    assert!(text.contains("dt"), "{text}");

    // A missing object and a glob that matches nothing: exit 3, naming the URL.
    for (name, path, words) in [
        (
            "missing",
            "s3://ratings/events/none.csv",
            "s3://ratings/events/none.csv",
        ),
        (
            "nomatch",
            "s3://ratings/events/dt=2027-*/x.csv",
            "no object matches",
        ),
    ] {
        write(
            dir.path(),
            &format!("{name}.toml"),
            &s3_job(&moto.endpoint, &format!("path = \"{path}\"")),
        );
        let output = run(submit_s3(dir.path()).arg(format!("{name}.toml")));
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        assert!(stderr(&output).contains(words), "{}", stderr(&output));
    }
    // Nothing of the fetched copies is left behind.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("submit-s3-{}", std::process::id()))
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn urls_the_native_engine_cannot_read_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, input, words) in [
        ("gs", "path = \"gs://bucket/ratings.csv\"", "gs://"),
        ("ftp", "path = \"ftp://host/ratings.csv\"", "ftp://"),
    ] {
        write(
            dir.path(),
            &format!("{name}.toml"),
            &s3_job("http://127.0.0.1:9", input),
        );
        let output = run(submit(dir.path()).arg(format!("{name}.toml")));
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(words), "{}", stderr(&output));
    }
    write(
        dir.path(),
        "endpoint.toml",
        "[input]\npath = \"s3://bucket/ratings.csv\"\n[s3]\nendpoint_url = \"127.0.0.1:9000\"\n",
    );
    let output = run(submit(dir.path()).arg("endpoint.toml"));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("s3.endpoint_url"),
        "{}",
        stderr(&output)
    );
}
