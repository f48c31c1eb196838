//! Request bodies to model inputs and model outputs to response bodies: MLflow's scoring
//! formats (`dataframe_split`, `dataframe_records`, `text/csv` with a header) for tree models and
//! (user, item) pairs, and the recommend request. Values are converted exactly as a predict job
//! reads them from a file (numbers through f64 to f32, categories by their original names), so a
//! row scores to the same bits either way. Every refusal names the field, row or column.

use serde_json::{Map, Value, json};

use super::cache::{ServedAls, ServedTrees};
use crate::algo::als::fold_in::fold_in;
use crate::algo::trees::TreeTask;
use crate::dataset::Ids;

/// A request that cannot be answered: HTTP status, a short code and a message.
#[derive(Debug)]
pub struct RequestError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

pub fn bad_request(message: impl Into<String>) -> RequestError {
    RequestError {
        status: 400,
        code: "bad_request",
        message: message.into(),
    }
}

/// Rows of named columns, as every body format becomes.
pub struct Frame {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

fn short(value: &Value) -> String {
    crate::text::shorten(&value.to_string(), 80)
}

/// Parses a scoring body: `text/csv` (first line the header) or JSON with `dataframe_split`
/// (`columns`, `data`) or `dataframe_records` (a list of objects).
pub fn parse_frame(
    content_type: &str,
    body: &[u8],
    max_rows: usize,
) -> Result<Frame, RequestError> {
    let frame = if content_type.starts_with("text/csv") {
        parse_csv(body)?
    } else {
        let mut value: Value = serde_json::from_slice(body)
            .map_err(|error| bad_request(format!("the body is not valid JSON: {error}")))?;
        // Taken out, not cloned: the rows move into the frame.
        if let Some(split) = value.get_mut("dataframe_split").map(Value::take) {
            parse_split(split)?
        } else if let Some(records) = value.get("dataframe_records") {
            parse_records(records)?
        } else {
            return Err(bad_request(
                "expected {\"dataframe_split\": {\"columns\": [...], \"data\": [[...]]}} or {\"dataframe_records\": [{...}]} (MLflow's scoring formats), or a text/csv body with a header",
            ));
        }
    };
    if frame.rows.len() > max_rows {
        return Err(RequestError {
            status: 413,
            code: "too_many_rows",
            message: format!(
                "{} rows in one request; at most {max_rows} are accepted (send several requests)",
                frame.rows.len()
            ),
        });
    }
    Ok(frame)
}

fn parse_csv(body: &[u8]) -> Result<Frame, RequestError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let columns: Vec<String> = reader
        .headers()
        .map_err(|error| bad_request(format!("the CSV header cannot be read: {error}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|error| bad_request(format!("CSV row {row}: {error}")))?;
        rows.push(
            record
                .iter()
                .map(|field| {
                    if field.is_empty() {
                        Value::Null
                    } else {
                        Value::String(field.to_owned())
                    }
                })
                .collect(),
        );
    }
    Ok(Frame { columns, rows })
}

fn parse_split(mut split: Value) -> Result<Frame, RequestError> {
    let columns: Vec<String> = split
        .get("columns")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("dataframe_split.columns must be a list of column names"))?
        .iter()
        .enumerate()
        .map(|(at, name)| {
            name.as_str().map(str::to_owned).ok_or_else(|| {
                bad_request(format!(
                    "dataframe_split.columns[{at}] is {}, not a name",
                    short(name)
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let data = match split.get_mut("data").map(Value::take) {
        Some(Value::Array(data)) => data,
        _ => return Err(bad_request("dataframe_split.data must be a list of rows")),
    };
    let mut rows = Vec::with_capacity(data.len());
    for (row, values) in data.into_iter().enumerate() {
        let Value::Array(values) = values else {
            return Err(bad_request(format!(
                "dataframe_split.data[{row}] is not a list"
            )));
        };
        if values.len() != columns.len() {
            return Err(bad_request(format!(
                "dataframe_split.data[{row}] has {} values for {} columns",
                values.len(),
                columns.len()
            )));
        }
        rows.push(values);
    }
    Ok(Frame { columns, rows })
}

fn parse_records(records: &Value) -> Result<Frame, RequestError> {
    let records = records
        .as_array()
        .ok_or_else(|| bad_request("dataframe_records must be a list of objects"))?;
    let mut columns: Vec<String> = Vec::new();
    for (row, record) in records.iter().enumerate() {
        let object = record
            .as_object()
            .ok_or_else(|| bad_request(format!("dataframe_records[{row}] is not an object")))?;
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let rows = records
        .iter()
        .map(|record| {
            columns
                .iter()
                .map(|name| record.get(name).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    Ok(Frame { columns, rows })
}

fn column(frame: &Frame, name: &str) -> Result<usize, RequestError> {
    frame
        .columns
        .iter()
        .position(|column| column == name)
        .ok_or_else(|| {
            bad_request(format!(
                "no column `{name}`; the request has: {}",
                crate::text::column_list(&frame.columns)
            ))
        })
}

/// A numeric feature value as a predict job reads it: through f64, missing as NaN.
fn number(value: &Value, row: usize, name: &str) -> Result<f32, RequestError> {
    let parsed = match value {
        Value::Null => Some(f64::NAN),
        Value::Number(number) => number.as_f64(),
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        Value::String(text) if text.trim().is_empty() => Some(f64::NAN),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(number) if !number.is_infinite() => Ok(number as f32),
        _ => Err(bad_request(format!(
            "row {row}, column `{name}`: {} is not a number (missing values may be null)",
            short(value)
        ))),
    }
}

/// A category's name as the model's category list spells it.
fn category_name(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Number(number) => number
            .as_f64()
            .map_or_else(|| number.to_string(), |x| (x as f32).to_string()),
        other => other.to_string(),
    }
}

/// Per row, each class's probability in class order.
pub type ClassProbabilities = Vec<Vec<f64>>;

/// Scores every row with a tree ensemble: the predictions (original labels for
/// classification) and, for classifiers, each class's probability, in request order.
pub fn score_trees(
    model: &ServedTrees,
    frame: &Frame,
) -> Result<(Value, Option<ClassProbabilities>), RequestError> {
    let saved = &model.saved;
    let positions: Vec<usize> = saved
        .feature_names
        .iter()
        .map(|name| column(frame, name))
        .collect::<Result<_, _>>()?;
    let width = saved.feature_names.len();
    let mut matrix = vec![0f32; width * frame.rows.len()];
    for (row, values) in frame.rows.iter().enumerate() {
        let features = &mut matrix[row * width..(row + 1) * width];
        for (feature, &at) in positions.iter().enumerate() {
            let name = &saved.feature_names[feature];
            let value = &values[at];
            features[feature] = match &model.categories[feature] {
                None => number(value, row, name)?,
                Some(index) => {
                    let key = category_name(value);
                    match index.get(&key) {
                        Some(&category) => category as f32,
                        None => {
                            return Err(bad_request(format!(
                                "row {row}, column `{name}`: category {} was never seen in training",
                                crate::text::shorten(&format!("{key:?}"), 80)
                            )));
                        }
                    }
                }
            };
        }
    }
    let outputs_per_row = model.flat.outputs();
    let mut scores = vec![0.0; frame.rows.len() * outputs_per_row];
    model.flat.predict_into(&matrix, width, &mut scores);
    let outputs: Vec<&[f64]> = scores.chunks_exact(outputs_per_row).collect();
    let label = |class: usize| -> Value {
        match &saved.label_names {
            Some(names) => names
                .get(class)
                .map_or(Value::from(class), |name| Value::from(name.clone())),
            None => Value::from(class),
        }
    };
    match saved.model.task {
        TreeTask::Regression => Ok((
            Value::Array(outputs.iter().map(|output| json!(output[0])).collect()),
            None,
        )),
        TreeTask::Classification => {
            let classes = saved.model.classes;
            let predictions = outputs
                .iter()
                .map(|p| {
                    let best = (0..classes).fold(
                        0,
                        |best, class| if p[class] > p[best] { class } else { best },
                    );
                    label(best)
                })
                .collect();
            let probabilities = outputs.iter().map(|p| p[..classes].to_vec()).collect();
            Ok((Value::Array(predictions), Some(probabilities)))
        }
    }
}

/// Each row's class probabilities as an object keyed by class label (MLflow-style answers).
pub fn probability_objects(model: &ServedTrees, rows: &[Vec<f64>]) -> Value {
    let keys: Vec<String> = (0..model.saved.model.classes)
        .map(|class| model.saved.class_name(class))
        .collect();
    Value::Array(
        rows.iter()
            .map(|row| {
                Value::Object(
                    keys.iter()
                        .cloned()
                        .zip(row.iter().map(|p| json!(p)))
                        .collect::<Map<String, Value>>(),
                )
            })
            .collect(),
    )
}

/// An id from a request as the model's lookup spells it.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_owned()),
        Value::Number(number) => number.as_i64().map(|id| id.to_string()).or_else(|| {
            number
                .as_f64()
                .filter(|x| x.fract() == 0.0)
                .map(|x| (x as i64).to_string())
        }),
        _ => None,
    }
}

fn id_value(ids: &Ids, row: usize) -> Value {
    match ids {
        Ids::Integer(values) => Value::from(values[row]),
        Ids::Text(values) => Value::from(values[row].clone()),
    }
}

/// Scores (user, item) pairs with an ALS model: `user` and `item` columns; null for pairs the
/// model does not know.
pub fn score_pairs(model: &ServedAls, frame: &Frame) -> Result<Value, RequestError> {
    let (user_at, item_at) = (column(frame, "user")?, column(frame, "item")?);
    let rank = model.saved.rank;
    let mut predictions = Vec::with_capacity(frame.rows.len());
    for (row, values) in frame.rows.iter().enumerate() {
        let lookup = |at: usize, table: &std::collections::HashMap<String, u32>, name: &str| {
            let text = id_text(&values[at]).ok_or_else(|| {
                bad_request(format!(
                    "row {row}, column `{name}`: {} is not an id (an integer or a string)",
                    short(&values[at])
                ))
            })?;
            Ok::<_, RequestError>(table.get(&text).copied())
        };
        let user = lookup(user_at, &model.users, "user")?;
        let item = lookup(item_at, &model.items, "item")?;
        predictions.push(match (user, item) {
            (Some(user), Some(item)) => {
                let (user, item) = (user as usize, item as usize);
                let x = &model.saved.user_factors[user * rank..(user + 1) * rank];
                let y = &model.saved.item_factors[item * rank..(item + 1) * rank];
                json!(x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>())
            }
            _ => Value::Null,
        });
    }
    Ok(Value::Array(predictions))
}

/// `{"user": ID, "k": 10, "filter_seen": true, "exclude": [...]}`: the user's top k with
/// scores and ranks, or the most popular items (flagged) for a user the model does not know.
pub fn recommend(model: &ServedAls, body: &[u8]) -> Result<Value, RequestError> {
    let request = json_body(body)?;
    let (user_value, user_text) = required_id(&request, "user")?;
    let k = requested_k(&request)?;
    let filter_seen = match request.get("filter_seen") {
        None => true,
        Some(value) => value
            .as_bool()
            .ok_or_else(|| bad_request("the field `filter_seen` must be true or false"))?,
    };
    let mut excluded: Vec<u32> = Vec::new();
    if let Some(list) = request.get("exclude") {
        let list = list
            .as_array()
            .ok_or_else(|| bad_request("the field `exclude` must be a list of item ids"))?;
        for (at, value) in list.iter().enumerate() {
            let text = id_text(value).ok_or_else(|| {
                bad_request(format!("exclude[{at}] is {}, not an item id", short(value)))
            })?;
            if let Some(&item) = model.items.get(&text) {
                excluded.push(item);
            }
        }
    }
    let saved = &model.saved;
    let known = model.users.get(&user_text).copied();
    let (interactions, unknown_items) = match request.get("ratings") {
        None => (Vec::new(), 0),
        Some(list) => parse_interactions(model, list)?,
    };
    let rank = saved.rank;
    let folded = if interactions.is_empty() {
        None
    } else {
        Some(
            fold_in(&saved.item_factors, rank, &interactions, model.loss, model.gram.as_deref())
                .ok_or_else(|| RequestError {
                    status: 422,
                    code: "fold_in_failed",
                    message: "the user's factors cannot be solved from these ratings (with reg_param = 0 they must span the rank)".to_owned(),
                })?,
        )
    };
    let factors: Option<&[f32]> = match (&folded, known) {
        (Some(factors), _) => Some(factors),
        (None, Some(user)) => {
            Some(&saved.user_factors[user as usize * rank..(user as usize + 1) * rank])
        }
        (None, None) => None,
    };
    let (ranked, cold_start): (Vec<(u32, Option<f32>)>, bool) = match factors {
        Some(factors) => {
            let mut leave_out = excluded;
            if filter_seen {
                leave_out.extend(interactions.iter().map(|(item, _)| *item));
                if let Some(user) = known {
                    leave_out.extend_from_slice(saved.seen(user as usize));
                }
            }
            let lists = model
                .scorer
                .top_k(factors, &[0], k, &|_| leave_out.as_slice());
            let list = lists.into_iter().next().unwrap_or_default();
            (
                list.into_iter()
                    .map(|(item, score)| (item, Some(score)))
                    .collect(),
                false,
            )
        }
        None => (
            crate::algo::als::recommend::first_unseen(&model.popular, &excluded, k)
                .into_iter()
                .map(|item| (item, None))
                .collect(),
            true,
        ),
    };
    let items: Vec<Value> = ranked
        .iter()
        .enumerate()
        .map(|(position, (item, score))| {
            json!({
                "item": id_value(&saved.item_ids, *item as usize),
                "score": score,
                "rank": position + 1,
            })
        })
        .collect();
    Ok(json!({
        "user": user_value,
        "known_user": known.is_some(),
        "folded_in": folded.is_some(),
        "unknown_items": unknown_items,
        "popular": cold_start,
        "items": items,
    }))
}

/// `[[item, value], ...]` as (item row, value); items the model does not know are counted and
/// left out (they have no factors to solve against).
fn parse_interactions(
    model: &ServedAls,
    list: &Value,
) -> Result<(Vec<(u32, f32)>, usize), RequestError> {
    let list = list
        .as_array()
        .ok_or_else(|| bad_request("the field `ratings` must be a list of [item, value] pairs"))?;
    let mut interactions = Vec::with_capacity(list.len());
    let mut unknown = 0;
    for (at, pair) in list.iter().enumerate() {
        let pair = pair
            .as_array()
            .filter(|pair| pair.len() == 2)
            .ok_or_else(|| {
                bad_request(format!(
                    "ratings[{at}] is {}, not an [item, value] pair",
                    short(pair)
                ))
            })?;
        let item = id_text(&pair[0]).ok_or_else(|| {
            bad_request(format!(
                "ratings[{at}][0] is {}, not an item id",
                short(&pair[0])
            ))
        })?;
        let value = pair[1]
            .as_f64()
            .filter(|value| value.is_finite())
            .ok_or_else(|| {
                bad_request(format!(
                    "ratings[{at}][1] is {}, not a finite number",
                    short(&pair[1])
                ))
            })?;
        match model.items.get(&item) {
            Some(&row) => interactions.push((row, value as f32)),
            None => unknown += 1,
        }
    }
    Ok((interactions, unknown))
}

/// `{"item": ID, "k": 10}`: the k items whose factors have the highest cosine similarity to
/// the item's, the item itself left out.
pub fn similar_items(model: &ServedAls, body: &[u8]) -> Result<Value, RequestError> {
    let request = json_body(body)?;
    let (item_value, text) = required_id(&request, "item")?;
    let k = requested_k(&request)?;
    let query = *model.items.get(&text).ok_or_else(|| RequestError {
        status: 404,
        code: "unknown_item",
        message: format!(
            "item {} is not in the model",
            crate::text::shorten(&text, 80)
        ),
    })? as usize;
    let saved = &model.saved;
    let scored = model
        .similar
        .top_k(&[query as u32], k)
        .into_iter()
        .next()
        .unwrap_or_default();
    let items: Vec<Value> = scored
        .iter()
        .enumerate()
        .map(|(position, (item, score))| {
            json!({
                "item": id_value(&saved.item_ids, *item as usize),
                "similarity": score,
                "rank": position + 1,
            })
        })
        .collect();
    Ok(json!({"item": item_value, "items": items}))
}

fn json_body(body: &[u8]) -> Result<Value, RequestError> {
    serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("the body is not valid JSON: {error}")))
}

/// A required id field of a request: its JSON value and the text lookups use.
fn required_id<'a>(request: &'a Value, field: &str) -> Result<(&'a Value, String), RequestError> {
    let value = request
        .get(field)
        .ok_or_else(|| bad_request(format!("the field `{field}` (an id) is required")))?;
    let text = id_text(value).ok_or_else(|| {
        bad_request(format!(
            "the field `{field}` is {}, not an id (an integer or a string)",
            short(value)
        ))
    })?;
    Ok((value, text))
}

/// The request's `k` (default 10, 1 to 10000).
fn requested_k(request: &Value) -> Result<usize, RequestError> {
    match request.get("k") {
        None => Ok(10),
        Some(value) => value
            .as_u64()
            .filter(|k| (1..=10_000).contains(k))
            .map(|k| k as usize)
            .ok_or_else(|| {
                bad_request(format!(
                    "the field `k` is {}; it must be 1 to 10000",
                    short(value)
                ))
            }),
    }
}

fn flatten_into(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten_into(item, out)),
        other => out.push(other.clone()),
    }
}

/// An Open Inference Protocol v2 request (`{"inputs": [{"name", "shape", "datatype", "data"}]}`)
/// as rows: one input per column (shape `[N]` or `[N, 1]`), or a single input of shape `[N, F]`
/// holding the `feature_names` in order. Data may be flat or nested, as the protocol allows.
pub fn parse_inference(
    body: &[u8],
    feature_names: &[String],
    max_rows: usize,
) -> Result<(Frame, Value), RequestError> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|error| bad_request(format!("the body is not valid JSON: {error}")))?;
    let inputs = request
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("an inference request has `inputs`: a list of tensors"))?;
    let mut tensors = Vec::with_capacity(inputs.len());
    for (at, input) in inputs.iter().enumerate() {
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request(format!("inputs[{at}].name is required")))?;
        let shape: Vec<usize> = input
            .get("shape")
            .and_then(Value::as_array)
            .map(|shape| {
                shape
                    .iter()
                    .filter_map(Value::as_u64)
                    .map(|d| d as usize)
                    .collect()
            })
            .ok_or_else(|| bad_request(format!("inputs[{at}] (`{name}`): `shape` is required")))?;
        let mut data = Vec::new();
        flatten_into(
            input.get("data").ok_or_else(|| {
                bad_request(format!("inputs[{at}] (`{name}`): `data` is required"))
            })?,
            &mut data,
        );
        let expected: usize = shape.iter().product();
        if shape.is_empty() || shape.len() > 2 || data.len() != expected {
            return Err(bad_request(format!(
                "inputs[{at}] (`{name}`): shape {shape:?} does not match its {} values",
                data.len()
            )));
        }
        tensors.push((name.to_owned(), shape, data));
    }
    let frame = match tensors.as_slice() {
        [(_, shape, data)]
            if shape.len() == 2 && shape[1] == feature_names.len() && shape[1] > 1 =>
        {
            Frame {
                columns: feature_names.to_vec(),
                rows: data.chunks(shape[1]).map(<[Value]>::to_vec).collect(),
            }
        }
        _ => {
            let rows = tensors.first().map_or(0, |(_, shape, _)| shape[0]);
            for (name, shape, _) in &tensors {
                if shape[0] != rows || shape.get(1).is_some_and(|&width| width != 1) {
                    return Err(bad_request(format!(
                        "input `{name}` has shape {shape:?}; every input is one column of {rows} rows ([{rows}] or [{rows}, 1]), or send one [rows, {}] input with the features in order",
                        feature_names.len()
                    )));
                }
            }
            Frame {
                columns: tensors.iter().map(|(name, _, _)| name.clone()).collect(),
                rows: (0..rows)
                    .map(|row| {
                        tensors
                            .iter()
                            .map(|(_, _, data)| data[row].clone())
                            .collect()
                    })
                    .collect(),
            }
        }
    };
    if frame.rows.len() > max_rows {
        return Err(RequestError {
            status: 413,
            code: "too_many_rows",
            message: format!(
                "{} rows in one request; at most {max_rows} are accepted",
                frame.rows.len()
            ),
        });
    }
    Ok((frame, request.get("id").cloned().unwrap_or(Value::Null)))
}

/// The tensor a list of values becomes in an inference response.
pub fn tensor(name: &str, values: &Value, width: Option<usize>) -> Value {
    let rows = values.as_array().map_or(0, Vec::len);
    let strings = values
        .as_array()
        .is_some_and(|items| items.iter().any(Value::is_string));
    let mut data = Vec::new();
    flatten_into(values, &mut data);
    json!({
        "name": name,
        "shape": match width { Some(width) => json!([rows, width]), None => json!([rows]) },
        "datatype": if strings { "BYTES" } else { "FP64" },
        "data": data,
    })
}
