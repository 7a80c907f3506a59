//! Checkpoints: a model's parameters and its optimizer's state in one safetensors file.
//!
//! Parameters are stored under their layout names (`actor.0.weight`, …, as PyTorch names
//! them), optimizer state as `optim.<buffer>.<tensor>`, and the metadata header records the
//! optimizer and its step count plus any caller metadata. Files are written to a temporary
//! sibling, fsynced and atomically renamed, so a crash never leaves a torn checkpoint.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{NnError, Result};
use crate::layout::ParamLayout;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::prune::{prunable, PruneMask};

const OPTIMIZER_KEY: &str = "shoal.optimizer";
const STEPS_KEY: &str = "shoal.optimizer_steps";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NnError + '_ {
    move |source| NnError::Io { path: path.display().to_string(), source }
}

fn format_err(path: &Path, problem: impl ToString) -> NnError {
    NnError::Format { path: path.display().to_string(), problem: problem.to_string() }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// of the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| {
        let mut file = File::create(tmp).map_err(io_err(tmp))?;
        file.write_all(bytes).map_err(io_err(tmp))
    })
}

/// [`atomic_write`] for a writer that streams into the file itself (`write` is given the
/// temp file's path), so a large checkpoint is never held whole in memory.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    write(&tmp)?;
    File::open(&tmp).and_then(|file| file.sync_all()).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    // Persist the rename itself; not every platform can open a directory, so this is best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Saves `model` (and `optimizer`, if given) to `path`, with extra string `metadata`.
pub fn save(
    path: &Path,
    model: &dyn Model<f32>,
    optimizer: Option<&dyn Optimizer<f32>>,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    save_flat(path, model.layout(), model.params(), optimizer, metadata)
}

/// Saves a flat parameter vector laid out by `layout` (what a parameter server holds without
/// a model), and `optimizer`'s state if given.
pub fn save_flat(
    path: &Path,
    layout: &ParamLayout,
    params: &[f32],
    optimizer: Option<&dyn Optimizer<f32>>,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    atomic_write(path, &encode_flat(path, layout, params, optimizer, metadata)?)
}

/// The file [`save_flat`] writes, as bytes: what a server encodes while it holds its state,
/// to write (and wait for the disk) after letting go of it. `path` names the file in errors.
pub fn encode_flat(
    path: &Path,
    layout: &ParamLayout,
    params: &[f32],
    optimizer: Option<&dyn Optimizer<f32>>,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    layout.check_len("parameter vector", params.len())?;
    let mut entries: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in layout.tensors() {
        entries.push((t.name.clone(), t.shape.clone(), le_bytes(&params[t.range()])));
    }
    let mut info = metadata.clone();
    if let Some(opt) = optimizer {
        info.insert(OPTIMIZER_KEY.into(), opt.name().into());
        info.insert(STEPS_KEY.into(), opt.steps().to_string());
        for (buffer, values) in opt.buffers() {
            layout.check_len("optimizer state", values.len())?;
            for t in layout.tensors() {
                entries.push((format!("optim.{buffer}.{}", t.name), t.shape.clone(), le_bytes(&values[t.range()])));
            }
        }
    }
    let views = entries
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| format_err(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(info)).map_err(|e| format_err(path, e))
}

/// Loads parameters (and optimizer state, if `optimizer` is given) saved by [`save`] into
/// `model`; returns the file's metadata. A file whose tensors differ from the model's layout is
/// an error naming the first differing tensor; the model is left unchanged then.
pub fn load(
    path: &Path,
    model: &mut dyn Model<f32>,
    optimizer: Option<&mut dyn Optimizer<f32>>,
) -> Result<HashMap<String, String>> {
    let layout = model.layout().clone();
    load_flat(path, &layout, model.params_mut(), optimizer)
}

/// Loads a flat parameter vector laid out by `layout` into `params` (and optimizer state);
/// on any mismatch nothing is changed.
pub fn load_flat(
    path: &Path,
    layout: &ParamLayout,
    params: &mut [f32],
    optimizer: Option<&mut dyn Optimizer<f32>>,
) -> Result<HashMap<String, String>> {
    layout.check_len("parameter vector", params.len())?;
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| format_err(path, e))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, e))?;
    let loaded = read_tensors(&file, layout, "", path)?;
    let extra = file.names().into_iter().find(|n| !n.starts_with("optim.") && layout.get(n).is_none());
    if let Some(name) = extra {
        return Err(NnError::Layout {
            tensor: name.to_string(),
            problem: format!("{} has it, the model does not", path.display()),
        });
    }
    if let Some(opt) = optimizer {
        let saved = metadata.get(OPTIMIZER_KEY).map(String::as_str).unwrap_or("none");
        if saved != opt.name() {
            return Err(format_err(
                path,
                format!("holds `{saved}` optimizer state, but the run uses `{}`", opt.name()),
            ));
        }
        let steps = metadata.get(STEPS_KEY).and_then(|s| s.parse().ok()).unwrap_or(0);
        let names: Vec<&'static str> = opt.buffers().iter().map(|(n, _)| *n).collect();
        let buffers = names
            .iter()
            .map(|name| read_tensors(&file, layout, &format!("optim.{name}."), path).map(|v| (*name, v)))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<(&str, &[f32])> = buffers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        opt.load(steps, &views)?;
    }
    params.copy_from_slice(&loaded);
    Ok(metadata)
}

/// Reads every layout tensor (with `prefix`) into one flat vector, checking names and shapes.
fn read_tensors(file: &SafeTensors<'_>, layout: &ParamLayout, prefix: &str, path: &Path) -> Result<Vec<f32>> {
    let mut flat = vec![0.0f32; layout.len()];
    for t in layout.tensors() {
        let name = format!("{prefix}{}", t.name);
        let view = file.tensor(&name).map_err(|_| NnError::Layout {
            tensor: name.clone(),
            problem: format!("missing from {}", path.display()),
        })?;
        if view.dtype() != Dtype::F32 || view.shape() != t.shape.as_slice() {
            return Err(NnError::Layout {
                tensor: name,
                problem: format!(
                    "{} has {:?} {:?}, the model expects F32 {:?}",
                    path.display(),
                    view.dtype(),
                    view.shape(),
                    t.shape
                ),
            });
        }
        for (dst, chunk) in flat[t.range()].iter_mut().zip(view.data().chunks_exact(4)) {
            *dst = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
    Ok(flat)
}

/// Writes a pruning mask as one `u8` tensor per weight matrix (1 = kept), atomically.
pub fn save_mask(mask: &PruneMask, path: &Path, layout: &ParamLayout) -> Result<()> {
    let format_err =
        |e: safetensors::SafeTensorError| NnError::Format { path: path.display().to_string(), problem: e.to_string() };
    let entries: Vec<(String, Vec<usize>, Vec<u8>)> = prunable(layout)
        .map(|t| (t.name.clone(), t.shape.clone(), mask.keeps()[t.range()].iter().map(|&k| u8::from(k)).collect()))
        .collect();
    let views = entries
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::U8, shape.clone(), bytes).map(|v| (name.clone(), v)).map_err(format_err)
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None::<HashMap<String, String>>).map_err(format_err)?;
    atomic_write(path, &bytes)
}

/// Reads a mask [`save_mask`] wrote for the same layout.
pub fn load_mask(path: &Path, layout: &ParamLayout) -> Result<PruneMask> {
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: path.display().to_string(), source })?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| NnError::Format { path: path.display().to_string(), problem: e.to_string() })?;
    let mut keep = vec![true; layout.len()];
    for t in prunable(layout) {
        let view = file.tensor(&t.name).map_err(|_| NnError::Layout {
            tensor: t.name.clone(),
            problem: format!("missing from the mask file {}", path.display()),
        })?;
        if view.dtype() != Dtype::U8 || view.shape() != t.shape.as_slice() {
            return Err(NnError::Layout {
                tensor: t.name.clone(),
                problem: format!(
                    "{} has {:?} {:?}, the model expects a U8 mask {:?}",
                    path.display(),
                    view.dtype(),
                    view.shape(),
                    t.shape
                ),
            });
        }
        for (keep, &byte) in keep[t.range()].iter_mut().zip(view.data()) {
            *keep = byte != 0;
        }
    }
    Ok(PruneMask::from_keeps(keep))
}
