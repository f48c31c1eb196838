//! The ALS model file (`model.als`): a small little-endian binary layout that loads in
//! milliseconds. Only users and items seen in training are stored, with their original ids.
//!
//! Layout: magic `SBMTALS\0`, u32 layout version, u32 rank, then the user ids block, the user
//! factors (`users x rank` f32), the item ids block, the item factors. An ids block is a u8 kind
//! (0 = i64 ids, 1 = UTF-8 strings as u32 length + bytes) and a u64 count.

use std::io::{self, Read, Write};

use crate::algo::als::AlsModel;
use crate::dataset::Ids;

const MAGIC: &[u8; 8] = b"SBMTALS\0";
const LAYOUT_VERSION: u32 = 1;

/// An ALS model with the original ids of its rows.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedAls {
    pub rank: usize,
    pub user_ids: Ids,
    pub user_factors: Vec<f32>,
    pub item_ids: Ids,
    pub item_factors: Vec<f32>,
}

impl SavedAls {
    /// Keeps the rows that had training data, under their original ids.
    pub fn from_model(model: &AlsModel, user_ids: &Ids, item_ids: &Ids) -> SavedAls {
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
        SavedAls {
            rank: model.rank,
            user_ids: user_ids.select(&users),
            user_factors: rows(&model.user_factors, &users),
            item_ids: item_ids.select(&items),
            item_factors: rows(&model.item_factors, &items),
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
    write_floats(&model.item_factors, out)
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
    Ok(SavedAls {
        rank,
        user_ids,
        user_factors,
        item_ids,
        item_factors,
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
        };
        let mut bytes = Vec::new();
        write_als(&model, &mut bytes).unwrap();
        assert_eq!(read_als(&mut &bytes[..]).unwrap(), model);
        assert!(read_als(&mut &bytes[..bytes.len() - 1]).is_err());
        assert!(read_als(&mut &b"garbage!"[..]).is_err());
    }
}
