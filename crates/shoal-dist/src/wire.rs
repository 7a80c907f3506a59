//! Tensors on the wire: a flat `f32` vector cut into [`Chunk`]s of at most [`CHUNK_VALUES`]
//! values (raw little-endian `f32`, IEEE half precision, or int8 with a scale per chunk, when
//! asked), and an [`Assembler`] that checks every received chunk before a byte of it lands in
//! the output.
//!
//! Everything a peer sends is untrusted: lengths, offsets and encodings are validated, and a
//! malformed stream is an error — never a panic, never a partially written result reported as
//! complete.

use bytes::Bytes;
use half::f16;

use crate::proto::{Chunk, Encoding};

/// Values per chunk: 64 Ki values = 256 KiB of `f32`. Small enough that a chunk stays in the
/// core's cache between the copies that move it (encoding, the socket, decoding): on loopback
/// a 10 MB push took 10.1 ms with these chunks against 11.3–12 ms with 1 MiB ones, and
/// 64 KiB chunks were slower again (15 ms: per-message overhead).
pub const CHUNK_VALUES: usize = 64 * 1024;

/// The largest message either side accepts: 1 MiB plus headroom for headers. Tensor chunks
/// are a quarter of it; replay batches fill it.
pub const MAX_MESSAGE_BYTES: usize = (1 << 20) + 64 * 1024;

const _: () = assert!(CHUNK_VALUES * 4 < MAX_MESSAGE_BYTES);

/// A problem with a received tensor stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("tensor stream holds {got} values, expected {expected}")]
    Length { got: u64, expected: u64 },
    #[error("chunk at value {got} arrived where value {expected} was expected (chunks must be in order)")]
    Offset { got: u64, expected: u64 },
    #[error("chunk of {bytes} bytes is not a whole number of {width}-byte values")]
    Ragged { bytes: usize, width: usize },
    #[error("int8 chunk of {bytes} bytes has no room for its 4-byte scale")]
    NoScale { bytes: usize },
    #[error("int8 chunk with scale {0} (a scale is finite and not negative)")]
    BadScale(String),
    #[error("chunk overruns the tensor: values {start}..{end} of {total}")]
    Overrun { start: u64, end: u64, total: u64 },
    #[error("unknown tensor encoding {0}")]
    Encoding(i32),
    #[error("the tensor stream ended after {got} of {expected} values")]
    Truncated { got: u64, expected: u64 },
    #[error("the tensor stream is empty")]
    Empty,
    #[error("tensor of {got} bytes, expected {expected} for the store's length and encoding")]
    Size { got: u64, expected: u64 },
}

/// The number of values in a chunk's `data`.
fn value_count(encoding: Encoding, bytes: usize) -> Result<usize, WireError> {
    let width = match encoding {
        Encoding::F32Le => 4,
        Encoding::F16Le => 2,
        Encoding::Int8 => return bytes.checked_sub(4).ok_or(WireError::NoScale { bytes }),
    };
    if !bytes.is_multiple_of(width) {
        return Err(WireError::Ragged { bytes, width });
    }
    Ok(bytes / width)
}

/// The int8 scale of `values`: the largest magnitude maps to ±127.
fn int8_scale(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0
}

fn int8_quantize(value: f32, scale: f32) -> i8 {
    if scale > 0.0 {
        (value / scale).round().clamp(-127.0, 127.0) as i8
    } else {
        0
    }
}

/// What the receiver of `values` in `encoding` reads, chunk by chunk as they are cut — the
/// rounding a sender with error feedback carries to its next push.
pub fn decoded(values: &[f32], encoding: Encoding, out: &mut [f32]) {
    for (part, dest) in values.chunks(CHUNK_VALUES).zip(out.chunks_mut(CHUNK_VALUES)) {
        match encoding {
            Encoding::F32Le => dest.copy_from_slice(part),
            Encoding::F16Le => dest.iter_mut().zip(part).for_each(|(d, v)| *d = f16::from_f32(*v).to_f32()),
            Encoding::Int8 => {
                let scale = int8_scale(part);
                dest.iter_mut().zip(part).for_each(|(d, v)| *d = f32::from(int8_quantize(*v, scale)) * scale);
            }
        }
    }
}

/// Cuts `values` into chunks; `worker` and `version` go in the header of each.
pub fn encode(values: &[f32], encoding: Encoding, worker: u32, version: u64) -> Vec<Chunk> {
    chunks(values, encoding, worker, version).collect()
}

/// The chunks of `values`, each encoded when the iterator reaches it — so a sender can put
/// the first chunk on the wire while it encodes the rest. An empty tensor is one empty chunk.
pub fn chunks(values: &[f32], encoding: Encoding, worker: u32, version: u64) -> impl Iterator<Item = Chunk> + '_ {
    let total_len = values.len() as u64;
    let parts = values.len().div_ceil(CHUNK_VALUES).max(1);
    (0..parts).map(move |i| {
        let start = (i * CHUNK_VALUES).min(values.len());
        let part = &values[start..(start + CHUNK_VALUES).min(values.len())];
        Chunk {
            worker,
            version,
            total_len,
            offset: start as u64,
            encoding: encoding as i32,
            data: encode_values(part, encoding),
            unchanged: false,
        }
    })
}

fn encode_values(values: &[f32], encoding: Encoding) -> Bytes {
    let mut bytes = Vec::with_capacity(encoded_len(values.len(), encoding));
    encode_part_into(values, encoding, &mut bytes);
    Bytes::from(bytes)
}

/// Appends one chunk's encoding of `values` (at most [`CHUNK_VALUES`] of them) to `out`.
fn encode_part_into(values: &[f32], encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        // On little-endian machines the in-memory bytes are the wire bytes: one memcpy.
        Encoding::F32Le if cfg!(target_endian = "little") => out.extend_from_slice(bytemuck::cast_slice(values)),
        Encoding::F32Le => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        Encoding::F16Le => out.extend(values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes())),
        Encoding::Int8 => {
            let scale = int8_scale(values);
            out.extend_from_slice(&scale.to_le_bytes());
            out.extend(values.iter().map(|v| int8_quantize(*v, scale) as u8));
        }
    }
}

/// Bytes of `values` values in `encoding`, cut into chunks as [`chunks`] cuts them (int8
/// carries a 4-byte scale per chunk).
pub fn encoded_len(values: usize, encoding: Encoding) -> usize {
    match encoding {
        Encoding::F32Le => 4 * values,
        Encoding::F16Le => 2 * values,
        Encoding::Int8 => values + 4 * values.div_ceil(CHUNK_VALUES).max(1),
    }
}

/// The whole tensor in one buffer: every chunk's encoding, in order, replacing `out`'s
/// contents (what the data plane sends; its capacity is reused from call to call).
pub fn encode_into(values: &[f32], encoding: Encoding, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(encoded_len(values.len(), encoding));
    if values.is_empty() {
        encode_part_into(values, encoding, out);
    }
    for part in values.chunks(CHUNK_VALUES) {
        encode_part_into(part, encoding, out);
    }
}

/// Reads a buffer written by [`encode_into`] into `out`, whose length the tensor must have.
pub fn decode_into(bytes: &[u8], encoding: Encoding, out: &mut [f32]) -> Result<(), WireError> {
    let expected = encoded_len(out.len(), encoding);
    if bytes.len() != expected {
        return Err(WireError::Size { got: bytes.len() as u64, expected: expected as u64 });
    }
    let width = encoded_len(CHUNK_VALUES, encoding);
    for (part, dest) in bytes.chunks(width).zip(out.chunks_mut(CHUNK_VALUES)) {
        decode_part(encoding, part, dest)?;
    }
    Ok(())
}

/// Decodes one chunk's `data` into `dest` (exactly as many values as it holds).
fn decode_part(encoding: Encoding, data: &[u8], dest: &mut [f32]) -> Result<(), WireError> {
    match encoding {
        Encoding::F32Le if cfg!(target_endian = "little") => {
            bytemuck::cast_slice_mut::<f32, u8>(dest).copy_from_slice(data);
        }
        Encoding::F32Le => {
            for (v, b) in dest.iter_mut().zip(data.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Encoding::F16Le => {
            for (v, b) in dest.iter_mut().zip(data.chunks_exact(2)) {
                *v = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Encoding::Int8 => {
            let (scale, bytes) = data.split_at(4);
            let scale = f32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
            if !scale.is_finite() || scale < 0.0 {
                return Err(WireError::BadScale(scale.to_string()));
            }
            for (v, &b) in dest.iter_mut().zip(bytes) {
                *v = f32::from(b as i8) * scale;
            }
        }
    }
    Ok(())
}

/// Receives the chunks of one tensor into a caller's buffer of the expected length.
pub struct Assembler<'a> {
    out: &'a mut [f32],
    filled: usize,
    header: Option<(u32, u64)>,
}

impl<'a> Assembler<'a> {
    /// Assembles into `out`, whose length is what the tensor must have.
    pub fn new(out: &'a mut [f32]) -> Self {
        Assembler { out, filled: 0, header: None }
    }

    /// Checks `chunk` and copies its values into place.
    pub fn accept(&mut self, chunk: &Chunk) -> Result<(), WireError> {
        let expected = self.out.len() as u64;
        if chunk.total_len != expected {
            return Err(WireError::Length { got: chunk.total_len, expected });
        }
        if chunk.offset != self.filled as u64 {
            return Err(WireError::Offset { got: chunk.offset, expected: self.filled as u64 });
        }
        let encoding = Encoding::try_from(chunk.encoding).map_err(|_| WireError::Encoding(chunk.encoding))?;
        let count = value_count(encoding, chunk.data.len())?;
        let end = self.filled + count;
        if end > self.out.len() {
            return Err(WireError::Overrun { start: chunk.offset, end: end as u64, total: expected });
        }
        decode_part(encoding, &chunk.data, &mut self.out[self.filled..end])?;
        self.filled = end;
        self.header.get_or_insert((chunk.worker, chunk.version));
        Ok(())
    }

    /// The first chunk's worker and version, once every value has arrived.
    pub fn finish(self) -> Result<(u32, u64), WireError> {
        if self.filled != self.out.len() {
            return Err(WireError::Truncated { got: self.filled as u64, expected: self.out.len() as u64 });
        }
        self.header.ok_or(WireError::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(values: &[f32], encoding: Encoding) -> Vec<f32> {
        let mut out = vec![0.0; values.len()];
        let mut asm = Assembler::new(&mut out);
        for chunk in encode(values, encoding, 3, 9) {
            asm.accept(&chunk).unwrap();
        }
        assert_eq!(asm.finish().unwrap(), (3, 9));
        out
    }

    #[test]
    fn f32_roundtrip_is_exact_across_chunk_boundaries() {
        let values: Vec<f32> = (0..CHUNK_VALUES * 2 + 17).map(|i| (i as f32).sin() * 1e3).collect();
        assert_eq!(encode(&values, Encoding::F32Le, 0, 0).len(), 3);
        assert_eq!(encode(&[], Encoding::F32Le, 0, 0).len(), 1);
        assert_eq!(roundtrip(&values, Encoding::F32Le), values);
        assert_eq!(roundtrip(&[], Encoding::F32Le), Vec::<f32>::new());
    }

    #[test]
    fn f16_roundtrip_keeps_three_significant_digits() {
        let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).cos() * 10.0).collect();
        for (got, want) in roundtrip(&values, Encoding::F16Le).iter().zip(&values) {
            assert!((got - want).abs() <= want.abs() * 1e-3 + 1e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn int8_roundtrip_is_within_half_a_step_of_each_chunk_and_decoded_says_what_arrives() {
        let values: Vec<f32> =
            (0..CHUNK_VALUES + 500).map(|i| (i as f32 * 0.013).sin() * (1.0 + (i % 7) as f32)).collect();
        let got = roundtrip(&values, Encoding::Int8);
        let mut expected = vec![0.0; values.len()];
        decoded(&values, Encoding::Int8, &mut expected);
        assert_eq!(got, expected, "the sender's view of the rounding is the receiver's");
        for (part, back) in values.chunks(CHUNK_VALUES).zip(got.chunks(CHUNK_VALUES)) {
            let step = int8_scale(part);
            for (v, b) in part.iter().zip(back) {
                assert!((v - b).abs() <= step / 2.0 + 1e-6, "{v} came back as {b} (step {step})");
            }
        }
        assert_eq!(roundtrip(&[0.0; 5], Encoding::Int8), vec![0.0; 5]);
        let bytes: usize = encode(&values, Encoding::Int8, 0, 0).iter().map(|c| c.data.len()).sum();
        assert_eq!(bytes, values.len() + 4 * 2, "a byte per value and a scale per chunk");
    }

    #[test]
    fn one_buffer_holds_what_the_chunks_hold() {
        let values: Vec<f32> = (0..CHUNK_VALUES + 300).map(|i| (i as f32 * 0.07).sin() * 3.0).collect();
        for encoding in [Encoding::F32Le, Encoding::F16Le, Encoding::Int8] {
            let mut buffer = Vec::new();
            encode_into(&values, encoding, &mut buffer);
            let chunked: Vec<u8> = encode(&values, encoding, 0, 0).iter().flat_map(|c| c.data.to_vec()).collect();
            assert_eq!(buffer, chunked, "{encoding:?}");
            assert_eq!(buffer.len(), encoded_len(values.len(), encoding));
            let mut back = vec![0.0; values.len()];
            decode_into(&buffer, encoding, &mut back).unwrap();
            assert_eq!(back, roundtrip(&values, encoding), "{encoding:?}");
            let mut short = vec![0.0; values.len() - 1];
            assert!(matches!(decode_into(&buffer, encoding, &mut short), Err(WireError::Size { .. })));
        }
    }

    #[test]
    fn malformed_streams_are_named_errors() {
        let values = vec![1.0f32; 10];
        let good = encode(&values, Encoding::F32Le, 0, 1).remove(0);
        let mut out = vec![0.0; 10];
        let cases = [
            (Chunk { total_len: 11, ..good.clone() }, WireError::Length { got: 11, expected: 10 }),
            (Chunk { offset: 2, ..good.clone() }, WireError::Offset { got: 2, expected: 0 }),
            (Chunk { data: good.data.slice(..7), ..good.clone() }, WireError::Ragged { bytes: 7, width: 4 }),
            (
                Chunk { data: [good.data.to_vec(), vec![0; 4]].concat().into(), ..good.clone() },
                WireError::Overrun { start: 0, end: 11, total: 10 },
            ),
            (Chunk { encoding: 7, ..good.clone() }, WireError::Encoding(7)),
            (
                Chunk { encoding: Encoding::Int8 as i32, data: good.data.slice(..3), ..good.clone() },
                WireError::NoScale { bytes: 3 },
            ),
            (
                Chunk {
                    encoding: Encoding::Int8 as i32,
                    data: [f32::NAN.to_le_bytes().to_vec(), vec![1; 10]].concat().into(),
                    ..good.clone()
                },
                WireError::BadScale("NaN".into()),
            ),
        ];
        for (chunk, want) in cases {
            assert_eq!(Assembler::new(&mut out).accept(&chunk), Err(want));
        }
        let mut asm = Assembler::new(&mut out);
        asm.accept(&Chunk { data: good.data.slice(..8), ..good }).unwrap();
        assert_eq!(asm.finish(), Err(WireError::Truncated { got: 2, expected: 10 }));
        assert_eq!(Assembler::new(&mut out).finish(), Err(WireError::Truncated { got: 0, expected: 10 }));
    }
}
