//! Top-k recommendation from factors: scores of a block of users against all items, with a
//! per-user partial top-k selection (never a full sort), seen items filtered.
//!
//! Item factors are transposed to `rank x items`. On CPUs with AVX2 and FMA, scores are computed
//! four users by sixteen items at a time with all eight accumulators in registers across the
//! whole rank (per 16 items and 4 users: `2 rank` loads, `8 rank` fused multiply-adds, 8
//! stores), so the loop is bound by multiply-add throughput rather than by stores or latency.
//! The threshold test of the top-k selection is a vector compare on those sums while they are
//! still in registers, one bit per 16 items; the selection visits only the flagged chunks.
//! Elsewhere a portable loop does the same sums and the same flags. Users are independent, so blocks run in
//! parallel; ties are broken by the lower item index, so the lists do not depend on the thread
//! count.

use rayon::prelude::*;

/// Items scored per tile (the score buffer is 4 KiB).
const TILE: usize = 1024;
/// Users per parallel block (they share each tile of item factors while it is in cache).
const BLOCK: usize = 64;
/// Users scored together in registers.
const GROUP: usize = 4;
/// Scores tested against the top-k threshold at once (a tile has 64 such chunks, one bit each
/// in a user's flags).
const SCAN: usize = 16;
const _: () = assert!(TILE / SCAN <= 64, "a tile's chunk flags must fit in a u64");

/// The largest value (NaN ignored), written so that it compiles to vector max instructions.
fn maximum(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane = if value > *lane { value } else { *lane };
        }
    }
    let mut best =
        chunks.remainder().iter().fold(
            f32::NEG_INFINITY,
            |best, &value| if value > best { value } else { best },
        );
    for lane in lanes {
        best = if lane > best { lane } else { best };
    }
    best
}

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
        let mut scores = vec![0f32; TILE * GROUP];
        for tile_start in (0..self.items).step_by(TILE) {
            let tile_end = (tile_start + TILE).min(self.items);
            let width = tile_end - tile_start;
            for group_start in (0..block.len()).step_by(GROUP) {
                let group = &block[group_start..(group_start + GROUP).min(block.len())];
                let thresholds: [f32; GROUP] = std::array::from_fn(|offset| {
                    best.get(group_start + offset)
                        .map_or(f32::INFINITY, TopK::threshold)
                });
                let flags = self.score_group(
                    user_factors,
                    group,
                    tile_start,
                    width,
                    &thresholds,
                    &mut scores,
                );
                for (offset, _) in group.iter().enumerate() {
                    let slot = group_start + offset;
                    let scores = &mut scores[offset * TILE..offset * TILE + width];
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
                    // Only chunks with a score above the k-th best as the tile began (the
                    // threshold only rises; seen items only lower scores).
                    let mut chunk_flags = flags[offset];
                    while chunk_flags != 0 {
                        let chunk_index = chunk_flags.trailing_zeros() as usize;
                        chunk_flags &= chunk_flags - 1;
                        let start = chunk_index * SCAN;
                        let chunk = &scores[start..(start + SCAN).min(width)];
                        for (lane, &score) in chunk.iter().enumerate() {
                            if score > top.threshold() {
                                let item = tile_start + chunk_index * SCAN + lane;
                                if self.recommendable[item] {
                                    top.offer(item as u32, score);
                                }
                            }
                        }
                    }
                }
            }
        }
        best.into_iter().map(TopK::into_sorted).collect()
    }
}

impl ItemScorer {
    /// Scores of up to [`GROUP`] users against items `tile_start..tile_start + width`, into
    /// `scores[user_in_group * TILE + offset]`. Returns per user a bit per [`SCAN`] chunk of the
    /// tile: set where a score may be above the user's threshold (the bits may over-report, never
    /// under-report).
    fn score_group(
        &self,
        user_factors: &[f32],
        group: &[u32],
        tile_start: usize,
        width: usize,
        thresholds: &[f32; GROUP],
        scores: &mut [f32],
    ) -> [u64; GROUP] {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2_available() && !group.is_empty() {
                // A short group is padded with its first user, so every user's scores come from
                // the same FMA kernel whatever group it falls in: a user scores to the same bits
                // in a batch job and alone (a served request).
                let padded: [u32; GROUP] =
                    std::array::from_fn(|offset| group.get(offset).copied().unwrap_or(group[0]));
                // SAFETY: AVX2 and FMA are present (checked); every user row and the tile lie
                // inside their tables (the users come from the model, the tile from `items`), and
                // `scores` holds GROUP * TILE floats.
                return unsafe {
                    avx2::score_group(
                        self,
                        user_factors,
                        &padded,
                        tile_start,
                        width,
                        thresholds,
                        scores,
                    )
                };
            }
        }
        let rank = self.rank;
        for (offset, &user) in group.iter().enumerate() {
            let x = &user_factors[user as usize * rank..(user as usize + 1) * rank];
            let out = &mut scores[offset * TILE..offset * TILE + width];
            out.fill(0.0);
            for (a, &xa) in x.iter().enumerate() {
                let column = &self.transposed
                    [a * self.items + tile_start..a * self.items + tile_start + width];
                for (score, &value) in out.iter_mut().zip(column) {
                    *score += xa * value;
                }
            }
        }
        std::array::from_fn(|offset| {
            let out = &scores[offset * TILE..offset * TILE + width];
            out.chunks(SCAN)
                .enumerate()
                .filter(|(_, chunk)| maximum(chunk) > thresholds[offset])
                .fold(0u64, |flags, (chunk, _)| flags | 1 << chunk)
        })
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{GROUP, ItemScorer, SCAN, TILE};

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn score_group(
        scorer: &ItemScorer,
        user_factors: &[f32],
        group: &[u32],
        tile_start: usize,
        width: usize,
        thresholds: &[f32; GROUP],
        scores: &mut [f32],
    ) -> [u64; GROUP] {
        let mut flags = [0u64; GROUP];
        let limits: [__m256; GROUP] = std::array::from_fn(|user| _mm256_set1_ps(thresholds[user]));
        let rank = scorer.rank;
        let items = scorer.items;
        let rows: [&[f32]; GROUP] = std::array::from_fn(|offset| {
            let user = group[offset] as usize;
            &user_factors[user * rank..(user + 1) * rank]
        });
        let full = width / 8 * 8;
        let mut offset = 0;
        // Sixteen items at a time: eight independent sums keep both FMA units busy through
        // the multiply-add latency (four sums, one per user, left half of them idle).
        while offset + 16 <= full {
            let mut low = [_mm256_setzero_ps(); GROUP];
            let mut high = [_mm256_setzero_ps(); GROUP];
            for a in 0..rank {
                // SAFETY: `a * items + tile_start + offset + 16 <= rank * items` since the tile
                // lies inside `items` and `offset + 16 <= width`.
                let (first, second) = unsafe {
                    let at = scorer
                        .transposed
                        .as_ptr()
                        .add(a * items + tile_start + offset);
                    (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)))
                };
                for ((low, high), row) in low.iter_mut().zip(high.iter_mut()).zip(&rows) {
                    let factor = _mm256_set1_ps(row[a]);
                    *low = _mm256_fmadd_ps(factor, first, *low);
                    *high = _mm256_fmadd_ps(factor, second, *high);
                }
            }
            for (user, (low, high)) in low.iter().zip(&high).enumerate() {
                // SAFETY: `user * TILE + offset + 16 <= GROUP * TILE`.
                unsafe {
                    let at = scores.as_mut_ptr().add(user * TILE + offset);
                    _mm256_storeu_ps(at, *low);
                    _mm256_storeu_ps(at.add(8), *high);
                }
                // The threshold test of the selection, on the sums still in registers (NaN
                // compares false, as the scalar test does).
                let above = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_max_ps(*low, *high), limits[user]);
                let bit = u64::from(_mm256_movemask_ps(above) != 0) << (offset / SCAN);
                flags[user] |= bit;
            }
            offset += 16;
        }
        // The rest of the tile (under 16 items) is always scanned.
        for user_flags in &mut flags {
            for chunk in offset / SCAN..width.div_ceil(SCAN) {
                *user_flags |= 1 << chunk;
            }
        }
        while offset < full {
            let mut sums = [_mm256_setzero_ps(); GROUP];
            for a in 0..rank {
                // SAFETY: `a * items + tile_start + offset + 8 <= rank * items` since the tile
                // lies inside `items` and `offset + 8 <= width`.
                let column = unsafe {
                    _mm256_loadu_ps(
                        scorer
                            .transposed
                            .as_ptr()
                            .add(a * items + tile_start + offset),
                    )
                };
                for (sum, row) in sums.iter_mut().zip(&rows) {
                    *sum = _mm256_fmadd_ps(_mm256_set1_ps(row[a]), column, *sum);
                }
            }
            for (user, sum) in sums.iter().enumerate() {
                // SAFETY: `user * TILE + offset + 8 <= GROUP * TILE`.
                unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(user * TILE + offset), *sum) };
            }
            offset += 8;
        }
        for offset in full..width {
            for (user, row) in rows.iter().enumerate() {
                scores[user * TILE + offset] = (0..rank)
                    .map(|a| row[a] * scorer.transposed[a * items + tile_start + offset])
                    .sum();
            }
        }
        flags
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

/// Similar items: the items whose factors have the highest cosine similarity to a given
/// item's, the item itself left out. Factors are scaled to unit length once (an item without
/// factors, all zeros, stays zero and is similar to nothing), so the cosine is a dot product
/// and the ranking is the blocked top-k scorer's, for one item (a served request) or all of them
/// (a batch job) alike.
pub struct SimilarItems {
    unit: Vec<f32>,
    scorer: ItemScorer,
    /// `0..items`, so that "seen" can name each item itself.
    every: Vec<u32>,
}

impl SimilarItems {
    pub fn new(item_factors: &[f32], rank: usize) -> SimilarItems {
        let mut unit = item_factors.to_vec();
        for row in unit.chunks_exact_mut(rank.max(1)) {
            let norm = row.iter().map(|value| value * value).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|value| *value /= norm);
            }
        }
        let items = unit.len() / rank.max(1);
        let scorer = ItemScorer::new(&unit, rank, vec![true; items]);
        SimilarItems {
            unit,
            scorer,
            every: (0..items as u32).collect(),
        }
    }

    /// Bytes held (for the server's memory budget).
    pub fn footprint(&self) -> usize {
        self.unit.len() * 8 + self.every.len() * 5
    }

    /// For each of `items`, up to `k` (item, cosine) pairs, most similar first (ties by the
    /// lower index).
    pub fn top_k(&self, items: &[u32], k: usize) -> Vec<Vec<(u32, f32)>> {
        let every = &self.every;
        self.scorer.top_k(&self.unit, items, k, &|item| {
            &every[item as usize..item as usize + 1]
        })
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
    fn similar_items_equal_a_brute_force_cosine_ranking() {
        let (items, rank) = (3000, 12);
        let mut factors: Vec<f32> = (0..items * rank)
            .map(|at| {
                (((at as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32) / 1.6e7 - 0.5
            })
            .collect();
        // An item without factors is similar to nothing and ranks last for everyone.
        factors[7 * rank..8 * rank].fill(0.0);
        let similar = SimilarItems::new(&factors, rank);
        let queries: Vec<u32> = (0..items as u32).step_by(97).collect();
        let lists = similar.top_k(&queries, 10);
        let norm = |item: usize| {
            factors[item * rank..(item + 1) * rank]
                .iter()
                .map(|v| f64::from(*v) * f64::from(*v))
                .sum::<f64>()
                .sqrt()
        };
        let cosine = |a: usize, b: usize| {
            let dot: f64 = (0..rank)
                .map(|j| f64::from(factors[a * rank + j]) * f64::from(factors[b * rank + j]))
                .sum();
            let norms = norm(a) * norm(b);
            if norms > 0.0 { dot / norms } else { 0.0 }
        };
        for (&query, list) in queries.iter().zip(&lists) {
            let query = query as usize;
            let mut all: Vec<(usize, f64)> = (0..items)
                .filter(|&item| item != query)
                .map(|item| (item, cosine(query, item)))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            assert_eq!(list.len(), 10);
            for (position, &(item, score)) in list.iter().enumerate() {
                assert_ne!(item as usize, query);
                let expected = all[position].1;
                assert!(
                    (f64::from(score) - expected).abs() < 1e-5,
                    "{query}: {list:?}"
                );
                assert!((cosine(query, item as usize) - expected).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn popularity_order_and_unseen_filter() {
        let ranked = popular_items(&[3, 0, 5, 3]);
        assert_eq!(ranked, vec![2, 0, 3]);
        assert_eq!(first_unseen(&ranked, &[2], 2), vec![0, 3]);
    }
}
