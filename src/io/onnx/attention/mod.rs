//! Attention as exporters spell it out, found and rewritten as one `Attention` node (domain
//! `sinter`) before conversion: the PyTorch exporters' multi-head attention
//!
//! ```text
//! q = Transpose(Reshape(q_proj, [B, S, H, dh]), [0,2,1,3])   (optionally times a scale)
//! k = Transpose(Reshape(k_proj, ..), [0,2,3,1])               (or [0,2,1,3] then [0,1,3,2])
//! p = Softmax(MatMul(q, k) [* or / scale] [+ mask])           (optionally Where(IsNaN(p), 0, p))
//! y = Reshape(Transpose(MatMul(p, v), [0,2,1,3]), [B, S, H*dh])
//! ```
//!
//! becomes `Attention(q_proj, k_proj, v_proj[, mask source])`. The mask added to the scores
//! (an additive float mask, or `Where(keep, 0, -inf)`) is whatever arithmetic the exporter
//! wrote on the model's `attention_mask` input; what it means is established by evaluating it
//! ([`probe`](super::probe)) for probe masks: it must equal "key `j` is kept where the input's
//! `[b, j]` is non-zero" (and, for a causal mask, `j <= i`) on every probe, or the pattern is
//! not rewritten and the graph runs (or is refused) op by op.

use super::convert::{Const, Converter};
use super::probe::{Probe, T};
use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};
use crate::error::Result;
use crate::kernels::NoKeys;
use crate::model::{AttentionConfig, Layer};
use std::collections::HashMap;

mod probed;

/// The domain of the rewritten node.
pub(super) const DOMAIN: &str = "sinter";

/// What the rewrite needs from the loader.
pub(super) struct Context<'a> {
    /// A constant by tensor name (initializers, `Constant` nodes).
    pub consts: &'a dyn Fn(&str) -> Option<&'a Const>,
    /// Decodes a small tensor attribute.
    pub decode: &'a dyn Fn(&TensorProto) -> Option<Const>,
    /// The graph (its inputs' shapes and types).
    pub graph: &'a GraphProto,
    /// Size of a symbolic input axis.
    pub dim: &'a dyn Fn(&str) -> Option<usize>,
}

/// One attention found.
struct Found {
    /// The nodes it replaces; the last one's output is the attention's.
    gone: Vec<usize>,
    last: usize,
    q: String,
    k: String,
    v: String,
    /// How the queries' width splits into heads.
    split: Split,
    /// `None`: `1 / sqrt(dk)`.
    scale: Option<f32>,
    /// The mask tensor added to the scores: (name, a boolean keep-mask rather than additive;
    /// `None`: either, as its values say).
    mask: Option<(String, Option<bool>)>,
    /// The softmax's NaN rows (no key kept) are zeroed in the graph.
    nan_guard: bool,
    /// Causal besides the mask (ONNX `Attention`'s `is_causal`).
    causal: bool,
    /// Nodes that go before the attention (projections rebuilt on batch-first rows).
    pre: Vec<NodeProto>,
    /// Nodes that go after it, the last making `last`'s output (an output projection rebuilt
    /// on the attention's rows); the attention's output is then named `output`.
    post: Vec<NodeProto>,
    output: Option<String>,
}

/// How an attention's query width splits into heads.
#[derive(Clone, Copy)]
enum Split {
    /// Values per head (the heads were reshaped out of the projections).
    HeadSize(i64),
    /// Heads (3-D queries `[N, S, heads * dk]`: the op's `q_num_heads`).
    Heads(i64),
}

/// Readers and producers of the graph's tensors.
struct Index<'n> {
    nodes: &'n [NodeProto],
    producer: HashMap<&'n str, usize>,
    uses: HashMap<&'n str, usize>,
}

impl<'n> Index<'n> {
    fn new(nodes: &'n [NodeProto], outputs: &'n [String]) -> Self {
        let mut producer = HashMap::new();
        let mut uses = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in &n.output {
                producer.insert(o.as_str(), i);
            }
            for x in &n.input {
                *uses.entry(x.as_str()).or_insert(0) += 1;
            }
        }
        for o in outputs {
            *uses.entry(o.as_str()).or_insert(0) += 1;
        }
        Index {
            nodes,
            producer,
            uses,
        }
    }

    /// The producer of `name` if it is an `op` of the default domain.
    fn made_by(&self, name: &str, op: &str) -> Option<usize> {
        let &i = self.producer.get(name)?;
        let n = &self.nodes[i];
        (n.op_type == op && n.domain.is_empty()).then_some(i)
    }

    /// As [`made_by`](Self::made_by), and `name` has no other reader but `Shape` nodes (the
    /// shape arithmetic of reshapes the rewrite removes).
    fn sole(&self, name: &str, op: &str) -> Option<usize> {
        self.made_by(name, op).filter(|_| self.used_once(name))
    }

    /// `name` is read once, besides by `Shape` nodes, and is not a graph output.
    fn used_once(&self, name: &str) -> bool {
        let shapes = self
            .readers(name)
            .iter()
            .filter(|&&r| self.nodes[r].op_type == "Shape")
            .count();
        self.uses.get(name).copied().unwrap_or(0) == shapes + 1
            && self.readers(name).len() == shapes + 1
    }

    /// The readers of `name`.
    fn readers(&self, name: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].input.iter().any(|x| x == name))
            .collect()
    }

    fn out(&self, i: usize) -> &'n str {
        self.nodes[i].output.first().map_or("", String::as_str)
    }
}

fn arg(n: &NodeProto, k: usize) -> &str {
    n.input.get(k).map_or("", String::as_str)
}

fn perm(n: &NodeProto) -> Vec<i64> {
    n.attribute
        .iter()
        .find(|a| a.name == "perm")
        .map(|a| a.ints.clone())
        .unwrap_or_default()
}

/// `x` through an optional `Mul` by a scalar (its factor multiplied into `scale`).
fn scaled<'n>(
    g: &Index<'n>,
    x: &'n str,
    scale: &mut f64,
    cx: &Context<'_>,
    gone: &mut Vec<usize>,
) -> &'n str {
    if let Some(i) = g.sole(x, "Mul") {
        let n = &g.nodes[i];
        for (a, b) in [(0, 1), (1, 0)] {
            if let Some(c) = scalar(cx, arg(n, b)).or_else(|| computed_scalar(g, cx, arg(n, b))) {
                *scale *= f64::from(c);
                gone.push(i);
                return &g.nodes[i].input[a];
            }
        }
    }
    x
}

fn scalar(cx: &Context<'_>, name: &str) -> Option<f32> {
    let c = (cx.consts)(name)?;
    match (c.f32.as_slice(), c.i64.as_slice()) {
        ([v], _) => Some(*v),
        ([], [v]) => Some(*v as f32),
        _ => None,
    }
}

/// A scalar the graph computes from shapes alone (PyTorch's `sqrt(1 / sqrt(head size))`), the
/// same at a shorter sequence, if the graph computes it there at all (a graph that does not
/// runs only at its export length: [`fixed_length`]).
fn computed_scalar(g: &Index<'_>, cx: &Context<'_>, name: &str) -> Option<f32> {
    let at = |shrink: usize| {
        let inputs = probe_inputs_at(cx, None, shrink).into_iter().collect();
        let t = Probe::new(g.nodes, cx.consts, cx.decode, inputs).eval(name)?;
        match t.data.as_deref() {
            Some(&[v]) => Some(v),
            _ => None,
        }
    };
    let v = at(0)?;
    (at(1).is_none_or(|w| w == v) && v.is_finite()).then_some(v as f32)
}

/// Why the graph as written runs only at its export length, if it does: an output whose
/// shape the probe follows at that length but not one position shorter (PyTorch's
/// TorchScript exporter writes the key length of `nn.MultiheadAttention` as a constant).
fn fixed_length(nodes: &[NodeProto], outputs: &[String], cx: &Context<'_>) -> Option<String> {
    let runs = |shrink: usize, name: &str| {
        let inputs = probe_inputs_at(cx, None, shrink).into_iter().collect();
        Probe::new(nodes, cx.consts, cx.decode, inputs)
            .eval(name)
            .is_some()
    };
    outputs.iter().find_map(|o| {
        (runs(0, o) && !runs(1, o)).then(|| {
            format!("the graph computes {o:?} only at its export length (it holds a shape as a constant)")
        })
    })
}

/// The 3-D projection under `Transpose(Reshape(src, [.., .., H, dh]), perm)`; its `dh`.
fn heads_of<'n>(
    g: &Index<'n>,
    x: &'n str,
    want: &[i64],
    cx: &Context<'_>,
    gone: &mut Vec<usize>,
) -> Option<(&'n str, i64)> {
    let t = g.sole(x, "Transpose")?;
    if perm(&g.nodes[t]) != want {
        return None;
    }
    let r = g.sole(arg(&g.nodes[t], 0), "Reshape")?;
    let shape = ints_of(g.nodes, cx, arg(&g.nodes[r], 1))?;
    let dh = match shape.as_slice() {
        [_, _, _, dh] if *dh > 0 => *dh,
        _ => return None,
    };
    gone.extend([t, r]);
    Some((&g.nodes[r].input[0], dh))
}

/// The attention whose softmax is node `sm`, if the nodes around it are the pattern.
fn find(g: &Index<'_>, sm: usize, cx: &Context<'_>) -> Option<Found> {
    let n = &g.nodes[sm];
    if n.op_type != "Softmax" || !n.domain.is_empty() {
        return None;
    }
    let axis = n
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map_or(-1, |a| a.i);
    if axis != -1 && axis != 3 {
        return None;
    }
    let mut gone = vec![sm];
    let mut scale = 1.0f64;
    // Scores [+ mask].
    let mut x = arg(n, 0);
    let mut mask = None;
    if let Some(a) = g.sole(x, "Add") {
        let add = &g.nodes[a];
        let (s, m) = [(0, 1), (1, 0)].into_iter().find_map(|(s, m)| {
            let s = arg(add, s);
            let chain = g
                .made_by(s, "MatMul")
                .or_else(|| g.made_by(s, "Div"))
                .or_else(|| g.made_by(s, "Mul"));
            chain.map(|_| (s, arg(add, m)))
        })?;
        gone.push(a);
        // Where(keep, 0, -large): the boolean keep-mask itself.
        mask = Some(match g.sole(m, "Where") {
            Some(w)
                if scalar(cx, arg(&g.nodes[w], 1)) == Some(0.0)
                    && scalar(cx, arg(&g.nodes[w], 2)).is_some_and(|v| v <= -1e30) =>
            {
                gone.push(w);
                (arg(&g.nodes[w], 0).to_string(), Some(true))
            }
            _ => (m.to_string(), Some(false)),
        });
        x = s;
    }
    loop {
        if let Some(d) = g.sole(x, "Div") {
            let c = scalar(cx, arg(&g.nodes[d], 1))?;
            scale /= f64::from(c);
            gone.push(d);
            x = arg(&g.nodes[d], 0);
        } else if let Some(m) = g.sole(x, "Mul") {
            let mn = &g.nodes[m];
            let (y, c) = match (scalar(cx, arg(mn, 0)), scalar(cx, arg(mn, 1))) {
                (None, Some(c)) => (arg(mn, 0), c),
                (Some(c), None) => (arg(mn, 1), c),
                _ => return None,
            };
            scale *= f64::from(c);
            gone.push(m);
            x = y;
        } else {
            break;
        }
    }
    let mm = g.sole(x, "MatMul")?;
    gone.push(mm);
    let a = scaled(g, arg(&g.nodes[mm], 0), &mut scale, cx, &mut gone);
    let b = scaled(g, arg(&g.nodes[mm], 1), &mut scale, cx, &mut gone);
    // Softmax [-> Where(IsNaN(p), 0, p)] -> MatMul(p, v).
    let mut p = g.out(sm);
    let mut nan_guard = false;
    let readers = g.readers(p);
    if readers.len() == 2 && g.uses.get(p) == Some(&2) {
        let isnan = *readers.iter().find(|&&r| g.nodes[r].op_type == "IsNaN")?;
        let w = *readers.iter().find(|&&r| g.nodes[r].op_type == "Where")?;
        let wn = &g.nodes[w];
        if arg(wn, 0) != g.out(isnan) || scalar(cx, arg(wn, 1)) != Some(0.0) || arg(wn, 2) != p {
            return None;
        }
        if g.uses.get(g.out(isnan)) != Some(&1) {
            return None;
        }
        gone.extend([isnan, w]);
        nan_guard = true;
        p = g.out(w);
    } else if g.uses.get(p) != Some(&1) {
        return None;
    }
    let pv = *g.readers(p).first()?;
    let pvn = &g.nodes[pv];
    if pvn.op_type != "MatMul" || arg(pvn, 0) != p || !g.used_once(g.out(pv)) {
        return None;
    }
    gone.push(pv);
    let core = Core {
        gone,
        q: a,
        kt: b,
        pv,
        scale: scale as f32,
        mask,
        nan_guard,
        name: g.out(sm),
    };
    classic(g, cx, core.clone()).or_else(|| probed::find(g, cx, core))
}

/// What every spelling of an attention shares: the scores' operands (queries, keys
/// transposed; scaled), the `MatMul` by the values, the scale, the mask.
#[derive(Clone)]
struct Core<'n> {
    gone: Vec<usize>,
    q: &'n str,
    kt: &'n str,
    /// The `MatMul(p, v)`.
    pv: usize,
    scale: f32,
    mask: Option<(String, Option<bool>)>,
    nan_guard: bool,
    /// A name the nodes made for it start with.
    name: &'n str,
}

/// The heads as Hugging Face models spell them: `Transpose(Reshape(projection))` into the
/// scores and `Reshape(Transpose(heads))` after.
fn classic(g: &Index<'_>, cx: &Context<'_>, core: Core<'_>) -> Option<Found> {
    let Core {
        mut gone,
        q: a,
        kt: b,
        pv,
        scale,
        mask,
        nan_guard,
        ..
    } = core;
    let (q, dh) = heads_of(g, a, &[0, 2, 1, 3], cx, &mut gone)?;
    let (k, dk) = match heads_of(g, b, &[0, 2, 3, 1], cx, &mut gone) {
        Some(k) => k,
        None => {
            // Transpose [0,1,3,2] of the [B, H, S, dh] keys, or (the dynamo exporter) the
            // same through 3-D: Reshape [B*H, S, dh], Transpose [0,2,1], Reshape back.
            let t = g.sole(b, "Transpose");
            let under = match t {
                Some(t) if perm(&g.nodes[t]) == [0, 1, 3, 2] => {
                    gone.push(t);
                    arg(&g.nodes[t], 0)
                }
                _ => {
                    let r4 = g.sole(b, "Reshape")?;
                    let t3 = g.sole(arg(&g.nodes[r4], 0), "Transpose")?;
                    let r3 = g.sole(arg(&g.nodes[t3], 0), "Reshape")?;
                    if perm(&g.nodes[t3]) != [0, 2, 1]
                        || ints_of(g.nodes, cx, arg(&g.nodes[r4], 1))?.len() != 4
                    {
                        return None;
                    }
                    gone.extend([r4, t3, r3]);
                    arg(&g.nodes[r3], 0)
                }
            };
            heads_of(g, under, &[0, 2, 1, 3], cx, &mut gone)?
        }
    };
    let (v, _) = heads_of(g, arg(&g.nodes[pv], 1), &[0, 2, 1, 3], cx, &mut gone)?;
    let last = merge_heads(g, g.out(pv), cx, &mut gone)?;
    if dh != dk {
        return None;
    }
    Some(Found {
        gone,
        last,
        q: q.to_string(),
        k: k.to_string(),
        v: v.to_string(),
        split: Split::HeadSize(dh),
        scale: Some(scale),
        mask,
        nan_guard,
        causal: false,
        pre: Vec::new(),
        post: Vec::new(),
        output: None,
    })
}

/// `[Reshape to the same 4-D] -> Transpose [0,2,1,3] -> Reshape to 3-D` after the heads'
/// outputs `y`: the last node, whose output is the attention's.
fn merge_heads(g: &Index<'_>, y: &str, cx: &Context<'_>, gone: &mut Vec<usize>) -> Option<usize> {
    let not_shape = |y: &str| {
        g.readers(y)
            .into_iter()
            .find(|&r| g.nodes[r].op_type != "Shape")
    };
    let mut y = y;
    let mut next = not_shape(y)?;
    if g.nodes[next].op_type == "Reshape" && g.used_once(g.out(next)) {
        gone.push(next);
        y = g.out(next);
        next = not_shape(y)?;
    }
    let t = next;
    let tn = &g.nodes[t];
    if tn.op_type != "Transpose"
        || arg(tn, 0) != y
        || perm(tn) != [0, 2, 1, 3]
        || !g.used_once(g.out(t))
    {
        return None;
    }
    gone.push(t);
    let last = not_shape(g.out(t))?;
    let ln = &g.nodes[last];
    if ln.op_type != "Reshape" || arg(ln, 0) != g.out(t) {
        return None;
    }
    (ints_of(g.nodes, cx, arg(ln, 1))?.len() == 3).then_some(last)
}

/// ONNX's own `Attention` (opset 23, as the dynamo exporter writes `scaled_dot_product_attention`)
/// on 4-D heads: `Transpose(Reshape(proj))` in, `Reshape(Transpose(out))` after; or on 3-D
/// inputs `[N, S, heads * dk]` (`q_num_heads` = `kv_num_heads`), read as they are.
fn find_op(g: &Index<'_>, at: usize, cx: &Context<'_>) -> Option<Found> {
    let n = &g.nodes[at];
    if n.op_type != "Attention" || !n.domain.is_empty() || n.output.len() != 1 {
        return None;
    }
    let attr = |k: &str| n.attribute.iter().find(|a| a.name == k);
    let int = |k: &str| attr(k).map_or(0, |a| a.i);
    if int("qk_matmul_output_mode") != 0
        || attr("softcap").is_some_and(|a| a.f != 0.0)
        || !(3..=4).contains(&n.input.len())
        || n.input.iter().skip(4).any(|i| !i.is_empty())
    {
        return None;
    }
    let mask = Some(arg(n, 3))
        .filter(|m| !m.is_empty())
        .map(|m| (m.to_string(), None));
    let mut gone = Vec::new();
    let ((q, k, v), split, last) = match attr("q_num_heads") {
        // 3-D inputs, read as they are; grouped keys (fewer key heads) are not read.
        Some(h) => {
            if h.i <= 0 || attr("kv_num_heads").map(|a| a.i) != Some(h.i) {
                return None;
            }
            ((arg(n, 0), arg(n, 1), arg(n, 2)), Split::Heads(h.i), at)
        }
        None => {
            let (q, dh) = heads_of(g, arg(n, 0), &[0, 2, 1, 3], cx, &mut gone)?;
            let (k, dk) = heads_of(g, arg(n, 1), &[0, 2, 1, 3], cx, &mut gone)?;
            let (v, _) = heads_of(g, arg(n, 2), &[0, 2, 1, 3], cx, &mut gone)?;
            if dh != dk || !g.used_once(g.out(at)) {
                return None;
            }
            let last = merge_heads(g, g.out(at), cx, &mut gone)?;
            gone.push(at);
            ((q, k, v), Split::HeadSize(dh), last)
        }
    };
    Some(Found {
        gone,
        last,
        q: q.to_string(),
        k: k.to_string(),
        v: v.to_string(),
        split,
        // Without one, 1 / sqrt(head size), as the layer's default.
        scale: attr("scale").map(|a| a.f),
        mask,
        // PyTorch's scaled_dot_product_attention, which the op stands for, gives a query
        // whose keys are all masked zeros.
        nan_guard: true,
        causal: int("is_causal") != 0,
        pre: Vec::new(),
        post: Vec::new(),
        output: None,
    })
}

/// The graph inputs as the probes see them: batch 2, symbolic axes at their given sizes;
/// `data` for the one named `with` (else shapes only).
pub(super) fn probe_inputs(cx: &Context<'_>, with: Option<(&str, &[f64])>) -> Vec<(String, T)> {
    probe_inputs_at(cx, with, 0)
}

/// As [`probe_inputs`], each symbolic axis but the batch `shrink` shorter (at least 1).
fn probe_inputs_at(
    cx: &Context<'_>,
    with: Option<(&str, &[f64])>,
    shrink: usize,
) -> Vec<(String, T)> {
    cx.graph
        .input
        .iter()
        .filter(|i| (cx.consts)(&i.name).is_none())
        .filter_map(|i| {
            let tt = i.r#type.as_ref()?.tensor_type.as_ref()?;
            let dims = tt.shape.as_ref()?.dim.iter().enumerate().map(|(k, d)| {
                match (d.dim_value, &d.dim_param) {
                    _ if k == 0 => Some(PROBE_BATCH),
                    (Some(v), _) if v > 0 => usize::try_from(v).ok(),
                    (_, Some(p)) => (cx.dim)(p).map(|d| d.saturating_sub(shrink).max(1)),
                    _ => None,
                }
            });
            let dims = dims.collect::<Option<Vec<_>>>()?;
            let int = !matches!(tt.elem_type, 1 | 10 | 11);
            // Integer inputs hold ones (valid ids, a mask that keeps everything) unless
            // probed: shapes downstream may go through their values (a mask's Gather).
            let n: usize = dims.iter().product();
            let data = match with {
                Some((name, d)) if name == i.name => Some(d.to_vec()),
                _ => int.then(|| vec![1.0; n]),
            };
            Some((i.name.clone(), T { dims, data, int }))
        })
        .collect()
}

/// The batch size of the probes.
const PROBE_BATCH: usize = 2;

/// An integer tensor the graph computes from shapes alone (a reshape's target shape).
fn ints_of(nodes: &[NodeProto], cx: &Context<'_>, name: &str) -> Option<Vec<i64>> {
    if let Some(c) = (cx.consts)(name) {
        return c.f32.is_empty().then(|| c.i64.clone());
    }
    let mut p = Probe::new(
        nodes,
        cx.consts,
        cx.decode,
        probe_inputs(cx, None).into_iter().collect(),
    );
    let t = p.eval(name)?;
    t.data
        .filter(|_| t.int)
        .map(|d| d.iter().map(|&v| v as i64).collect())
}

/// What a mask added to the scores means, proven on probes.
struct Meaning {
    /// The graph input it is computed from (`None`: from shapes alone, a causal mask).
    input: Option<String>,
    /// Causal besides.
    causal: bool,
    /// The input marks padding (a key is dropped where it is non-zero: PyTorch's
    /// `key_padding_mask`) rather than keeping.
    pads: bool,
    /// The additive mask drops a key with minus infinity (a query without keys is NaN), not a
    /// finite large negative number (one that averages every value).
    infinite: bool,
}

/// What the mask means, proven on probes.
fn mask_meaning(
    nodes: &[NodeProto],
    cx: &Context<'_>,
    mask: &str,
    boolean: bool,
) -> Option<Meaning> {
    const BATCH: usize = PROBE_BATCH;
    let inputs: Vec<(String, Vec<usize>, i32)> = probe_inputs(cx, None)
        .into_iter()
        .map(|(n, t)| (n, t.dims, if t.int { 7 } else { 1 }))
        .collect();
    let float = |t: i32| matches!(t, 1 | 10 | 11);
    for (cand, dims, _) in inputs.iter().filter(|(_, d, t)| !float(*t) && d.len() == 2) {
        let t_len = dims[1];
        // The mask computed for each probe: all kept; a kept prefix; random holes; a row
        // that keeps only its last key.
        let mut probes = Vec::new();
        for probe in 0..4u64 {
            let mut m = vec![0.0; BATCH * t_len];
            let mut r = crate::model::init::SplitMix64::new(probe + 17);
            for b in 0..BATCH {
                let len = 1 + (r.next_u64() as usize % t_len);
                for j in 0..t_len {
                    m[b * t_len + j] = f64::from(u8::from(match probe {
                        0 => true,
                        1 => j < len,
                        2 => j == 0 || !r.next_u64().is_multiple_of(3),
                        _ => b == 0 || j + 1 == t_len,
                    }));
                }
            }
            let values = probe_inputs(cx, Some((cand, &m))).into_iter().collect();
            let mut p = Probe::new(nodes, cx.consts, cx.decode, values);
            match p.eval(mask) {
                Some(T {
                    dims,
                    data: Some(data),
                    ..
                }) => probes.push((m, dims, data)),
                _ => break,
            }
        }
        if probes.len() < 4 {
            continue;
        }
        // Each probe's mask must read [B, 1|H, 1|S, T] (or a lower rank broadcast to it).
        let keeps = |c: bool, pads: bool| {
            probes.iter().all(|(m, rd, data)| {
                if rd.len() > 4 || rd.last() != Some(&t_len) {
                    return false;
                }
                let mut d4 = vec![1; 4 - rd.len()];
                d4.extend(rd);
                let (nb, nh, ns) = (d4[0], d4[1], d4[2]);
                if nb != BATCH && nb != 1 {
                    return false;
                }
                let s_len = if ns == 1 { t_len } else { ns };
                (0..BATCH).all(|b| {
                    (0..nh).all(|h| {
                        (0..s_len).all(|i| {
                            (0..t_len).all(|j| {
                                let bb = if nb == 1 { 0 } else { b };
                                let ii = if ns == 1 { 0 } else { i };
                                let v = data[((bb * nh + h) * ns + ii) * t_len + j];
                                let keep = match (boolean, v) {
                                    (true, v) => v != 0.0,
                                    (false, 0.0) => true,
                                    (false, v) if v <= -1e30 => false,
                                    _ => return false,
                                };
                                keep == ((m[b * t_len + j] != 0.0) != pads && (!c || j <= i))
                            })
                        })
                    })
                })
            })
        };
        for pads in [false, true] {
            for causal in [false, true] {
                if keeps(causal, pads) {
                    let infinite = probes
                        .iter()
                        .any(|(_, _, d)| d.contains(&f64::NEG_INFINITY));
                    return Some(Meaning {
                        input: Some(cand.clone()),
                        causal,
                        pads,
                        infinite,
                    });
                }
            }
        }
    }
    causal_from_shapes(nodes, cx, mask, boolean)
}

/// A mask computed from no input's values (every input followed by shape alone) that drops
/// exactly the later keys: PyTorch's `is_causal`, written with `Trilu`.
fn causal_from_shapes(
    nodes: &[NodeProto],
    cx: &Context<'_>,
    mask: &str,
    boolean: bool,
) -> Option<Meaning> {
    let inputs = probe_inputs(cx, None)
        .into_iter()
        .map(|(n, t)| (n, T::shape(t.dims)))
        .collect();
    let t = Probe::new(nodes, cx.consts, cx.decode, inputs).eval(mask)?;
    let data = t.data?;
    let &[.., s, k] = t.dims.as_slice() else {
        return None;
    };
    if s != k || s == 0 || data.len() % (s * k) != 0 {
        return None;
    }
    let causal = data.chunks_exact(s * k).all(|m| {
        (0..s).all(|i| {
            (0..k).all(|j| {
                let keep = match (boolean, m[i * k + j]) {
                    (true, v) => v != 0.0,
                    (false, 0.0) => true,
                    (false, v) if v <= -1e30 => false,
                    _ => return false,
                };
                keep == (j <= i)
            })
        })
    });
    causal.then_some(Meaning {
        input: None,
        causal: true,
        pads: false,
        infinite: false,
    })
}

/// Rewrites every attention in `nodes` whose mask (if any) is proven; returns the nodes, how
/// many were rewritten and, when the rewrite dropped moves that hold the export's sequence
/// length, why the length stays fixed.
pub(super) fn rewrite(
    nodes: Vec<NodeProto>,
    outputs: &[String],
    cx: &Context<'_>,
) -> (Vec<NodeProto>, usize, Option<String>) {
    let mut found = Vec::new();
    {
        let g = Index::new(&nodes, outputs);
        let mut taken = vec![false; nodes.len()];
        for i in 0..nodes.len() {
            let Some(f) = find(&g, i, cx).or_else(|| find_op(&g, i, cx)) else {
                continue;
            };
            if f.gone.iter().chain([&f.last]).any(|&j| taken[j]) {
                continue;
            }
            let mask = match &f.mask {
                None => None,
                Some((m, boolean)) => {
                    let meaning = |b: bool| mask_meaning(&nodes, cx, m, b);
                    let found = match boolean {
                        Some(b) => meaning(*b),
                        None => meaning(true).or_else(|| meaning(false)),
                    };
                    match found {
                        Some(meaning) => Some(meaning),
                        None => continue,
                    }
                }
            };
            // A query that sees no key: NaN in the softmax unless the graph zeroes it; an
            // additive mask of a finite large negative gives equal scores, so the mean.
            let infinite = mask.as_ref().is_some_and(|m| m.infinite);
            let no_keys = match (&f.mask, f.nan_guard) {
                (_, true) => "zeros",
                (Some((_, Some(false))), false) if infinite => "nan",
                (Some((_, Some(false))), false) => "uniform",
                (None, false) => "zeros",
                (Some(_), false) => continue,
            };
            for &j in f.gone.iter().chain([&f.last]) {
                taken[j] = true;
            }
            found.push((f, mask, no_keys));
        }
    }
    let n = found.len();
    let probed = found
        .iter()
        .any(|(f, _, _)| !f.pre.is_empty() || !f.post.is_empty());
    let fixed = probed.then(|| fixed_length(&nodes, outputs, cx)).flatten();
    let mut remove = vec![false; nodes.len()];
    // What replaces each attention's last node.
    let mut replace: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    for (f, mask, no_keys) in found {
        let old = &nodes[f.last];
        let mut inputs = vec![f.q, f.k, f.v];
        let mut attrs = vec![
            match f.split {
                Split::HeadSize(d) => int_attr("head_size", d),
                Split::Heads(h) => int_attr("heads", h),
            },
            AttributeProto {
                name: "no_keys".into(),
                s: no_keys.as_bytes().to_vec(),
                ..Default::default()
            },
        ];
        attrs.extend(f.scale.map(|f| AttributeProto {
            name: "scale".into(),
            f,
            ..Default::default()
        }));
        let mut causal = f.causal;
        if let Some(m) = mask {
            if let Some(input) = m.input {
                inputs.push(input);
                attrs.push(int_attr("mask_pads", i64::from(m.pads)));
            }
            causal |= m.causal;
        }
        attrs.push(int_attr("causal", i64::from(causal)));
        let attention = NodeProto {
            input: inputs,
            output: f.output.map_or_else(|| old.output.clone(), |o| vec![o]),
            name: old.name.clone(),
            op_type: "Attention".into(),
            attribute: attrs,
            domain: DOMAIN.into(),
        };
        let mut with = f.pre;
        with.push(attention);
        with.extend(f.post);
        replace.insert(f.last, with);
        for j in f.gone {
            remove[j] = true;
        }
    }
    let nodes = nodes
        .into_iter()
        .enumerate()
        .zip(remove)
        .filter(|(_, r)| !r)
        .flat_map(|((i, n), _)| replace.remove(&i).unwrap_or_else(|| vec![n]))
        .collect();
    (nodes, n, fixed)
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        ..Default::default()
    }
}

/// Converts a rewritten `sinter` `Attention`: the projections `[S, heads * dh]`, the mask
/// source (a model input `[T]`, kept where non-zero).
pub(super) fn convert(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let q = cx.input_node(node, 0)?;
    let k = cx.input_node(node, 1)?;
    let v = cx.input_node(node, 2)?;
    let width = cx.nodes[q].shape.last().copied().unwrap_or(0);
    // The head size, or (3-D inputs) the number of heads.
    let dh = match cx.attr_i(node, "heads")? {
        Some(h) => usize::try_from(h)
            .ok()
            .filter(|&h| h > 0 && width % h == 0)
            .map(|h| width / h),
        None => cx
            .attr_i(node, "head_size")?
            .and_then(|d| usize::try_from(d).ok()),
    };
    let dh = dh.filter(|&d| d > 0 && width % d == 0).ok_or_else(|| {
        cx.invalid(
            node,
            format!("heads or head size do not divide the query width {width}"),
        )
    })?;
    let scale = cx.attr_f(node, "scale")?;
    let no_keys = match cx.attr_s(node, "no_keys")?.as_deref() {
        Some("uniform") => NoKeys::Uniform,
        Some("nan") => NoKeys::Nan,
        _ => NoKeys::Zeros,
    };
    let causal = cx.attr_i(node, "causal")?.unwrap_or(0) != 0;
    let mask_pads = cx.attr_i(node, "mask_pads")?.unwrap_or(0) != 0;
    let mut inputs = vec![q, k, v];
    if node.input.len() > 3 {
        let m = cx.input_node(node, 3)?;
        if cx.nodes[m].layer != Layer::Input {
            return Err(cx.unsupported(node, "the attention mask must be a model input"));
        }
        inputs.push(m);
    }
    let layer = Layer::Attention(AttentionConfig {
        heads: width / dh,
        scale,
        causal,
        no_keys,
        mask_pads,
    });
    let shape = cx.nodes[q].shape.clone();
    let shape = vec![
        shape.first().copied().unwrap_or(1),
        cx.nodes[v].shape.last().copied().unwrap_or(0),
    ];
    cx.push(cx.output(node)?, layer, inputs, shape, None);
    Ok(())
}
