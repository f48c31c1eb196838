//! `submit`: spark-submit plus Spark MLlib for one machine.
//!
//! One pass through the program, data flowing one way:
//!
//! ```text
//! argv --clap--> Cli --config::validate::layer_sources--> Layered (merged TOML + origins)
//!      --config::validate::validate--> JobConfig (checked)
//!      --ingest--> dataset (Ratings: flat arrays, dense ids)
//!      --split--> algo::als::train (rayon pool of N threads)
//!      --eval--> artifact::store (staging dir -> v<N> by rename -> latest) --> report
//! ```
//!
//! Errors are typed per layer and mapped to exit codes in [`exit_code`]: 2 configuration,
//! 3 input data, 4 resource limit, 5 training failed, 1 output not writable or internal.

pub mod algo;
pub mod artifact;
pub mod batch;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod eval;
pub mod exec;
pub mod ingest;
pub mod job;
pub mod registry;
pub mod report;
pub mod serve;
pub mod text;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::config::{ConfigError, Engine, JobConfig, Task, validate};
use crate::exec::Progress;
use crate::report::Summary;

/// Exit code and short kind name for an error from any layer.
pub fn exit_code(error: &anyhow::Error) -> (u8, &'static str) {
    if let Some(error) = error.downcast_ref::<engine::spark::EngineError>() {
        error.exit_code()
    } else if error.downcast_ref::<ConfigError>().is_some()
        || error.downcast_ref::<serve::ServeError>().is_some()
        || matches!(
            error.downcast_ref::<ingest::IngestError>(),
            Some(ingest::IngestError::Job(_))
        )
    {
        (2, "config")
    } else if error.downcast_ref::<ingest::IngestError>().is_some()
        || error.downcast_ref::<batch::ModelError>().is_some()
        || error.downcast_ref::<artifact::VersionError>().is_some()
        || error.downcast_ref::<algo::trees::TreeError>().is_some()
        || error.downcast_ref::<registry::RegistryError>().is_some()
    {
        (3, "input")
    } else if error.downcast_ref::<serve::Unhealthy>().is_some() {
        (1, "unhealthy")
    } else if error.downcast_ref::<exec::ResourceError>().is_some() {
        (4, "resource")
    } else if error.downcast_ref::<algo::als::AlsError>().is_some() {
        (5, "training")
    } else if error.downcast_ref::<artifact::ArtifactError>().is_some()
        || error.downcast_ref::<ingest::tables::WriteError>().is_some()
        || error.downcast_ref::<std::io::Error>().is_some()
    {
        // Not a bug: the output could not be written (permissions, full disk, a directory
        // where a file should go). The message names the path.
        (1, "output")
    } else {
        (1, "internal")
    }
}

/// `--properties-file`, else `defaults.toml` in `$SUBMIT_CONF_DIR`, else in the job's project
/// root's `conf/` ([`config::project_root`]), when it exists.
fn defaults_file(properties_file: Option<&Path>, job_file: &Path) -> Option<PathBuf> {
    if let Some(path) = properties_file {
        return Some(path.to_path_buf());
    }
    let dir = std::env::var_os("SUBMIT_CONF_DIR").map_or_else(
        || config::project_root(job_file).join("conf"),
        PathBuf::from,
    );
    let path = dir.join("defaults.toml");
    path.is_file().then_some(path)
}

/// Parses and checks the job the command line describes.
pub fn load_job(cli: &cli::Cli, job_file: &Path) -> Result<JobConfig, ConfigError> {
    let mut flags = Vec::new();
    for (flag, key, value) in [
        ("--master", "job.master", &cli.master),
        ("--driver-memory", "job.driver_memory", &cli.driver_memory),
        (
            "--executor-memory",
            "job.executor_memory",
            &cli.executor_memory,
        ),
        ("--name", "job.name", &cli.name),
        ("--engine", "job.engine", &cli.engine),
    ] {
        if let Some(value) = value {
            flags.push((flag, key, value.clone()));
        }
    }
    load_job_file(job_file, cli.properties_file.as_deref(), flags, &cli.conf)
}

/// Parses and checks a job file under `(flag, key, value)` flags and `--conf` arguments, as the
/// command line would (the server's training endpoint checks its requests with this).
pub fn load_job_file(
    job_file: &Path,
    properties_file: Option<&Path>,
    flags: Vec<(&'static str, &'static str, String)>,
    confs: &[String],
) -> Result<JobConfig, ConfigError> {
    let defaults = defaults_file(properties_file, job_file);
    let sources = validate::Sources {
        job_file,
        defaults_file: defaults.as_deref(),
        flags,
        confs,
    };
    let layered = validate::layer_sources(&sources)?;
    validate::validate(layered, job_file)
}

/// Job flags on the command line of a subcommand that has no job are refused, not ignored.
fn refuse_job_flags(cli: &cli::Cli, command: &str, hint: &str) -> Result<(), ConfigError> {
    let stray = cli.job_flags_given();
    if stray.is_empty() {
        return Ok(());
    }
    Err(ConfigError::new(format!(
        "{} cannot be combined with `{command}`",
        stray.join(", ")
    ))
    .hint(hint))
}

fn run(cli: &cli::Cli, progress: &Progress) -> anyhow::Result<Option<Summary>> {
    if let Some(cli::Command::Models { action }) = &cli.command {
        refuse_job_flags(
            cli,
            "submit models ...",
            "global flags are --json and --quiet; run the job and the models command separately",
        )?;
        let output = registry::run(action)?;
        if cli.json {
            println!("{}", output.json);
        } else {
            print!("{}", output.human);
        }
        return Ok(None);
    }
    if let Some(cli::Command::Serve {
        models,
        jobs,
        addr,
        master,
        train_master,
        train_queue,
        token_file,
        max_body,
        max_rows,
        request_timeout_ms,
        poll_ms,
        driver_memory,
    }) = &cli.command
    {
        refuse_job_flags(
            cli,
            "submit serve",
            "give serve's own flags after `serve` (see `submit serve --help`)",
        )?;
        let mut flags = Vec::new();
        for (flag, key, value) in [
            ("--models", "serve.models", models),
            ("--jobs", "serve.jobs", jobs),
            ("--addr", "serve.addr", addr),
            ("--master", "serve.master", master),
            ("--train-master", "serve.train_master", train_master),
            ("--train-queue", "serve.train_queue", train_queue),
            ("--token-file", "serve.token_file", token_file),
            ("--max-body", "serve.max_body", max_body),
            ("--max-rows", "serve.max_rows", max_rows),
            (
                "--request-timeout-ms",
                "serve.request_timeout_ms",
                request_timeout_ms,
            ),
            ("--poll-ms", "serve.poll_ms", poll_ms),
            ("--driver-memory", "serve.driver_memory", driver_memory),
        ] {
            if let Some(value) = value {
                flags.push((flag, key, value.clone()));
            }
        }
        let conf_dir = std::env::var_os("SUBMIT_CONF_DIR")
            .map_or_else(|| PathBuf::from("conf"), PathBuf::from);
        let defaults = Some(conf_dir.join("defaults.toml")).filter(|path| path.is_file());
        let settings = config::serve::load(
            defaults.as_deref(),
            &config::serve::ServeFlags { values: flags },
        )?;
        serve::run(&settings)?;
        return Ok(None);
    }
    if let Some(cli::Command::Healthcheck {
        addr,
        path,
        timeout_ms,
    }) = &cli.command
    {
        let status = serve::healthcheck(addr, path, std::time::Duration::from_millis(*timeout_ms))?;
        if !cli.quiet {
            eprintln!("{addr}{path}: {status}");
        }
        return Ok(None);
    }
    if let Some(cli::Command::Loadtest {
        addr,
        path,
        body,
        content_type,
        rates,
        step_s,
        connections,
        out,
    }) = &cli.command
    {
        let rates = serve::loadtest::parse_rates(rates).ok_or_else(|| {
            ConfigError::new(format!("`--rates {rates}` is not a list of rates"))
                .hint("positive requests per second, comma-separated: 500,1000,2000")
        })?;
        if !(0.05..=3600.0).contains(step_s) || *connections == 0 || *connections > 1024 {
            return Err(ConfigError::new(
                "--step-s must be 0.05 to 3600 and --connections 1 to 1024",
            )
            .into());
        }
        let bytes = std::fs::read(body).map_err(|error| ingest::IngestError::Unreadable {
            path: body.clone(),
            reason: error.to_string(),
        })?;
        let test = serve::loadtest::LoadTest {
            addr: addr.clone(),
            path: path.clone(),
            body: bytes,
            content_type: content_type.clone(),
            rates,
            step: std::time::Duration::from_secs_f64(*step_s),
            connections: *connections,
            out_dir: out.clone(),
        };
        let report = serve::loadtest::run(&test)?;
        if cli.json {
            println!("{report}");
        } else {
            print!("{}", serve::loadtest::human(&report, out));
        }
        return Ok(None);
    }
    let Some(job_file) = &cli.job else {
        return Ok(None);
    };
    let config = load_job(cli, job_file)?;
    if cli.dry_run {
        let destination = match &config.task {
            Task::Train(task) => task.output_dir.join(&config.name).display().to_string(),
            Task::Recommend(task) => task.output.path.display().to_string(),
            Task::Predict(task) => task.output.path.display().to_string(),
        };
        // A tuning run trains grid points x folds models, then refits the best one.
        let models = match &config.task {
            Task::Train(task) => match &task.tuning {
                Some(tuning) => {
                    let points = tuning
                        .max_models
                        .map_or(tuning.points.len(), |max| max.min(tuning.points.len()));
                    let folds = match tuning.method {
                        config::TuningMethod::CrossValidation { folds } => folds,
                        config::TuningMethod::TrainValidationSplit { .. } => 1,
                    };
                    Some((tuning.points.len(), points * folds + 1))
                }
                None => None,
            },
            _ => None,
        };
        // A preparation is planned (not run): SQL and steps are checked against the inputs'
        // schemas, and --verbose shows what polars will execute.
        let prepared = match &config.task {
            Task::Train(task) => Some(&task.input),
            Task::Predict(task) => Some(&task.input),
            Task::Recommend(task) => task.users_from.as_ref().or(task.ids.as_ref()),
        }
        .filter(|input| ingest::prepare::applies(input));
        let plan = match prepared {
            Some(input) => {
                // `s3://` sources are fetched, so the plan checks their real schemas.
                let mut input = input.clone();
                let _staged = ingest::remote::stage(&mut input)?;
                Some(ingest::prepare::describe_plan(&input)?)
            }
            None => None,
        };
        let spark_command = match (&config.engine, &config.task) {
            (Engine::Spark(job), Task::Train(task)) => Some((
                engine::spark::dry_run_command(&config, task, job),
                engine::spark::app_path(task, &config),
            )),
            _ => None,
        };
        if cli.json {
            let value = serde_json::json!({
                "status": "ok",
                "dry_run": true,
                "engine": if spark_command.is_some() { "spark" } else { "native" },
                "spark_submit": spark_command.as_ref().map(|(command, _)| command),
                "spark_app": spark_command.as_ref().map(|(_, app)| app.display().to_string()),
                "grid_points": models.map(|(points, _)| points),
                "models_to_train": models.map_or(1, |(_, models)| models),
                "job": config.name,
                "kind": config.task.kind(),
                "master": config.master.to_string(),
                "threads": config.threads,
                "writes": destination,
                "resolved": config.resolved_toml,
                "plan": plan,
            });
            println!("{value}");
        } else {
            print!("{}", config.resolved_toml);
            if let Some((points, models)) = models {
                progress.info(&format!(
                    "tuning: {points} grid points; {models} models will be trained (grid points x folds, plus the refit of the best)"
                ));
            }
            if let Some(plan) = &plan {
                progress.detail(&format!(
                    "input plan (optimized, as polars runs it):\n{}",
                    plan.trim_end()
                ));
            }
            if let Some((command, app)) = &spark_command {
                progress.info(&format!(
                    "spark engine: the application is {} (written on the first run); it would run:\n  {command}",
                    app.display()
                ));
            }
            progress.info(&format!(
                "dry run: {} job `{}` is valid; it would run on {}{} and write {}",
                config.task.kind(),
                config.name,
                config.master,
                match config.master {
                    config::Master::Cluster(_) => " (the cluster's executors)".to_owned(),
                    _ => format!(" ({} threads)", config.threads),
                },
                destination
            ));
        }
        return Ok(None);
    }
    exec::memory::set_limit(config.driver_memory.0, &config.driver_memory.to_string());
    progress.detail(&format!("resolved job:\n{}", config.resolved_toml));
    progress.detail(&format!(
        "executor_memory {} recorded; in local mode the driver runs the work, so driver_memory {} is the cap",
        config.executor_memory, config.driver_memory
    ));
    if let (Engine::Spark(job), Task::Train(task)) = (&config.engine, &config.task) {
        return Ok(Some(engine::spark::train(&config, task, job, progress)?));
    }
    let pool = exec::thread_pool(config.threads)?;
    let summary = pool.install(|| match &config.task {
        Task::Train(task) => job::train(&config, task, progress),
        Task::Recommend(task) => batch::recommend(&config, task, progress),
        Task::Predict(task) => batch::predict(&config, task, progress),
    })?;
    Ok(Some(summary))
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if exec::panics_contained() {
            // A polars read on malformed input: the reader reports it as an input error.
            return;
        }
        eprintln!(
            "error: internal error (this is a bug in submit {}): {info}\n  please report it with the job file and the command line",
            env!("CARGO_PKG_VERSION")
        );
        std::process::exit(1);
    }));
}

/// The whole program: parse, run, report, and choose the exit code.
pub fn main_entry() -> ExitCode {
    install_panic_hook();
    let wants_json = std::env::args().any(|argument| argument == "--json");
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            if wants_json && code != 0 {
                println!(
                    "{}",
                    report::error_json(2, "usage", error.to_string().trim())
                );
            }
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    if cli.print_params {
        print!("{}", config::params::markdown_table());
        return ExitCode::SUCCESS;
    }
    exec::memory::set_json_errors(cli.json);
    let progress = Progress::new(cli.quiet, cli.verbose);
    match run(&cli, &progress) {
        Ok(Some(summary)) => {
            if !cli.quiet {
                eprintln!("{}", report::human(&summary));
            }
            if cli.json {
                match serde_json::to_string(&summary) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("error: cannot render the summary: {error}"),
                }
            }
            if cli.fail_if_not_promoted && summary.promoted == Some(false) {
                eprintln!(
                    "error: the new version was published but not promoted to latest (--fail-if-not-promoted)"
                );
                return ExitCode::from(6);
            }
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            let (code, kind) = exit_code(&error);
            let message = format!("{error:#}");
            eprintln!("error: {message}");
            if cli.json {
                println!("{}", report::error_json(code, kind, &message));
            }
            ExitCode::from(code)
        }
    }
}
