//! Top-k recommendation from factors: scores of a block of users against all items, with a
//! per-user partial top-k selection (never a full sort), seen items filtered.
//!
//! Item factors are transposed to `rank x items` so that a user's scores over a tile of items
//! are `rank` vectorizable multiply-adds into a small buffer that stays in L1; a tile of item
//! factors is reused by every user of the block. Users are independent, so blocks run in
//! parallel; ties are broken by the lower item index, so the lists do not depend on the thread
//! count.

use rayon::prelude::*;

/// Items scored per tile (the score buffer is 4 KiB).
const TILE: usize = 1024;
/// Users per parallel block (they share each tile of item factors while it is in cache).
const BLOCK: usize = 64;

/// Item factors laid out for scoring, with the items that may be recommended.
pub struct ItemScorer {
    rank: usize,
    items: usize,
    /// `transposed[a * items + i]` is factor `a` of item `i`.
    transposed: Vec<f32>,
    /// Items without factors (never seen in training) are never recommended.
    recommendable: Vec<bool>,
}

impl ItemScorer {
    pub fn new(item_factors: &[f32], rank: usize, recommendable: Vec<bool>) -> ItemScorer {
        let items = recommendable.len();
        let mut transposed = vec![0f32; rank * items];
        for item in 0..items {
            for a in 0..rank {
                transposed[a * items + item] = item_factors[item * rank + a];
            }
        }
        ItemScorer {
            rank,
            items,
            transposed,
            recommendable,
        }
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// The `k` best items for each of `users` (factor rows of `user_factors`), as
    /// `(item, score)` best first; `seen(user)` lists items to leave out (any order).
    pub fn top_k<'a>(
        &self,
        user_factors: &[f32],
        users: &[u32],
        k: usize,
        seen: &(dyn Fn(u32) -> &'a [u32] + Sync),
    ) -> Vec<Vec<(u32, f32)>> {
        users
            .par_chunks(BLOCK)
            .flat_map_iter(|block| self.top_k_block(user_factors, block, k, seen))
            .collect()
    }

    fn top_k_block<'a>(
        &self,
        user_factors: &[f32],
        block: &[u32],
        k: usize,
        seen: &(dyn Fn(u32) -> &'a [u32] + Sync),
    ) -> Vec<Vec<(u32, f32)>> {
        let rank = self.rank;
        let mut best: Vec<TopK> = block.iter().map(|_| TopK::new(k)).collect();
        let sorted_seen: Vec<Vec<u32>> = block
            .iter()
            .map(|&user| {
                let mut items = seen(user).to_vec();
                items.sort_unstable();
                items
            })
            .collect();
        let mut cursors = vec![0usize; block.len()];
        let mut scores = vec![0f32; TILE];
        for tile_start in (0..self.items).step_by(TILE) {
            let tile_end = (tile_start + TILE).min(self.items);
            let width = tile_end - tile_start;
            for (slot, &user) in block.iter().enumerate() {
                let x = &user_factors[user as usize * rank..(user as usize + 1) * rank];
                let scores = &mut scores[..width];
                scores.fill(0.0);
                for (a, &xa) in x.iter().enumerate() {
                    let column =
                        &self.transposed[a * self.items + tile_start..a * self.items + tile_end];
                    for (score, &value) in scores.iter_mut().zip(column) {
                        *score += xa * value;
                    }
                }
                // Leave out seen items of this tile (the list is sorted; walk it once).
                let seen_items = &sorted_seen[slot];
                let cursor = &mut cursors[slot];
                while *cursor < seen_items.len() && (seen_items[*cursor] as usize) < tile_end {
                    let item = seen_items[*cursor] as usize;
                    if item >= tile_start {
                        scores[item - tile_start] = f32::NEG_INFINITY;
                    }
                    *cursor += 1;
                }
                let top = &mut best[slot];
                for (offset, &score) in scores.iter().enumerate() {
                    if score > top.threshold() {
                        let item = tile_start + offset;
                        if self.recommendable[item] {
                            top.offer(item as u32, score);
                        }
                    }
                }
            }
        }
        best.into_iter().map(TopK::into_sorted).collect()
    }
}

/// The `k` largest scores seen so far, kept as a small unsorted array with its minimum known.
struct TopK {
    capacity: usize,
    entries: Vec<(u32, f32)>,
    /// Index of the worst entry once full.
    worst: usize,
}

impl TopK {
    fn new(capacity: usize) -> TopK {
        TopK {
            capacity,
            entries: Vec::with_capacity(capacity),
            worst: 0,
        }
    }

    /// Scores at or below this cannot enter (NaN and -inf never do).
    fn threshold(&self) -> f32 {
        if self.entries.len() < self.capacity {
            f32::NEG_INFINITY
        } else {
            self.entries[self.worst].1
        }
    }

    /// Items arrive in increasing index order, so a tie keeps the earlier (lower) item.
    fn offer(&mut self, item: u32, score: f32) {
        if self.capacity == 0 || score.is_nan() {
            return;
        }
        if self.entries.len() < self.capacity {
            self.entries.push((item, score));
        } else {
            self.entries[self.worst] = (item, score);
        }
        if self.entries.len() == self.capacity {
            // Worst = lowest score; among equal scores the highest item index.
            self.worst = (0..self.entries.len())
                .min_by(|&a, &b| {
                    let (item_a, score_a) = self.entries[a];
                    let (item_b, score_b) = self.entries[b];
                    score_a.total_cmp(&score_b).then(item_b.cmp(&item_a))
                })
                .unwrap_or(0);
        }
    }

    fn into_sorted(mut self) -> Vec<(u32, f32)> {
        self.entries
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.entries
    }
}

/// Items ranked by how many training entries they have (most first, ties by index): the
/// recommendation for users without factors and the baseline ranking metrics are compared to.
pub fn popular_items(item_counts: &[u32]) -> Vec<u32> {
    let mut items: Vec<u32> = (0..item_counts.len() as u32)
        .filter(|&item| item_counts[item as usize] > 0)
        .collect();
    items.sort_by(|&a, &b| {
        item_counts[b as usize]
            .cmp(&item_counts[a as usize])
            .then(a.cmp(&b))
    });
    items
}

/// The first `k` of `ranked` that are not in `seen` (any order; short lists are scanned).
pub fn first_unseen(ranked: &[u32], seen: &[u32], k: usize) -> Vec<u32> {
    let mut sorted_seen = seen.to_vec();
    sorted_seen.sort_unstable();
    ranked
        .iter()
        .copied()
        .filter(|item| sorted_seen.binary_search(item).is_err())
        .take(k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_brute_force_full_sort() {
        let (users, items, rank) = (37, 2500, 5);
        let value = |i: usize| ((i * 7919 % 1009) as f32 - 504.0) / 300.0;
        let user_factors: Vec<f32> = (0..users * rank).map(value).collect();
        let item_factors: Vec<f32> = (0..items * rank).map(|i| value(i + 13)).collect();
        let recommendable: Vec<bool> = (0..items).map(|i| i % 11 != 0).collect();
        let scorer = ItemScorer::new(&item_factors, rank, recommendable.clone());
        let seen_lists: Vec<Vec<u32>> = (0..users)
            .map(|u| vec![(u * 31 % items) as u32, 5, 1500])
            .collect();
        let all_users: Vec<u32> = (0..users as u32).collect();
        let seen = |user: u32| -> &[u32] { &seen_lists[user as usize] };
        let fast = scorer.top_k(&user_factors, &all_users, 10, &seen);
        for user in 0..users {
            let x = &user_factors[user * rank..(user + 1) * rank];
            let mut all: Vec<(u32, f32)> = (0..items)
                .filter(|&i| recommendable[i] && !seen_lists[user].contains(&(i as u32)))
                .map(|i| {
                    let y = &item_factors[i * rank..(i + 1) * rank];
                    (i as u32, x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>())
                })
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let expected: Vec<u32> = all.iter().take(10).map(|(i, _)| *i).collect();
            let got: Vec<u32> = fast[user].iter().map(|(i, _)| *i).collect();
            assert_eq!(got, expected, "user {user}");
            assert!(got.iter().all(|item| !seen_lists[user].contains(item)));
        }
    }

    #[test]
    fn popularity_order_and_unseen_filter() {
        let ranked = popular_items(&[3, 0, 5, 3]);
        assert_eq!(ranked, vec![2, 0, 3]);
        assert_eq!(first_unseen(&ranked, &[2], 2), vec![0, 3]);
    }
}
