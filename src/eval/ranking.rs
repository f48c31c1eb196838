//! Ranking metrics at k, with Spark's `RankingMetrics` definitions (binary relevance).
//!
//! For a user with recommended list `R` (at most k items, best first) and relevant set `T`:
//! - precision@k = |R ∩ T| / k (k, not |R|, as Spark);
//! - recall@k = |R ∩ T| / |T|;
//! - NDCG@k = DCG / IDCG with DCG = sum over positions i < k with R_i in T of 1 / log2(i + 2), and
//!   IDCG the same sum over the first min(k, |T|) positions;
//! - MAP@k = (sum over positions i < k with R_i in T of hits(0..=i) / (i + 1)) / min(k, |T|).
//!
//! Each is averaged over the users with a non-empty relevant set.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RankingMetrics {
    pub k: usize,
    pub precision_at_k: f64,
    pub recall_at_k: f64,
    pub ndcg_at_k: f64,
    pub map_at_k: f64,
    /// Users averaged over.
    pub users: u64,
}

/// `lists` yields (recommended, relevant) per user; `relevant` must be sorted.
pub fn evaluate<'a>(
    k: usize,
    lists: impl Iterator<Item = (&'a [u32], &'a [u32])>,
) -> RankingMetrics {
    let (mut precision, mut recall, mut ndcg, mut map) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut users = 0u64;
    for (recommended, relevant) in lists {
        if relevant.is_empty() {
            continue;
        }
        users += 1;
        let mut hits = 0usize;
        let mut dcg = 0.0;
        let mut average_precision = 0.0;
        for (position, item) in recommended.iter().take(k).enumerate() {
            if relevant.binary_search(item).is_ok() {
                hits += 1;
                dcg += 1.0 / ((position + 2) as f64).log2();
                average_precision += hits as f64 / (position + 1) as f64;
            }
        }
        let ideal: f64 = (0..k.min(relevant.len()))
            .map(|position| 1.0 / ((position + 2) as f64).log2())
            .sum();
        precision += hits as f64 / k as f64;
        recall += hits as f64 / relevant.len() as f64;
        ndcg += dcg / ideal;
        map += average_precision / k.min(relevant.len()) as f64;
    }
    let mean = |sum: f64| if users == 0 { 0.0 } else { sum / users as f64 };
    RankingMetrics {
        k,
        precision_at_k: mean(precision),
        recall_at_k: mean(recall),
        ndcg_at_k: mean(ndcg),
        map_at_k: mean(map),
        users,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        // User 1: recommended [1, 2, 3], relevant {1, 3, 7}, k = 3.
        //   hits at positions 0 and 2: precision 2/3, recall 2/3,
        //   DCG = 1/log2(2) + 1/log2(4) = 1.5, IDCG = 1 + 1/log2(3) + 1/2 = 2.1309298,
        //   AP = (1/1 + 2/3) / 3 = 0.5555556.
        // User 2: recommended [4, 5, 6], relevant {5}: precision 1/3, recall 1,
        //   NDCG = (1/log2(3)) / 1 = 0.6309298, AP = (1/2) / 1 = 0.5.
        // User 3: no relevant items, not averaged.
        let lists: Vec<(Vec<u32>, Vec<u32>)> = vec![
            (vec![1, 2, 3], vec![1, 3, 7]),
            (vec![4, 5, 6], vec![5]),
            (vec![1, 2, 3], vec![]),
        ];
        let metrics = evaluate(3, lists.iter().map(|(r, t)| (&r[..], &t[..])));
        assert_eq!(metrics.users, 2);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(metrics.precision_at_k, (2.0 / 3.0 + 1.0 / 3.0) / 2.0));
        assert!(close(metrics.recall_at_k, (2.0 / 3.0 + 1.0) / 2.0));
        assert!(close(
            metrics.ndcg_at_k,
            (1.5 / 2.130_929_8 + 0.630_929_8) / 2.0
        ));
        assert!(close(metrics.map_at_k, (0.555_555_6 + 0.5) / 2.0));
    }
}
