//! Scaled dot-product attention over heads: `softmax(q · kᵀ · scale) · v` per head, each
//! query seeing only the keys its mask keeps (and, when causal, no later key). The core of
//! Keras's `MultiHeadAttention` (whose projections are Dense layers around it), of the
//! attention PyTorch and Hugging Face models spell out op by op, and of ONNX's `Attention`.

use super::{LayerOp, Lowering, Reference};
use crate::error::Result;
use crate::kernels::{self, Attend, Isa, KeyMask, NoKeys};
use crate::model::{DType, checked_elems};
use crate::passes::Op;
use crate::plan::{StepInputs, StepIo, StepOp, StepRef};

/// An attention layer's configuration. Inputs: queries `[S, heads * dk]`, keys
/// `[T, heads * dk]`, values `[T, heads * dv]`, and optionally a mask that keeps a key where it
/// is above one half: `[T]` or `[1, T]` (per key) or `[S, T]` (per query and key). Output:
/// `[S, heads * dv]`. A query that sees no key gets what `no_keys` says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Heads the last axes split into.
    pub heads: usize,
    /// Multiplies each dot product; `None`: `1 / sqrt(dk)`.
    pub scale: Option<f32>,
    /// Query `i` sees only keys `j <= i`.
    pub causal: bool,
    /// What a query that sees no key gets.
    pub no_keys: NoKeys,
}

/// The shapes an attention reads, checked.
#[derive(Clone, Copy, Debug)]
struct Dims {
    s: usize,
    t: usize,
    dk: usize,
    dv: usize,
    /// `None`: no mask; `Some(false)`: per key; `Some(true)`: per query and key.
    pairs: Option<bool>,
}

impl AttentionConfig {
    fn dims(&self, inputs: &[&[usize]]) -> Result<Dims, String> {
        let h = self.heads;
        if h == 0 {
            return Err("attention needs at least one head".into());
        }
        let (q, k, v, mask) = match inputs {
            [q, k, v] => (q, k, v, None),
            [q, k, v, m] => (q, k, v, Some(m)),
            _ => {
                return Err(format!(
                    "attention takes query, key, value and an optional mask, got {} inputs",
                    inputs.len()
                ));
            }
        };
        let (&[s, qw], &[t, kw], &[tv, vw]) = (&q[..], &k[..], &v[..]) else {
            return Err(format!(
                "attention reads [steps, features] queries, keys and values, got {q:?}, {k:?}, {v:?}"
            ));
        };
        if qw != kw || tv != t || qw % h != 0 || vw % h != 0 || qw == 0 || vw == 0 {
            return Err(format!(
                "queries {q:?}, keys {k:?} and values {v:?} do not split into {h} heads of one key length"
            ));
        }
        let pairs = match mask.map(|m| &m[..]) {
            None => None,
            Some(&[n]) | Some(&[1, n]) if n == t => Some(false),
            Some(&[a, b]) if a == s && b == t => Some(true),
            Some(m) => {
                return Err(format!(
                    "an attention mask is [{t}] or [1, {t}] (per key) or [{s}, {t}], got {m:?}"
                ));
            }
        };
        Ok(Dims {
            s,
            t,
            dk: qw / h,
            dv: vw / h,
            pairs,
        })
    }

    fn scale_for(&self, dk: usize) -> f32 {
        self.scale.unwrap_or_else(|| 1.0 / (dk as f32).sqrt())
    }
}

impl LayerOp for AttentionConfig {
    fn class_name(&self) -> &'static str {
        "Attention"
    }
    fn base_name(&self) -> &'static str {
        "attention"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let d = self.dims(inputs)?;
        let shape = vec![d.s, self.heads * d.dv];
        checked_elems(&shape)?;
        Attend::scratch_len(d.t, d.dk)
            .checked_mul(4)
            .ok_or("attention scratch overflows")?;
        Ok(shape)
    }
    fn reads(&self, dtypes: &[DType]) -> bool {
        // A mask may be integers (Hugging Face's int64 `attention_mask`).
        dtypes.iter().take(3).all(|&d| d == DType::F32)
    }
    fn lower<'m>(&'m self, cx: &mut Lowering<'m, '_>) -> Result<Op<'m>> {
        let m = cx.model;
        let shapes: Vec<&[usize]> = cx
            .node
            .inputs
            .iter()
            .map(|&j| m.nodes()[j].shape.as_slice())
            .collect();
        let dims = self.dims(&shapes).map_err(|e| cx.fail(e))?;
        Ok(Op::Step(StepRef::new(AttentionStep {
            heads: self.heads,
            scale: self.scale_for(dims.dk),
            causal: self.causal,
            no_keys: self.no_keys,
            dims,
        })))
    }
    fn reference(&self, cx: &Reference<'_>) -> Result<Vec<f64>> {
        let d = self.dims(&cx.shapes).map_err(crate::Error::Model)?;
        let h = self.heads;
        let scale = f64::from(self.scale_for(d.dk));
        let (hk, hv) = (h * d.dk, h * d.dv);
        let mut out = Vec::with_capacity(cx.batch * d.s * hv);
        for b in 0..cx.batch {
            let q = &cx.inputs[0][b * d.s * hk..][..d.s * hk];
            let k = &cx.inputs[1][b * d.t * hk..][..d.t * hk];
            let v = &cx.inputs[2][b * d.t * hv..][..d.t * hv];
            let keep = |i: usize, j: usize| {
                (!self.causal || j <= i)
                    && match d.pairs {
                        None => true,
                        Some(false) => cx.inputs[3][b * d.t + j] > 0.5,
                        Some(true) => cx.inputs[3][(b * d.s + i) * d.t + j] > 0.5,
                    }
            };
            let mut y = vec![0.0; d.s * hv];
            for head in 0..h {
                for i in 0..d.s {
                    let mut keys: Vec<usize> = (0..d.t).filter(|&j| keep(i, j)).collect();
                    if keys.is_empty() && self.no_keys == NoKeys::Uniform {
                        keys = (0..d.t).collect();
                    }
                    let score = |j: usize| {
                        let dot: f64 = (0..d.dk)
                            .map(|c| q[i * hk + head * d.dk + c] * k[j * hk + head * d.dk + c])
                            .sum();
                        dot * scale
                    };
                    let sc: Vec<f64> = keys.iter().map(|&j| score(j)).collect();
                    let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = sc.iter().map(|x| (x - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..d.dv {
                        y[i * hv + head * d.dv + c] = keys
                            .iter()
                            .zip(&e)
                            .map(|(&j, p)| p / z * v[j * hv + head * d.dv + c])
                            .sum();
                    }
                }
            }
            out.extend(y);
        }
        Ok(out)
    }
}

/// The attention of each sample of a chunk, one after the other, in the step's scratch.
#[derive(Debug)]
struct AttentionStep {
    heads: usize,
    scale: f32,
    causal: bool,
    no_keys: NoKeys,
    dims: Dims,
}

impl StepOp for AttentionStep {
    fn describe(&self) -> String {
        let d = &self.dims;
        let mask = match d.pairs {
            None => "",
            Some(false) => ", key mask",
            Some(true) => ", query-key mask",
        };
        format!(
            "attention {} heads x (dk {}, dv {}), {} queries x {} keys{}{}",
            self.heads,
            d.dk,
            d.dv,
            d.s,
            d.t,
            if self.causal { ", causal" } else { "" },
            mask,
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let d = AttentionConfig {
            heads: self.heads,
            scale: Some(self.scale),
            causal: self.causal,
            no_keys: self.no_keys,
        }
        .dims(inputs)?;
        Ok(vec![d.s, self.heads * d.dv])
    }
    fn scratch(&self) -> usize {
        let d = &self.dims;
        let mask = match d.pairs {
            None => 0,
            Some(false) => d.t,
            Some(true) => d.s * d.t,
        };
        Attend::scratch_len(d.t, d.dk) + mask
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let d = self.dims;
        let flops = 2 * io.batch() * self.heads * d.s * d.t * (d.dk + d.dv);
        let pool = io.pool(flops);
        let (ins, out, scratch) = io.scratch();
        let hv = self.heads * d.dv;
        let one = self.scratch();
        // Samples split evenly over the threads, each with its own scratch.
        let batch = ins.batch();
        let parts = (scratch.len() / one.max(1)).min(batch).max(1);
        let per = batch.div_ceil(parts);
        let items = out
            .chunks_mut(per * d.s * hv)
            .zip(scratch.chunks_mut(one))
            .enumerate()
            .map(|(p, (o, s))| (p * per, o, s));
        StepIo::for_each(pool, items, |(first, o, s)| {
            self.samples(isa, &ins, first, o, s)
        });
    }
}

impl AttentionStep {
    /// The samples from `first` whose outputs are `out`, in `scratch`.
    fn samples(
        &self,
        isa: Isa,
        ins: &StepInputs<'_>,
        first: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let d = self.dims;
        let (hk, hv) = (self.heads * d.dk, self.heads * d.dv);
        // The sample's mask, as floats, after the kernel's scratch.
        let (scratch, mask) = scratch.split_at_mut(Attend::scratch_len(d.t, d.dk));
        let mask_len = match d.pairs {
            None => 0,
            Some(false) => d.t,
            Some(true) => d.s * d.t,
        };
        let mask = &mut mask[..mask_len];
        for (k, o) in out.chunks_mut(d.s * hv).enumerate() {
            let b = first + k;
            let mask = match d.pairs {
                None => KeyMask::All,
                Some(pairs) => {
                    ins.copy_f32(3, b * mask.len(), mask);
                    if pairs {
                        KeyMask::Pairs(mask)
                    } else {
                        KeyMask::Keys(mask)
                    }
                }
            };
            let a = Attend {
                q: &ins.get(0)[b * d.s * hk..][..d.s * hk],
                k: &ins.get(1)[b * d.t * hk..][..d.t * hk],
                v: &ins.get(2)[b * d.t * hv..][..d.t * hv],
                ldq: hk,
                ldk: hk,
                ldv: hv,
                ldo: hv,
                queries: d.s,
                keys: d.t,
                heads: self.heads,
                dk: d.dk,
                dv: d.dv,
                scale: self.scale,
                causal: self.causal,
                mask,
                no_keys: self.no_keys,
            };
            kernels::attention(isa, &a, o, scratch);
        }
    }
}
