//! Built-in data sets, deterministic for their seed: ratings from a hidden low-rank model with
//! power-law user activity and item popularity, and numeric classification/regression tables.
//!
//! Every random number comes from a counter-based stream keyed by (seed, user or row), so the
//! generators run in parallel and still give the same data for any thread count.

use rayon::prelude::*;

use super::{Fingerprint, IngestCounts, IngestError, IngestedRatings};
use crate::config::{InputConfig, SyntheticSpec};
use crate::dataset::split::{mix, unit};
use crate::dataset::{Ids, Ratings, Tabular};

/// A counter-based random stream: draw `n` is `mix(key, n)`.
struct Stream {
    key: u64,
    counter: u64,
}

impl Stream {
    fn new(seed: u64, purpose: u64, index: u64) -> Stream {
        Stream {
            key: mix(mix(seed, purpose), index),
            counter: 0,
        }
    }
    fn next_u64(&mut self) -> u64 {
        self.counter += 1;
        mix(self.key, self.counter)
    }
    fn uniform(&mut self) -> f64 {
        self.counter += 1;
        unit(self.key, self.counter)
    }
    /// Standard normal by Box-Muller.
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

const USER_FACTORS: u64 = 1;
const ITEM_FACTORS: u64 = 2;
const USER_RATINGS: u64 = 3;
const PERMUTATION: u64 = 4;
const TABLE_ROWS: u64 = 5;
const TABLE_WEIGHTS: u64 = 6;

/// Exponents of the power laws; chosen to resemble public rating data sets.
const USER_ACTIVITY_EXPONENT: f64 = 0.7;
const ITEM_POPULARITY_EXPONENT: f64 = 0.9;

fn permutation(length: usize, seed: u64, purpose: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..length as u32).collect();
    let mut stream = Stream::new(seed, PERMUTATION, purpose);
    for i in (1..length).rev() {
        let j = stream.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

fn factors(count: usize, rank: usize, seed: u64, purpose: u64) -> Vec<f32> {
    // Component scale r^(-1/4) makes the dot product of two factors have unit variance.
    let scale = (rank as f64).powf(-0.25);
    (0..count)
        .into_par_iter()
        .flat_map_iter(|index| {
            let mut stream = Stream::new(seed, purpose, index as u64);
            (0..rank)
                .map(|_| (stream.normal() * scale) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How many ratings each user gives: proportional to a power law, summing exactly to `total`,
/// each at most half the items (so distinct items can be drawn quickly).
fn user_counts(users: usize, items: usize, total: u64, seed: u64) -> Vec<u64> {
    let order = permutation(users, seed, USER_RATINGS);
    let weights: Vec<f64> = (0..users)
        .map(|user| (order[user] as f64 + 1.0).powf(-USER_ACTIVITY_EXPONENT))
        .collect();
    let weight_sum: f64 = weights.iter().sum();
    let cap = (items as u64).div_ceil(2).max(1);
    let mut counts: Vec<u64> = weights
        .iter()
        .map(|weight| ((total as f64 * weight / weight_sum).floor() as u64).min(cap))
        .collect();
    let mut assigned: u64 = counts.iter().sum();
    // Hand out the rest one by one, most active users first, skipping users at the cap.
    let mut by_activity: Vec<usize> = (0..users).collect();
    by_activity.sort_by_key(|&user| order[user]);
    while assigned < total {
        let before = assigned;
        for &user in &by_activity {
            if assigned == total {
                break;
            }
            if counts[user] < cap {
                counts[user] += 1;
                assigned += 1;
            }
        }
        if assigned == before {
            break;
        }
    }
    counts
}

/// `wanted` distinct items drawn with `draw`; after 32 collisions in a row (a heavy user has
/// taken most of the likely items) the rest are drawn uniformly, so it always finishes.
fn draw_distinct(
    wanted: usize,
    items: usize,
    stream: &mut Stream,
    mut draw: impl FnMut(&mut Stream) -> u32,
) -> Vec<u32> {
    let mut chosen = Vec::with_capacity(wanted);
    let mut seen = std::collections::HashSet::with_capacity(wanted * 2);
    let mut misses = 0;
    while chosen.len() < wanted {
        let item = if misses < 32 {
            draw(stream)
        } else {
            stream.below(items as u64) as u32
        };
        if seen.insert(item) {
            chosen.push(item);
            misses = 0;
        } else {
            misses += 1;
        }
    }
    chosen
}

/// Per-user (items, values) lists, in user order, as rating triples over integer ids.
fn flatten(per_user: Vec<(Vec<u32>, Vec<f32>)>, users: usize, items: usize, total: u64) -> Ratings {
    let mut user = Vec::with_capacity(total as usize);
    let mut item = Vec::with_capacity(total as usize);
    let mut rating = Vec::with_capacity(total as usize);
    for (index, (chosen, values)) in per_user.into_iter().enumerate() {
        user.extend(std::iter::repeat_n(index as u32, chosen.len()));
        item.extend(chosen);
        rating.extend(values);
    }
    Ratings {
        user_ids: Ids::Integer((0..users as i64).collect()),
        item_ids: Ids::Integer((0..items as i64).collect()),
        user,
        item,
        rating,
    }
}

pub fn generate_ratings(
    users: usize,
    items: usize,
    total: u64,
    rank: usize,
    noise: f64,
    seed: u64,
) -> Ratings {
    let user_factors = factors(users, rank, seed, USER_FACTORS);
    let item_factors = factors(items, rank, seed, ITEM_FACTORS);
    let popularity_order = permutation(items, seed, ITEM_FACTORS);
    let mut cumulative = Vec::with_capacity(items);
    let mut running = 0.0f64;
    for &popularity_rank in &popularity_order {
        running += (popularity_rank as f64 + 1.0).powf(-ITEM_POPULARITY_EXPONENT);
        cumulative.push(running);
    }
    let counts = user_counts(users, items, total, seed);
    let per_user: Vec<(Vec<u32>, Vec<f32>)> = (0..users)
        .into_par_iter()
        .map(|user| {
            let wanted = counts[user] as usize;
            let mut stream = Stream::new(seed, USER_RATINGS, user as u64);
            let chosen = draw_distinct(wanted, items, &mut stream, |stream| {
                let target = stream.uniform() * running;
                cumulative.partition_point(|&c| c <= target).min(items - 1) as u32
            });
            let user_vector = &user_factors[user * rank..(user + 1) * rank];
            let ratings = chosen
                .iter()
                .map(|&item| {
                    let item_vector =
                        &item_factors[item as usize * rank..(item as usize + 1) * rank];
                    let signal: f32 = user_vector
                        .iter()
                        .zip(item_vector)
                        .map(|(a, b)| a * b)
                        .sum();
                    (3.0 + signal as f64 + noise * stream.normal()) as f32
                })
                .collect();
            (chosen, ratings)
        })
        .collect();
    flatten(per_user, users, items, total)
}

/// Share of a user's interactions drawn from their own taste group (the rest follow global
/// popularity).
const IN_GROUP_SHARE: f64 = 0.8;

/// Implicit-feedback data: interaction counts (1, 2, ...) of users with items, where each user
/// belongs to one of `groups` taste groups and draws most interactions from that group's items
/// (each group with its own power-law popularity), the rest from global popularity. A model that
/// learns the groups beats a popularity ranking; one that does not, cannot.
pub fn generate_interactions(
    users: usize,
    items: usize,
    total: u64,
    groups: usize,
    seed: u64,
) -> Ratings {
    let groups = groups.clamp(1, items);
    let order = permutation(items, seed, ITEM_FACTORS);
    let item_group = |item: usize| order[item] as usize % groups;
    let weight =
        |item: usize| (order[item] as f64 / groups as f64 + 1.0).powf(-ITEM_POPULARITY_EXPONENT);
    let mut global = Vec::with_capacity(items);
    let mut running = 0.0;
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); groups];
    let mut member_cumulative: Vec<Vec<f64>> = vec![Vec::new(); groups];
    for item in 0..items {
        running += weight(item);
        global.push(running);
        let group = item_group(item);
        let previous = member_cumulative[group].last().copied().unwrap_or(0.0);
        members[group].push(item as u32);
        member_cumulative[group].push(previous + weight(item));
    }
    let counts = user_counts(users, items, total, seed);
    let per_user: Vec<(Vec<u32>, Vec<f32>)> = (0..users)
        .into_par_iter()
        .map(|user| {
            let wanted = counts[user] as usize;
            let mut stream = Stream::new(seed, USER_RATINGS, user as u64);
            let home = (mix(seed, user as u64) % groups as u64) as usize;
            let (home_items, home_cumulative) = (&members[home], &member_cumulative[home]);
            let home_total = home_cumulative.last().copied().unwrap_or(0.0);
            let chosen = draw_distinct(wanted, items, &mut stream, |stream| {
                if stream.uniform() < IN_GROUP_SHARE && home_total > 0.0 {
                    let target = stream.uniform() * home_total;
                    home_items[home_cumulative
                        .partition_point(|&c| c <= target)
                        .min(home_items.len() - 1)]
                } else {
                    let target = stream.uniform() * running;
                    global.partition_point(|&c| c <= target).min(items - 1) as u32
                }
            });
            let counts = chosen
                .iter()
                .map(|_| (1.0 + (-stream.uniform().max(1e-12).ln() * 2.0).floor()).min(50.0) as f32)
                .collect();
            (chosen, counts)
        })
        .collect();
    flatten(per_user, users, items, total)
}

/// A raw event log: one row per event, as a shop or a streaming service logs them.
pub struct EventLog {
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub event: Vec<&'static str>,
    /// Seconds since the Unix epoch.
    pub timestamp: Vec<i64>,
}

const EVENT_TIMES: u64 = 7;
/// 2026-09-01T00:00:00Z, the start of the generated log, and its length (90 days).
const EVENTS_START: i64 = 1_788_220_800;
const EVENTS_SPAN: u64 = 90 * 86_400;

/// The event log behind [`generate_interactions`]: each (user, item) pair's count becomes that
/// many `view` events, and the more a user viewed an item the likelier a `cart` and then a
/// `purchase` follow; times are spread over 90 days. Weighting the events and summing per
/// pair gives implicit feedback that ranks the user's taste group first.
pub fn generate_events(
    users: usize,
    items: usize,
    pairs: u64,
    groups: usize,
    seed: u64,
) -> EventLog {
    let interactions = generate_interactions(users, items, pairs, groups, seed);
    // Rows come grouped by user: one stream per user keeps the log the same for any thread count.
    let mut starts = vec![0usize; users + 1];
    for &user in &interactions.user {
        starts[user as usize + 1] += 1;
    }
    for user in 0..users {
        starts[user + 1] += starts[user];
    }
    let per_user: Vec<EventLog> = (0..users)
        .into_par_iter()
        .map(|user| {
            let mut stream = Stream::new(seed, EVENT_TIMES, user as u64);
            let mut log = EventLog {
                user: Vec::new(),
                item: Vec::new(),
                event: Vec::new(),
                timestamp: Vec::new(),
            };
            for row in starts[user]..starts[user + 1] {
                let item = interactions.item[row];
                let views = interactions.rating[row] as usize;
                let first_view = stream.below(EVENTS_SPAN);
                let mut last = first_view;
                for view in 0..views {
                    let at = if view == 0 {
                        first_view
                    } else {
                        first_view + stream.below(EVENTS_SPAN - first_view)
                    };
                    last = last.max(at);
                    log.push(user as u32, item, "view", at);
                }
                let interest = 1.0 - (-(views as f64) / 4.0).exp();
                if stream.uniform() < 0.5 * interest {
                    let cart = (last + stream.below(3_600)).min(EVENTS_SPAN - 1);
                    log.push(user as u32, item, "cart", cart);
                    if stream.uniform() < 0.5 {
                        log.push(user as u32, item, "purchase", cart);
                    }
                }
            }
            log
        })
        .collect();
    let total: usize = per_user.iter().map(|log| log.user.len()).sum();
    let mut all = EventLog {
        user: Vec::with_capacity(total),
        item: Vec::with_capacity(total),
        event: Vec::with_capacity(total),
        timestamp: Vec::with_capacity(total),
    };
    for log in per_user {
        all.user.extend(log.user);
        all.item.extend(log.item);
        all.event.extend(log.event);
        all.timestamp.extend(log.timestamp);
    }
    all
}

impl EventLog {
    fn push(&mut self, user: u32, item: u32, event: &'static str, offset: u64) {
        self.user.push(user);
        self.item.push(item);
        self.event.push(event);
        self.timestamp.push(EVENTS_START + offset as i64);
    }
}

/// The ratings a ratings or interactions source generates (`None` for the other kinds).
pub fn generated_ratings(spec: &SyntheticSpec) -> Option<Ratings> {
    Some(match *spec {
        SyntheticSpec::Ratings {
            users,
            items,
            ratings,
            rank,
            noise,
            seed,
        } => generate_ratings(
            users as usize,
            items as usize,
            ratings,
            rank as usize,
            noise,
            seed,
        ),
        SyntheticSpec::Interactions {
            users,
            items,
            ratings,
            rank,
            seed,
        } => generate_interactions(users as usize, items as usize, ratings, rank as usize, seed),
        _ => return None,
    })
}

/// The ratings source for a job, with `limit` and `sample_fraction` applied like for files.
pub fn ratings(
    spec: &SyntheticSpec,
    input: &InputConfig,
    seed: u64,
) -> Result<IngestedRatings, IngestError> {
    let Some(mut generated) = generated_ratings(spec) else {
        return Err(IngestError::Empty {
            reason: "this synthetic source makes a table, not ratings".to_owned(),
        });
    };
    let mut counts = IngestCounts {
        rows_read: generated.len() as u64,
        ..IngestCounts::default()
    };
    let keep_rows = input.limit.map_or(generated.len(), |limit| {
        (limit as usize).min(generated.len())
    });
    counts.rows_read = keep_rows as u64;
    if keep_rows < generated.len() || input.sample_fraction < 1.0 {
        let stream = mix(seed, super::SAMPLE_STREAM);
        let keep: Vec<usize> = (0..keep_rows)
            .filter(|&row| unit(stream, row as u64) < input.sample_fraction)
            .collect();
        counts.rows_sampled_out = (keep_rows - keep.len()) as u64;
        generated.user = keep.iter().map(|&row| generated.user[row]).collect();
        generated.item = keep.iter().map(|&row| generated.item[row]).collect();
        generated.rating = keep.iter().map(|&row| generated.rating[row]).collect();
    }
    let description = serde_json::to_string(spec).unwrap_or_default();
    Ok(IngestedRatings {
        fingerprints: vec![Fingerprint {
            source: format!("synthetic {description}"),
            blake3: blake3::hash(description.as_bytes()).to_hex().to_string(),
            bytes: 0,
            rows: counts.rows_read,
        }],
        ratings: generated,
        counts,
        times: None,
    })
}

/// A numeric classification table: `classes` labels from a noisy linear score plus an
/// interaction, so trees have something beyond a linear boundary to find.
pub fn classification(rows: usize, features: usize, classes: usize, seed: u64) -> Tabular {
    let weights = factors(classes, features, seed, TABLE_WEIGHTS);
    table(rows, features, seed, |x, stream| {
        let scores: Vec<f64> = (0..classes)
            .map(|class| {
                let w = &weights[class * features..(class + 1) * features];
                let linear: f64 = w.iter().zip(x).map(|(w, x)| *w as f64 * *x as f64).sum();
                let interaction = if features > 1 && class == 0 {
                    x[0] as f64 * x[1] as f64
                } else {
                    0.0
                };
                linear + interaction + 0.3 * stream.normal()
            })
            .collect();
        (0..classes)
            .max_by(|a, b| scores[*a].total_cmp(&scores[*b]))
            .unwrap_or(0) as f64
    })
}

/// A numeric regression table: a linear signal plus a sine of the first feature plus noise.
pub fn regression(rows: usize, features: usize, noise: f64, seed: u64) -> Tabular {
    let weights = factors(1, features, seed, TABLE_WEIGHTS);
    table(rows, features, seed, |x, stream| {
        let linear: f64 = weights
            .iter()
            .zip(x)
            .map(|(w, x)| *w as f64 * *x as f64)
            .sum();
        linear + (2.0 * x[0] as f64).sin() + noise * stream.normal()
    })
}

fn table(
    rows: usize,
    features: usize,
    seed: u64,
    label: impl Fn(&[f32], &mut Stream) -> f64 + Sync,
) -> Tabular {
    let generated: Vec<(Vec<f32>, f64)> = (0..rows)
        .into_par_iter()
        .map(|row| {
            let mut stream = Stream::new(seed, TABLE_ROWS, row as u64);
            let x: Vec<f32> = (0..features).map(|_| stream.normal() as f32).collect();
            let y = label(&x, &mut stream);
            (x, y)
        })
        .collect();
    let mut columns = vec![Vec::with_capacity(rows); features];
    let mut labels = Vec::with_capacity(rows);
    for (x, y) in generated {
        for (column, value) in columns.iter_mut().zip(x) {
            column.push(value);
        }
        labels.push(y);
    }
    Tabular::numeric(
        (0..features).map(|j| format!("f{j}")).collect(),
        columns,
        labels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_are_exact_distinct_and_deterministic() {
        let a = generate_ratings(300, 200, 6000, 4, 0.1, 7);
        assert_eq!(a.len(), 6000);
        let mut pairs: Vec<(u32, u32)> =
            a.user.iter().copied().zip(a.item.iter().copied()).collect();
        pairs.sort_unstable();
        pairs.dedup();
        assert_eq!(pairs.len(), 6000, "pairs are distinct");
        assert_eq!(a, generate_ratings(300, 200, 6000, 4, 0.1, 7));
        assert_ne!(a.rating, generate_ratings(300, 200, 6000, 4, 0.1, 8).rating);
        let heaviest = (0..300)
            .map(|u| a.user.iter().filter(|&&x| x == u).count())
            .max()
            .unwrap();
        assert!(heaviest > 3 * 6000 / 300, "activity follows a power law");
    }

    #[test]
    fn interactions_are_distinct_counts_and_deterministic() {
        let a = generate_interactions(200, 300, 4000, 5, 3);
        assert_eq!(a.len(), 4000);
        assert!(
            a.rating
                .iter()
                .all(|&count| count >= 1.0 && count.fract() == 0.0)
        );
        let mut pairs: Vec<(u32, u32)> =
            a.user.iter().copied().zip(a.item.iter().copied()).collect();
        pairs.sort_unstable();
        pairs.dedup();
        assert_eq!(pairs.len(), 4000);
        assert_eq!(a, generate_interactions(200, 300, 4000, 5, 3));
    }

    #[test]
    fn dense_request_still_terminates() {
        let r = generate_ratings(10, 10, 50, 2, 0.0, 1);
        assert_eq!(r.len(), 50);
    }

    #[test]
    fn tables_have_the_requested_shape() {
        let c = classification(500, 4, 3, 1);
        assert_eq!((c.rows(), c.columns()), (500, 4));
        assert!(c.labels.iter().all(|&y| y == 0.0 || y == 1.0 || y == 2.0));
        let distinct = (0..3).filter(|k| c.labels.contains(&(*k as f64))).count();
        assert_eq!(distinct, 3);
        let r = regression(100, 3, 0.1, 1);
        assert_eq!(r, regression(100, 3, 0.1, 1));
    }
}
