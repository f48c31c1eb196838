//! Top-k recommendation from factors: scores of a block of users against all items, with a
//! per-user partial top-k selection (never a full sort), seen items filtered.
//!
//! Item factors are packed in panels of sixteen items, each `rank x 16` and contiguous (as a
//! GEMM packs its right-hand side), so scoring a panel reads one sequential run of memory instead
//! of `rank` rows a whole item table apart (at rank 64 and 40k items, 64 pages per 16 items:
//! the data TLB's reach). On CPUs with AVX2 and FMA, scores are computed four users by sixteen
//! items at a time with all eight accumulators in registers across the whole rank (per 16 items
//! and 4 users: `2 rank` loads, `8 rank` fused multiply-adds, 8 stores), so the loop is bound by
//! multiply-add throughput rather than by stores or latency.
//! With AVX-512F the same sums run sixteen lanes wide, four users by 32 items (the same bits).
//! The threshold test of the top-k selection is a vector compare on those sums while they are
//! still in registers, one bit per 16 items; the selection visits only the flagged chunks.
//! Elsewhere a portable loop does the same sums and the same flags. Items come in order of
//! decreasing norm, and a user stops as soon as no later item can beat its k-th best (see
//! [`ItemScorer`]); the users still in the running are regrouped by fours at every tile. Users
//! are independent, so blocks run in parallel; ties are broken by the lower item index, so the
//! lists do not depend on the thread count.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod kernels;
mod top_k;

#[cfg(target_arch = "x86_64")]
use crate::algo::cpu::{avx2_fma as avx2_available, avx512 as avx512_available};
use kernels::{avx2, avx512};
use top_k::TopK;

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
const _: () = assert!(TILE.is_multiple_of(SCAN), "tiles hold whole panels");
const _: () = assert!(
    SCAN == 16,
    "the AVX2 kernel scores a panel as two 8-lane halves"
);

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

/// Bit `i` set where `chunk[i] >= limit` (NaN compares false); a whole chunk compiles to one
/// vector compare and a mask move. Equal scores are candidates: items arrive by norm, so one
/// tying the k-th best may still win on a lower index.
fn lanes_at_least(chunk: &[f32], limit: f32) -> u32 {
    let lanes = |values: &[f32]| -> u32 {
        values.iter().enumerate().fold(0, |lanes, (lane, &score)| {
            lanes | u32::from(score >= limit) << lane
        })
    };
    match <&[f32; SCAN]>::try_from(chunk) {
        Ok(whole) => lanes(whole),
        Err(_) => lanes(chunk),
    }
}

/// Item factors laid out for scoring, with the items that may be recommended.
///
/// Items are scored in order of decreasing factor norm. A score is at most `|user| |item|`
/// (Cauchy-Schwarz), so once a user's k-th best beats that bound for the largest item norm of
/// the next tile, no later item can enter and the user stops scoring. For implicit feedback
/// the norms spread widely (popular items are long vectors), and most users stop after a
/// fraction of the items. A second bound, from splitting the vectors along the items' mean
/// direction, is taken when smaller ([`ItemScorer::bound`]): on the 4M-rating rank-64 implicit
/// model it cut the ranking evaluation from 1.69-1.82 s to 1.13-1.32 s in alternating runs,
/// the same metrics. The lists are exactly those of a full scan: each score is
/// computed the same way, the bound allows for the rounding of the dot product, and ties are
/// broken by item index whatever order the items come in.
pub struct ItemScorer {
    rank: usize,
    items: usize,
    /// `panels[(p * rank + a) * SCAN + lane]` is factor `a` of the item at position
    /// `p * SCAN + lane`; the last panel is padded with zeros.
    panels: Vec<f32>,
    /// The item at each position (decreasing norm, then increasing index).
    order: Vec<u32>,
    /// The position of each item.
    position: Vec<u32>,
    /// The norm of the item at each position (never increasing).
    norms: Vec<f64>,
    /// By position: items without factors (never seen in training) are never recommended.
    recommendable: Vec<bool>,
    /// The unit direction of the items' mean factor vector (empty when that is zero).
    center: Vec<f64>,
    /// By position, over that position and every later one: the largest and smallest
    /// component along `center`, and the largest norm of the rest (see [`ItemScorer::bound`]).
    along_max: Vec<f64>,
    along_min: Vec<f64>,
    across_max: Vec<f64>,
}

/// Allowance for rounding in a computed score relative to `|user| |item|`: a dot product of
/// `rank` terms in f32 is within about `rank * 2^-24` of the exact one (relative to that
/// product of norms), with or without fused multiply-adds; four times that covers the norms'
/// own rounding.
fn bound_margin(rank: usize) -> f64 {
    1.0 + 4.0 * (rank as f64 + 2.0) * f64::from(f32::EPSILON) / 2.0
}

/// A factor row's norm in f64.
fn norm_of(row: &[f32]) -> f64 {
    row.iter()
        .map(|&value| f64::from(value) * f64::from(value))
        .sum::<f64>()
        .sqrt()
}

/// A factor row (users' and items' alike) as [`ItemScorer::bound`] reads it: its norm, and
/// the lengths of its parts along and across the items' mean direction.
#[derive(Clone, Copy, Debug)]
struct Split {
    norm: f64,
    along: f64,
    across: f64,
}

impl Split {
    /// `row` (of norm `norm`) split along the unit direction `center` (empty: all across).
    fn of(center: &[f64], row: &[f32], norm: f64) -> Split {
        let along: f64 = center
            .iter()
            .zip(row)
            .map(|(direction, &value)| direction * f64::from(value))
            .sum();
        Split {
            norm,
            along,
            across: (norm * norm - along * along).max(0.0).sqrt(),
        }
    }
}

impl ItemScorer {
    pub fn new(item_factors: &[f32], rank: usize, recommendable: Vec<bool>) -> ItemScorer {
        let items = recommendable.len();
        let item_norms: Vec<f64> = (0..items)
            .map(|item| norm_of(&item_factors[item * rank..(item + 1) * rank]))
            .collect();
        let mut order: Vec<u32> = (0..items as u32).collect();
        order.sort_by(|&a, &b| {
            item_norms[b as usize]
                .total_cmp(&item_norms[a as usize])
                .then(a.cmp(&b))
        });
        let mut position = vec![0u32; items];
        for (at, &item) in order.iter().enumerate() {
            position[item as usize] = at as u32;
        }
        let mut panels = vec![0f32; items.div_ceil(SCAN) * SCAN * rank];
        for (at, &item) in order.iter().enumerate() {
            let (panel, lane) = (at / SCAN, at % SCAN);
            let factors = &item_factors[item as usize * rank..(item as usize + 1) * rank];
            for (a, &value) in factors.iter().enumerate() {
                panels[(panel * rank + a) * SCAN + lane] = value;
            }
        }
        let mut center = vec![0f64; rank];
        for factors in item_factors.chunks_exact(rank.max(1)).take(items) {
            for (sum, &value) in center.iter_mut().zip(factors) {
                *sum += f64::from(value);
            }
        }
        let length = center.iter().map(|value| value * value).sum::<f64>().sqrt();
        if length > 0.0 && length.is_finite() {
            center.iter_mut().for_each(|value| *value /= length);
        } else {
            center.clear();
        }
        let (mut along_max, mut along_min, mut across_max) =
            (vec![0f64; items], vec![0f64; items], vec![0f64; items]);
        let mut running = (f64::NEG_INFINITY, f64::INFINITY, 0f64);
        for at in (0..items).rev() {
            let item = order[at] as usize;
            let Split { along, across, .. } = Split::of(
                &center,
                &item_factors[item * rank..(item + 1) * rank],
                item_norms[item],
            );
            running = (
                running.0.max(along),
                running.1.min(along),
                running.2.max(across),
            );
            (along_max[at], along_min[at], across_max[at]) = running;
        }
        ItemScorer {
            rank,
            items,
            panels,
            center,
            along_max,
            along_min,
            across_max,
            norms: order
                .iter()
                .map(|&item| item_norms[item as usize])
                .collect(),
            recommendable: order
                .iter()
                .map(|&item| recommendable[item as usize])
                .collect(),
            order,
            position,
        }
    }

    /// Bytes held: the panels and the per-item tables (for the server's memory budget).
    pub fn footprint(&self) -> usize {
        self.panels.len() * 4
            + (self.order.len() + self.position.len()) * 4
            + (self.norms.len() + self.along_max.len() * 3 + self.center.len()) * 8
            + self.recommendable.len()
    }

    /// A user's factor row as [`ItemScorer::bound`] reads it.
    fn split(&self, user: &[f32]) -> Split {
        Split::of(&self.center, user, norm_of(user))
    }

    /// An upper bound on the computed score of a user (its factor row split by
    /// [`ItemScorer::split`]) with any item at position `at` or later. Cauchy-Schwarz gives `|u| |v|`; splitting both
    /// vectors along the items' mean direction `c` gives `u.v <= (u.c)(v.c) + |u'| |v'|` (the
    /// primes: the parts across `c`), much the smaller where item vectors share a direction
    /// (popularity, in implicit models). The smaller of the two is taken, plus the rounding
    /// allowance of [`bound_margin`] relative to `|u| |v|`.
    fn bound(&self, user: Split, at: usize) -> f64 {
        let Split {
            norm,
            along,
            across,
        } = user;
        let margin = bound_margin(self.rank);
        let largest = self.norms[at];
        let schwarz = norm * largest * margin;
        if self.center.is_empty() {
            return schwarz + 1e-37;
        }
        let split = (along * self.along_max[at]).max(along * self.along_min[at])
            + across * self.across_max[at]
            + (margin - 1.0) * norm * largest;
        schwarz.min(split) + 1e-37
    }

    /// The `rank x SCAN` panel holding the item at position `first` (a multiple of [`SCAN`]).
    fn panel(&self, first: usize) -> &[f32] {
        let start = first / SCAN * self.rank * SCAN;
        &self.panels[start..start + self.rank * SCAN]
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
        // Seen items by position, sorted so each tile walks its part once.
        let sorted_seen: Vec<Vec<u32>> = block
            .iter()
            .map(|&user| {
                let mut positions: Vec<u32> = seen(user)
                    .iter()
                    .filter_map(|&item| self.position.get(item as usize).copied())
                    .collect();
                positions.sort_unstable();
                positions
            })
            .collect();
        // Each user's part along the items' mean direction, once rather than at every tile.
        let user_splits: Vec<Split> = block
            .iter()
            .map(|&user| {
                self.split(
                    &user_factors[user as usize * self.rank..(user as usize + 1) * self.rank],
                )
            })
            .collect();
        // The users still in the running, regrouped by fours at every tile.
        let mut active: Vec<usize> = (0..block.len()).collect();
        let mut cursors = vec![0usize; block.len()];
        let mut scores = vec![0f32; TILE * GROUP];
        for tile_start in (0..self.items).step_by(TILE) {
            let tile_end = (tile_start + TILE).min(self.items);
            let width = tile_end - tile_start;
            // A user is done once no score of this tile or a later one (at most |user| times
            // the tile's largest norm, rounding allowed) can enter its list: norms only fall and
            // the threshold only rises.
            active.retain(|&slot| {
                let bound = self.bound(user_splits[slot], tile_start);
                let beaten = bound < f64::from(best[slot].threshold());
                !beaten
            });
            if active.is_empty() {
                break;
            }
            for slots in active.chunks(GROUP) {
                let users: [u32; GROUP] = std::array::from_fn(|offset| {
                    block[slots.get(offset).copied().unwrap_or(slots[0])]
                });
                let thresholds: [f32; GROUP] = std::array::from_fn(|offset| {
                    slots
                        .get(offset)
                        .map_or(f32::INFINITY, |&slot| best[slot].threshold())
                });
                let flags = self.score_group(
                    user_factors,
                    &users[..slots.len()],
                    tile_start,
                    width,
                    &thresholds,
                    &mut scores,
                );
                for (offset, &slot) in slots.iter().enumerate() {
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
                    // Only chunks with a score at or above the k-th best as the tile began (the
                    // threshold only rises; seen items only lower scores).
                    let mut chunk_flags = flags[offset];
                    while chunk_flags != 0 {
                        let chunk_index = chunk_flags.trailing_zeros() as usize;
                        chunk_flags &= chunk_flags - 1;
                        let start = chunk_index * SCAN;
                        let chunk = &scores[start..(start + SCAN).min(width)];
                        // The lanes at or above the threshold as the chunk begins, found by
                        // one vector compare; each is tested again as the threshold rises.
                        let mut lanes = lanes_at_least(chunk, top.threshold());
                        while lanes != 0 {
                            let lane = lanes.trailing_zeros() as usize;
                            lanes &= lanes - 1;
                            let score = chunk[lane];
                            let at = tile_start + chunk_index * SCAN + lane;
                            let item = self.order[at];
                            if top.accepts(item, score) && self.recommendable[at] {
                                top.offer(item, score);
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
    /// tile: set where a score may be at or above the user's threshold (the bits may over-report, never
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
                if avx512_available() {
                    // SAFETY: AVX-512F and FMA are present (checked); the bounds are those of
                    // the AVX2 kernel below.
                    return unsafe {
                        avx512::score_group(
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
            for (chunk, out) in out.chunks_mut(SCAN).enumerate() {
                let panel = self.panel(tile_start + chunk * SCAN);
                for (&xa, column) in x.iter().zip(panel.chunks_exact(SCAN)) {
                    for (score, &value) in out.iter_mut().zip(column) {
                        *score += xa * value;
                    }
                }
            }
        }
        std::array::from_fn(|offset| {
            let out = &scores[offset * TILE..offset * TILE + width];
            out.chunks(SCAN)
                .enumerate()
                .filter(|(_, chunk)| maximum(chunk) >= thresholds[offset])
                .fold(0u64, |flags, (chunk, _)| flags | 1 << chunk)
        })
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
        self.unit.len() * 4 + self.every.len() * 4 + self.scorer.footprint()
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
    fn the_split_bound_holds_for_every_later_item_and_beats_cauchy_schwarz_on_shared_directions() {
        // Items and users along one shared direction plus noise, some users against it.
        let rank = 16;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let shared: Vec<f32> = (0..rank).map(|a| 1.0 + a as f32 * 0.1).collect();
        let vectors = |count: usize, noise: &mut dyn FnMut() -> f32| -> Vec<f32> {
            (0..count)
                .flat_map(|row| {
                    let scale = (row % 7) as f32 * 0.5 - 1.0;
                    shared
                        .iter()
                        .map(|&value| value * scale + noise())
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let items = vectors(600, &mut noise);
        let users = vectors(60, &mut noise);
        let scorer = ItemScorer::new(&items, rank, vec![true; 600]);
        let mut tighter = 0;
        for user in users.chunks_exact(rank) {
            let norm = user
                .iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt();
            for at in (0..600).step_by(37) {
                let bound = scorer.bound(scorer.split(user), at);
                for &item in &scorer.order[at..] {
                    let factors = &items[item as usize * rank..(item as usize + 1) * rank];
                    let fused = user
                        .iter()
                        .zip(factors)
                        .fold(0f32, |sum, (&u, &v)| u.mul_add(v, sum));
                    let exact: f64 = user
                        .iter()
                        .zip(factors)
                        .map(|(&u, &v)| f64::from(u) * f64::from(v))
                        .sum();
                    assert!(
                        bound >= f64::from(fused) && bound >= exact,
                        "{bound} {fused}"
                    );
                }
                tighter += usize::from(bound < norm * scorer.norms[at]);
            }
        }
        assert!(
            tighter > 60 * 17 / 2,
            "tighter than Cauchy-Schwarz {tighter} times"
        );
    }

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

    /// The AVX-512 kernel gives the AVX2 kernel's scores bit for bit, and the same chunk flags,
    /// at tile ends of every shape (whole pairs of panels, a lone panel, partial panels).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn both_vector_kernels_give_the_same_bits() {
        if !(avx2_available() && avx512_available()) {
            return;
        }
        let value = |i: usize| ((i * 7919 % 1009) as f32 - 504.0) / 317.0;
        for (items, rank) in [(2500, 5), (1024 + 20, 17), (9, 64), (1024 + 48, 3)] {
            let user_factors: Vec<f32> = (0..GROUP * rank).map(value).collect();
            let item_factors: Vec<f32> = (0..items * rank).map(|i| value(i + 13)).collect();
            let scorer = ItemScorer::new(&item_factors, rank, vec![true; items]);
            let group: [u32; GROUP] = std::array::from_fn(|user| user as u32);
            let thresholds = [0.5, f32::NEG_INFINITY, 2.0, 1.0];
            for tile_start in (0..items).step_by(TILE) {
                let width = (items - tile_start).min(TILE);
                let (mut wide, mut narrow) = (vec![0f32; GROUP * TILE], vec![0f32; GROUP * TILE]);
                // SAFETY: both instruction sets are present (checked above).
                let (wide_flags, narrow_flags) = unsafe {
                    (
                        avx512::score_group(
                            &scorer,
                            &user_factors,
                            &group,
                            tile_start,
                            width,
                            &thresholds,
                            &mut wide,
                        ),
                        avx2::score_group(
                            &scorer,
                            &user_factors,
                            &group,
                            tile_start,
                            width,
                            &thresholds,
                            &mut narrow,
                        ),
                    )
                };
                for user in 0..GROUP {
                    let range = user * TILE..user * TILE + width;
                    let bits = |scores: &[f32]| -> Vec<u32> {
                        scores[range.clone()].iter().map(|s| s.to_bits()).collect()
                    };
                    assert_eq!(bits(&wide), bits(&narrow), "{items} items, rank {rank}");
                    // The flags may over-report (a partial chunk is always scanned); both
                    // flag every chunk holding a score above the threshold.
                    for (chunk, scores) in wide[range].chunks(SCAN).enumerate() {
                        if maximum(scores) > thresholds[user] {
                            assert!(wide_flags[user] & narrow_flags[user] & 1 << chunk != 0);
                        }
                    }
                }
            }
        }
    }

    /// Scores that tie exactly across items of very different norms (so the norm order and the
    /// index order disagree), users whose lists stop early and late, seen items: the lists
    /// equal a full sort by score, then item index.
    #[test]
    fn norm_order_and_early_stops_keep_the_full_scan_lists() {
        let items = 3000;
        // Every score is exact in f32 (quarters and small integers), with or without FMA.
        let item_factors: Vec<f32> = (0..items)
            .flat_map(|item| {
                let s = [0.5f32, 1.0, 2.0][item * 7 % 3];
                let t = [0.0f32, 4.0, -4.0, 8.0, 16.0, 0.0, 0.25][item * 11 % 7];
                [s, t]
            })
            .collect();
        let user_factors = [1.0f32, 0.0, 1.0, 0.25, -1.0, 0.0, 0.0, 0.0, 2.0, -0.25];
        let users = user_factors.len() / 2;
        let recommendable: Vec<bool> = (0..items).map(|item| item % 13 != 5).collect();
        let scorer = ItemScorer::new(&item_factors, 2, recommendable.clone());
        let seen_lists: Vec<Vec<u32>> = (0..users as u32)
            .map(|user| vec![user * 17 % 40, 3, 2999])
            .collect();
        let all_users: Vec<u32> = (0..users as u32).collect();
        for k in [1, 5, 40] {
            let fast = scorer.top_k(&user_factors, &all_users, k, &|user| {
                &seen_lists[user as usize]
            });
            for user in 0..users {
                let x = &user_factors[user * 2..user * 2 + 2];
                let mut all: Vec<(u32, f32)> = (0..items)
                    .filter(|&i| recommendable[i] && !seen_lists[user].contains(&(i as u32)))
                    .map(|i| {
                        (
                            i as u32,
                            x[0] * item_factors[2 * i] + x[1] * item_factors[2 * i + 1],
                        )
                    })
                    .collect();
                all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                all.truncate(k);
                assert_eq!(fast[user], all, "user {user}, k {k}");
            }
        }
    }

    /// Long item vectors pointing away from the user, the best items deep in the norm order:
    /// the early stop must not come before them (a bound half as large would).
    #[test]
    fn early_stops_wait_for_items_deep_in_the_norm_order() {
        let items = 6000;
        let item_factors: Vec<f32> = (0..items)
            .flat_map(|item| {
                let (length, angle) = (
                    (items - item) as f64,
                    std::f64::consts::PI * (1.0 - item as f64 / items as f64),
                );
                // Whole numbers, so every score (the first coordinate) is exact.
                [
                    (length * angle.cos()).round() as f32,
                    (length * angle.sin()).round() as f32,
                ]
            })
            .collect();
        let scorer = ItemScorer::new(&item_factors, 2, vec![true; items]);
        let user_factors = [1.0f32, 0.0];
        let best = scorer.top_k(&user_factors, &[0], 40, &|_| &[]);
        let mut all: Vec<(u32, f32)> = (0..items as u32)
            .map(|item| (item, item_factors[2 * item as usize]))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(40);
        assert!(all.iter().all(|&(item, _)| item > 4096), "{all:?}");
        assert_eq!(best[0], all);
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
