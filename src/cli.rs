//! The command line, spelled as spark-submit spells it, plus `--dry-run`, `--quiet`, `--json`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Configuration precedence, lowest first:
  built-in defaults < conf/defaults.toml (or --properties-file) < job file < flags < --conf
conf/defaults.toml is looked up in $SUBMIT_CONF_DIR, else ./conf. Relative paths in a file
resolve against that file's directory; paths from flags resolve against the working directory.

Exit codes:
  0  ok
  1  the output could not be written (the message names the path), or an internal error
  2  usage or configuration error
  3  input data error (missing file, bad row, no rows)
  4  resource limit (driver_memory exceeded)
  5  training failed (e.g. non-finite values; with --engine spark: spark-submit failed)
  6  with --fail-if-not-promoted: published, but `output.promote = \"if_better\"` kept latest
     (without the flag such a run exits 0)

Examples:
  submit jobs/quickstart.toml
  submit --master local[4] --driver-memory 2G --conf model.rank=20 jobs/movielens-sample.toml
  submit --dry-run jobs/quickstart.toml
  submit --engine spark --master spark://head:7077 jobs/quickstart.toml
  submit --dry-run --engine spark jobs/quickstart.toml   (prints the spark-submit command)
  submit models list models/quickstart
  submit models diff models/quickstart/v1 models/quickstart/v2
  submit models promote models/quickstart/v1
  submit models verify models/quickstart
  submit serve --models models --addr 127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(
    name = "submit",
    version,
    subcommand_negates_reqs = true,
    about = "Train, evaluate and publish versioned models from a job file (spark-submit + MLlib on one machine)",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The job file (TOML) to run.
    #[arg(value_name = "JOB.toml", required_unless_present = "print_params")]
    pub job: Option<PathBuf>,

    /// Where to run: local, local[N] or local[*]; with --engine spark also spark://HOST:PORT,
    /// yarn or k8s://URL (sets job.master).
    #[arg(long, value_name = "MASTER")]
    pub master: Option<String>,

    /// Who trains: native (this process) or spark (spark-submit runs a generated PySpark
    /// application; sets job.engine).
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,

    /// Cap on the process heap, e.g. 2G or 512M (sets job.driver_memory).
    #[arg(long, value_name = "MEM")]
    pub driver_memory: Option<String>,

    /// Executor memory, e.g. 2G; recorded, applies to cluster masters (sets job.executor_memory).
    #[arg(long, value_name = "MEM")]
    pub executor_memory: Option<String>,

    /// Override any job key by its dotted path, e.g. --conf model.rank=20 (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub conf: Vec<String>,

    /// Job name (sets job.name); versions go to <output.dir>/<name>/.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Defaults file to use instead of conf/defaults.toml.
    #[arg(long, value_name = "FILE")]
    pub properties_file: Option<PathBuf>,

    /// Print more detail (resolved configuration, phase timings).
    #[arg(short, long)]
    pub verbose: bool,

    /// Validate and print the resolved job without reading data or writing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// No progress and no summary on stderr (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print one JSON object on stdout at the end (also for errors).
    #[arg(long, global = true)]
    pub json: bool,

    /// Exit with code 6 when `output.promote = "if_better"` keeps `latest` on the old version.
    #[arg(long)]
    pub fail_if_not_promoted: bool,

    /// Print the job-file parameter table (Markdown) and exit.
    #[arg(long, hide = true)]
    pub print_params: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, inspect and manage published model versions.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Answer predictions and recommendations over HTTP from the latest version of every job
    /// under a models folder, following `latest` as new versions are promoted.
    Serve {
        /// The output folder whose jobs are served (each job's `latest`) [serve.models: models].
        #[arg(long, value_name = "DIR")]
        models: Option<String>,
        /// Job files the training endpoint may run [serve.jobs: jobs].
        #[arg(long, value_name = "DIR")]
        jobs: Option<String>,
        /// Address to listen on; port 0 picks a free one [serve.addr: 127.0.0.1:8080].
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Threads answering requests: local, local[N] or local[*] [serve.master: local[2]].
        #[arg(long, value_name = "MASTER")]
        master: Option<String>,
        /// The `--master` of each training run (a child process at nice 10)
        /// [serve.train_master: local[1]].
        #[arg(long, value_name = "MASTER")]
        train_master: Option<String>,
        /// Training runs that may wait; one more is answered 429 [serve.train_queue: 8].
        #[arg(long, value_name = "N")]
        train_queue: Option<String>,
        /// File holding the bearer token for the training and feedback endpoints (off without
        /// one) [serve.token_file].
        #[arg(long, value_name = "FILE")]
        token_file: Option<String>,
        /// Largest request body, e.g. 8M (413 above it) [serve.max_body: 8M].
        #[arg(long, value_name = "SIZE")]
        max_body: Option<String>,
        /// Most rows in one scoring request (413 above it) [serve.max_rows: 100000].
        #[arg(long, value_name = "N")]
        max_rows: Option<String>,
        /// Milliseconds for a request's body to arrive (408) and its answer to be ready (503)
        /// [serve.request_timeout_ms: 30000].
        #[arg(long, value_name = "MS")]
        request_timeout_ms: Option<String>,
        /// How often (milliseconds) each job's `latest` is checked [serve.poll_ms: 500].
        #[arg(long, value_name = "MS")]
        poll_ms: Option<String>,
        /// Memory budget for loaded versions; pinned ones are evicted least recently used past
        /// it [serve.driver_memory: 1G].
        #[arg(long, value_name = "MEM")]
        driver_memory: Option<String>,
    },
    /// GET a route of a running server and exit 0 when it answers 200, 1 otherwise: a health
    /// probe for shell-free containers (compose's healthcheck).
    Healthcheck {
        /// The server.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
        addr: String,
        /// The route to GET.
        #[arg(long, value_name = "PATH", default_value = "/readyz")]
        path: String,
        /// Give up after this many milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Send requests open-loop at fixed rates, in steps, to a running server; write latency
    /// percentiles per step (JSON) and a plot (SVG) to a folder.
    Loadtest {
        /// The server, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
        /// The route to POST to, e.g. /v1/models/gbt/predict.
        #[arg(long, value_name = "PATH")]
        path: String,
        /// File holding the request body.
        #[arg(long, value_name = "FILE")]
        body: PathBuf,
        /// Content type of the body.
        #[arg(long, value_name = "TYPE", default_value = "application/json")]
        content_type: String,
        /// Offered rates, requests per second, one step each: e.g. 500,1000,2000.
        #[arg(long, value_name = "R1,R2,...")]
        rates: String,
        /// Seconds per step.
        #[arg(long, value_name = "S", default_value_t = 5.0)]
        step_s: f64,
        /// Keep-alive connections.
        #[arg(long, value_name = "N", default_value_t = 16)]
        connections: usize,
        /// Folder for loadtest.json and loadtest.svg.
        #[arg(long, value_name = "DIR", default_value = "loadtest")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Versions of one job (models/<job>) or of every job under an output folder: created,
    /// algorithm, main metric, which one is latest.
    List {
        #[arg(value_name = "DIR", default_value = "models")]
        dir: PathBuf,
    },
    /// A version's manifest and metrics (models/<job>/v<N> or models/<job>/latest).
    Show {
        #[arg(value_name = "VERSION")]
        version: PathBuf,
    },
    /// Parameters and metrics of two versions side by side, with deltas.
    Diff {
        #[arg(value_name = "VERSION")]
        first: PathBuf,
        #[arg(value_name = "VERSION")]
        second: PathBuf,
    },
    /// Point latest at this version (atomically, under the job's lock).
    Promote {
        #[arg(value_name = "VERSION")]
        version: PathBuf,
    },
    /// Point latest back at the version that was latest before it (from the job's promotion
    /// history; versions that no longer verify are skipped).
    Rollback {
        #[arg(value_name = "JOB_DIR", default_value = ".")]
        job_dir: PathBuf,
    },
    /// Remove old versions, keeping the newest N and whatever latest points at.
    Gc {
        #[arg(value_name = "JOB_DIR")]
        job_dir: PathBuf,
        #[arg(long, value_name = "N")]
        keep: usize,
    },
    /// Check versions against their manifests (every file's size and blake3 hash) and their
    /// models' structure: one version, every version of a job folder, or of every job under an
    /// output folder. Exit 3 at the first damaged one.
    Verify {
        #[arg(value_name = "VERSION|JOB_DIR", default_value = "models")]
        path: PathBuf,
    },
    /// Write a version's HTML report (its report.html, redrawn from its files), or several
    /// versions side by side with --compare: metrics with deltas, differing parameters
    /// highlighted, the headline metric by version, training curves overlaid.
    Report {
        #[arg(value_name = "VERSION")]
        version: PathBuf,
        /// More versions to compare with the first (repeatable).
        #[arg(long, value_name = "VERSION")]
        compare: Vec<PathBuf>,
        /// Where to write the page (default: <job>-v<N>[-compare].html here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Every change of latest (when, from, to, by which command, why), oldest first.
    History {
        #[arg(value_name = "JOB_DIR")]
        job_dir: PathBuf,
    },
}

impl Cli {
    /// The job flags given on a `models` command line (where they mean nothing); `--json` and
    /// `--quiet` are global and apply to both.
    pub fn job_flags_given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        for (flag, set) in [
            ("JOB.toml", self.job.is_some()),
            ("--master", self.master.is_some()),
            ("--engine", self.engine.is_some()),
            ("--driver-memory", self.driver_memory.is_some()),
            ("--executor-memory", self.executor_memory.is_some()),
            ("--conf", !self.conf.is_empty()),
            ("--name", self.name.is_some()),
            ("--properties-file", self.properties_file.is_some()),
            ("--dry-run", self.dry_run),
            ("--fail-if-not-promoted", self.fail_if_not_promoted),
        ] {
            if set {
                given.push(flag);
            }
        }
        given
    }
}
