//! Reads the usual shape of a large ratings file without polars: delimited text whose user
//! and item fields are unsigned integers and whose rating field is a plain number. On that
//! shape it is several times faster than polars' general CSV reader (type inference, quoting,
//! a column builder per field), which was most of a 100M-rating job's ingestion.
//!
//! It reads a strict subset of what polars reads and gives the same values: ids as polars'
//! integer columns become (32-bit ids), ratings rounded once to f32 (fast_float2, the
//! parser polars uses, wherever the exact shortcut below does not apply). On anything outside
//! that subset (a quote, a blank or ragged line, a missing value, a sign or text in an id, an id
//! past 2^32, a rating that is not a finite number) it gives up on the whole input and the
//! caller reads it through polars, whose errors name the row. Written here rather than taken
//! from a crate because the gain is the narrow grammar: a general record splitter (the csv
//! crate) still leaves every field to be found and parsed again.

use std::path::Path;

use rayon::prelude::*;

use super::{Fingerprint, IngestError};
use crate::config::ColumnRef;

/// Bytes parsed between releases of the file's pages: the memory ingestion holds beside its
/// arrays is one window of text.
const WINDOW_BYTES: usize = if cfg!(test) { 1 << 12 } else { 64 << 20 };
/// Bytes per task within a window (cut at line ends), small enough to balance two threads.
const PIECE_BYTES: usize = if cfg!(test) { 1 << 8 } else { 1 << 20 };

/// The columns read from one or more files, in file order.
#[derive(Default)]
pub(crate) struct NumericRatings {
    pub(crate) users: Vec<u32>,
    pub(crate) items: Vec<u32>,
    pub(crate) ratings: Vec<f32>,
}

/// What a field of a line holds.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Skip,
    User,
    Item,
    Rating,
}

/// Where the three columns are in each line of a file.
struct Layout {
    roles: Vec<Role>,
    separator: u8,
}

/// The columns, when every file fits the grammar, with each file's fingerprint; `None` when
/// one does not (the caller then reads them all through polars).
pub(crate) fn read(
    paths: &[std::path::PathBuf],
    separator: Option<&str>,
    header: bool,
    columns: [&ColumnRef; 3],
) -> Result<Option<(NumericRatings, Vec<Fingerprint>)>, IngestError> {
    let mut read = NumericRatings::default();
    let mut fingerprints = Vec::with_capacity(paths.len());
    for path in paths {
        match read_file(path, separator, header, columns, &mut read)? {
            Some(print) => fingerprints.push(print),
            None => return Ok(None),
        }
    }
    Ok(Some((read, fingerprints)))
}

/// Appends one file's rows to `read` and returns its fingerprint; `None` when a line does not
/// fit the grammar.
///
/// The file is read a window at a time into one buffer (`read`, not a memory map), hashed and
/// parsed there: the polars path's map was faulted in twice, for the hash and for the parse,
/// which cost more than copying the bytes once from the page cache.
fn read_file(
    path: &Path,
    separator: Option<&str>,
    header: bool,
    columns: [&ColumnRef; 3],
    read: &mut NumericRatings,
) -> Result<Option<Fingerprint>, IngestError> {
    super::check_regular(path)?;
    let unreadable = |error| super::unreadable(path, error);
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len() as usize;
    if size == 0 {
        return Ok(None);
    }
    let mut buffer = vec![0u8; WINDOW_BYTES.min(size + 1)];
    let mut hasher = blake3::Hasher::new();
    let mut total = 0;
    let mut carried = 0;
    let mut layout_found = None;
    let rows_before = read.users.len();
    loop {
        let (fresh, end_of_file) = fill(&mut file, &mut buffer[carried..]).map_err(unreadable)?;
        let filled = carried + fresh;
        hasher.update_rayon(&buffer[carried..filled]);
        total += fresh;
        // Whole lines only; a line longer than the window is left to polars.
        let text_end = if end_of_file {
            filled
        } else {
            match buffer[..filled].iter().rposition(|&byte| byte == b'\n') {
                Some(position) => position + 1,
                None => return Ok(None),
            }
        };
        let mut text = &buffer[..text_end];
        let layout = match &layout_found {
            Some(layout) => layout,
            None => {
                let Some((layout, body)) = layout(text, separator, header, columns) else {
                    return Ok(None);
                };
                text = &text[body..];
                layout_found.insert(layout)
            }
        };
        if !parse_window(text, layout, size, read) {
            return Ok(None);
        }
        if end_of_file {
            break;
        }
        buffer.copy_within(text_end..filled, 0);
        carried = filled - text_end;
    }
    Ok(Some(Fingerprint {
        source: super::remote::source_name(path),
        blake3: hasher.finalize().to_hex().to_string(),
        bytes: total as u64,
        rows: (read.users.len() - rows_before) as u64,
    }))
}

/// Reads into `buffer` until it is full or the file ends: the bytes read, and whether it ended.
fn fill(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<(usize, bool)> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok((filled, false))
}

/// Appends the rows of the whole lines `text` (one window of a file of `file_bytes` bytes)
/// to `read`; false when a line does not fit the grammar.
///
/// The window's lines are counted first, so that every piece writes its rows straight into
/// its own part of the arrays: collecting per-piece arrays and appending them took one thread
/// copying (and first touching) all 1.2 GB of a 100M-row result.
fn parse_window(
    text: &[u8],
    layout: &Layout,
    file_bytes: usize,
    read: &mut NumericRatings,
) -> bool {
    let pieces = cut(text, PIECE_BYTES);
    let rows: Vec<usize> = pieces
        .par_iter()
        .map(|range| lines_in(&text[range.clone()]))
        .collect();
    let window_rows: usize = rows.iter().sum();
    if read.users.capacity() == 0 && !text.is_empty() {
        // The whole file's rows, guessed from its first window (a little over, so that the
        // arrays are sized once: growing them doubles what they reserve).
        let guess = (window_rows as f64 * file_bytes as f64 / text.len() as f64 * 1.01) as usize;
        read.users.reserve_exact(guess);
        read.items.reserve_exact(guess);
        read.ratings.reserve_exact(guess);
    }
    read.users.reserve(window_rows);
    read.items.reserve(window_rows);
    read.ratings.reserve(window_rows);
    let mut users = &mut read.users.spare_capacity_mut()[..window_rows];
    let mut items = &mut read.items.spare_capacity_mut()[..window_rows];
    let mut ratings = &mut read.ratings.spare_capacity_mut()[..window_rows];
    let mut work = Vec::with_capacity(pieces.len());
    for (range, &count) in pieces.iter().zip(&rows) {
        let (user_part, user_rest) = users.split_at_mut(count);
        let (item_part, item_rest) = items.split_at_mut(count);
        let (rating_part, rating_rest) = ratings.split_at_mut(count);
        work.push((
            &text[range.clone()],
            count,
            Slots {
                users: user_part,
                items: item_part,
                ratings: rating_part,
            },
        ));
        (users, items, ratings) = (user_rest, item_rest, rating_rest);
    }
    let all_parsed = work
        .into_par_iter()
        .all(|(text, count, slots)| parse_lines(text, layout, slots) == Some(count));
    if !all_parsed {
        return false;
    }
    let filled = read.users.len() + window_rows;
    // SAFETY: every piece wrote each of its `count` slots (parse_lines fills its slots in
    // order, one per line, and returned the piece's line count), and the pieces' slots are
    // the `window_rows` slots after the arrays' lengths, in order.
    unsafe {
        read.users.set_len(filled);
        read.items.set_len(filled);
        read.ratings.set_len(filled);
    }
    true
}

/// The lines of `text` (the last may lack its `\n`).
fn lines_in(text: &[u8]) -> usize {
    line_ends(text) + usize::from(text.last().is_some_and(|&byte| byte != b'\n'))
}

/// The `\n` bytes in `text`, counted in byte lanes, 64 at a time, which the compiler turns into
/// vector compares: counted with a plain filter, they took a quarter of the parse.
pub(super) fn line_ends(text: &[u8]) -> usize {
    const LANES: usize = 64;
    let mut line_ends = 0;
    // A lane counts at most one line end per row of 64 bytes: 255 rows fit its byte.
    for block in text.chunks(255 * LANES) {
        let mut lanes = [0u8; LANES];
        let rows = block.chunks_exact(LANES);
        let rest = rows.remainder();
        for row in rows {
            for (lane, &byte) in lanes.iter_mut().zip(row) {
                *lane += u8::from(byte == b'\n');
            }
        }
        line_ends += lanes.iter().map(|&lane| usize::from(lane)).sum::<usize>();
        line_ends += rest.iter().filter(|&&byte| byte == b'\n').count();
    }
    line_ends
}

/// Where one piece's rows go.
struct Slots<'a> {
    users: &'a mut [std::mem::MaybeUninit<u32>],
    items: &'a mut [std::mem::MaybeUninit<u32>],
    ratings: &'a mut [std::mem::MaybeUninit<f32>],
}

/// The fields' roles and where the data lines start, or `None` when the header or separator
/// rules the file out.
fn layout(
    bytes: &[u8],
    separator: Option<&str>,
    header: bool,
    columns: [&ColumnRef; 3],
) -> Option<(Layout, usize)> {
    if bytes.is_empty() {
        return None;
    }
    let separator = match separator {
        Some(separator) => separator.to_owned(),
        None => super::reader::sniff_separator(bytes),
    };
    let &[separator] = separator.as_bytes() else {
        return None;
    };
    if separator.is_ascii_alphanumeric() || b"\"\r\n.-+".contains(&separator) {
        return None;
    }
    let first_end = bytes.iter().position(|&byte| byte == b'\n')?;
    let first = &bytes[..first_end];
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    if first.is_empty() || first.contains(&b'"') {
        return None;
    }
    let names: Vec<&[u8]> = first.split(|&byte| byte == separator).collect();
    let position = |column: &ColumnRef| -> Option<usize> {
        match column {
            ColumnRef::Position(position) => (*position < names.len()).then_some(*position),
            ColumnRef::Name(name) if header => {
                let mut found = names
                    .iter()
                    .enumerate()
                    .filter(|(_, field)| **field == name.as_bytes());
                let (position, _) = found.next()?;
                found.next().is_none().then_some(position)
            }
            // Without a header polars names the columns column_1, column_2, ...
            ColumnRef::Name(name) => {
                let number: usize = name.strip_prefix("column_")?.parse().ok()?;
                (1..=names.len()).contains(&number).then(|| number - 1)
            }
        }
    };
    let mut roles = vec![Role::Skip; names.len()];
    for (column, role) in columns
        .into_iter()
        .zip([Role::User, Role::Item, Role::Rating])
    {
        let position = position(column)?;
        if roles[position] != Role::Skip {
            return None;
        }
        roles[position] = role;
    }
    let body = if header { first_end + 1 } else { 0 };
    Some((Layout { roles, separator }, body))
}

/// The end of the line that holds byte `at` (just past its `\n`), or the end of `bytes`.
fn line_end_after(bytes: &[u8], at: usize) -> usize {
    if at >= bytes.len() {
        return bytes.len();
    }
    bytes[at..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |offset| at + offset + 1)
}

/// `bytes` cut into pieces of about `piece` bytes, each ending at a line end (the last at the
/// end of `bytes`).
pub(super) fn cut(bytes: &[u8], piece: usize) -> Vec<std::ops::Range<usize>> {
    let mut pieces = Vec::with_capacity(bytes.len() / piece + 1);
    let mut start = 0;
    while start < bytes.len() {
        let end = line_end_after(bytes, start + piece);
        pieces.push(start..end);
        start = end;
    }
    pieces
}

/// Writes the rows of whole lines `text` (the last may lack its `\n`) to `slots` in order and
/// returns how many; `None` at the first line outside the grammar or past the slots.
fn parse_lines(text: &[u8], layout: &Layout, slots: Slots<'_>) -> Option<usize> {
    let last = layout.roles.len() - 1;
    let separator = layout.separator;
    let mut at = 0;
    let mut row = 0;
    while at < text.len() {
        let (mut user, mut item, mut rating) = (0, 0, 0.0);
        for (field, &role) in layout.roles.iter().enumerate() {
            let end = match role {
                Role::User => {
                    let (value, end) = id(text, at)?;
                    user = value;
                    end
                }
                Role::Item => {
                    let (value, end) = id(text, at)?;
                    item = value;
                    end
                }
                Role::Rating => {
                    let (value, end) = number(text, at, separator)?;
                    rating = value;
                    end
                }
                Role::Skip => skip(text, at, separator)?,
            };
            at = if field == last {
                line_end(text, end)?
            } else if text.get(end) == Some(&separator) {
                end + 1
            } else {
                return None;
            };
        }
        slots.users.get_mut(row)?.write(user);
        slots.items.get_mut(row)?.write(item);
        slots.ratings.get_mut(row)?.write(rating);
        row += 1;
    }
    Some(row)
}

/// The leading decimal digits of the 8 bytes at `at` (fewer at the end of the text): how many
/// there are (0 to 8) and their value. Eight bytes at a time, without a branch per digit: a
/// loop ending at a varying length mispredicted its exit at every field, which was most of the
/// parse time.
#[inline(always)]
fn digits8(text: &[u8], at: usize) -> (usize, u64) {
    let word = match text.get(at..at + 8) {
        Some(bytes) => u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])),
        None => {
            // The last bytes of the text, padded with a non-digit.
            let mut padded = [b'/'; 8];
            let tail = text.get(at..).unwrap_or(&[]);
            padded[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(padded)
        }
    };
    // A byte is a digit when its high nibble is 3 and adding 6 keeps it so (0x30..=0x39). A
    // carry out of a byte >= 0xfa only reaches the bytes after the first non-digit.
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    let not_digit =
        ((word & HIGH) ^ THREES) | ((word.wrapping_add(0x0606_0606_0606_0606) & HIGH) ^ THREES);
    let count = (not_digit.trailing_zeros() / 8) as usize;
    if count == 0 {
        return (0, 0);
    }
    // The digits' values moved to the top bytes, zeros (leading zeros of the number) below.
    let values = (word.wrapping_sub(THREES)) << (8 * (8 - count));
    // Pairs, then fours, then the eight: each step combines neighbours of the step before.
    let pairs = (values.wrapping_mul(10) + (values >> 8)) & 0x00ff_00ff_00ff_00ff;
    let fours = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    let eight = (fours.wrapping_mul(10_000) + (fours >> 32)) & 0xffff_ffff;
    (count, eight)
}

/// An unsigned integer id at `at` that fits 32 bits, and where it ends.
#[inline(always)]
fn id(text: &[u8], at: usize) -> Option<(u32, usize)> {
    let (count, value) = digits8(text, at);
    if count == 0 {
        return None;
    }
    if count < 8 {
        return Some((value as u32, at + count));
    }
    // Nine or ten digits: the rest one at a time (u32 ids have at most ten).
    let (more, rest) = digits8(text, at + 8);
    if more > 2 {
        return None;
    }
    let value = value * 10u64.pow(more as u32) + rest;
    Some((u32::try_from(value).ok()?, at + 8 + more))
}

/// Powers of ten that f32 holds exactly (5^10 < 2^24).
const EXACT_POWERS: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// A finite number at `at` as f32, and where its field ends. `-?digits(.digits)?` with at most
/// 7 significant digits is one exact integer divided by an exact power of ten, which IEEE
/// division rounds correctly (Clinger's shortcut), so it equals fast_float2's result; any other
/// text goes to fast_float2 itself.
#[inline(always)]
fn number(text: &[u8], at: usize, separator: u8) -> Option<(f32, usize)> {
    let negative = text.get(at) == Some(&b'-');
    let start = at + usize::from(negative);
    let (whole_digits, whole) = digits8(text, start);
    let mut end = start + whole_digits;
    let (mut digits, mut mantissa, mut scale) = (whole_digits, whole, 0);
    if whole_digits > 0 && text.get(end) == Some(&b'.') {
        let (fraction_digits, fraction) = digits8(text, end + 1);
        if fraction_digits > 0 {
            end += 1 + fraction_digits;
            digits += fraction_digits;
            scale = fraction_digits;
            mantissa = mantissa * 10u64.pow(fraction_digits as u32) + fraction;
        }
    }
    let ends_field = match text.get(end) {
        None | Some(b'\n' | b'\r') => true,
        Some(&byte) => byte == separator,
    };
    if digits > 0 && digits <= 7 && ends_field {
        let magnitude = mantissa as f32 / EXACT_POWERS[scale];
        return Some((if negative { -magnitude } else { magnitude }, end));
    }
    let end = skip(text, at, separator)?;
    let value: f32 = fast_float2::parse(&text[at..end]).ok()?;
    value.is_finite().then_some((value, end))
}

/// Where the field at `at` ends (at the separator, a line end or the end of the text); `None`
/// for a quote, which would need polars' quoting rules.
#[inline]
fn skip(text: &[u8], at: usize, separator: u8) -> Option<usize> {
    let mut end = at;
    while let Some(&byte) = text.get(end) {
        if byte == separator || byte == b'\n' || byte == b'\r' {
            break;
        }
        if byte == b'"' {
            return None;
        }
        end += 1;
    }
    Some(end)
}

/// Just past the line end at `end` (`\n`, `\r\n` or the end of the text); `None` when the last
/// field is followed by anything else (more fields than the first line has, a stray `\r`).
#[inline]
fn line_end(text: &[u8], end: usize) -> Option<usize> {
    match text.get(end) {
        None => Some(end),
        Some(b'\n') => Some(end + 1),
        Some(b'\r') if matches!(text.get(end + 1), None | Some(b'\n')) => Some(end + 2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileSource, Format};
    use crate::dataset::split;
    use crate::ingest::ids::RawIds;

    fn files(header: bool, separator: Option<&str>) -> FileSource {
        FileSource {
            paths: Vec::new(),
            format: Format::Csv,
            separator: separator.map(str::to_owned),
            header,
            format_inferred: false,
        }
    }

    /// Both readers on `text`; the fast one's columns must equal polars' whenever it takes
    /// the file. Returns whether it did.
    fn same_as_polars(text: &str, header: bool, columns: [&ColumnRef; 3]) -> bool {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ratings.csv");
        std::fs::write(&path, text).unwrap();
        let Some((fast, prints)) =
            read(std::slice::from_ref(&path), None, header, columns).unwrap()
        else {
            return false;
        };
        let (users, items, ratings) =
            crate::ingest::reader::columns_through_polars(&path, &files(header, None), columns)
                .unwrap_or_else(|error| {
                    panic!("polars refused what the fast path read: {error}\n{text}")
                });
        let small = |ids: RawIds| match ids {
            RawIds::Small(ids) => ids,
            RawIds::Integer(ids) if ids.is_empty() => Vec::new(),
            other => panic!("polars read {other:?} as other than 32-bit ids\n{text}"),
        };
        assert_eq!(fast.users, small(users), "{text}");
        assert_eq!(fast.items, small(items), "{text}");
        let bits = |values: &[f32]| {
            values
                .iter()
                .map(|value| value.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&fast.ratings), bits(&ratings), "{text}");
        // The fingerprint is the polars path's: the same hash of the same bytes.
        let whole = std::fs::read(&path).unwrap();
        let print = crate::ingest::fingerprint(&path, &whole, fast.users.len() as u64);
        assert_eq!(prints[0], print);
        true
    }

    fn by_position() -> [ColumnRef; 3] {
        [
            ColumnRef::Position(0),
            ColumnRef::Position(1),
            ColumnRef::Position(2),
        ]
    }

    #[test]
    fn random_files_read_as_polars_reads_them() {
        let [user, item, rating] = by_position();
        let mut taken = 0;
        for file in 0..40u64 {
            let draw = |index: u64| split::mix(file, index);
            let rows = 1 + draw(0) % 700;
            let crlf = draw(1) % 3 == 0;
            let mut text = String::from(if crlf {
                "u,i,r,note\r\n"
            } else {
                "u,i,r,note\n"
            });
            for row in 0..rows {
                let value = draw(10 + row);
                // Ratings of every shape the shortcut takes or leaves to fast_float2: 1-9
                // digits, 0-6 decimals, signs, exponents, a trailing point.
                let digits = 1 + value % 9;
                let mantissa = (value >> 8) % 10u64.pow(digits as u32);
                let decimals = ((value >> 40) % 7).min(digits) as usize;
                let mut number = mantissa.to_string();
                if decimals > 0 && number.len() > decimals {
                    number.insert(number.len() - decimals, '.');
                }
                match (value >> 50) % 9 {
                    0 => number.insert(0, '-'),
                    1 => number.push_str("e-3"),
                    2 if !number.contains('.') => number.push('.'),
                    _ => {}
                }
                let user = (value >> 20) % 5000;
                let item = if value % 11 == 0 {
                    u64::from(u32::MAX)
                } else {
                    (value >> 30) % 90
                };
                text.push_str(&format!("{user},{item},{number},n{row}"));
                text.push_str(if crlf { "\r\n" } else { "\n" });
            }
            if draw(2) % 2 == 0 {
                text.pop();
                if crlf {
                    text.pop();
                }
            }
            taken += usize::from(same_as_polars(&text, true, [&user, &item, &rating]));
        }
        assert_eq!(taken, 40, "every generated file fits the grammar");
    }

    #[test]
    fn columns_are_found_by_name_position_or_polars_default_name() {
        let text = "rating;x;item;user\n4.5;a;7;1\n3;b;8;2\n";
        let named = [
            ColumnRef::Name("user".into()),
            ColumnRef::Name("item".into()),
            ColumnRef::Name("rating".into()),
        ];
        assert!(same_as_polars(
            text,
            true,
            [&named[0], &named[1], &named[2]]
        ));
        let positions = [
            ColumnRef::Position(3),
            ColumnRef::Position(2),
            ColumnRef::Position(0),
        ];
        assert!(same_as_polars(
            text,
            true,
            [&positions[0], &positions[1], &positions[2]]
        ));
        let defaults = [
            ColumnRef::Name("column_4".into()),
            ColumnRef::Name("column_3".into()),
            ColumnRef::Name("column_1".into()),
        ];
        let body = "4.5;a;7;1\n3;b;8;2\n";
        assert!(same_as_polars(
            body,
            false,
            [&defaults[0], &defaults[1], &defaults[2]]
        ));
        // A name polars would not find is left to polars (and its did-you-mean error).
        let wrong = ColumnRef::Name("usr".into());
        assert!(!same_as_polars(text, true, [&wrong, &named[1], &named[2]]));
    }

    #[test]
    fn anything_outside_the_grammar_goes_to_polars() {
        let [user, item, rating] = by_position();
        let columns = [&user, &item, &rating];
        for text in [
            "u,i,r\n1,2,3\n\n4,5,6\n", // a blank line
            "u,i,r\n1,2\n",            // too few fields
            "u,i,r\n1,2,3,4\n",        // too many
            "u,i,r\n1,2,\n",           // a missing rating
            "u,i,r\n,2,3\n",           // a missing id
            "u,i,r\n-1,2,3\n",         // a sign
            "u,i,r\n+1,2,3\n",
            "u,i,r\nabc,2,3\n",        // text ids
            "u,i,r\n1.0,2,3\n",        // a float id
            "u,i,r\n4294967296,2,3\n", // past 32 bits
            "u,i,r\n1,2,inf\n",        // not finite
            "u,i,r\n1,2,NaN\n",
            "u,i,r\n1,2, 3\n", // spaces
            "u,i,r\n1,2,3x\n",
            "u,i,r\n1,2,\"3\"\n", // quotes
            "\"u\",i,r\n1,2,3\n",
            "u,i,r\n1,2,3\r4\n",  // a stray carriage return
            "u::i::r\n1::2::3\n", // a separator of two bytes
            "u,i,r",              // a header without a line end
        ] {
            assert!(!same_as_polars(text, true, columns), "took {text:?}");
        }
        // The same columns without the flaw are taken.
        assert!(same_as_polars("u,i,r\n1,2,3\n4,5,6\n", true, columns));
        assert!(same_as_polars("u,i,r\n", true, columns));
    }

    #[test]
    fn a_file_read_in_many_windows_keeps_its_row_order() {
        let [user, item, rating] = by_position();
        let mut text = String::from("user,item,rating\n");
        for row in 0..20_000u32 {
            text.push_str(&format!(
                "{},{},{}.{}\n",
                row * 7919 % 10007,
                row % 97,
                row % 5,
                row % 10
            ));
        }
        assert!(text.len() > 20 * WINDOW_BYTES);
        assert!(same_as_polars(&text, true, [&user, &item, &rating]));
        // A line longer than a window is left to polars.
        let long = format!(
            "user,item,rating,note\n1,2,3,{}\n4,5,6,x\n",
            "y".repeat(WINDOW_BYTES)
        );
        assert!(!same_as_polars(&long, true, [&user, &item, &rating]));
    }
}
