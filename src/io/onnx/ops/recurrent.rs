//! ONNX `LSTM`, `GRU` and `RNN` as sinter's recurrent layer ([`RecurrentConfig`]): the
//! weights reordered into Keras's gate order at load time, the time-major layout (`layout=0`)
//! tracked instead of copied ([`Layout::Tnc`]), the zero initial state the exporters build
//! from the batch size recognised as zero.

use crate::error::Result;
use crate::io::onnx::convert::{Converter, Value};
use crate::io::onnx::layout::Layout;
use crate::io::onnx::proto::NodeProto;
use crate::kernels::Activation;
use crate::model::{
    Cell, DenseWeights, Direction, Layer, MergeMode, Primitive, RecurrentConfig, Returns, StepMask,
    TakeConfig,
};

/// One of `LSTM`, `GRU`, `RNN`.
pub(super) fn recurrent(cx: &mut Converter<'_>, node: &NodeProto) -> Result<()> {
    let cell = match node.op_type.as_str() {
        "LSTM" => Cell::Lstm,
        "GRU" => Cell::Gru {
            reset_after: cx.attr_i(node, "linear_before_reset")?.unwrap_or(0) != 0,
        },
        _ => Cell::Simple,
    };
    for a in ["clip", "activation_alpha", "activation_beta"] {
        if Converter::attr(node, a).is_some() {
            return Err(cx.unsupported(node, format!("attribute {a} is not supported")));
        }
    }
    if cx.attr_i(node, "input_forget")?.unwrap_or(0) != 0 {
        return Err(cx.unsupported(node, "input_forget=1 is not supported"));
    }
    let h = match cx.attr_i(node, "hidden_size")? {
        Some(h) if h > 0 => h as usize,
        _ => return Err(cx.invalid(node, "hidden_size must be a positive integer")),
    };
    let reverse: &[bool] = match cx.attr_s(node, "direction")?.as_deref() {
        None | Some("forward") => &[false],
        Some("reverse") => &[true],
        Some("bidirectional") => &[false, true],
        Some(d) => return Err(cx.invalid(node, format!("direction {d:?}"))),
    };
    let dirs = reverse.len();
    let (activation, recurrent_activation) = activations(cx, node, cell, dirs)?;
    let batch_first = match cx.attr_i(node, "layout")?.unwrap_or(0) {
        0 => false,
        1 => true,
        l => return Err(cx.invalid(node, format!("layout {l}"))),
    };
    let x = cx.input_node(node, 0)?;
    match (batch_first, cx.layout(node, 0)) {
        (true, Layout::Native) | (false, Layout::Tnc) => {}
        (false, Layout::Native) => {
            return Err(cx.unsupported(
                node,
                "X is time-major [T, N, F] as the graph holds it; sinter reads a time-major X \
                 only as a Transpose(1, 0, 2) of a batch-first [N, T, F] tensor (PyTorch's \
                 batch_first=True, or layout=1)",
            ));
        }
        (_, l) => return Err(cx.unsupported(node, format!("X read as {l:?}"))),
    }
    let [steps, features] = cx.nodes[x].shape[..] else {
        return Err(cx.invalid(node, "X must be [T, N, F] (or [N, T, F] with layout=1)"));
    };
    let lengths = sequence_lens(cx, node)?;
    let initial = initial_states(cx, node, (cell, dirs, h), batch_first)?;
    let g = cell.gates();
    let gh = g * h;
    let w = weight(cx, node, 1, [dirs, gh, features], "W")?;
    let r = weight(cx, node, 2, [dirs, gh, h], "R")?;
    let b = match node.input.get(3).filter(|n| !n.is_empty()) {
        Some(_) => Some(weight(cx, node, 3, [dirs, 2 * gh, 1], "B")?),
        None => None,
    };
    // An LSTM's peepholes, ONNX's `i, o, f` (an RNN or GRU has no input 7).
    let p = match node.input.get(7).filter(|n| !n.is_empty()) {
        Some(_) if cell == Cell::Lstm => Some(weight(cx, node, 7, [dirs, 3 * h, 1], "P")?),
        Some(_) => return Err(cx.invalid(node, "input P (peepholes) of a GRU or an RNN")),
        None => None,
    };
    // Keras gate `k` is ONNX gate `order[k]` (LSTM: ONNX i, o, f, c; Keras i, f, c, o).
    let order: &[usize] = match cell {
        Cell::Lstm => &[0, 2, 3, 1],
        Cell::Gru { .. } => &[0, 1, 2],
        Cell::Simple => &[0],
    };
    let row = |d: usize, col: usize| d * gh + order[col / h] * h + col % h;
    let mut kernel = Vec::with_capacity(features * dirs * gh);
    for f in 0..features {
        for d in 0..dirs {
            kernel.extend((0..gh).map(|col| w[row(d, col) * features + f]));
        }
    }
    let mut directions = Vec::with_capacity(dirs);
    let mut bias = b.as_ref().map(|_| Vec::with_capacity(dirs * gh));
    for (d, &reverse) in reverse.iter().enumerate() {
        let mut recurrent_kernel = Vec::with_capacity(h * gh);
        for i in 0..h {
            recurrent_kernel.extend((0..gh).map(|col| r[row(d, col) * h + i]));
        }
        let mut recurrent_bias = None;
        if let (Some(b), Some(bias)) = (&b, &mut bias) {
            let at =
                |col: usize, part: usize| b[d * 2 * gh + part * gh + order[col / h] * h + col % h];
            bias.extend((0..gh).map(|col| at(col, 0)));
            recurrent_bias = Some((0..gh).map(|col| at(col, 1)).collect());
        }
        // Keras's order `i, f, o`.
        let peepholes = p.as_ref().map(|p| {
            let at = |k: usize| &p[d * 3 * h + k * h..][..h];
            [at(0), at(2), at(1)].concat()
        });
        directions.push(Direction {
            reverse,
            recurrent_kernel,
            recurrent_bias,
            peepholes,
        });
    }
    let config = RecurrentConfig {
        cell,
        units: h,
        activation,
        recurrent_activation,
        use_bias: bias.is_some(),
        returns: Returns::Sequences,
        run_order: false,
        directions,
        merge: MergeMode::Concat,
        // Past a sequence's length: the state carried, zeros out.
        mask: lengths.map(|_| StepMask {
            zero_outputs: true,
            lengths: true,
        }),
        initial_state: !initial.is_empty(),
    };
    let weights = DenseWeights { kernel, bias };
    let inputs: Vec<usize> = std::iter::once(x).chain(lengths).chain(initial).collect();
    let read = |i: usize| {
        node.output
            .get(i)
            .filter(|n| !n.is_empty() && cx.uses.get(*n).copied().unwrap_or(0) > 0)
            .cloned()
    };
    let (y_h, y_c) = (read(1), read(2));
    if y_h.is_some() || y_c.is_some() {
        // The final states: the same layer returning them, `[states, H]` (a layer nothing
        // else reads is pruned), each of `Y_h` and `Y_c` its rows.
        let states = RecurrentConfig {
            returns: Returns::States,
            ..config.clone()
        };
        let k = states.states() / dirs;
        let all = vec![states.states(), h];
        cx.push(
            &format!("{}/states", node.name),
            Layer::Recurrent(states),
            inputs.clone(),
            all,
            Some(weights.clone()),
        );
        let at = cx.nodes.len() - 1;
        for (j, name) in [(0, y_h), (1, y_c)] {
            let Some(name) = name else { continue };
            let take = Layer::Primitive(Primitive::Take(TakeConfig {
                axis: 0,
                indices: (0..dirs).map(|d| d * k + j).collect(),
                squeeze: false,
            }));
            cx.push(&name, take, vec![at], vec![dirs, h], None);
            if !batch_first {
                // ONNX's [D, N, H], held as [D * H].
                let rows = cx.nodes.len() - 1;
                cx.push(&name, Layer::Flatten, vec![rows], vec![dirs * h], None);
                cx.layouts.insert(name, Layout::Dnh(dirs));
            }
        }
    }
    let Some(y) = node.output.first().filter(|y| !y.is_empty()).cloned() else {
        return Ok(()); // only the final states
    };
    let shape = vec![steps, dirs * h];
    cx.push(&y, Layer::Recurrent(config), inputs, shape, Some(weights));
    cx.name_last(node);
    if batch_first {
        // ONNX's [N, T, D, H]: a view of sinter's [T, D * H].
        let at = cx.nodes.len() - 1;
        return cx.view(node, at, vec![steps, dirs, h]);
    }
    cx.set_layout(node, Layout::Tdnh(dirs))
}

/// The node of `sequence_lens`, if given: a graph input `[N]` ([`Layout::N`]).
fn sequence_lens(cx: &mut Converter<'_>, node: &NodeProto) -> Result<Option<usize>> {
    if node.input.get(4).is_none_or(|n| n.is_empty()) {
        return Ok(None);
    }
    if matches!(cx.value(node, 4)?, Value::Const(_)) || cx.layout(node, 4) != Layout::N {
        return Err(cx.unsupported(
            node,
            "sequence_lens is read only as a graph input [batch] (not a constant or a \
             computed tensor)",
        ));
    }
    Ok(Some(cx.input_node(node, 4)?))
}

/// The initial states `initial_h` (and an LSTM's `initial_c`) as nodes `[H]` in
/// [`Returns::States`]'s order (per direction `h`, then `c`); none when both are absent or
/// zeros. They are ONNX's `[D, N, H]` (a recurrent op's `Y_h` or `Y_c`, or the concatenation
/// of them) or, with `layout=1`, `[N, D, H]`.
fn initial_states(
    cx: &mut Converter<'_>,
    node: &NodeProto,
    (cell, dirs, h): (Cell, usize, usize),
    batch_first: bool,
) -> Result<Vec<usize>> {
    let given = |i: usize| node.input.get(i).is_some_and(|n| !n.is_empty());
    let zeros = |cx: &Converter<'_>, i: usize| -> Result<bool> {
        Ok(!given(i)
            || matches!(cx.value(node, i)?, Value::Const(c) if c.f32.iter().all(|&v| v == 0.0) && c.i64.iter().all(|&v| v == 0)))
    };
    let lstm = cell == Cell::Lstm;
    if zeros(cx, 5)? && (!lstm || zeros(cx, 6)?) {
        return Ok(Vec::new());
    }
    if !lstm && given(6) {
        return Err(cx.invalid(node, "initial_c is given to a GRU or an RNN"));
    }
    // Per direction, each state as `[H]`: rows of `[D, H]`.
    let mut rows = Vec::with_capacity(2 * dirs);
    for (i, what) in [(5, "initial_h"), (6, "initial_c")]
        .into_iter()
        .take(1 + usize::from(lstm))
    {
        if zeros(cx, i)? {
            return Err(cx.unsupported(
                node,
                format!("{what} is zeros while the other initial state is not"),
            ));
        }
        if matches!(cx.value(node, i)?, Value::Const(_)) {
            return Err(cx.unsupported(
                node,
                format!(
                    "{what} is a constant other than zeros: sinter reads an initial state \
                     computed per sample"
                ),
            ));
        }
        let at = cx.input_node(node, i)?;
        let fits = match cx.layout(node, i) {
            Layout::Dnh(d) => !batch_first && d == dirs,
            Layout::Native => batch_first,
            _ => false,
        };
        if !fits {
            return Err(cx.unsupported(
                node,
                format!(
                    "{what} is read as {:?}: sinter reads an initial state computed per sample \
                     (a recurrent op's last states, or [N, D, H] with layout=1), not a graph \
                     input with the batch on axis 1",
                    cx.layout(node, i)
                ),
            ));
        }
        let flat = cx.nodes[at].shape.iter().product::<usize>();
        if flat != dirs * h {
            return Err(cx.invalid(
                node,
                format!("{what} holds {flat} values per sample, expected {dirs} x {h}"),
            ));
        }
        rows.push(at);
    }
    // Direction `d`'s row: of sinter's `[D * H]` (`Dnh`), or of `[D, H]` (`layout=1`).
    let mut states = Vec::with_capacity(rows.len() * dirs);
    for d in 0..dirs {
        for &at in &rows {
            let take = match cx.nodes[at].shape[..] {
                [n] if n == h => {
                    states.push(at);
                    continue;
                }
                [_] => TakeConfig {
                    axis: 0,
                    indices: (d * h..(d + 1) * h).collect(),
                    squeeze: false,
                },
                _ => TakeConfig {
                    axis: 0,
                    indices: vec![d],
                    squeeze: true,
                },
            };
            let name = format!("{}/initial/{}", node.name, cx.nodes.len());
            let take = Layer::Primitive(Primitive::Take(take));
            cx.push(&name, take, vec![at], vec![h], None);
            states.push(cx.nodes.len() - 1);
        }
    }
    Ok(states)
}

/// Input `i` as a constant of `dims` (a trailing 1 matches a 2-D constant).
fn weight(
    cx: &Converter<'_>,
    node: &NodeProto,
    i: usize,
    dims: [usize; 3],
    what: &str,
) -> Result<Vec<f32>> {
    let c = cx.input_const(node, i)?;
    let want: &[usize] = if dims[2] == 1 { &dims[..2] } else { &dims };
    if c.dims != want || c.f32.len() != want.iter().product::<usize>() {
        return Err(cx.invalid(
            node,
            format!("{what} has shape {:?}, expected {want:?}", c.dims),
        ));
    }
    Ok(c.f32.clone())
}

/// `(activation, recurrent_activation)` from the `activations` attribute (ONNX's defaults:
/// LSTM `Sigmoid, Tanh, Tanh`, GRU `Sigmoid, Tanh`, RNN `Tanh`, per direction).
fn activations(
    cx: &Converter<'_>,
    node: &NodeProto,
    cell: Cell,
    dirs: usize,
) -> Result<(Activation, Activation)> {
    let names: Vec<String> = Converter::attr(node, "activations")
        .map(|a| {
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let per = match cell {
        Cell::Lstm => 3,
        Cell::Gru { .. } => 2,
        Cell::Simple => 1,
    };
    if names.is_empty() {
        return Ok((Activation::Tanh, Activation::Sigmoid));
    }
    if names.len() != per * dirs || names.chunks(per).any(|c| c != &names[..per]) {
        return Err(cx.unsupported(
            node,
            format!("activations {names:?}: {per} per direction, the same for both"),
        ));
    }
    let parse = |n: &str| match n.to_ascii_lowercase().as_str() {
        "sigmoid" => Ok(Activation::Sigmoid),
        "tanh" => Ok(Activation::Tanh),
        "relu" => Ok(Activation::RELU),
        "hardsigmoid" => Ok(Activation::HardSigmoidAffine {
            alpha: 0.2,
            beta: 0.5,
        }),
        other => Err(cx.unsupported(node, format!("activation {other:?} is not supported"))),
    };
    match cell {
        Cell::Simple => Ok((parse(&names[0])?, Activation::Sigmoid)),
        Cell::Gru { .. } => Ok((parse(&names[1])?, parse(&names[0])?)),
        Cell::Lstm if names[1] != names[2] => {
            Err(cx.unsupported(node, "an LSTM whose cell and output activations differ"))
        }
        Cell::Lstm => Ok((parse(&names[1])?, parse(&names[0])?)),
    }
}
