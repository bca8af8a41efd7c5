//! Scaled dot-product attention over heads: `softmax(q · kᵀ · scale) · v` per head, each
//! query seeing only the keys its mask keeps (and, when causal, no later key). The core of
//! Keras's `MultiHeadAttention` (whose projections are Dense layers around it), of the
//! attention PyTorch and Hugging Face models spell out op by op, and of ONNX's `Attention`.

use super::{LayerOp, Lowering, Reference};
use crate::error::Result;
use crate::kernels::{self, Attend, Isa, KeyMask, NoKeys};
use crate::model::{DType, checked_elems};
use crate::passes::Op;
use crate::plan::{Padding, StepInputs, StepIo, StepOp, StepRef};

/// An attention layer's configuration. Inputs: queries `[S, heads * dk]`, keys
/// `[T, heads * dk]`, values `[T, heads * dv]`, and optionally a mask that keeps a key where it
/// is above one half: `[T]` or `[1, T]` (per key) or `[S, T]` (per query and key), or two
/// token masks `[S]` and `[T]` (Keras's query and value masks: query `i` sees key `j` where
/// both are above one half). Output: `[S, heads * dv]`. A query that sees no key gets what
/// `no_keys` says.
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
    /// The mask marks padding rather than keeping: a key is dropped where it is above one
    /// half (PyTorch's `key_padding_mask`, where true means padding).
    pub mask_pads: bool,
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
    /// The query-key mask is made of a query mask `[S]` and a key mask `[T]` (inputs 3, 4).
    tokens: bool,
}

impl AttentionConfig {
    fn dims(&self, inputs: &[&[usize]]) -> Result<Dims, String> {
        let h = self.heads;
        if h == 0 {
            return Err("attention needs at least one head".into());
        }
        let (q, k, v, mask, tokens) = match inputs {
            [q, k, v] => (q, k, v, None, false),
            [q, k, v, m] => (q, k, v, Some(m), false),
            [q, k, v, qm, km] if qm.len() == 1 && km[..] == [k.first().copied().unwrap_or(0)] => {
                if qm[..] != [q.first().copied().unwrap_or(0)] {
                    return Err(format!("a query mask {qm:?} for queries {q:?}"));
                }
                (q, k, v, None, true)
            }
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
            pairs: if tokens { Some(true) } else { pairs },
            tokens,
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
        Attend::scratch_len(d.t, d.dk, d.dv)
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
            mask_pads: self.mask_pads,
            dims,
            packed: false,
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
            let on = |m: f64| (m > 0.5) != self.mask_pads;
            let keep = |i: usize, j: usize| {
                (!self.causal || j <= i)
                    && match d.pairs {
                        None => true,
                        _ if d.tokens => {
                            cx.inputs[3][b * d.s + i] > 0.5 && cx.inputs[4][b * d.t + j] > 0.5
                        }
                        Some(false) => on(cx.inputs[3][b * d.t + j]),
                        Some(true) => on(cx.inputs[3][(b * d.s + i) * d.t + j]),
                    }
            };
            let mut y = vec![0.0; d.s * hv];
            for head in 0..h {
                for i in 0..d.s {
                    let mut keys: Vec<usize> = (0..d.t).filter(|&j| keep(i, j)).collect();
                    if keys.is_empty() && self.no_keys == NoKeys::Uniform {
                        keys = (0..d.t).collect();
                    }
                    if keys.is_empty() && self.no_keys == NoKeys::Nan {
                        y[i * hv + head * d.dv..][..d.dv].fill(f64::NAN);
                        continue;
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
#[derive(Clone, Debug)]
struct AttentionStep {
    heads: usize,
    scale: f32,
    causal: bool,
    no_keys: NoKeys,
    mask_pads: bool,
    dims: Dims,
    /// Queries, keys and values are one input `[S, 2 * heads * dk + heads * dv]`, side by
    /// side (one GEMM computed them: `passes::FuseQkv`); the masks follow it.
    packed: bool,
}

impl StepOp for AttentionStep {
    fn describe(&self) -> String {
        let d = &self.dims;
        let mask = match d.pairs {
            None => "",
            _ if d.tokens => ", query and key token masks",
            Some(false) => ", key mask",
            Some(true) => ", query-key mask",
        };
        format!(
            "attention {} heads x (dk {}, dv {}), {} queries x {} keys{}{}{}",
            self.heads,
            d.dk,
            d.dv,
            d.s,
            d.t,
            if self.causal { ", causal" } else { "" },
            mask,
            if self.packed {
                ", q k v packed (one GEMM)"
            } else {
                ""
            },
        )
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let config = AttentionConfig {
            heads: self.heads,
            scale: Some(self.scale),
            causal: self.causal,
            no_keys: self.no_keys,
            mask_pads: self.mask_pads,
        };
        let d = match (self.packed, inputs) {
            (false, _) => config.dims(inputs)?,
            (true, [x, rest @ ..]) => {
                let (hk, hv) = self.widths();
                let &[s, w] = &x[..] else {
                    return Err(format!(
                        "packed queries, keys and values are [S, W], got {x:?}"
                    ));
                };
                if w != 2 * hk + hv {
                    return Err(format!(
                        "packed queries, keys and values {x:?} are not {hk} + {hk} + {hv} wide"
                    ));
                }
                let (q, v) = ([s, hk], [s, hv]);
                let mut all: Vec<&[usize]> = vec![&q, &q, &v];
                all.extend_from_slice(rest);
                config.dims(&all)?
            }
            (true, []) => return Err("attention without inputs".into()),
        };
        Ok(vec![d.s, self.heads * d.dv])
    }
    fn scratch(&self) -> usize {
        let d = &self.dims;
        // The kernel's scratch, the sample's mask as floats and, when the heads of one sample
        // are split over threads, a group's output.
        Attend::scratch_len(d.t, d.dk, d.dv) + self.mask_len() + d.s * self.heads * d.dv
    }
    fn seq(&self, ins: &[bool]) -> Result<bool, String> {
        let unpacked: Vec<bool>;
        let ins = match self.packed {
            true => {
                unpacked = [&[ins[0]; 3][..], &ins[1..]].concat();
                &unpacked[..]
            }
            false => ins,
        };
        let keys = ins[1];
        // Token masks follow their queries and keys; any other mask, the keys.
        let masks = match self.dims.tokens {
            true => ins[3] == ins[0] && ins[4] == keys,
            false => ins.get(3).is_none_or(|&m| m == keys),
        };
        if ins[2] != keys || !masks {
            return Err("keys, values and mask of which only some follow the sequence".into());
        }
        if keys && self.dims.pairs == Some(true) && !self.dims.tokens {
            return Err("a query-key mask needs a fixed sequence length".into());
        }
        if self.causal && ins[0] != keys {
            return Err("causal attention of a fixed and a variable sequence".into());
        }
        Ok(ins[0])
    }
    fn padding(&self) -> Padding {
        match (self.causal, self.dims.pairs, self.no_keys) {
            // A query sees no later key (and always one key, itself, without a mask).
            (true, None, _) | (true, Some(false), NoKeys::Zeros | NoKeys::Nan) => Padding::Exact,
            // Padded keys are masked; a query left without keys gets zeros either way (a
            // uniform average would count the padding).
            (_, Some(false), NoKeys::Zeros | NoKeys::Nan) => Padding::MaskedBy {
                input: self.mask_input(),
                one: self.mask_pads,
            },
            _ => Padding::Changes,
        }
    }
    fn with_packed_qkv(&self) -> Option<StepRef> {
        // Self-attention only: one input's rows are the queries and the keys.
        (!self.packed && self.dims.s == self.dims.t).then(|| {
            StepRef::new(AttentionStep {
                packed: true,
                ..self.clone()
            })
        })
    }
    fn run(&self, isa: Isa, io: StepIo<'_>) {
        let max = self.dims;
        // The run's queries and keys (fewer than the plan's when they follow the sequence).
        let (hk, hv) = self.widths();
        let d = match self.packed {
            true => {
                let rows = io.input_len(0) / (2 * hk + hv).max(1);
                Dims {
                    s: rows,
                    t: rows,
                    ..max
                }
            }
            false => Dims {
                s: io.input_len(0) / hk.max(1),
                t: io.input_len(1) / hk.max(1),
                ..max
            },
        };
        let flops = 2 * io.batch() * self.heads * d.s * d.t * (d.dk + d.dv);
        let pool = io.pool(flops);
        let (ins, out, scratch) = io.scratch();
        let one = self.scratch();
        if d.s == 0 || hv == 0 {
            return;
        }
        let batch = ins.batch();
        let threads = if pool.is_some() {
            scratch.len() / one.max(1)
        } else {
            1
        };
        if batch >= threads || self.heads == 1 {
            // Samples split evenly over the threads, each with its own scratch.
            let parts = threads.min(batch).max(1);
            let per = batch.div_ceil(parts);
            let items = out
                .chunks_mut(per * d.s * hv)
                .zip(scratch.chunks_mut(one))
                .enumerate()
                .map(|(p, (o, s))| (p * per, o, s));
            StepIo::for_each(pool, items, |(first, o, s)| {
                for (k, o) in o.chunks_mut(d.s * hv).enumerate() {
                    self.heads_of(isa, (&ins, d), first + k, 0..self.heads, o, s);
                }
            });
            return;
        }
        // Fewer samples than threads: each sample's heads in groups, one per thread, each
        // written to its scratch, then into place.
        let groups = threads.min(self.heads);
        let per = self.heads.div_ceil(groups);
        for (b, o) in out.chunks_mut(d.s * hv).enumerate() {
            let items = scratch
                .chunks_mut(one)
                .take(groups)
                .enumerate()
                .map(|(g, s)| (g * per..((g + 1) * per).min(self.heads), s));
            StepIo::for_each(pool, items, |(heads, s)| {
                let w = heads.len() * d.dv;
                let (work, y) = s.split_at_mut(one - max.s * hv);
                self.heads_of(isa, (&ins, d), b, heads, &mut y[..d.s * w], work);
            });
            for (g, s) in scratch.chunks(one).take(groups).enumerate() {
                let heads = g * per..((g + 1) * per).min(self.heads);
                let w = heads.len() * d.dv;
                let y = &s[one - max.s * hv..][..d.s * w];
                for (row, part) in o.chunks_mut(hv).zip(y.chunks(w)) {
                    row[heads.start * d.dv..][..w].copy_from_slice(part);
                }
            }
        }
    }
}

impl AttentionStep {
    /// Widths of all heads' queries (and keys), and of all heads' values.
    fn widths(&self) -> (usize, usize) {
        (self.heads * self.dims.dk, self.heads * self.dims.dv)
    }

    /// The step input holding the (first) mask.
    fn mask_input(&self) -> usize {
        if self.packed { 1 } else { 3 }
    }

    /// Values of the mask one sample reads (at the plan's longest sequence).
    fn mask_len(&self) -> usize {
        Self::mask_of(&self.dims)
    }

    /// Values of the mask one sample of `d` reads.
    fn mask_of(d: &Dims) -> usize {
        match d.pairs {
            None => 0,
            // The pairs, made from the two token masks read beside them.
            _ if d.tokens => d.s * d.t + d.s + d.t,
            Some(false) => d.t,
            Some(true) => d.s * d.t,
        }
    }

    /// Heads `heads` of sample `b` into `out` (its rows `heads.len() * dv` wide), in
    /// `scratch`.
    fn heads_of(
        &self,
        isa: Isa,
        (ins, d): (&StepInputs<'_>, Dims),
        b: usize,
        heads: std::ops::Range<usize>,
        out: &mut [f32],
        scratch: &mut [f32],
    ) {
        let (hk, hv) = (self.heads * d.dk, self.heads * d.dv);
        let m0 = self.mask_input();
        let (scratch, rest) = scratch.split_at_mut(Attend::scratch_len(self.dims.t, d.dk, d.dv));
        let mask = &mut rest[..Self::mask_of(&d)];
        let mask = match d.pairs {
            None => KeyMask::All,
            _ if d.tokens => {
                let (pairs, masks) = mask.split_at_mut(d.s * d.t);
                let (qm, km) = masks.split_at_mut(d.s);
                ins.copy_f32(m0, b * d.s, qm);
                ins.copy_f32(m0 + 1, b * d.t, km);
                for (row, &q) in pairs.chunks_exact_mut(d.t.max(1)).zip(qm.iter()) {
                    for (p, &k) in row.iter_mut().zip(km.iter()) {
                        *p = f32::from(u8::from(q > 0.5 && k > 0.5));
                    }
                }
                KeyMask::Pairs(pairs)
            }
            Some(pairs) => {
                ins.copy_f32(m0, b * mask.len(), mask);
                if self.mask_pads {
                    mask.iter_mut()
                        .for_each(|m| *m = f32::from(u8::from(!kernels::kept(*m))));
                }
                if pairs {
                    KeyMask::Pairs(mask)
                } else {
                    KeyMask::Keys(mask)
                }
            }
        };
        // Each operand from its sample's first row and this group's first head, at its row
        // stride: three inputs, or three column blocks of one.
        let ((q, k, v), (ldq, ldk, ldv)) = match self.packed {
            true => {
                let w = 2 * hk + hv;
                let x = &ins.get(0)[b * d.s * w..(b + 1) * d.s * w];
                let at = |col: usize| x.get(col..).unwrap_or_default();
                (
                    (
                        at(heads.start * d.dk),
                        at(hk + heads.start * d.dk),
                        at(2 * hk + heads.start * d.dv),
                    ),
                    (w, w, w),
                )
            }
            false => (
                (
                    &ins.get(0)[b * d.s * hk + heads.start * d.dk..(b + 1) * d.s * hk],
                    &ins.get(1)[b * d.t * hk + heads.start * d.dk..(b + 1) * d.t * hk],
                    &ins.get(2)[b * d.t * hv + heads.start * d.dv..(b + 1) * d.t * hv],
                ),
                (hk, hk, hv),
            ),
        };
        let a = Attend {
            q,
            k,
            v,
            ldq,
            ldk,
            ldv,
            ldo: heads.len() * d.dv,
            queries: d.s,
            keys: d.t,
            heads: heads.len(),
            dk: d.dk,
            dv: d.dv,
            scale: self.scale,
            causal: self.causal,
            mask,
            no_keys: self.no_keys,
        };
        kernels::attention(isa, &a, out, scratch);
    }
}
