//! `submit serve`: the HTTP face of the published versions. Routes parse and check a request,
//! take the job's loaded version from the [`cache`] (one `Arc` per request, so a swap never
//! disturbs a request in flight) and call the same scoring the batch jobs use. A background task
//! follows every job's `latest` and swaps new versions in once they are loaded and verified; a
//! version that fails to load is logged and the old one keeps serving.

pub mod cache;
mod events;
pub mod loadtest;
mod metrics;
pub mod runs;
pub mod score;
mod training;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use self::cache::{ModelCache, Served, ServedAls, ServedModel, valid_job_name};
use self::score::{RequestError, bad_request};
use crate::config::serve::ServeSettings;

/// The server could not start (exit code 2: a usage problem, such as an address in use).
#[derive(Debug, thiserror::Error)]
#[error("cannot serve on {addr}: {problem}")]
pub struct ServeError {
    pub addr: String,
    pub problem: String,
}

/// A health probe that did not get a 200 (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{target}: {problem}")]
pub struct Unhealthy {
    pub target: String,
    pub problem: String,
}

/// `submit healthcheck`: one GET with a deadline; the status line when it is 200.
pub fn healthcheck(addr: &str, path: &str, timeout: Duration) -> Result<String, Unhealthy> {
    use std::io::{Read, Write};
    let unhealthy = |problem: String| Unhealthy {
        target: format!("http://{addr}{path}"),
        problem,
    };
    let socket: SocketAddr = addr
        .parse()
        .map_err(|_| unhealthy("not an address such as 127.0.0.1:8080".to_owned()))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, timeout)
        .map_err(|error| unhealthy(format!("cannot connect: {error}")))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| unhealthy(format!("cannot send: {error}")))?;
    let mut answer = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or("").to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(status_line)
    } else if status_line.is_empty() {
        Err(unhealthy("no answer".to_owned()))
    } else {
        Err(unhealthy(status_line))
    }
}

struct AppState {
    cache: ModelCache,
    metrics: metrics::Metrics,
    runs: Arc<runs::Runs>,
    /// The blake3 hash of the token (compared in constant time); `None`: no token endpoints.
    token_hash: Option<blake3::Hash>,
    max_rows: usize,
    body_limit: usize,
    request_timeout: Duration,
}

type Shared = Arc<AppState>;

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            axum::Json(json!({"error": self.message, "code": self.code})),
        )
            .into_response()
    }
}

fn not_found(message: impl Into<String>) -> RequestError {
    RequestError {
        status: 404,
        code: "not_found",
        message: message.into(),
    }
}

/// A job name from a path, refused (400) unless it is one `job.name` allows: no traversal.
fn checked_job(name: &str) -> Result<&str, RequestError> {
    if valid_job_name(name) {
        Ok(name)
    } else {
        Err(bad_request(format!(
            "{:?} is not a job name (letters, digits, `-`, `_`, `.`)",
            crate::text::shorten(name, 80)
        )))
    }
}

fn no_model(state: &AppState, job: &str) -> RequestError {
    not_found(format!(
        "no model `{job}` under {}",
        state.cache.models_dir.display()
    ))
}

/// The version a route names: the served one, or a pinned `versions/{N}`.
fn resolve(
    state: &AppState,
    job: &str,
    version: Option<&str>,
) -> Result<Arc<Served>, RequestError> {
    let job = checked_job(job)?;
    match version {
        None => state.cache.get(job).ok_or_else(|| {
            if state.cache.job_exists(job) {
                RequestError {
                    status: 503,
                    code: "not_loaded",
                    message: format!(
                        "job `{job}` has no loadable latest version (see the server log)"
                    ),
                }
            } else {
                no_model(state, job)
            }
        }),
        Some(text) => {
            let number: u64 = text
                .strip_prefix('v')
                .unwrap_or(text)
                .parse()
                .map_err(|_| {
                    bad_request(format!(
                        "{:?} is not a version number",
                        crate::text::shorten(text, 40)
                    ))
                })?;
            match state.cache.pinned(job, number) {
                Ok(Some(served)) => Ok(served),
                Ok(None) => Err(not_found(format!("job `{job}` has no version {number}"))),
                Err(error) => Err(RequestError {
                    status: 503,
                    code: "damaged_version",
                    message: error.to_string(),
                }),
            }
        }
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, RequestError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        RequestError {
            status: status.as_u16(),
            code: if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            },
            message: rejection.body_text(),
        }
    })
}

fn answer(served: &Served, mut fields: serde_json::Map<String, Value>) -> Response {
    fields.insert("model".to_owned(), Value::from(served.job.clone()));
    fields.insert("version".to_owned(), Value::from(served.version));
    axum::Json(Value::Object(fields)).into_response()
}

/// The `{job}` and optional `{version}` of a route.
type RouteParams = Path<HashMap<String, String>>;

/// The version a route's path names (the served one, or a pinned `versions/{N}`).
fn resolve_route(
    state: &AppState,
    params: &HashMap<String, String>,
) -> Result<Arc<Served>, RequestError> {
    let job = params.get("job").map_or("", String::as_str);
    resolve(state, job, params.get("version").map(String::as_str))
}

async fn predict(
    State(state): State<Shared>,
    Path(params): RouteParams,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RequestError> {
    let body = body_bytes(body)?;
    let served = resolve_route(&state, &params)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json");
    let frame = score::parse_frame(content_type, &body, state.max_rows)?;
    let mut fields = serde_json::Map::new();
    match &served.model {
        ServedModel::Trees(model) => {
            let (predictions, probabilities) = score::score_trees(model, &frame)?;
            fields.insert("predictions".to_owned(), predictions);
            if let Some(rows) = probabilities {
                fields.insert(
                    "probabilities".to_owned(),
                    score::probability_objects(model, &rows),
                );
            }
        }
        ServedModel::Als(model) => {
            fields.insert("predictions".to_owned(), score::score_pairs(model, &frame)?);
        }
    }
    Ok(answer(&served, fields))
}

/// The ALS model of a served version, or a 400 saying what `what` needs.
fn als_model<'a>(served: &'a Served, what: &str) -> Result<&'a ServedAls, RequestError> {
    match &served.model {
        ServedModel::Als(model) => Ok(model),
        ServedModel::Trees(_) => Err(bad_request(format!(
            "`{}` is a {} model; {what} need an als model",
            served.job, served.algorithm
        ))),
    }
}

fn answer_object(served: &Served, value: Value) -> Result<Response, RequestError> {
    match value {
        Value::Object(fields) => Ok(answer(served, fields)),
        _ => Err(bad_request("unexpected answer")),
    }
}

async fn similar_items(
    State(state): State<Shared>,
    Path(params): RouteParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RequestError> {
    let body = body_bytes(body)?;
    let served = resolve_route(&state, &params)?;
    let model = als_model(&served, "similar items")?;
    answer_object(&served, score::similar_items(model, &body)?)
}

async fn recommend(
    State(state): State<Shared>,
    Path(params): RouteParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RequestError> {
    let body = body_bytes(body)?;
    let served = resolve_route(&state, &params)?;
    let model = als_model(&served, "recommendations")?;
    answer_object(&served, score::recommend(model, &body)?)
}

/// Open Inference Protocol v2: the served version's metadata (inputs are the feature columns,
/// or `user` and `item`).
fn inference_metadata(served: &Served) -> Value {
    let (inputs, outputs): (Vec<Value>, Vec<Value>) = match &served.model {
        ServedModel::Trees(model) => (
            model
                .saved
                .feature_names
                .iter()
                .zip(&model.categories)
                .map(|(name, categories)| {
                    json!({"name": name, "datatype": if categories.is_some() { "BYTES" } else { "FP32" }, "shape": [-1]})
                })
                .collect(),
            vec![
                json!({"name": "predictions", "datatype": if model.saved.label_names.is_some() { "BYTES" } else { "FP64" }, "shape": [-1]}),
                json!({"name": "probabilities", "datatype": "FP64", "shape": [-1, model.saved.model.classes]}),
            ],
        ),
        ServedModel::Als(_) => (
            vec![
                json!({"name": "user", "datatype": "BYTES", "shape": [-1]}),
                json!({"name": "item", "datatype": "BYTES", "shape": [-1]}),
            ],
            vec![json!({"name": "predictions", "datatype": "FP64", "shape": [-1]})],
        ),
    };
    json!({
        "name": served.job,
        "versions": [served.version.to_string()],
        "platform": format!("submit-{}", served.algorithm),
        "inputs": inputs,
        "outputs": outputs,
    })
}

async fn v2_infer(
    State(state): State<Shared>,
    Path(params): RouteParams,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RequestError> {
    let body = body_bytes(body)?;
    let served = resolve_route(&state, &params)?;
    let names: Vec<String> = match &served.model {
        ServedModel::Trees(model) => model.saved.feature_names.clone(),
        ServedModel::Als(_) => vec!["user".to_owned(), "item".to_owned()],
    };
    let (frame, id) = score::parse_inference(&body, &names, state.max_rows)?;
    let outputs = match &served.model {
        ServedModel::Trees(model) => {
            let (predictions, probabilities) = score::score_trees(model, &frame)?;
            let mut outputs = vec![score::tensor("predictions", &predictions, None)];
            if let Some(rows) = probabilities {
                // Rows of class probabilities, in class order.
                outputs.push(score::tensor(
                    "probabilities",
                    &json!(rows),
                    Some(model.saved.model.classes),
                ));
            }
            outputs
        }
        ServedModel::Als(model) => {
            vec![score::tensor(
                "predictions",
                &score::score_pairs(model, &frame)?,
                None,
            )]
        }
    };
    Ok(axum::Json(json!({
        "model_name": served.job,
        "model_version": served.version.to_string(),
        "id": id,
        "outputs": outputs,
    }))
    .into_response())
}

async fn v2_metadata(
    State(state): State<Shared>,
    Path(params): RouteParams,
) -> Result<Response, RequestError> {
    let served = resolve_route(&state, &params)?;
    Ok(axum::Json(inference_metadata(&served)).into_response())
}

async fn v2_ready(
    State(state): State<Shared>,
    Path(params): RouteParams,
) -> Result<Response, RequestError> {
    let served = resolve_route(&state, &params)?;
    Ok(axum::Json(json!({"name": served.job, "ready": true})).into_response())
}

async fn v2_live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

async fn v2_server_ready() -> Response {
    axum::Json(json!({"ready": true})).into_response()
}

fn describe(served: &Served) -> Value {
    let headline = served.headline();
    json!({
        "model": served.job,
        "version": served.version,
        "algorithm": served.algorithm,
        "metric": headline.map(|(name, _)| name),
        "value": headline.map(|(_, value)| value),
        "loaded_at": served.loaded_at,
        "dir": served.dir.display().to_string(),
    })
}

async fn list_models(State(state): State<Shared>) -> Response {
    let models: Vec<Value> = state
        .cache
        .all()
        .iter()
        .map(|served| describe(served))
        .collect();
    axum::Json(json!({"models": models})).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<Shared>) -> Response {
    // Every model was loaded (or found unloadable) before the listener opened.
    let models: Vec<Value> = state
        .cache
        .all()
        .iter()
        .map(|served| json!({"model": served.job, "version": served.version}))
        .collect();
    axum::Json(json!({"status": "ready", "models": models})).into_response()
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    let served: Vec<(String, u64)> = state
        .cache
        .all()
        .iter()
        .map(|served| (served.job.clone(), served.version))
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&served, &state.runs.counts()),
    )
        .into_response()
}

async fn fallback() -> RequestError {
    not_found(
        "no such route; GET /v1/models lists the models, POST /v1/models/{job}/predict scores rows",
    )
}

/// The model a `/v1/models/{job}/...` or `/v2/models/{job}/...` path names, for metrics labels.
fn model_label(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/models/")
        .or_else(|| path.strip_prefix("/v2/models/"))?;
    let job = rest.split('/').next()?;
    valid_job_name(job).then_some(job)
}

/// Reads the body within the request timeout (408 past it), runs the handler within it (503
/// past it), and counts every request by route, model and status, with its latency.
async fn measure(
    State(state): State<Shared>,
    request: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let model = model_label(request.uri().path())
        .filter(|_| route != "unmatched")
        .map(str::to_owned);
    let started = Instant::now();
    let deadline = started + state.request_timeout;
    let (parts, body) = request.into_parts();
    let response = match tokio::time::timeout_at(
        deadline.into(),
        axum::body::to_bytes(body, state.body_limit),
    )
    .await
    {
        Err(_) => RequestError {
            status: 408,
            code: "request_timeout",
            message: format!(
                "the request body did not arrive within {} ms",
                state.request_timeout.as_millis()
            ),
        }
        .into_response(),
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                RequestError {
                    status: 413,
                    code: "body_too_large",
                    message: format!(
                        "the body is larger than the limit of {} bytes (serve.max_body)",
                        state.body_limit
                    ),
                }
                .into_response()
            } else {
                bad_request(format!("cannot read the request body: {error}")).into_response()
            }
        }
        Ok(Ok(bytes)) => {
            let request = Request::from_parts(parts, axum::body::Body::from(bytes));
            match tokio::time::timeout_at(deadline.into(), next.run(request)).await {
                Ok(response) => response,
                Err(_) => RequestError {
                    status: 503,
                    code: "timeout",
                    message: format!(
                        "no answer within {} ms (serve.request_timeout_ms)",
                        state.request_timeout.as_millis()
                    ),
                }
                .into_response(),
            }
        }
    };
    state.metrics.observe(
        &route,
        model.as_deref(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

fn router(state: Shared, body_limit: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{job}/predict", post(predict))
        .route("/v1/models/{job}/versions/{version}/predict", post(predict))
        .route("/v1/models/{job}/recommend", post(recommend))
        .route("/v1/models/{job}/similar-items", post(similar_items))
        .route(
            "/v1/models/{job}/versions/{version}/recommend",
            post(recommend),
        )
        .route("/v2/health/live", get(v2_live))
        .route("/v2/health/ready", get(v2_server_ready))
        .route("/v2/models/{job}", get(v2_metadata))
        .route("/v2/models/{job}/ready", get(v2_ready))
        .route("/v2/models/{job}/infer", post(v2_infer))
        .route("/v2/models/{job}/versions/{version}", get(v2_metadata))
        .route("/v2/models/{job}/versions/{version}/infer", post(v2_infer))
        .route("/v1/models/{job}/events", post(training::append_events))
        .route("/v1/jobs", get(training::list_jobs))
        .route("/v1/jobs/{name}/runs", post(training::start_run))
        .route("/v1/runs", get(training::list_runs))
        .route(
            "/v1/runs/{id}",
            get(training::show_run).delete(training::cancel_run),
        )
        .route("/v1/runs/{id}/log", get(training::run_log))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The routes, for the start-up message.
pub const ROUTES: &[&str] = &[
    "GET  /healthz, /readyz, /metrics (Prometheus text)",
    "GET  /v1/models",
    "POST /v1/models/{job}/predict                 (MLflow dataframe_split / dataframe_records / text/csv; ALS: user, item columns)",
    "POST /v1/models/{job}/recommend               ({\"user\": ID, \"k\": 10, \"filter_seen\": true, \"exclude\": [...], \"ratings\": [[item, value], ...] to fold in})",
    "POST /v1/models/{job}/similar-items           ({\"item\": ID, \"k\": 10}: cosine over item factors)",
    "POST /v1/models/{job}/versions/{N}/predict|recommend",
    "GET  /v2/health/live, /v2/health/ready, /v2/models/{job}[/versions/{N}], /v2/models/{job}/ready",
    "POST /v2/models/{job}[/versions/{N}]/infer    (Open Inference Protocol v2)",
    "POST /v1/models/{job}/events                  (token; {\"events\": [{\"user\", \"item\", \"value\", \"timestamp\"}]} appended to the feedback log)",
    "GET  /v1/jobs; POST /v1/jobs/{name}/runs      (token; {\"conf\": {\"model.rank\": 20}} runs {jobs}/{name}.toml)",
    "GET  /v1/runs, /v1/runs/{id}, /v1/runs/{id}/log; DELETE /v1/runs/{id}   (token)",
];

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = interrupt => {},
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {},
    }
    eprintln!("{} shutting down: finishing requests in flight", now());
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn flatten(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match result {
        Ok(served) => served.map_err(anyhow::Error::from),
        Err(error) => Err(anyhow::Error::from(error)),
    }
}

/// Loads every job's latest version, prints the routes and what it serves, and answers until
/// SIGTERM or SIGINT (requests in flight finish, for at most 10 s).
pub fn run(options: &ServeSettings) -> anyhow::Result<()> {
    let cache = ModelCache::new(options.models_dir.clone(), options.memory_budget);
    for line in cache.refresh() {
        eprintln!("{} {line}", now());
    }
    let state = Arc::new(AppState {
        cache,
        metrics: metrics::Metrics::default(),
        runs: runs::Runs::new(
            options.jobs_dir.clone(),
            options.train_master.clone(),
            options.train_queue,
        ),
        token_hash: options
            .token
            .as_deref()
            .map(|token| blake3::hash(token.as_bytes())),
        max_rows: options.max_rows,
        body_limit: options.body_limit,
        request_timeout: options.request_timeout,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .thread_name("submit-serve")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let addr: SocketAddr = options.addr.parse().map_err(|_| ServeError {
            addr: options.addr.clone(),
            problem: "not an address such as 127.0.0.1:8080".to_owned(),
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|error| ServeError {
                addr: options.addr.clone(),
                problem: error.to_string(),
            })?;
        let local = listener.local_addr()?;
        eprintln!(
            "{} listening on http://{local} ({} models from {}; {} worker threads)",
            now(),
            state.cache.all().len(),
            options.models_dir.display(),
            options.threads
        );
        for route in ROUTES {
            eprintln!("  {route}");
        }
        eprintln!(
            "  training runs: job files in {} ({} per run, at most {} waiting); token endpoints {}",
            options.jobs_dir.display(),
            options.train_master,
            options.train_queue,
            if options.token.is_some() {
                "on"
            } else {
                "off (no --token-file)"
            }
        );
        let poller = state.clone();
        let poll = options.poll;
        // Loading a new version (hashing, parsing, building lookups) is real work: a thread of
        // its own at nice 10, so that answering keeps the cores while it loads.
        let _ = std::thread::Builder::new()
            .name("submit-reload".to_owned())
            .spawn(move || {
                // SAFETY: plain system calls on this thread's own scheduling priority.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
                }
                loop {
                    std::thread::sleep(poll);
                    for line in poller.cache.refresh() {
                        eprintln!("{} {line}", now());
                    }
                }
            });
        let app = router(state.clone(), options.body_limit);
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = signalled.send(());
        });
        let mut handle = tokio::spawn(async move { server.await });
        tokio::select! {
            result = &mut handle => return flatten(result),
            _ = on_signal => {}
        }
        // Queued runs are dropped and the running one is stopped before it publishes (or,
        // when it is publishing, after): nothing half-published.
        let runs = state.runs.clone();
        let stopped = tokio::task::spawn_blocking(move || runs.shutdown());
        // Requests in flight get 10 s to finish; then the process stops anyway.
        let finished = tokio::time::timeout(Duration::from_secs(10), handle).await;
        let _ = stopped.await;
        match finished {
            Ok(result) => flatten(result),
            Err(_) => {
                eprintln!("{} requests still in flight after 10 s: stopping", now());
                Ok(())
            }
        }
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    eprintln!("{} stopped", now());
    Ok(())
}
