//! Test metrics of an ALS model: RMSE and MAE with the training-mean baseline for explicit
//! feedback, ranking metrics with the popularity baseline for implicit feedback.

use crate::algo::als::{AlsModel, recommend};
use crate::dataset::Csr;
use crate::eval::{ranking, regression};

/// The model's ranking metrics beside the popularity baseline's.
pub(super) struct RankingEvaluation {
    pub(super) model: ranking::RankingMetrics,
    pub(super) popularity: ranking::RankingMetrics,
    pub(super) cold_start_users: u64,
}

/// Ranking metrics for implicit feedback: per test user with positive test entries, the model's
/// top k (training items left out) against those entries, beside the same figures for a
/// popularity ranking as a baseline.
pub(super) fn evaluate_ranking(
    model: &AlsModel,
    test: &crate::dataset::Ratings,
    by_user: &Csr,
    k: usize,
) -> RankingEvaluation {
    let mut relevant: Vec<Vec<u32>> = vec![Vec::new(); model.users()];
    for row in 0..test.len() {
        if test.rating[row] > 0.0 {
            relevant[test.user[row] as usize].push(test.item[row]);
        }
    }
    let mut users = Vec::new();
    let mut cold_start_users = 0;
    for (user, items) in relevant.iter_mut().enumerate() {
        if items.is_empty() {
            continue;
        }
        items.sort_unstable();
        items.dedup();
        if model.user_seen[user] {
            users.push(user as u32);
        } else {
            cold_start_users += 1;
        }
    }
    let seen = |user: u32| -> &[u32] { by_user.row(user as usize).0 };
    let scorer =
        recommend::ItemScorer::new(&model.item_factors, model.rank, model.item_seen.clone());
    let lists: Vec<Vec<u32>> = scorer
        .top_k(&model.user_factors, &users, k, &seen)
        .into_iter()
        .map(|list| list.into_iter().map(|(item, _)| item).collect())
        .collect();
    let mut counts = vec![0u32; model.items()];
    for &item in &by_user.columns {
        counts[item as usize] += 1;
    }
    let popular = recommend::popular_items(&counts);
    let popular_lists: Vec<Vec<u32>> = users
        .iter()
        .map(|&user| recommend::first_unseen(&popular, seen(user), k))
        .collect();
    let score = |lists: &[Vec<u32>]| {
        let pairs = users
            .iter()
            .zip(lists)
            .map(|(&user, list)| (&list[..], &relevant[user as usize][..]));
        ranking::evaluate(k, pairs)
    };
    RankingEvaluation {
        model: score(&lists),
        popularity: score(&popular_lists),
        cold_start_users,
    }
}

/// The model's error on the test ratings and, given the training mean, the error of guessing
/// it for every rating the model predicts. One pass, in parallel over fixed runs of rows
/// merged in order (the same sums for any thread count): at 20M test ratings the two serial
/// passes took a quarter of a second.
pub(super) fn evaluate(
    model: &AlsModel,
    test: &crate::dataset::Ratings,
    training_mean: Option<f64>,
) -> (
    regression::RegressionMetrics,
    Option<regression::RegressionMetrics>,
) {
    use rayon::prelude::*;
    const RUN: usize = 1 << 16;
    let guess = training_mean.unwrap_or(0.0) as f32;
    let parts: Vec<(regression::ErrorSums, regression::ErrorSums)> = (0..test.len().div_ceil(RUN))
        .into_par_iter()
        .map(|run| {
            let mut sums = (
                regression::ErrorSums::default(),
                regression::ErrorSums::default(),
            );
            for row in run * RUN..((run + 1) * RUN).min(test.len()) {
                let prediction = model.predict(test.user[row] as usize, test.item[row] as usize);
                sums.0.add(prediction, test.rating[row]);
                sums.1.add(prediction.map(|_| guess), test.rating[row]);
            }
            sums
        })
        .collect();
    let (model_sums, baseline_sums) = parts.into_iter().fold(
        Default::default(),
        |(model, baseline): (regression::ErrorSums, regression::ErrorSums), part| {
            (model.merge(part.0), baseline.merge(part.1))
        },
    );
    (
        model_sums.metrics(),
        training_mean.map(|_| baseline_sums.metrics()),
    )
}

/// The mean of `values`, summed in fixed runs merged in order.
pub(super) fn mean_rating(values: &[f32]) -> f64 {
    use rayon::prelude::*;
    let parts: Vec<f64> = values
        .par_chunks(1 << 16)
        .map(|run| run.iter().map(|&value| f64::from(value)).sum::<f64>())
        .collect();
    parts.iter().sum::<f64>() / values.len().max(1) as f64
}
