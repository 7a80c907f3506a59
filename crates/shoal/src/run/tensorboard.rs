//! TensorBoard event files: scalars as `Event` protocol buffers in TFRecord framing, the
//! format `tensorboard --logdir` reads.
//!
//! The three messages involved (`Event`, `Summary`, `Summary.Value`) are encoded by hand: a
//! few dozen lines against a protobuf toolchain (prost, a build script, `.proto` files) for
//! six fields. The CRC-32C of the framing comes from the `crc` crate.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use crc::{Crc, CRC_32_ISCSI};

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// TFRecord's masked CRC: rotate right by 15 and add a constant.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = CRC32C.checksum(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn length_delimited(field: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(field << 3 | 2);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: (u8, &[u8])) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(1 << 3 | 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    out.push(2 << 3);
    varint(step as u64, &mut out);
    length_delimited(body.0, body.1, &mut out);
    out
}

/// `Summary { repeated Value value = 1 }`, `Value { string tag = 1; float simple_value = 2 }`.
fn scalar_summary(scalars: &[(&str, f64)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, value) in scalars {
        let mut v = Vec::new();
        length_delimited(1, tag.as_bytes(), &mut v);
        v.push(2 << 3 | 5);
        v.extend_from_slice(&(*value as f32).to_le_bytes());
        length_delimited(1, &v, &mut summary);
    }
    summary
}

/// Writes scalar events to one `events.out.tfevents.*` file.
pub struct EventWriter {
    out: BufWriter<File>,
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates a new event file in `dir` (one per training session, as TensorFlow does).
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(format!("events.out.tfevents.{}.shoal.{}", now() as u64, std::process::id()));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = EventWriter { out: BufWriter::new(file) };
        writer.record(&event(now(), 0, (3, b"brain.Event:2")))?;
        Ok(writer)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc(data).to_le_bytes())?;
        Ok(())
    }

    /// Writes `scalars` at `step` (env steps) and flushes, so TensorBoard sees them live.
    /// NaN values (metrics not computed yet) are skipped.
    pub fn scalars(&mut self, step: u64, scalars: &[(&str, f64)]) -> Result<()> {
        let finite: Vec<(&str, f64)> = scalars.iter().copied().filter(|(_, v)| v.is_finite()).collect();
        self.record(&event(now(), step as i64, (5, &scalar_summary(&finite))))?;
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720, appendix B.4).
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8));
    }

    #[test]
    fn scalar_event_encodes_as_protobuf() {
        let bytes = event(1.5, 300, (5, &scalar_summary(&[("loss", 0.25)])));
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]); // step 300 as a varint
                                                     // summary (field 5) { value (field 1) { tag "loss", simple_value 0.25 } }
        want.extend_from_slice(&[0x2a, 13, 0x0a, 11, 0x0a, 4, b'l', b'o', b's', b's', 0x15]);
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(bytes, want);
    }
}
