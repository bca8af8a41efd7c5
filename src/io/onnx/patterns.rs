//! Load-time rewrites of the subgraphs exporters write for one activation or normalization,
//! each a named pattern, so that the op fuses into the producing GEMM's epilogue like any
//! activation instead of running as four to ten elementwise passes:
//!
//! - `silu`: `Mul(x, Sigmoid(x))` (both PyTorch exporters) -> `Swish` (alpha 1).
//! - `hard_swish`: `Mul(x, HardSigmoid(x, 1/6, 1/2))` -> `HardSwish`.
//! - `gelu_erf`: `Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)` and its orderings (PyTorch
//!   below opset 20) -> `Gelu`.
//! - `gelu_tanh`: `0.5 x (1 + Tanh(sqrt(2/pi) (x + 0.044715 x^3)))` as PyTorch writes it ->
//!   `Gelu(approximate="tanh")`.
//! - `layer_norm`: `ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div` over the last axis
//!   (PyTorch below opset 17, many hand-written graphs) -> `LayerNormalization` (a following
//!   per-channel `Mul`/`Add` stays a separate affine, which fuses after it).
//! - `layer_norm_tf2onnx`: tf2onnx's Keras LayerNormalization: the input reshaped to
//!   `[1, -1, C, 1]` so that each sample is a batch-normalization channel, mean and variance
//!   computed in the graph, a `BatchNormalization` with them, and a reshape back ->
//!   `LayerNormalization` without scale and bias.
//!
//! A pattern matches only when every intermediate tensor is used by the pattern alone and its
//! constants are the textbook ones (within 1e-6 relative); anything else is left as it is and
//! runs op by op, with the same answer up to rounding.

use super::proto::{AttributeProto, NodeProto};

/// Reads a constant scalar by tensor name (an initializer or a `Constant` node's value).
pub(super) type Scalar<'a> = &'a dyn Fn(&str) -> Option<f32>;

/// Reads a constant integer vector by tensor name.
pub(super) type Ints<'a> = &'a dyn Fn(&str) -> Option<Vec<i64>>;

/// The graph being rewritten: nodes in topological order, with the producer and the number
/// of readers of every tensor.
struct Graph<'n> {
    nodes: &'n [NodeProto],
    removed: Vec<bool>,
    replaced: Vec<Option<NodeProto>>,
    outputs: &'n [String],
}

impl Graph<'_> {
    fn producer(&self, name: &str) -> Option<usize> {
        if name.is_empty() {
            return None;
        }
        self.nodes
            .iter()
            .enumerate()
            .position(|(i, n)| !self.removed[i] && n.output.first().is_some_and(|o| o == name))
    }

    /// Node `i` as it is now (rewritten or not).
    fn live(&self, i: usize) -> &NodeProto {
        self.replaced[i].as_ref().unwrap_or(&self.nodes[i])
    }

    fn uses(&self, name: &str) -> usize {
        let by_nodes = (0..self.nodes.len())
            .filter(|&i| !self.removed[i])
            .map(|i| self.live(i).input.iter().filter(|n| *n == name).count())
            .sum::<usize>();
        by_nodes + self.outputs.iter().filter(|o| *o == name).count()
    }

    /// The producer of `name` if it is a live `op` whose output only one reader uses.
    fn sole(&self, name: &str, op: &str) -> Option<usize> {
        let i = self.producer(name)?;
        (self.nodes[i].op_type == op && self.nodes[i].domain.is_empty() && self.uses(name) == 1)
            .then_some(i)
    }

    fn out(&self, i: usize) -> &str {
        self.nodes[i].output.first().map_or("", String::as_str)
    }

    /// The node reading `name`, if exactly one does (and it is not a graph output).
    fn reader(&self, name: &str) -> Option<usize> {
        if self.uses(name) != 1 {
            return None;
        }
        (0..self.nodes.len())
            .find(|&i| !self.removed[i] && self.live(i).input.iter().any(|n| n == name))
    }

    /// Replaces node `last` by `op(inputs)` (keeping its output and name) and drops `gone`.
    fn rewrite(
        &mut self,
        last: usize,
        gone: &[usize],
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let old = &self.nodes[last];
        // A node without an output cannot end a pattern: left as it is, it is refused when
        // converted (found by the `onnx` fuzz target).
        let Some(output) = old.output.first() else {
            return;
        };
        self.replaced[last] = Some(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: old.name.clone(),
            op_type: op.into(),
            attribute: attrs,
            domain: String::new(),
        });
        for &g in gone {
            self.removed[g] = true;
        }
    }
}

/// Input `k` of `n`, or `""` when the node has fewer (a malformed file).
fn arg(n: &NodeProto, k: usize) -> &str {
    n.input.get(k).map_or("", String::as_str)
}

fn near(v: Option<f32>, want: f64) -> bool {
    v.is_some_and(|v| (f64::from(v) - want).abs() <= 1e-6 * want.abs().max(1e-30))
}

/// The other input of binary node `i` when one of its inputs is `name`.
fn other<'a>(n: &'a NodeProto, name: &str) -> Option<&'a str> {
    match n.input.as_slice() {
        [a, b] if a == name => Some(b),
        [a, b] if b == name => Some(a),
        _ => None,
    }
}

/// The pair `(x, c)` of a binary node whose one input is a constant scalar `c`.
fn with_scalar<'a>(n: &'a NodeProto, scalar: Scalar<'_>) -> Option<(&'a str, f32)> {
    match n.input.as_slice() {
        [a, b] => match (scalar(a), scalar(b)) {
            (None, Some(c)) => Some((a, c)),
            (Some(c), None) => Some((b, c)),
            _ => None,
        },
        _ => None,
    }
}

fn attr_f(n: &NodeProto, name: &str) -> Option<f32> {
    n.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        ..Default::default()
    }
}

fn string_attr(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A last-axis `LayerNormalization`'s attributes.
fn layer_norm_attrs(epsilon: f32) -> Vec<AttributeProto> {
    let axis = AttributeProto {
        name: "axis".into(),
        i: -1,
        ..Default::default()
    };
    vec![float_attr("epsilon", epsilon), axis]
}

/// Rewrites every pattern in `nodes`; returns the rewritten list and how often each pattern
/// matched (for the model's origin line).
pub(super) fn rewrite(
    nodes: &[NodeProto],
    outputs: &[String],
    scalar: Scalar<'_>,
    ints: Ints<'_>,
) -> (Vec<NodeProto>, Vec<(&'static str, usize)>) {
    let mut g = Graph {
        nodes,
        removed: vec![false; nodes.len()],
        replaced: vec![None; nodes.len()],
        outputs,
    };
    let mut counts = vec![];
    for (name, pass) in [
        (
            "gelu_erf",
            gelu_erf as fn(&mut Graph<'_>, usize, Scalar<'_>, Ints<'_>) -> bool,
        ),
        ("gelu_tanh", gelu_tanh),
        ("silu", silu),
        ("hard_swish", hard_swish),
        ("layer_norm", layer_norm),
        ("layer_norm_tf2onnx", layer_norm_tf2onnx),
    ] {
        let mut n = 0;
        for i in 0..nodes.len() {
            if !g.removed[i] && g.replaced[i].is_none() && pass(&mut g, i, scalar, ints) {
                n += 1;
            }
        }
        if n > 0 {
            counts.push((name, n));
        }
    }
    let out = nodes
        .iter()
        .zip(g.replaced)
        .zip(&g.removed)
        .filter(|(_, r)| !**r)
        .map(|((n, r), _)| r.unwrap_or_else(|| n.clone()))
        .collect();
    (out, counts)
}

fn is(g: &Graph<'_>, i: usize, op: &str) -> bool {
    g.nodes[i].op_type == op && g.nodes[i].domain.is_empty() && g.replaced[i].is_none()
}

/// Anchor: the `Mul` reading a `Sigmoid` of its other input.
fn silu(g: &mut Graph<'_>, i: usize, _: Scalar<'_>, _: Ints<'_>) -> bool {
    if !is(g, i, "Mul") {
        return false;
    }
    for k in 0..g.nodes[i].input.len().min(2) {
        let s_name = arg(&g.nodes[i], k);
        let Some(s) = g.sole(s_name, "Sigmoid") else {
            continue;
        };
        let x = arg(&g.nodes[s], 0).to_string();
        if other(&g.nodes[i], s_name) == Some(x.as_str()) {
            let attrs = vec![float_attr("alpha", 1.0)];
            g.rewrite(i, &[s], "Swish", vec![x], attrs);
            return true;
        }
    }
    false
}

/// Anchor: the `Mul` reading a `HardSigmoid(1/6, 1/2)` of its other input.
fn hard_swish(g: &mut Graph<'_>, i: usize, _: Scalar<'_>, _: Ints<'_>) -> bool {
    if !is(g, i, "Mul") {
        return false;
    }
    for k in 0..g.nodes[i].input.len().min(2) {
        let h_name = arg(&g.nodes[i], k);
        let Some(h) = g.sole(h_name, "HardSigmoid") else {
            continue;
        };
        let n = &g.nodes[h];
        if !near(attr_f(n, "alpha"), 1.0 / 6.0) || !near(attr_f(n, "beta"), 0.5) {
            continue;
        }
        let x = arg(n, 0).to_string();
        if other(&g.nodes[i], h_name) == Some(x.as_str()) {
            g.rewrite(i, &[h], "HardSwish", vec![x], vec![]);
            return true;
        }
    }
    false
}

/// The last node of `0.5 * x * inner` for the node `m` computing `x * inner` or
/// `(0.5 x) * inner`, with the nodes it used: `(last, extra nodes, x)`.
fn half_x_times(
    g: &Graph<'_>,
    m: usize,
    inner: &str,
    x: &str,
    scalar: Scalar<'_>,
) -> Option<(usize, Vec<usize>)> {
    let p = other(&g.nodes[m], inner)?;
    if p == x {
        // x * inner, then * 0.5
        let half = g.reader(g.out(m))?;
        let (y, c) = with_scalar(&g.nodes[half], scalar)?;
        (is(g, half, "Mul") && y == g.out(m) && near(Some(c), 0.5)).then_some((half, vec![m]))
    } else {
        // (x * 0.5) * inner
        let h = g.sole(p, "Mul")?;
        let (y, c) = with_scalar(&g.nodes[h], scalar)?;
        (y == x && near(Some(c), 0.5)).then_some((m, vec![h]))
    }
}

/// GELU's `0.5 x (1 + f)` after the node `f` (the Erf or Tanh): the last node and the ones
/// between (the `+ 1` and the products).
fn gelu_tail(g: &Graph<'_>, f: usize, x: &str, scalar: Scalar<'_>) -> Option<(usize, Vec<usize>)> {
    let a = g.reader(g.out(f))?;
    let (t, one) = with_scalar(&g.nodes[a], scalar)?;
    if !is(g, a, "Add") || t != g.out(f) || !near(Some(one), 1.0) {
        return None;
    }
    let m = g.reader(g.out(a))?;
    if !is(g, m, "Mul") {
        return None;
    }
    let (last, mut extra) = half_x_times(g, m, g.out(a), x, scalar)?;
    extra.push(a);
    Some((last, extra))
}

/// Anchor: `Erf`.
fn gelu_erf(g: &mut Graph<'_>, i: usize, scalar: Scalar<'_>, _: Ints<'_>) -> bool {
    if !is(g, i, "Erf") {
        return false;
    }
    let Some(d) = g.producer(arg(&g.nodes[i], 0)) else {
        return false;
    };
    if g.uses(g.out(d)) != 1 {
        return false;
    }
    let Some((x, c)) = with_scalar(&g.nodes[d], scalar) else {
        return false;
    };
    let x = x.to_string();
    let scaled = match g.nodes[d].op_type.as_str() {
        "Div" => arg(&g.nodes[d], 0) == x && near(Some(c), std::f64::consts::SQRT_2),
        "Mul" => near(Some(c), std::f64::consts::FRAC_1_SQRT_2),
        _ => false,
    };
    if !scaled {
        return false;
    }
    let Some((last, mut extra)) = gelu_tail(g, i, &x, scalar) else {
        return false;
    };
    extra.extend([d, i]);
    extra.retain(|&k| k != last);
    g.rewrite(last, &extra, "Gelu", vec![x], vec![]);
    true
}

/// Anchor: `Tanh`.
fn gelu_tanh(g: &mut Graph<'_>, i: usize, scalar: Scalar<'_>, _: Ints<'_>) -> bool {
    if !is(g, i, "Tanh") {
        return false;
    }
    // Tanh(k * (x + 0.044715 * x^3))
    let Some(m3) = g.sole(arg(&g.nodes[i], 0), "Mul") else {
        return false;
    };
    let Some((s_name, k)) = with_scalar(&g.nodes[m3], scalar) else {
        return false;
    };
    if !near(Some(k), (2.0 / std::f64::consts::PI).sqrt()) {
        return false;
    }
    let Some(s) = g.sole(s_name, "Add") else {
        return false;
    };
    // One input of the Add is x, the other 0.044715 * cube(x).
    let (sa, sb) = (
        arg(&g.nodes[s], 0).to_string(),
        arg(&g.nodes[s], 1).to_string(),
    );
    let mut found = None;
    for (x, t) in [(&sa, &sb), (&sb, &sa)] {
        let Some(m2) = g.sole(t, "Mul") else { continue };
        let Some((cube, c)) = with_scalar(&g.nodes[m2], scalar) else {
            continue;
        };
        if !near(Some(c), 0.044715) {
            continue;
        }
        if let Some(nodes) = cube_of(g, cube, x, scalar) {
            found = Some((x.clone(), m2, nodes));
            break;
        }
    }
    let Some((x, m2, cube_nodes)) = found else {
        return false;
    };
    let Some((last, mut extra)) = gelu_tail(g, i, &x, scalar) else {
        return false;
    };
    extra.extend([m3, s, m2, i]);
    extra.extend(cube_nodes);
    extra.retain(|&k| k != last);
    let attrs = vec![string_attr("approximate", "tanh")];
    g.rewrite(last, &extra, "Gelu", vec![x], attrs);
    true
}

/// The nodes computing `x^3` into `name`: `Pow(x, 3)`, `Mul(x, Mul(x, x))` or
/// `Mul(Mul(x, x), x)`.
fn cube_of(g: &Graph<'_>, name: &str, x: &str, scalar: Scalar<'_>) -> Option<Vec<usize>> {
    let p = g.producer(name)?;
    if g.uses(name) != 1 {
        return None;
    }
    let n = &g.nodes[p];
    match n.op_type.as_str() {
        "Pow" if n.input.first().is_some_and(|i| i == x) && near(scalar(n.input.get(1)?), 3.0) => {
            Some(vec![p])
        }
        "Mul" => {
            let sq = other(n, x)?;
            let q = g.sole(sq, "Mul")?;
            (g.nodes[q].input.iter().all(|i| i == x)).then_some(vec![p, q])
        }
        _ => None,
    }
}

/// True if `name` is a `ReduceMean` of `x` over its last axis only (keepdims), returning the
/// node.
fn mean_last(g: &Graph<'_>, name: &str, x: &str, ints: Ints<'_>) -> Option<usize> {
    let r = g.producer(name)?;
    let n = &g.nodes[r];
    if n.op_type != "ReduceMean" || n.input.first().map(String::as_str) != Some(x) {
        return None;
    }
    let axes = match n.input.get(1).filter(|s| !s.is_empty()) {
        Some(a) => ints(a)?,
        None => n.attribute.iter().find(|a| a.name == "axes")?.ints.clone(),
    };
    let keep = n
        .attribute
        .iter()
        .find(|a| a.name == "keepdims")
        .is_none_or(|a| a.i != 0);
    (axes == [-1] && keep).then_some(r)
}

/// Anchor: the `Div(x - mean, Sqrt(var + eps))`.
fn layer_norm(g: &mut Graph<'_>, i: usize, scalar: Scalar<'_>, ints: Ints<'_>) -> bool {
    if !is(g, i, "Div") {
        return false;
    }
    let (d_name, q_name) = (
        arg(&g.nodes[i], 0).to_string(),
        arg(&g.nodes[i], 1).to_string(),
    );
    let Some(sub) = g.producer(&d_name) else {
        return false;
    };
    if g.nodes[sub].op_type != "Sub" {
        return false;
    }
    let (x, mean) = (
        arg(&g.nodes[sub], 0).to_string(),
        arg(&g.nodes[sub], 1).to_string(),
    );
    let Some(r1) = mean_last(g, &mean, &x, ints) else {
        return false;
    };
    if g.uses(&mean) != 1 {
        return false;
    }
    let Some(sq) = g.sole(&q_name, "Sqrt") else {
        return false;
    };
    let Some(add) = g.sole(arg(&g.nodes[sq], 0), "Add") else {
        return false;
    };
    let Some((var, eps)) = with_scalar(&g.nodes[add], scalar) else {
        return false;
    };
    if !(eps.is_finite() && eps >= 0.0) {
        return false;
    }
    let var = var.to_string();
    let Some(r2) = g.sole(&var, "ReduceMean") else {
        return false;
    };
    let sq_in = arg(&g.nodes[r2], 0).to_string();
    if mean_last(g, &var, &sq_in, ints).is_none() {
        return false;
    }
    let Some(p) = g.producer(&sq_in) else {
        return false;
    };
    // x - mean is read by the square (once by a Pow, twice by a Mul) and the Div only.
    let squared = g.uses(&sq_in) == 1
        && match g.nodes[p].op_type.as_str() {
            "Pow" => {
                arg(&g.nodes[p], 0) == d_name
                    && near(scalar(arg(&g.nodes[p], 1)), 2.0)
                    && g.uses(&d_name) == 2
            }
            "Mul" => g.nodes[p].input.iter().all(|n| *n == d_name) && g.uses(&d_name) == 3,
            _ => false,
        };
    if !squared {
        return false;
    }
    let attrs = layer_norm_attrs(eps);
    g.rewrite(
        i,
        &[sub, r1, sq, add, r2, p],
        "LayerNormalization",
        vec![x, String::new()],
        attrs,
    );
    true
}

/// Anchor: the `BatchNormalization` of tf2onnx's LayerNormalization; the rewrite replaces the
/// `Reshape` back to the input's shape that reads it.
fn layer_norm_tf2onnx(g: &mut Graph<'_>, i: usize, scalar: Scalar<'_>, ints: Ints<'_>) -> bool {
    if !is(g, i, "BatchNormalization") || g.nodes[i].input.len() != 5 {
        return false;
    }
    let ins = g.nodes[i].input.clone();
    // X = Reshape(x, [1, -1, C, 1]).
    let Some(r) = g.producer(&ins[0]) else {
        return false;
    };
    if g.nodes[r].op_type != "Reshape" {
        return false;
    }
    let x = arg(&g.nodes[r], 0).to_string();
    let shape = g.nodes[r].input.get(1).and_then(|s| ints(s));
    if !matches!(shape.as_deref(), Some([1, -1, c, 1]) if *c > 0) {
        return false;
    }
    // Scale and bias: ones and zeros expanded.
    let expanded = |name: &str, v: f64| {
        g.producer(name)
            .is_some_and(|e| g.nodes[e].op_type == "Expand" && near(scalar(arg(&g.nodes[e], 0)), v))
            || near(scalar(name), v)
    };
    if !expanded(&ins[1], 1.0) || !expanded(&ins[2], 0.0) {
        return false;
    }
    // Mean: a ReduceMean of X over axes [0, 2, 3] (squeezed); variance: the sum of squares
    // of X minus that mean, divided by a count.
    let from_mean = |name: &str| -> Option<usize> {
        let s = g.producer(name)?;
        let m = if g.nodes[s].op_type == "Squeeze" {
            g.producer(arg(&g.nodes[s], 0))?
        } else {
            s
        };
        let n = &g.nodes[m];
        let axes = n
            .attribute
            .iter()
            .find(|a| a.name == "axes")
            .map(|a| a.ints.clone());
        (n.op_type == "ReduceMean"
            && arg(n, 0) == ins[0]
            && axes.as_deref() == Some(&[0, 2, 3][..]))
        .then_some(m)
    };
    let Some(mean) = from_mean(&ins[3]) else {
        return false;
    };
    let var_ok = g.producer(&ins[4]).is_some_and(|d| {
        let n = &g.nodes[d];
        n.op_type == "Div"
            && g.producer(arg(n, 0)).is_some_and(|s| {
                let ss = &g.nodes[s];
                ss.op_type == "ReduceSumSquare"
                    && g.producer(arg(ss, 0)).is_some_and(|sub| {
                        let sb = &g.nodes[sub];
                        sb.op_type == "Sub" && arg(sb, 0) == ins[0] && arg(sb, 1) == g.out(mean)
                    })
            })
    });
    if !var_ok {
        return false;
    }
    // The reshape back: the only reader of the normalization.
    let Some(back) = g.reader(g.out(i)) else {
        return false;
    };
    if g.nodes[back].op_type != "Reshape" {
        return false;
    }
    let eps = attr_f(&g.nodes[i], "epsilon").unwrap_or(1e-5);
    let attrs = layer_norm_attrs(eps);
    // The statistics' nodes become dead and are pruned with everything else unused.
    g.rewrite(
        back,
        &[i],
        "LayerNormalization",
        vec![x, String::new()],
        attrs,
    );
    true
}
