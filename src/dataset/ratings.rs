//! Ratings as (user, item, rating) triples over dense indices, the original ids kept beside
//! them, and the compressed-row form (CSR) ALS sweeps over.

use std::collections::HashMap;

/// Original ids, indexed by dense index.
#[derive(Clone, Debug, PartialEq)]
pub enum Ids {
    Integer(Vec<i64>),
    Text(Vec<String>),
}

/// No ids (integer-typed, as an empty input is indexed).
impl Default for Ids {
    fn default() -> Self {
        Ids::Integer(Vec::new())
    }
}

impl Ids {
    pub fn len(&self) -> usize {
        match self {
            Ids::Integer(ids) => ids.len(),
            Ids::Text(ids) => ids.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn display(&self, index: usize) -> String {
        match self {
            Ids::Integer(ids) => ids[index].to_string(),
            Ids::Text(ids) => ids[index].clone(),
        }
    }

    /// For each of `raw`, its position in these ids (`None` for an id not here). An integer
    /// table reads text ids as integers (surrounding spaces ignored); a text table reads
    /// integer ids as their decimal text.
    pub fn rows_of(&self, raw: &Ids) -> Vec<Option<u32>> {
        match self {
            Ids::Integer(table) => {
                let index: HashMap<i64, u32> = table
                    .iter()
                    .enumerate()
                    .map(|(row, &id)| (id, row as u32))
                    .collect();
                match raw {
                    Ids::Integer(values) => {
                        values.iter().map(|id| index.get(id).copied()).collect()
                    }
                    Ids::Text(values) => values
                        .iter()
                        .map(|id| {
                            id.trim()
                                .parse()
                                .ok()
                                .and_then(|id: i64| index.get(&id).copied())
                        })
                        .collect(),
                }
            }
            Ids::Text(table) => {
                let index: HashMap<&str, u32> = table
                    .iter()
                    .enumerate()
                    .map(|(row, id)| (id.as_str(), row as u32))
                    .collect();
                match raw {
                    Ids::Text(values) => values
                        .iter()
                        .map(|id| index.get(id.as_str()).copied())
                        .collect(),
                    Ids::Integer(values) => values
                        .iter()
                        .map(|id| index.get(id.to_string().as_str()).copied())
                        .collect(),
                }
            }
        }
    }

    /// The ids at `keep` positions, in that order.
    pub fn select(&self, keep: &[u32]) -> Ids {
        match self {
            Ids::Integer(ids) => Ids::Integer(keep.iter().map(|&i| ids[i as usize]).collect()),
            Ids::Text(ids) => Ids::Text(keep.iter().map(|&i| ids[i as usize].clone()).collect()),
        }
    }

    /// One table holding the ids of `first` and `second`, and where each of theirs went:
    /// integers in ascending order; text (or a mix, as decimal text) in `first`'s order, then
    /// the new ones of `second` in theirs, as the ids of one input would be indexed.
    pub fn union(first: &Ids, second: &Ids) -> (Ids, Vec<u32>, Vec<u32>) {
        if let (Ids::Integer(a), Ids::Integer(b)) = (first, second) {
            let mut all: Vec<i64> = a.iter().chain(b).copied().collect();
            all.sort_unstable();
            all.dedup();
            let position = |id: &i64| all.binary_search(id).unwrap_or(0) as u32;
            let (from_first, from_second) = (
                a.iter().map(position).collect(),
                b.iter().map(position).collect(),
            );
            return (Ids::Integer(all), from_first, from_second);
        }
        let text = |ids: &Ids| -> Vec<String> {
            match ids {
                Ids::Integer(values) => values.iter().map(i64::to_string).collect(),
                Ids::Text(values) => values.clone(),
            }
        };
        let mut table: Vec<String> = Vec::with_capacity(first.len() + second.len());
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut place = |id: String| -> u32 {
            *index.entry(id).or_insert_with_key(|id| {
                table.push(id.clone());
                (table.len() - 1) as u32
            })
        };
        let from_first: Vec<u32> = text(first).into_iter().map(&mut place).collect();
        let from_second: Vec<u32> = text(second).into_iter().map(&mut place).collect();
        (Ids::Text(table), from_first, from_second)
    }
}

/// Rating triples; `user[k]`, `item[k]`, `rating[k]` describe one rating.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ratings {
    pub user_ids: Ids,
    pub item_ids: Ids,
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub rating: Vec<f32>,
}

impl Ratings {
    pub fn len(&self) -> usize {
        self.rating.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rating.is_empty()
    }

    pub fn users(&self) -> usize {
        self.user_ids.len()
    }

    pub fn items(&self) -> usize {
        self.item_ids.len()
    }

    /// The triples of `first` then those of `second`, over id tables holding both.
    pub fn concat(first: Ratings, second: Ratings) -> Ratings {
        let (user_ids, first_users, second_users) = Ids::union(&first.user_ids, &second.user_ids);
        let (item_ids, first_items, second_items) = Ids::union(&first.item_ids, &second.item_ids);
        let remap = |indices: &[u32], to: &[u32]| -> Vec<u32> {
            indices.iter().map(|&index| to[index as usize]).collect()
        };
        let mut user = remap(&first.user, &first_users);
        user.extend(remap(&second.user, &second_users));
        let mut item = remap(&first.item, &first_items);
        item.extend(remap(&second.item, &second_items));
        let mut rating = first.rating;
        rating.extend(second.rating);
        Ratings {
            user_ids,
            item_ids,
            user,
            item,
            rating,
        }
    }

    /// Keeps only the triples where `keep` is true (in order); the id tables stay whole.
    pub fn retain_where(&mut self, keep: &[bool]) {
        super::retain_copies(&mut self.user, keep);
        super::retain_copies(&mut self.item, keep);
        super::retain_copies(&mut self.rating, keep);
    }
}

/// Compressed sparse rows: the entries of row `r` are `offsets[r]..offsets[r + 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr {
    pub offsets: Vec<usize>,
    pub columns: Vec<u32>,
    pub values: Vec<f32>,
}

impl Csr {
    /// Groups the selected triples by row with a counting sort; within a row, entries keep
    /// their input order, so the result does not depend on the thread count.
    pub fn build(
        rows: usize,
        row_of: &[u32],
        column_of: &[u32],
        values: &[f32],
        selected: &[u32],
    ) -> Csr {
        counting_sort(
            rows,
            1,
            |_, counts| {
                for &k in selected {
                    counts[row_of[k as usize] as usize] += 1;
                }
            },
            |_, cursor, _, slots| {
                for &k in selected {
                    let k = k as usize;
                    let slot = &mut cursor[row_of[k] as usize];
                    // SAFETY: the row's next slot (see `counting_sort`).
                    unsafe { slots.write(*slot, column_of[k], values[k]) };
                    *slot += 1;
                }
            },
        )
    }

    /// As [`Csr::build`], taking the triples `k` where `include[k] == wanted`, so no list of
    /// row numbers has to exist beside the triples. Large inputs are sorted by all threads:
    /// each takes a contiguous run of triples and places them after the runs before it, so
    /// the result is the one-thread result, whatever the thread count.
    pub fn build_where(
        rows: usize,
        row_of: &[u32],
        column_of: &[u32],
        values: &[f32],
        include: &[bool],
        wanted: bool,
    ) -> Csr {
        let triples = include.len().min(row_of.len());
        let runs = even_runs(triples, parts_for(triples));
        // Branch-free: a split's test triples are a seeded fifth in no learnable pattern, and
        // a branch per triple mispredicted in both passes. A triple not taken counts nothing
        // and is written to its run's spare slot past the end, dropped at the end.
        counting_sort(
            rows,
            runs.len(),
            |run, counts| {
                for k in runs[run].clone() {
                    counts[row_of[k] as usize] += usize::from(include[k] == wanted);
                }
            },
            |run, cursor, spare, slots| {
                for k in runs[run].clone() {
                    let taken = include[k] == wanted;
                    let slot = &mut cursor[row_of[k] as usize];
                    let at = if taken { *slot } else { spare };
                    // SAFETY: `at` is this run's own slot of the row (see `counting_sort`) or
                    // its spare.
                    unsafe { slots.write(at, column_of[k], values[k]) };
                    *slot += usize::from(taken);
                }
            },
        )
    }

    /// The same entries grouped by column: row `c` of the result lists, for each row `r` of
    /// this one holding column `c`, the entry `(r, value)`, in increasing `r`. Sorting the
    /// triples a second time would need them all in memory beside both matrices; this needs
    /// only the first matrix, and the second side's rows come out in row order, which the
    /// ALS sweep then reads as one forward pass over the other side's factors.
    pub fn transposed(&self, columns: usize) -> Csr {
        let rows = self.rows();
        let parts = parts_for(self.nnz());
        // Runs of whole rows holding about equal shares of the entries.
        let mut bounds: Vec<usize> = (0..parts)
            .map(|part| {
                let entries = self.nnz() * part / parts;
                self.offsets[..rows].partition_point(|&offset| offset < entries)
            })
            .collect();
        bounds.push(rows);
        let runs: Vec<std::ops::Range<usize>> =
            bounds.windows(2).map(|pair| pair[0]..pair[1]).collect();
        counting_sort(
            columns,
            runs.len(),
            |run, counts| {
                let entries = self.offsets[runs[run].start]..self.offsets[runs[run].end];
                for &column in &self.columns[entries] {
                    counts[column as usize] += 1;
                }
            },
            |run, cursor, _, slots| {
                for row in runs[run].clone() {
                    let (row_columns, row_values) = self.row(row);
                    for (&column, &value) in row_columns.iter().zip(row_values) {
                        let slot = &mut cursor[column as usize];
                        // SAFETY: this run's own slot of the column (see `counting_sort`).
                        unsafe { slots.write(*slot, row as u32, value) };
                        *slot += 1;
                    }
                }
            },
        )
    }

    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.offsets[r]..self.offsets[r + 1];
        (&self.columns[range.clone()], &self.values[range])
    }

    pub fn row_len(&self, r: usize) -> usize {
        self.offsets[r + 1] - self.offsets[r]
    }

    pub fn nnz(&self) -> usize {
        self.columns.len()
    }
}

/// Inputs below this many entries are sorted on one thread: splitting them costs more than
/// it saves.
const PARALLEL_ENTRIES: usize = 1 << 16;

fn parts_for(entries: usize) -> usize {
    if entries < PARALLEL_ENTRIES {
        1
    } else {
        rayon::current_num_threads().clamp(1, entries / PARALLEL_ENTRIES)
    }
}

/// `parts` contiguous runs covering `0..length`, of lengths differing by at most one.
fn even_runs(length: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    (0..parts)
        .map(|part| length * part / parts..length * (part + 1) / parts)
        .collect()
}

/// Where a counting sort writes: one column and one value per slot. Runs write through
/// shared raw pointers because each owns a disjoint set of slots, which no slice type can say.
struct Slots {
    columns: *mut u32,
    values: *mut f32,
    length: usize,
}

// SAFETY: `Slots` is only written through `write`, whose callers write disjoint slots.
unsafe impl Sync for Slots {}

impl Slots {
    /// # Safety
    /// `at` is a slot no other run writes while this one does.
    #[inline(always)]
    unsafe fn write(&self, at: usize, column: u32, value: f32) {
        assert!(at < self.length, "slot {at} of {}", self.length);
        // SAFETY: in bounds by the assertion; no other run writes slot `at` (the caller's
        // contract).
        unsafe {
            *self.columns.add(at) = column;
            *self.values.add(at) = value;
        }
    }
}

/// A stable counting sort into `rows` rows by `runs` runs of the input, in parallel.
/// `count(run, counts)` adds each of the run's entries to its row's count; `place(run,
/// cursor, spare, slots)` then writes each entry at `cursor[row]` and advances it (or at
/// `spare` if it was not counted). Run `r`'s cursor for a row starts after the row's entries
/// from runs before `r`, so every run writes its own slots, and the entries of a row come out
/// in run order, then input order within the run: the same for any number of runs.
fn counting_sort(
    rows: usize,
    runs: usize,
    count: impl Fn(usize, &mut [usize]) + Sync,
    place: impl Fn(usize, &mut [usize], usize, &Slots) + Sync,
) -> Csr {
    use rayon::prelude::*;
    let mut cursors: Vec<Vec<usize>> = (0..runs)
        .into_par_iter()
        .map(|run| {
            let mut counts = vec![0usize; rows];
            count(run, &mut counts);
            counts
        })
        .collect();
    let mut offsets = vec![0usize; rows + 1];
    for row in 0..rows {
        let mut at = offsets[row];
        for cursor in &mut cursors {
            let counted = cursor[row];
            cursor[row] = at;
            at += counted;
        }
        offsets[row + 1] = at;
    }
    let entries = offsets[rows];
    let mut columns = vec![0u32; entries + runs];
    let mut values = vec![0f32; entries + runs];
    let slots = Slots {
        columns: columns.as_mut_ptr(),
        values: values.as_mut_ptr(),
        length: columns.len(),
    };
    cursors
        .par_iter_mut()
        .enumerate()
        .for_each(|(run, cursor)| place(run, cursor, entries + run, &slots));
    columns.truncate(entries);
    values.truncate(entries);
    Csr {
        offsets,
        columns,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retaining_in_place_keeps_the_kept_values_in_order() {
        for length in [0usize, 1, 7, 1000] {
            let values: Vec<u32> = (0..length as u32).map(|v| v * 3).collect();
            let keep: Vec<bool> = (0..length)
                .map(|row| crate::dataset::split::unit(5, row as u64) < 0.2)
                .collect();
            let expected: Vec<u32> = values
                .iter()
                .zip(&keep)
                .filter(|(_, kept)| **kept)
                .map(|(value, _)| *value)
                .collect();
            let mut retained = values.clone();
            crate::dataset::retain_copies(&mut retained, &keep);
            assert_eq!(retained, expected);
        }
    }

    #[test]
    fn masked_build_equals_the_build_of_the_listed_triples() {
        let triples = 5000;
        let row_of: Vec<u32> = (0..triples).map(|k| ((k * 7919) % 37) as u32).collect();
        let column_of: Vec<u32> = (0..triples).map(|k| (k % 101) as u32).collect();
        let values: Vec<f32> = (0..triples).map(|k| k as f32 * 0.5).collect();
        let include: Vec<bool> = (0..triples)
            .map(|k| crate::dataset::split::unit(9, k as u64) < 0.2)
            .collect();
        for wanted in [false, true] {
            let listed: Vec<u32> = (0..triples as u32)
                .filter(|&k| include[k as usize] == wanted)
                .collect();
            assert_eq!(
                Csr::build_where(40, &row_of, &column_of, &values, &include, wanted),
                Csr::build(40, &row_of, &column_of, &values, &listed)
            );
        }
    }

    /// Triples large enough to be sorted in several runs, rows and columns in no order.
    fn scattered(triples: usize, rows: usize, columns: usize) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let unit = |seed: u64, k: usize| crate::dataset::split::unit(seed, k as u64);
        let row_of = (0..triples)
            .map(|k| (unit(1, k) * rows as f64) as u32)
            .collect();
        let column_of = (0..triples)
            .map(|k| (unit(2, k) * columns as f64) as u32)
            .collect();
        let values = (0..triples).map(|k| k as f32).collect();
        (row_of, column_of, values)
    }

    #[test]
    fn a_sort_in_parallel_runs_equals_the_sort_on_one_thread() {
        let triples = 5 * PARALLEL_ENTRIES + 17;
        let (row_of, column_of, values) = scattered(triples, 3001, 577);
        let include: Vec<bool> = (0..triples)
            .map(|k| crate::dataset::split::unit(9, k as u64) < 0.2)
            .collect();
        let listed: Vec<u32> = (0..triples as u32)
            .filter(|&k| !include[k as usize])
            .collect();
        let one_run = Csr::build(3001, &row_of, &column_of, &values, &listed);
        for threads in [1, 2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let built = pool.install(|| {
                assert_eq!(parts_for(triples), threads);
                Csr::build_where(3001, &row_of, &column_of, &values, &include, false)
            });
            assert_eq!(built, one_run, "{threads} threads");
        }
    }

    #[test]
    fn a_transposed_matrix_lists_each_column_by_increasing_row() {
        for triples in [0, 1, 1000, 3 * PARALLEL_ENTRIES + 5] {
            let (row_of, column_of, values) = scattered(triples, 907, 211);
            let all: Vec<u32> = (0..triples as u32).collect();
            let by_row = Csr::build(907, &row_of, &column_of, &values, &all);
            // The same triples taken in row order, then grouped by column.
            let mut in_row_order = all.clone();
            in_row_order.sort_by_key(|&k| row_of[k as usize]);
            let expected = Csr::build(211, &column_of, &row_of, &values, &in_row_order);
            // Back again: each row by increasing column.
            let mut in_column_order = all.clone();
            in_column_order.sort_by_key(|&k| column_of[k as usize]);
            let back = Csr::build(907, &row_of, &column_of, &values, &in_column_order);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let transposed = pool.install(|| by_row.transposed(211));
                assert_eq!(transposed, expected, "{triples} triples, {threads} threads");
                assert_eq!(pool.install(|| transposed.transposed(907)), back);
            }
        }
    }

    #[test]
    fn csr_groups_by_row_in_input_order() {
        let rows = [1, 0, 1, 2];
        let columns = [5, 6, 7, 8];
        let values = [1.0, 2.0, 3.0, 4.0];
        let csr = Csr::build(3, &rows, &columns, &values, &[0, 1, 2]);
        assert_eq!(csr.offsets, vec![0, 1, 3, 3]);
        assert_eq!(csr.row(1), (&[5u32, 7][..], &[1.0f32, 3.0][..]));
        assert_eq!(csr.row_len(2), 0);
    }

    #[test]
    fn concatenated_ratings_share_one_id_table() {
        let first = Ratings {
            user_ids: Ids::Integer(vec![3, 7]),
            item_ids: Ids::Text(vec!["b".into(), "a".into()]),
            user: vec![0, 1],
            item: vec![0, 1],
            rating: vec![1.0, 2.0],
        };
        let second = Ratings {
            user_ids: Ids::Integer(vec![1, 7]),
            item_ids: Ids::Integer(vec![5]),
            user: vec![0, 1],
            item: vec![0, 0],
            rating: vec![3.0, 4.0],
        };
        let all = Ratings::concat(first, second);
        assert_eq!(all.user_ids, Ids::Integer(vec![1, 3, 7]));
        assert_eq!(all.user, vec![1, 2, 0, 2]);
        assert_eq!(
            all.item_ids,
            Ids::Text(vec!["b".into(), "a".into(), "5".into()])
        );
        assert_eq!(all.item, vec![0, 1, 2, 2]);
        assert_eq!(all.rating, vec![1.0, 2.0, 3.0, 4.0]);
    }
}
