//! The ALS model file (`model.als`): a small little-endian binary layout that loads in
//! milliseconds. Only users and items seen in training are stored, with their original ids.
//!
//! Layout: magic `SBMTALS\0`, u32 layout version, u32 rank, then the user ids block, the user
//! factors (`users x rank` f32), the item ids block, the item factors, and the training
//! interactions by user (u64 count then `users + 1` u64 offsets, then the item indices), which
//! recommendation jobs use to leave out seen items and to rank popular items. An ids block is a
//! u8 kind (0 = i64 ids, 1 = UTF-8 strings as u32 length + bytes) and a u64 count.
//!
//! Layout 3 (written now) stores each user's items in increasing order as the gaps between
//! them, each a LEB128 varint (the first gap is from 0); layout 2 (still read) stored them as
//! u32. The interactions are most of a large model (100M ratings: 320 MB of 347 MB), and with
//! thousands of items most gaps fit one byte, so a version takes about a third of the disk, and
//! a third of the bytes to sync when publishing and to read when loading. Sorting each user's
//! items costs about what writing the larger file did.

use std::io::{self, Write};

use crate::algo::als::AlsModel;
use crate::dataset::{Csr, Ids};

const MAGIC: &[u8; 8] = b"SBMTALS\0";
const LAYOUT_VERSION: u32 = 3;
/// The layout before varint interactions, still read.
const LAYOUT_U32_ITEMS: u32 = 2;

/// An ALS model with the original ids of its rows.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedAls {
    pub rank: usize,
    pub user_ids: Ids,
    pub user_factors: Vec<f32>,
    pub item_ids: Ids,
    pub item_factors: Vec<f32>,
    /// Items each user had in training (indices into `item_ids`): user `u`'s are
    /// `seen_items[seen_offsets[u]..seen_offsets[u + 1]]`.
    pub seen_offsets: Vec<u64>,
    pub seen_items: Vec<u32>,
}

impl SavedAls {
    /// Keeps the rows that had training data, under their original ids, with the training
    /// interactions (`by_user`, over the model's indices) renumbered to match.
    ///
    /// `by_user` is consumed: when every user with interactions is kept (always, for a model
    /// trained on it), its item column becomes the saved interactions, renumbered in place.
    /// At 100M ratings a copy was 320 MB of fresh memory, whose first touch cost more than
    /// the copy.
    pub fn from_model(model: &AlsModel, user_ids: &Ids, item_ids: &Ids, by_user: Csr) -> SavedAls {
        use rayon::prelude::*;
        let keep = |seen: &[bool]| -> Vec<u32> {
            seen.iter()
                .enumerate()
                .filter(|(_, seen)| **seen)
                .map(|(index, _)| index as u32)
                .collect()
        };
        let rows = |factors: &[f32], keep: &[u32]| -> Vec<f32> {
            keep.iter()
                .flat_map(|&row| {
                    factors[row as usize * model.rank..(row as usize + 1) * model.rank]
                        .iter()
                        .copied()
                })
                .collect()
        };
        let users = keep(&model.user_seen);
        let items = keep(&model.item_seen);
        let mut new_item = vec![u32::MAX; model.items()];
        for (position, &item) in items.iter().enumerate() {
            new_item[item as usize] = position as u32;
        }
        let mut seen_offsets = Vec::with_capacity(users.len() + 1);
        seen_offsets.push(0);
        let every_row_kept = (0..by_user.rows())
            .all(|user| by_user.row_len(user) == 0 || model.user_seen.get(user) == Some(&true));
        let seen_items = if every_row_kept {
            for &user in &users {
                seen_offsets.push(by_user.offsets[user as usize + 1] as u64);
            }
            let mut columns = by_user.columns;
            columns
                .par_iter_mut()
                .for_each(|item| *item = new_item[*item as usize]);
            columns
        } else {
            let mut seen_items = Vec::with_capacity(by_user.nnz());
            for &user in &users {
                seen_items.extend(
                    by_user
                        .row(user as usize)
                        .0
                        .iter()
                        .map(|&item| new_item[item as usize]),
                );
                seen_offsets.push(seen_items.len() as u64);
            }
            seen_items
        };
        SavedAls {
            rank: model.rank,
            user_ids: user_ids.select(&users),
            user_factors: rows(&model.user_factors, &users),
            item_ids: item_ids.select(&items),
            item_factors: rows(&model.item_factors, &items),
            seen_offsets,
            seen_items,
        }
    }
}

pub fn write_als(model: &SavedAls, out: &mut impl Write) -> io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&LAYOUT_VERSION.to_le_bytes())?;
    out.write_all(&(model.rank as u32).to_le_bytes())?;
    write_ids(&model.user_ids, out)?;
    write_floats(&model.user_factors, out)?;
    write_ids(&model.item_ids, out)?;
    write_floats(&model.item_factors, out)?;
    out.write_all(&(model.seen_items.len() as u64).to_le_bytes())?;
    write_little_endian(&model.seen_offsets, u64::to_le_bytes, out)?;
    write_gaps(model, out)
}

/// Each user's items, sorted, as varint gaps (layout 3). Users are encoded in parallel
/// batches of about a million items and written in order.
fn write_gaps(model: &SavedAls, out: &mut impl Write) -> io::Result<()> {
    use rayon::prelude::*;
    const BATCH_ITEMS: u64 = 1 << 20;
    let users = model.seen_offsets.len().saturating_sub(1);
    let mut bounds = vec![0usize];
    let mut next = BATCH_ITEMS;
    for user in 0..users {
        if model.seen_offsets[user + 1] >= next {
            bounds.push(user + 1);
            next = model.seen_offsets[user + 1] + BATCH_ITEMS;
        }
    }
    if bounds.last() != Some(&users) {
        bounds.push(users);
    }
    let batches: Vec<std::ops::Range<usize>> =
        bounds.windows(2).map(|pair| pair[0]..pair[1]).collect();
    // One buffer per batch of a window, reused by every window: fresh memory costs a page
    // fault per 4 KiB on first touch, more than the encoding.
    let window = 4 * rayon::current_num_threads().max(1);
    let mut buffers: Vec<(Vec<u8>, Vec<u32>)> = vec![Default::default(); window];
    for batches in batches.chunks(window) {
        batches
            .par_iter()
            .zip(buffers.par_iter_mut())
            .for_each(|(users, (bytes, sorted))| {
                bytes.clear();
                for user in users.clone() {
                    sorted.clear();
                    sorted.extend_from_slice(model.seen(user));
                    // Lists of a file sorted by user and item come sorted: no sort to pay.
                    if !sorted.is_sorted() {
                        sorted.sort_unstable();
                    }
                    // Five bytes hold any gap: no growth inside the loop below.
                    bytes.reserve(sorted.len() * 5);
                    let mut previous = 0;
                    for &item in sorted.iter() {
                        push_varint(bytes, item - previous);
                        previous = item;
                    }
                }
            });
        for (bytes, _) in &buffers[..batches.len()] {
            out.write_all(bytes)?;
        }
    }
    Ok(())
}

#[inline(always)]
fn push_varint(bytes: &mut Vec<u8>, value: u32) {
    if value < 0x80 {
        bytes.push(value as u8);
        return;
    }
    let mut encoded = [0u8; 5];
    let mut length = 0;
    let mut rest = value;
    while rest >= 0x80 {
        encoded[length] = (rest as u8) | 0x80;
        rest >>= 7;
        length += 1;
    }
    encoded[length] = rest as u8;
    bytes.extend_from_slice(&encoded[..=length]);
}

/// The interactions of layout 3: `offsets`' counts of varint gaps per user, to the end of
/// the file. Each value is checked to fit 32 bits.
fn read_gaps(input: &mut Cursor, offsets: &[u64], seen_count: u64) -> Result<Vec<u32>, String> {
    // Every item takes at least one byte, which bounds the count by the file.
    let left = (input.bytes.len() - input.at) as u64;
    if seen_count > left {
        return Err(format!(
            "the training interactions: count {seen_count} cannot fit in the {left} bytes left in the file"
        ));
    }
    let bytes = &input.bytes[input.at..];
    let mut at = 0;
    let mut items = Vec::with_capacity(seen_count as usize);
    for pair in offsets.windows(2) {
        let mut item: u32 = 0;
        for _ in pair[0]..pair[1] {
            let mut gap: u64 = 0;
            let mut shift = 0;
            loop {
                let Some(&byte) = bytes.get(at) else {
                    return Err(format!(
                        "the file ends inside the training interactions (at byte {}, after {} of {seen_count} items); it is truncated",
                        input.at + at,
                        items.len()
                    ));
                };
                at += 1;
                gap |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
                if shift > 28 {
                    return Err(format!(
                        "the training interactions hold a gap longer than 32 bits (at byte {})",
                        input.at + at
                    ));
                }
            }
            item = u32::try_from(u64::from(item) + gap).map_err(|_| {
                format!(
                    "the training interactions pass item row 2^32 (at byte {})",
                    input.at + at
                )
            })?;
            items.push(item);
        }
    }
    input.at += at;
    Ok(items)
}

/// Writes `values` as `bytes` gives them (little-endian) through a 256 KiB buffer: the whole
/// array as bytes at once was a second copy of the largest part of a model (100M ratings:
/// 320 MB of seen items) and a page fault per 4 KiB of it.
fn write_little_endian<T: Copy, const SIZE: usize>(
    values: &[T],
    bytes: impl Fn(T) -> [u8; SIZE],
    out: &mut impl Write,
) -> io::Result<()> {
    const BUFFER: usize = 256 << 10;
    let mut buffer = Vec::with_capacity(BUFFER);
    for chunk in values.chunks((BUFFER / SIZE).max(1)) {
        buffer.clear();
        for &value in chunk {
            buffer.extend_from_slice(&bytes(value));
        }
        out.write_all(&buffer)?;
    }
    Ok(())
}

fn write_ids(ids: &Ids, out: &mut impl Write) -> io::Result<()> {
    match ids {
        Ids::Integer(values) => {
            out.write_all(&[0])?;
            out.write_all(&(values.len() as u64).to_le_bytes())?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.write_all(&bytes)
        }
        Ids::Text(values) => {
            out.write_all(&[1])?;
            out.write_all(&(values.len() as u64).to_le_bytes())?;
            for value in values {
                out.write_all(&(value.len() as u32).to_le_bytes())?;
                out.write_all(value.as_bytes())?;
            }
            Ok(())
        }
    }
}

fn write_floats(values: &[f32], out: &mut impl Write) -> io::Result<()> {
    write_little_endian(values, f32::to_le_bytes, out)
}

/// A cursor over the file's bytes that refuses to read past the end, so a corrupt count is
/// found before anything is allocated for it.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: u64, what: &str) -> Result<&'a [u8], String> {
        let left = (self.bytes.len() - self.at) as u64;
        if count > left {
            return Err(format!(
                "the file ends inside {what} (at byte {}: {count} bytes needed, {left} left); it is truncated or its counts are corrupt",
                self.at
            ));
        }
        let slice = &self.bytes[self.at..self.at + count as usize];
        self.at += count as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// `count` elements of `width` bytes each (the size is checked before multiplying).
    fn elements(&mut self, count: u64, width: u64, what: &str) -> Result<&'a [u8], String> {
        let size = count
            .checked_mul(width)
            .ok_or_else(|| format!("{what}: count {count} is impossible"))?;
        self.take(size, what)
    }
}

/// Parses `model.als` and checks what recommending and scoring rely on: the sizes add up to
/// the file's length exactly, every factor is finite, ids are unique within users and within
/// items, and the training interactions point at real items. The error says what is wrong.
pub fn read_als(bytes: &[u8]) -> Result<SavedAls, String> {
    let mut input = Cursor { bytes, at: 0 };
    if &input.array::<8>("the header")? != MAGIC {
        return Err("not a submit ALS model file (wrong magic bytes)".to_owned());
    }
    let layout = input.u32("the header")?;
    if layout != LAYOUT_VERSION && layout != LAYOUT_U32_ITEMS {
        return Err(format!(
            "ALS model layout {layout}; this submit reads layouts {LAYOUT_U32_ITEMS} and {LAYOUT_VERSION}{}",
            if layout > LAYOUT_VERSION {
                ": upgrade submit to read it"
            } else {
                ""
            }
        ));
    }
    let rank = input.u32("the header")? as usize;
    if rank == 0 || rank > 1 << 16 {
        return Err(format!("rank {rank} is out of range (1 to 65536)"));
    }
    let user_ids = read_ids(&mut input, "user ids")?;
    let user_factors = read_floats(
        &mut input,
        user_ids.len() as u64 * rank as u64,
        "user factors",
    )?;
    let item_ids = read_ids(&mut input, "item ids")?;
    let item_factors = read_floats(
        &mut input,
        item_ids.len() as u64 * rank as u64,
        "item factors",
    )?;
    let seen_count = input.u64("the interaction count")?;
    let offsets = input.elements(user_ids.len() as u64 + 1, 8, "the interaction offsets")?;
    let seen_offsets: Vec<u64> = offsets
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])))
        .collect();
    let offsets_valid = seen_offsets.first() == Some(&0)
        && seen_offsets.windows(2).all(|pair| pair[0] <= pair[1])
        && seen_offsets.last() == Some(&seen_count);
    if !offsets_valid {
        return Err(
            "the interaction offsets are not ascending from 0 to the interaction count".to_owned(),
        );
    }
    let seen_items: Vec<u32> = if layout == LAYOUT_U32_ITEMS {
        input
            .elements(seen_count, 4, "the training interactions")?
            .chunks_exact(4)
            .map(|chunk| u32::from_le_bytes(chunk.try_into().unwrap_or([0; 4])))
            .collect()
    } else {
        read_gaps(&mut input, &seen_offsets, seen_count)?
    };
    if input.at != bytes.len() {
        return Err(format!(
            "{} bytes follow the end of the model (at byte {}): the counts do not match the file size",
            bytes.len() - input.at,
            input.at
        ));
    }
    if let Some(item) = seen_items
        .iter()
        .find(|&&item| item as usize >= item_ids.len())
    {
        return Err(format!(
            "a training interaction names item row {item}, but the model has {} items",
            item_ids.len()
        ));
    }
    for (what, factors, ids) in [
        ("user", &user_factors, &user_ids),
        ("item", &item_factors, &item_ids),
    ] {
        if let Some(position) = factors.iter().position(|value| !value.is_finite()) {
            return Err(format!(
                "the factors of {what} {} hold {} (factor {}): a model must be finite",
                crate::text::shorten(&ids.display(position / rank), 60),
                factors[position],
                position % rank
            ));
        }
        if let Some(duplicate) = first_duplicate(ids) {
            return Err(format!(
                "{what} id {} appears twice",
                crate::text::shorten(&duplicate, 60)
            ));
        }
    }
    Ok(SavedAls {
        rank,
        user_ids,
        user_factors,
        item_ids,
        item_factors,
        seen_offsets,
        seen_items,
    })
}

fn first_duplicate(ids: &Ids) -> Option<String> {
    match ids {
        Ids::Integer(values) => {
            let mut sorted = values.clone();
            sorted.sort_unstable();
            sorted
                .windows(2)
                .find(|pair| pair[0] == pair[1])
                .map(|pair| pair[0].to_string())
        }
        Ids::Text(values) => {
            let mut sorted: Vec<&str> = values.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            sorted
                .windows(2)
                .find(|pair| pair[0] == pair[1])
                .map(|pair| pair[0].to_owned())
        }
    }
}

fn read_ids(input: &mut Cursor, what: &str) -> Result<Ids, String> {
    let kind = input.array::<1>(what)?[0];
    let count = input.u64(what)?;
    match kind {
        0 => {
            let bytes = input.elements(count, 8, what)?;
            Ok(Ids::Integer(
                bytes
                    .chunks_exact(8)
                    .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])))
                    .collect(),
            ))
        }
        1 => {
            // Each id takes at least its 4-byte length, which bounds the count by the file.
            let left = (input.bytes.len() - input.at) as u64;
            if count > left / 4 {
                return Err(format!(
                    "{what}: count {count} cannot fit in the {left} bytes left in the file"
                ));
            }
            let mut values = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let length = input.u32(what)?;
                let text = input.take(u64::from(length), what)?;
                let text = std::str::from_utf8(text)
                    .map_err(|_| format!("{what}: an id is not UTF-8 (at byte {})", input.at))?;
                values.push(text.to_owned());
            }
            Ok(Ids::Text(values))
        }
        other => Err(format!(
            "{what}: unknown id kind {other} (0 = integers, 1 = text)"
        )),
    }
}

impl SavedAls {
    /// Items user `user` had in training.
    pub fn seen(&self, user: usize) -> &[u32] {
        &self.seen_items[self.seen_offsets[user] as usize..self.seen_offsets[user + 1] as usize]
    }

    /// Training interactions per item.
    pub fn item_counts(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.item_ids.len()];
        for &item in &self.seen_items {
            counts[item as usize] += 1;
        }
        counts
    }
}

fn read_floats(input: &mut Cursor, count: u64, what: &str) -> Result<Vec<f32>, String> {
    Ok(input
        .elements(count, 4, what)?
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap_or([0; 4])))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let model = SavedAls {
            rank: 2,
            user_ids: Ids::Text(vec!["ann".into(), "bo".into()]),
            user_factors: vec![1.0, 2.0, 3.0, 4.0],
            item_ids: Ids::Integer(vec![10]),
            item_factors: vec![0.5, -0.5],
            seen_offsets: vec![0, 1, 1],
            seen_items: vec![0],
        };
        let mut bytes = Vec::new();
        write_als(&model, &mut bytes).unwrap();
        assert_eq!(read_als(&bytes).unwrap(), model);
        assert!(read_als(&bytes[..bytes.len() - 1]).is_err());
        assert!(read_als(b"garbage!").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_als(&longer).unwrap_err().contains("follow the end"));
    }

    /// Many users with unsorted, repeated items and gaps of every varint length.
    fn busy_model() -> SavedAls {
        let users = 3000;
        let items: u32 = 300_000;
        let mut seen_offsets = vec![0u64];
        let mut seen_items = Vec::new();
        for user in 0..users {
            let count = user % 23;
            for k in 0..count {
                let unit = crate::dataset::split::unit(user as u64, k as u64);
                seen_items.push((unit * unit * unit * f64::from(items)) as u32);
            }
            if count > 3 {
                seen_items.push(seen_items[seen_items.len() - 2]);
            }
            seen_offsets.push(seen_items.len() as u64);
        }
        SavedAls {
            rank: 1,
            user_ids: Ids::Integer((0..users as i64).collect()),
            user_factors: vec![1.0; users],
            item_ids: Ids::Integer((0..i64::from(items)).collect()),
            item_factors: vec![0.5; items as usize],
            seen_offsets,
            seen_items,
        }
    }

    #[test]
    fn interactions_round_trip_as_sorted_gaps_and_layout_2_still_loads() {
        let model = busy_model();
        let bytes = encoded(&model);
        let read = read_als(&bytes).unwrap();
        let mut sorted = model.clone();
        for user in 0..model.user_ids.len() {
            let range = model.seen_offsets[user] as usize..model.seen_offsets[user + 1] as usize;
            sorted.seen_items[range].sort_unstable();
        }
        assert_eq!(read, sorted);
        // Layout 2: the same file with u32 items.
        let gaps_at = bytes.len() - gap_bytes(&bytes, &model);
        let mut old = bytes[..gaps_at].to_vec();
        old[8..12].copy_from_slice(&2u32.to_le_bytes());
        for item in &model.seen_items {
            old.extend_from_slice(&item.to_le_bytes());
        }
        assert_eq!(read_als(&old).unwrap(), model);
        // Truncated, overlong and past-the-end interactions are refused.
        let error = read_als(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
        let mut overlong = bytes[..gaps_at].to_vec();
        overlong.extend_from_slice(&[0xff; 6]);
        overlong.resize(bytes.len() + 6, 0);
        let error = read_als(&overlong).unwrap_err();
        assert!(error.contains("longer than 32 bits"), "{error}");
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&4u32.to_le_bytes());
        let error = read_als(&future).unwrap_err();
        assert!(error.contains("upgrade submit"), "{error}");
    }

    /// How many bytes the gaps take at the end of `bytes`.
    fn gap_bytes(bytes: &[u8], model: &SavedAls) -> usize {
        let mut gaps = Vec::new();
        write_gaps(model, &mut gaps).unwrap();
        assert!(bytes.ends_with(&gaps));
        assert!(gaps.len() < model.seen_items.len() * 3);
        gaps.len()
    }

    fn encoded(model: &SavedAls) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_als(model, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn refuses_non_finite_factors_duplicate_ids_and_impossible_counts() {
        let model = SavedAls {
            rank: 1,
            user_ids: Ids::Integer(vec![1, 2]),
            user_factors: vec![1.0, f32::NAN],
            item_ids: Ids::Integer(vec![10]),
            item_factors: vec![0.5],
            seen_offsets: vec![0, 1, 1],
            seen_items: vec![0],
        };
        let error = read_als(&encoded(&model)).unwrap_err();
        assert!(error.contains("user 2") && error.contains("NaN"), "{error}");
        let duplicated = SavedAls {
            user_factors: vec![1.0, 2.0],
            user_ids: Ids::Integer(vec![1, 1]),
            ..model.clone()
        };
        assert!(
            read_als(&encoded(&duplicated))
                .unwrap_err()
                .contains("appears twice")
        );
        // The user id count (after magic, layout, rank and the id kind byte) set to 2^33.
        let mut bytes = encoded(&SavedAls {
            user_factors: vec![1.0, 2.0],
            ..model
        });
        bytes[17..25].copy_from_slice(&(1u64 << 33).to_le_bytes());
        assert!(
            read_als(&bytes)
                .unwrap_err()
                .contains("ends inside user ids")
        );
    }
}
