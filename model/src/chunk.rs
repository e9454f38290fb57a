//! Chunk encodings. One encoding per file: [`xor`] (Gorilla-style float
//! chunks) over the bit stream of [`bstream`]. Byte layout:
//! `docs/format/chunk.md`.

pub mod bstream;
pub mod series;
#[doc(hidden)]
pub mod testdata;
pub mod xor;

pub use series::ChunkSeries;
pub use xor::{decode_chunks_range_into, XorChunk, XorIter};
