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
        Csr::build_from(rows, row_of, column_of, values, || {
            selected.iter().map(|&k| (k as usize, true))
        })
    }

    /// As [`Csr::build`], taking the triples `k` where `include[k] == wanted`, so no list of
    /// row numbers has to exist beside the triples.
    pub fn build_where(
        rows: usize,
        row_of: &[u32],
        column_of: &[u32],
        values: &[f32],
        include: &[bool],
        wanted: bool,
    ) -> Csr {
        let triples = include.len().min(row_of.len());
        Csr::build_from(rows, row_of, column_of, values, || {
            include[..triples]
                .iter()
                .enumerate()
                .map(move |(k, &included)| (k, included == wanted))
        })
    }

    /// The counting sort behind both builders; `candidates` yields `(triple, taken)` twice.
    ///
    /// Branch-free: a split's test triples are a seeded fifth in no learnable pattern, and a
    /// branch per triple mispredicted in both passes. A triple not taken counts nothing and is
    /// written to one spare slot past the end, dropped at the end.
    fn build_from<I: Iterator<Item = (usize, bool)>>(
        rows: usize,
        row_of: &[u32],
        column_of: &[u32],
        values: &[f32],
        candidates: impl Fn() -> I,
    ) -> Csr {
        let mut offsets = vec![0usize; rows + 1];
        for (k, taken) in candidates() {
            offsets[row_of[k] as usize + 1] += usize::from(taken);
        }
        for r in 0..rows {
            offsets[r + 1] += offsets[r];
        }
        let mut cursor = offsets.clone();
        let entries = offsets[rows];
        let mut columns = vec![0u32; entries + 1];
        let mut row_values = vec![0f32; entries + 1];
        for (k, taken) in candidates() {
            let slot = &mut cursor[row_of[k] as usize];
            let at = if taken { *slot } else { entries };
            columns[at] = column_of[k];
            row_values[at] = values[k];
            *slot += usize::from(taken);
        }
        columns.truncate(entries);
        row_values.truncate(entries);
        Csr {
            offsets,
            columns,
            values: row_values,
        }
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
