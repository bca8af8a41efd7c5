//! Inputs for `bench` and `verify`, and `--input` / `--output` binding for `run`.

use sinter::io::npy::Array;
use sinter::model::DType;
use sinter::model::init::SplitMix64;
use sinter::plan::{Plan, Values};
use sinter::{Error, Result};
use std::path::PathBuf;

/// Values with a few hostile ones mixed in (±0, a subnormal, ±1e30, ±inf, NaN).
const SPECIAL: [f32; 8] = [
    0.0,
    -0.0,
    1e-40,
    1e30,
    -1e30,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
];

/// Deterministic inputs for every model input: floats in [-scale, scale) (with `hostile`,
/// about one in eleven a special value), token ids uniform within the vocabulary of the
/// Embeddings that read them, and integers no Embedding reads (an attention mask) as padding
/// masks: along the last axis, ones for a random length of at least one, then zeros (with
/// `hostile`; else all ones, every position real, as a benchmark needs).
pub(crate) fn random(
    plan: &Plan,
    batch: usize,
    seed: u64,
    scale: f32,
    hostile: bool,
) -> Vec<Array> {
    let mut r = SplitMix64::new(seed);
    plan.inputs()
        .iter()
        .enumerate()
        .map(|(k, info)| {
            let n = batch * info.len;
            let ids = plan.id_limit(k);
            let vocab = ids.unwrap_or(1).max(1) as u64;
            match info.dtype {
                // Float ids (a Keras Input of the default dtype feeding an Embedding): whole
                // numbers within the vocabulary, as a caller would send them.
                DType::F32 if ids.is_some() => {
                    Array::F32((0..n).map(|_| (r.next_u64() % vocab) as f32).collect())
                }
                DType::F32 => Array::F32(
                    (0..n)
                        .map(|i| {
                            if hostile && i % 11 == 5 {
                                SPECIAL[(r.next_u64() % 8) as usize]
                            } else {
                                r.next_signed() * scale
                            }
                        })
                        .collect(),
                ),
                // A mask (a boolean input is one even if something gathers by it).
                DType::I32 | DType::I64 | DType::Bool
                    if ids.is_none() || info.dtype == DType::Bool =>
                {
                    let t = info.shape.last().copied().unwrap_or(1).max(1);
                    let mut mask = Vec::with_capacity(n);
                    while mask.len() < n {
                        let len = match hostile {
                            true => 1 + (r.next_u64() % t as u64) as usize,
                            false => t,
                        };
                        // Kept positions are 1, padding 0, or the other way round for a
                        // mask that marks padding.
                        mask.extend((0..t).map(|j| i64::from((j < len) != info.pad_one)));
                    }
                    mask.truncate(n);
                    match info.dtype {
                        DType::I32 => Array::I32(mask.iter().map(|&m| m as i32).collect()),
                        DType::Bool => Array::Bool(mask.iter().map(|&m| m != 0).collect()),
                        _ => Array::I64(mask),
                    }
                }
                DType::I32 => Array::I32((0..n).map(|_| (r.next_u64() % vocab) as i32).collect()),
                DType::I64 => Array::I64((0..n).map(|_| (r.next_u64() % vocab) as i64).collect()),
                DType::Bool => Array::Bool((0..n).map(|_| r.next_u64() % 2 == 1).collect()),
            }
        })
        .collect()
}

/// Borrowed views of `arrays` for a run.
pub(crate) fn views(arrays: &[Array]) -> Vec<Values<'_>> {
    arrays.iter().map(Array::values).collect()
}

/// A tensor read in its file's order, whose batch is on axis `t.axis` (ONNX's time-major
/// inputs), as sinter takes it: sample-major (`batch` samples, `seq` positions).
pub(crate) fn sample_major(
    t: &sinter::model::BatchAxis,
    a: Array,
    batch: usize,
    seq: Option<usize>,
) -> Array {
    match a {
        Array::F32(v) => Array::F32(t.to_samples(&v, batch, seq)),
        Array::I32(v) => Array::I32(t.to_samples(&v, batch, seq)),
        Array::I64(v) => Array::I64(t.to_samples(&v, batch, seq)),
        Array::Bool(v) => Array::Bool(t.to_samples(&v, batch, seq)),
    }
}

/// Samples `r` of every input (each `len` values per sample).
pub(crate) fn row<'a>(arrays: &'a [Array], lens: &[usize], r: usize) -> Vec<Values<'a>> {
    arrays
        .iter()
        .zip(lens)
        .map(|(a, &l)| match a {
            Array::F32(v) => Values::F32(&v[r * l..(r + 1) * l]),
            Array::I32(v) => Values::I32(&v[r * l..(r + 1) * l]),
            Array::I64(v) => Values::I64(&v[r * l..(r + 1) * l]),
            Array::Bool(v) => Values::Bool(&v[r * l..(r + 1) * l]),
        })
        .collect()
}

/// Samples `first..first + count` of every input, those with a variable sequence cut to their
/// first `len` positions (`arrays` hold the plan's longest).
pub(crate) fn cut(
    plan: &Plan,
    arrays: &[Array],
    (first, count): (usize, usize),
    len: usize,
) -> Vec<Array> {
    fn take<T: Copy>(
        v: &[T],
        (first, count): (usize, usize),
        (per, keep): (usize, usize),
    ) -> Vec<T> {
        v[first * per..(first + count) * per]
            .chunks(per.max(1))
            .flat_map(|s| &s[..keep])
            .copied()
            .collect()
    }
    plan.inputs()
        .iter()
        .zip(arrays)
        .map(|(info, a)| {
            let lens = (info.len, info.len_at(len));
            match a {
                Array::F32(v) => Array::F32(take(v, (first, count), lens)),
                Array::I32(v) => Array::I32(take(v, (first, count), lens)),
                Array::I64(v) => Array::I64(take(v, (first, count), lens)),
                Array::Bool(v) => Array::Bool(take(v, (first, count), lens)),
            }
        })
        .collect()
}

/// One-sample requests joined into a batch, each input that follows the sequence padded with
/// zeros to `len` positions (what a batcher does).
pub(crate) fn pad(plan: &Plan, requests: &[Vec<Array>], len: usize) -> Result<Vec<Array>> {
    plan.inputs()
        .iter()
        .enumerate()
        .map(|(k, info)| {
            let parts: Vec<(&Array, usize, usize)> = requests
                .iter()
                .map(|r| (&r[k], r[k].values().len(), info.len_at(len)))
                .collect();
            Array::join_padded(&parts, info.pad_one).ok_or_else(|| {
                Error::Options(format!("input {:?}: samples that do not join", info.name))
            })
        })
        .collect()
}

/// How many leading positions of sample `r` its padding masks keep (the inputs with a
/// variable sequence that no Embedding reads): past the last kept position; `None` without a
/// mask.
pub(crate) fn kept(plan: &Plan, arrays: &[Array], r: usize) -> Option<usize> {
    plan.inputs()
        .iter()
        .zip(arrays)
        .enumerate()
        .filter(|(k, (info, _))| {
            info.seq && info.dtype != DType::F32 && plan.id_limit(*k).is_none()
        })
        .map(|(_, (info, a))| {
            let sample = match a {
                Array::I32(v) => v[r * info.len..(r + 1) * info.len]
                    .iter()
                    .map(|&x| x != 0)
                    .collect(),
                Array::I64(v) => v[r * info.len..(r + 1) * info.len]
                    .iter()
                    .map(|&x| x != 0)
                    .collect(),
                Array::Bool(v) => v[r * info.len..(r + 1) * info.len].to_vec(),
                Array::F32(_) => Vec::new(),
            };
            // A mask that marks padding keeps its zeros.
            sample
                .iter()
                .rposition(|&m: &bool| m != info.pad_one)
                .map_or(1, |p| p + 1)
        })
        .max()
}

/// `--input`/`--output` arguments bound to names: `NAME=PATH` where NAME is one of `names`
/// binds by name, anything else is a path taken in order for the names not bound yet.
/// Returns `(name index, path)` in the order given. With `all`, every name must be bound.
pub(crate) fn bind(
    args: &[String],
    names: &[String],
    what: &str,
    all: bool,
) -> Result<Vec<(usize, PathBuf)>> {
    let usage = |msg: String| Error::Options(format!("{what}: {msg}"));
    let mut bound: Vec<Option<PathBuf>> = vec![None; names.len()];
    let mut order = Vec::new();
    let mut positional = Vec::new();
    for a in args {
        match a.split_once('=') {
            Some((name, path)) if names.iter().any(|n| n == name) => {
                let k = names.iter().position(|n| n == name).expect("found");
                if bound[k].replace(PathBuf::from(path)).is_some() {
                    return Err(usage(format!("{name:?} is given twice")));
                }
                order.push(k);
            }
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let mut free = (0..names.len())
        .filter(|&k| bound[k].is_none())
        .collect::<Vec<_>>();
    free.reverse();
    for p in positional {
        let k = free.pop().ok_or_else(|| {
            usage(format!(
                "{} given, the model has {} ({})",
                args.len(),
                names.len(),
                names.join(", ")
            ))
        })?;
        bound[k] = Some(p);
        order.push(k);
    }
    if all && let Some(k) = bound.iter().position(Option::is_none) {
        return Err(usage(format!(
            "no file for {:?} (the model's are, in order: {})",
            names[k],
            names.join(", ")
        )));
    }
    Ok(order
        .into_iter()
        .map(|k| (k, bound[k].clone().expect("bound")))
        .collect())
}
