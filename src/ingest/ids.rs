//! Maps original user and item ids (integers or strings) to dense 0-based indices.
//!
//! Integer ids in a compact range use a lookup table (no hashing); sparse integers and strings
//! use a hash map. Indices follow ascending id order for integers and first appearance for
//! strings, so the same file always gives the same indices.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use crate::dataset::Ids;

/// Raw id values as read, before indexing.
#[derive(Debug)]
pub enum RawIds {
    Integer(Vec<i64>),
    /// Integer ids that are all in `0..2^32`: half the memory while a large file is converted.
    Small(Vec<u32>),
    Text(Vec<String>),
}

impl RawIds {
    /// The ids as the model keeps them.
    pub fn into_ids(self) -> Ids {
        match self.widen() {
            RawIds::Integer(values) => Ids::Integer(values),
            RawIds::Text(values) => Ids::Text(values),
            RawIds::Small(values) => Ids::Integer(values.into_iter().map(i64::from).collect()),
        }
    }

    /// The same ids as `Integer` or `Text` (never `Small`).
    pub fn widen(self) -> RawIds {
        match self {
            RawIds::Small(values) => RawIds::Integer(values.into_iter().map(i64::from).collect()),
            other => other,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            RawIds::Integer(values) => values.len(),
            RawIds::Small(values) => values.len(),
            RawIds::Text(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room for `additional` more ids (`Vec::reserve_exact`).
    pub fn reserve_exact(&mut self, additional: usize) {
        match self {
            RawIds::Integer(values) => values.reserve_exact(additional),
            RawIds::Small(values) => values.reserve_exact(additional),
            RawIds::Text(values) => values.reserve_exact(additional),
        }
    }

    /// Appends `other`; mixing integer and string ids turns everything into strings.
    pub fn extend(&mut self, other: RawIds) {
        if let (RawIds::Small(mine), RawIds::Small(theirs)) = (&mut *self, &other) {
            mine.extend_from_slice(theirs);
            return;
        }
        let other = other.widen();
        if matches!(self, RawIds::Small(_)) {
            let small = std::mem::replace(self, RawIds::Integer(Vec::new()));
            *self = small.widen();
        }
        match (&mut *self, other) {
            (RawIds::Integer(mine), RawIds::Integer(theirs)) => mine.extend(theirs),
            (RawIds::Text(mine), RawIds::Text(theirs)) => mine.extend(theirs),
            (RawIds::Text(mine), RawIds::Integer(theirs)) => {
                mine.extend(theirs.into_iter().map(|id| id.to_string()))
            }
            (RawIds::Integer(mine), RawIds::Text(theirs)) => {
                let mut text: Vec<String> = mine.iter().map(|id| id.to_string()).collect();
                text.extend(theirs);
                *self = RawIds::Text(text);
            }
            // Both sides were widened above.
            (_, RawIds::Small(_)) | (RawIds::Small(_), _) => {}
        }
    }
}

/// A fast hasher for small keys; the ids are not attacker-chosen.
#[derive(Default)]
struct MultiplyHasher(u64);

impl Hasher for MultiplyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }
    fn write_i64(&mut self, value: i64) {
        self.write_u64(value as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MultiplyHasher>>;

/// Dense indices for `raw`, with the table back to the original ids.
pub fn index(raw: RawIds) -> (Ids, Vec<u32>) {
    match raw {
        RawIds::Integer(values) => index_integers(&values),
        RawIds::Small(values) => index_small(values),
        RawIds::Text(values) => {
            let mut map: FastMap<&str, u32> = FastMap::default();
            let mut table: Vec<String> = Vec::new();
            let indices = values
                .iter()
                .map(|value| {
                    *map.entry(value.as_str()).or_insert_with(|| {
                        table.push(value.clone());
                        (table.len() - 1) as u32
                    })
                })
                .collect();
            (Ids::Text(table), indices)
        }
    }
}

/// The smallest and largest of `values` (one pass over them).
fn range_of<T: Copy + Ord + Send + Sync>(values: &[T]) -> Option<(T, T)> {
    values
        .par_chunks(1 << 16)
        .filter_map(|chunk| {
            let first = *chunk.first()?;
            Some(chunk.iter().fold((first, first), |(low, high), &value| {
                (low.min(value), high.max(value))
            }))
        })
        .reduce_with(|(low, high), (other_low, other_high)| {
            (low.min(other_low), high.max(other_high))
        })
}

/// For ids between `min` and `min + span - 1` (compact enough for a table): the ids present
/// in ascending order, and each offset's index among them (`u32::MAX` where absent).
fn dense_slots<T>(values: &[T], min: i64, span: usize) -> (Vec<i64>, Vec<u32>)
where
    T: Copy + Into<i64> + Send + Sync,
{
    // Marking the ids present is the same whichever thread marks first.
    let present: Vec<AtomicBool> = (0..span).map(|_| AtomicBool::new(false)).collect();
    values.par_chunks(1 << 16).for_each(|chunk| {
        for &value in chunk {
            present[(value.into() - min) as usize].store(true, Ordering::Relaxed);
        }
    });
    let mut slot = vec![u32::MAX; span];
    let mut table = Vec::new();
    for (offset, entry) in slot.iter_mut().enumerate() {
        if present[offset].load(Ordering::Relaxed) {
            *entry = table.len() as u32;
            table.push(min + offset as i64);
        }
    }
    (table, slot)
}

/// Whether ids spanning `span` values are compact enough, among `count` of them, for a table.
fn compact(span: u128, count: usize) -> bool {
    span <= (count as u128) * 4 + 1_000_000
}

/// As [`index_integers`], writing each index over its id: at 100M ratings, a new array per
/// side was 400 MB of fresh pages, faulted in one by one.
fn index_small(mut values: Vec<u32>) -> (Ids, Vec<u32>) {
    let Some((min, max)) = range_of(&values) else {
        return (Ids::Integer(Vec::new()), Vec::new());
    };
    let span = u128::from(max - min);
    if !compact(span, values.len()) {
        return index_integers(&values);
    }
    let (table, slot) = dense_slots(&values, i64::from(min), span as usize + 1);
    values.par_chunks_mut(1 << 16).for_each(|chunk| {
        chunk
            .iter_mut()
            .for_each(|value| *value = slot[(*value - min) as usize])
    });
    (Ids::Integer(table), values)
}

fn index_integers<T>(values: &[T]) -> (Ids, Vec<u32>)
where
    T: Copy + Ord + std::hash::Hash + Into<i64> + Send + Sync,
{
    let Some((min, max)) = range_of(values) else {
        return (Ids::Integer(Vec::new()), Vec::new());
    };
    let (min, max): (i64, i64) = (min.into(), max.into());
    let span = (max as i128 - min as i128) as u128;
    if compact(span, values.len()) {
        let (table, slot) = dense_slots(values, min, span as usize + 1);
        let indices = values
            .par_iter()
            .map(|&value| slot[(value.into() - min) as usize])
            .collect();
        (Ids::Integer(table), indices)
    } else {
        let mut table: Vec<i64> = values.iter().map(|&value| value.into()).collect();
        table.sort_unstable();
        table.dedup();
        let map: FastMap<i64, u32> = table
            .iter()
            .enumerate()
            .map(|(index, &id)| (id, index as u32))
            .collect();
        let indices = values.iter().map(|&value| map[&value.into()]).collect();
        (Ids::Integer(table), indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_index_in_ascending_order_dense_or_sparse() {
        let (ids, indices) = index(RawIds::Integer(vec![7, 3, 7, 5]));
        assert_eq!(ids, Ids::Integer(vec![3, 5, 7]));
        assert_eq!(indices, vec![2, 0, 2, 1]);
        let (ids, indices) = index(RawIds::Integer(vec![i64::MAX, -4, i64::MAX]));
        assert_eq!(ids, Ids::Integer(vec![-4, i64::MAX]));
        assert_eq!(indices, vec![1, 0, 1]);
    }

    #[test]
    fn strings_index_in_first_appearance_order() {
        let raw = RawIds::Text(vec!["b".into(), "a".into(), "b".into()]);
        let (ids, indices) = index(raw);
        assert_eq!(ids, Ids::Text(vec!["b".into(), "a".into()]));
        assert_eq!(indices, vec![0, 1, 0]);
    }

    #[test]
    fn small_ids_index_like_wide_ones_and_widen_when_mixed() {
        let (ids, indices) = index(RawIds::Small(vec![7, 3, 7, 5]));
        assert_eq!(ids, Ids::Integer(vec![3, 5, 7]));
        assert_eq!(indices, vec![2, 0, 2, 1]);
        // Sparse, and spread over many chunks: the same as the wide path.
        for values in [
            vec![0, u32::MAX, 5, u32::MAX],
            (0..300_000u32).map(|k| (k * 7919) % 100_003 + 17).collect(),
        ] {
            let wide = RawIds::Integer(values.iter().map(|&value| i64::from(value)).collect());
            assert_eq!(index(RawIds::Small(values)), index(wide));
        }
        let mut raw = RawIds::Small(vec![1]);
        raw.extend(RawIds::Integer(vec![-2]));
        assert_eq!(index(raw).0, Ids::Integer(vec![-2, 1]));
    }

    #[test]
    fn mixed_ids_become_strings() {
        let mut raw = RawIds::Integer(vec![1]);
        raw.extend(RawIds::Text(vec!["x".into()]));
        let (ids, _) = index(raw);
        assert_eq!(ids, Ids::Text(vec!["1".into(), "x".into()]));
    }
}
