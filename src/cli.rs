//! The command line, spelled as spark-submit spells it, plus `--dry-run`, `--quiet`, `--json`.

use std::path::PathBuf;

use clap::Parser;

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
  5  training failed (e.g. non-finite values)
  6  with --fail-if-not-promoted: published, but `output.promote = \"if_better\"` kept latest
     (without the flag such a run exits 0)

Examples:
  submit jobs/quickstart.toml
  submit --master local[4] --driver-memory 2G --conf model.rank=20 jobs/movielens-sample.toml
  submit --dry-run jobs/quickstart.toml";

#[derive(Debug, Parser)]
#[command(
    name = "submit",
    version,
    about = "Train, evaluate and publish versioned models from a job file (spark-submit + MLlib on one machine)",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The job file (TOML) to run.
    #[arg(value_name = "JOB.toml", required_unless_present = "print_params")]
    pub job: Option<PathBuf>,

    /// Where to run: local, local[N] or local[*] (sets job.master).
    #[arg(long, value_name = "MASTER")]
    pub master: Option<String>,

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
    #[arg(short, long)]
    pub quiet: bool,

    /// Print one JSON object on stdout at the end (also for errors).
    #[arg(long)]
    pub json: bool,

    /// Exit with code 6 when `output.promote = "if_better"` keeps `latest` on the old version.
    #[arg(long)]
    pub fail_if_not_promoted: bool,

    /// Print the job-file parameter table (Markdown) and exit.
    #[arg(long, hide = true)]
    pub print_params: bool,
}
