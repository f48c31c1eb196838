//! The ALS model file (`model.als`): a small little-endian binary layout that loads in
//! milliseconds. Only users and items seen in training are stored, with their original ids.
//!
//! Layout: magic `SBMTALS\0`, u32 layout version, u32 rank, then the user ids block, the user
//! factors (`users x rank` f32), the item ids block, the item factors, and the training
//! interactions by user (u64 count then `users + 1` u64 offsets, then u32 item indices), which
//! recommendation jobs use to leave out seen items and to rank popular items. An ids block is a
//! u8 kind (0 = i64 ids, 1 = UTF-8 strings as u32 length + bytes) and a u64 count.

use std::io::{self, Read, Write};

use crate::algo::als::AlsModel;
use crate::dataset::{Csr, Ids};

const MAGIC: &[u8; 8] = b"SBMTALS\0";
const LAYOUT_VERSION: u32 = 2;

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
    pub fn from_model(model: &AlsModel, user_ids: &Ids, item_ids: &Ids, by_user: &Csr) -> SavedAls {
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
        let mut seen_items = Vec::with_capacity(by_user.nnz());
        seen_offsets.push(0);
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
    let offsets: Vec<u8> = model
        .seen_offsets
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    out.write_all(&offsets)?;
    let items: Vec<u8> = model
        .seen_items
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    out.write_all(&items)
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
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    out.write_all(&bytes)
}

fn invalid(problem: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, problem.to_owned())
}

fn read_array<const N: usize>(input: &mut impl Read) -> io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

pub fn read_als(input: &mut impl Read) -> io::Result<SavedAls> {
    if &read_array::<8>(input)? != MAGIC {
        return Err(invalid("not a submit ALS model file"));
    }
    let layout = u32::from_le_bytes(read_array(input)?);
    if layout != LAYOUT_VERSION {
        return Err(invalid(&format!("unknown ALS model layout {layout}")));
    }
    let rank = u32::from_le_bytes(read_array(input)?) as usize;
    if rank == 0 || rank > 1 << 16 {
        return Err(invalid("corrupt rank"));
    }
    let user_ids = read_ids(input)?;
    let user_factors = read_floats(input, user_ids.len() * rank)?;
    let item_ids = read_ids(input)?;
    let item_factors = read_floats(input, item_ids.len() * rank)?;
    let seen_count = u64::from_le_bytes(read_array(input)?);
    if seen_count > 1 << 36 {
        return Err(invalid("corrupt interaction count"));
    }
    let mut offset_bytes = vec![0u8; (user_ids.len() + 1) * 8];
    input.read_exact(&mut offset_bytes)?;
    let seen_offsets: Vec<u64> = offset_bytes
        .chunks_exact(8)
        .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])))
        .collect();
    let mut item_bytes = vec![0u8; seen_count as usize * 4];
    input.read_exact(&mut item_bytes)?;
    let seen_items: Vec<u32> = item_bytes
        .chunks_exact(4)
        .map(|chunk| u32::from_le_bytes(chunk.try_into().unwrap_or([0; 4])))
        .collect();
    let offsets_valid = seen_offsets.first() == Some(&0)
        && seen_offsets.windows(2).all(|pair| pair[0] <= pair[1])
        && seen_offsets.last() == Some(&seen_count);
    if !offsets_valid
        || seen_items
            .iter()
            .any(|&item| item as usize >= item_ids.len())
    {
        return Err(invalid("corrupt interactions"));
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

fn read_ids(input: &mut impl Read) -> io::Result<Ids> {
    let kind = read_array::<1>(input)?[0];
    let count = u64::from_le_bytes(read_array(input)?);
    if count > 1 << 34 {
        return Err(invalid("corrupt id count"));
    }
    match kind {
        0 => {
            let mut bytes = vec![0u8; count as usize * 8];
            input.read_exact(&mut bytes)?;
            Ok(Ids::Integer(
                bytes
                    .chunks_exact(8)
                    .map(|chunk| i64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])))
                    .collect(),
            ))
        }
        1 => {
            let mut values = Vec::with_capacity(count.min(1 << 20) as usize);
            for _ in 0..count {
                let length = u32::from_le_bytes(read_array(input)?) as usize;
                let mut bytes = vec![0u8; length];
                input.read_exact(&mut bytes)?;
                values.push(String::from_utf8(bytes).map_err(|_| invalid("id is not UTF-8"))?);
            }
            Ok(Ids::Text(values))
        }
        _ => Err(invalid("unknown id kind")),
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

fn read_floats(input: &mut impl Read, count: usize) -> io::Result<Vec<f32>> {
    let mut bytes = vec![0u8; count * 4];
    input.read_exact(&mut bytes)?;
    Ok(bytes
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
        assert_eq!(read_als(&mut &bytes[..]).unwrap(), model);
        assert!(read_als(&mut &bytes[..bytes.len() - 1]).is_err());
        assert!(read_als(&mut &b"garbage!"[..]).is_err());
    }
}
