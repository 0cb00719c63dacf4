//! How the SQLite writer cuts rows of a kind into multi-row INSERTs: at most
//! [`MAX_ROWS_PER_INSERT`] rows each, in power-of-two sizes, so that a few statement texts
//! serve every batch and stay in sqlx's statement cache (`writer.rs` says why rows are
//! gathered at all).

/// Most rows per multi-row INSERT: 12 binds a row stays far below SQLite's 32,766, and the
/// power-of-two chunk sizes keep the distinct statement texts within sqlx's statement cache.
const MAX_ROWS_PER_INSERT: usize = 256;

/// Chunk sizes for `n` rows: full chunks, then the powers of two that make up the rest.
pub(in crate::store) fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = std::iter::repeat_n(MAX_ROWS_PER_INSERT, n / MAX_ROWS_PER_INSERT);
    let rest = n % MAX_ROWS_PER_INSERT;
    let tail = (0..usize::BITS)
        .rev()
        .map(|bit| 1usize << bit)
        .filter(move |size| rest & size != 0);
    full.chain(tail)
}

/// `rows` cut into the chunks of [`chunk_sizes`], in order: one multi-row statement each.
pub(in crate::store) fn chunked<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    chunk_sizes(rows.len()).map(move |size| {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        chunk
    })
}
