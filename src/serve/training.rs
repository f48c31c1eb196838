//! The routes that change things, behind the bearer token: training runs
//! (`/v1/jobs/{name}/runs`, `/v1/runs/{id}`) and the feedback log (`/v1/models/{job}/events`).
//! The token is compared by its blake3 hash, whose equality is constant-time, so neither the
//! time of an answer nor the log tells anything about it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::cache::valid_job_name;
use super::score::RequestError;
use super::{Shared, body_bytes, checked_job, events, no_model};

/// Refuses a request without the server's token (401), or every request when the server has
/// none (403).
fn authorize(state: &super::AppState, headers: &HeaderMap) -> Result<(), RequestError> {
    let Some(expected) = &state.token_hash else {
        return Err(RequestError {
            status: 403,
            code: "disabled",
            message: "this endpoint needs a token and the server has none; start it with --token-file FILE (or serve.token_file)".to_owned(),
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(RequestError {
            status: 401,
            code: "unauthorized",
            message: "missing `Authorization: Bearer <token>`".to_owned(),
        });
    };
    if blake3::hash(given.as_bytes()) != *expected {
        return Err(RequestError {
            status: 401,
            code: "unauthorized",
            message: "wrong token".to_owned(),
        });
    }
    Ok(())
}

/// Runs blocking work (a job file check, a lock, a file append) off the answering threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RequestError> + Send + 'static,
) -> Result<T, RequestError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| RequestError {
            status: 500,
            code: "internal",
            message: error.to_string(),
        })?
}

fn run_not_found(id: &str) -> RequestError {
    RequestError {
        status: 404,
        code: "not_found",
        message: format!(
            "no run {:?} (GET /v1/runs lists them)",
            crate::text::shorten(id, 40)
        ),
    }
}

pub async fn start_run(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let body = body_bytes(body)?;
    let job = checked_job(&name)?.to_owned();
    let runs = state.runs.clone();
    let run = blocking(move || runs.submit(&job, &body)).await?;
    let location = format!("/v1/runs/{}", run.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(run.describe()),
    )
        .into_response())
}

pub async fn list_runs(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let runs: Vec<Value> = state.runs.all().iter().map(|run| run.describe()).collect();
    Ok(axum::Json(json!({"runs": runs})).into_response())
}

pub async fn list_jobs(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let mut jobs: Vec<String> = std::fs::read_dir(state.runs.jobs_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let name = entry
                        .file_name()
                        .to_str()?
                        .strip_suffix(".toml")?
                        .to_owned();
                    valid_job_name(&name).then_some(name)
                })
                .collect()
        })
        .unwrap_or_default();
    jobs.sort();
    Ok(
        axum::Json(json!({"jobs": jobs, "dir": state.runs.jobs_dir().display().to_string()}))
            .into_response(),
    )
}

pub async fn show_run(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let run = state.runs.get(&id).ok_or_else(|| run_not_found(&id))?;
    Ok(axum::Json(run.describe()).into_response())
}

pub async fn run_log(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let run = state.runs.get(&id).ok_or_else(|| run_not_found(&id))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        run.log_text(),
    )
        .into_response())
}

pub async fn cancel_run(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let run = state.runs.get(&id).ok_or_else(|| run_not_found(&id))?;
    let runs = state.runs.clone();
    let cancelled = run.clone();
    // Waits for a publish in progress (the job's lock).
    blocking(move || runs.cancel(&cancelled)).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(run.describe())).into_response())
}

pub async fn append_events(
    State(state): State<Shared>,
    Path(job): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RequestError> {
    authorize(&state, &headers)?;
    let body = body_bytes(body)?;
    let job = checked_job(&job)?.to_owned();
    let job_dir = state.cache.models_dir.join(&job);
    if !state.cache.job_exists(&job) {
        return Err(no_model(&state, &job));
    }
    let max_rows = state.max_rows;
    let mut answer = blocking(move || events::append(&job_dir, &body, max_rows)).await?;
    if let Value::Object(fields) = &mut answer {
        fields.insert("model".to_owned(), Value::from(job));
    }
    Ok(axum::Json(answer).into_response())
}
