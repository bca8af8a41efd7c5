//! The schedule: which buffer holds each node's value (liveness in one arena, views and
//! elided concats sharing their producers' buffers) and the steps in order.

use super::stretch::Stretch;
use super::*;

/// The steps in node order, with arena offsets by liveness (an activation overwrites its
/// input when nothing reads that afterwards) and weights packed for `isa`.
pub(super) struct Schedule {
    pub(super) steps: Vec<Step>,
    pub(super) arena: Arena,
    /// Arena offset of each output (an input-aliased output is copied into the arena).
    pub(super) outputs: Vec<usize>,
    /// The steps of the nodes [`schedule`] was given as a stretch (two or more).
    pub(super) stretch: Option<Stretch>,
}

/// Values per sample of `shape`, checked to fit `max_batch` samples.
pub(super) fn elems(shape: &[usize], name: &str, max_batch: usize) -> Result<usize> {
    checked_elems(shape)
        .ok()
        .and_then(|e| e.checked_mul(max_batch).map(|_| e))
        .ok_or_else(|| Error::Shape {
            layer: name.into(),
            msg: format!("{shape:?} x max_batch {max_batch} overflows"),
        })
}

/// `stretch`: nodes `..stretch` a run takes one sample at a time ([`super::stretch`]; 0:
/// none). Every block they read or write (scratch included) stays reserved until the last
/// of them: the next samples' steps write while earlier samples' values are still to be
/// read. A value they both write and last read is one sample long, the same block for each
/// sample in turn.
pub(super) fn schedule(
    g: &mut Graph,
    buffers: Buffers,
    opts: &CompileOptions,
    isa: Isa,
    seq: Option<&seq::SeqAxis>,
    stretch: usize,
) -> Result<Schedule> {
    let elems = |shape: &[usize], name: &str| elems(shape, name, opts.max_batch);
    // Values per sample of node `j`'s value, following the sequence where it does.
    let len_of = |g: &Graph, j: usize| -> Result<Len> {
        let n = elems(&g.nodes[j].shape, &g.nodes[j].name)?;
        Ok(match seq {
            Some(s) => Len::new(n, s.nodes[j], s.max),
            None => Len::fixed(n),
        })
    };
    let Buffers {
        into,
        view,
        buf_of,
        sized_by,
        mut last_use,
    } = buffers;
    let mut arena = Arena::default();
    let mut loc: Vec<Option<Loc>> = vec![None; sized_by.len()];
    let mut size = vec![0usize; sized_by.len()];
    let mut steps = Vec::new();
    // Blocks freed inside the stretch, reserved until its end.
    let mut held: Vec<(usize, usize)> = Vec::new();
    // Steps of the stretch's nodes, and its own blocks (one sample long).
    let mut stretch_len = 0;
    let mut local = Vec::new();
    let release =
        |arena: &mut Arena, held: &mut Vec<_>, i: usize, block: (usize, usize)| match i < stretch {
            true => held.push(block),
            false => arena.release(block.0, block.1),
        };
    for i in 0..g.nodes.len() {
        if i == stretch {
            for (off, len) in held.drain(..) {
                arena.release(off, len);
            }
        }
        if view[i] {
            continue;
        }
        // The step's kernel and weights, packed (the graph's own copy of them freed).
        let kind = match g.nodes[i].op {
            Op::Input => None,
            _ => Some(step_kind(
                g,
                i,
                isa,
                into[i],
                opts.tune.then_some(opts.max_batch),
            )?),
        };
        let node = &g.nodes[i];
        let b = buf_of[i];
        let out_len = elems(&g.nodes[sized_by[b]].shape, &node.name)?;
        let own = i < stretch && last_use[b] < stretch;
        let len = out_len * if own { 1 } else { opts.max_batch };
        let Some(kind) = kind else {
            let k = g
                .inputs
                .iter()
                .position(|&j| j == i)
                .expect("checked graph");
            loc[b] = Some(Loc::Input(k));
            continue;
        };
        let sb = buf_of[node.inputs[0]];
        let src_loc = loc[sb].expect("inputs are written before they are read");
        // An elementwise or row step overwrites its input when nothing reads that afterwards.
        let elementwise = match &node.op {
            Op::Activation(_) | Op::Affine { .. } | Op::Norm(_) => true,
            Op::Step(s) => s.0.in_place(),
            _ => false,
        };
        let in_place =
            elementwise && matches!(src_loc, Loc::Arena(_)) && last_use[sb] == i && size[sb] == len;
        if in_place {
            loc[b] = Some(src_loc);
            size[b] = len;
            last_use[sb] = usize::MAX; // the block now belongs to b
        } else if loc[b].is_none() {
            let off = arena.alloc(len);
            loc[b] = Some(Loc::Arena(off));
            if own {
                local.push(off);
            }
            size[b] = len;
        }
        // Working values for each thread of the step.
        let scratch = match &node.op {
            Op::Step(s) if s.0.scratch() > 0 => {
                let len =
                    s.0.scratch()
                        .checked_mul(opts.threads.max(1))
                        .ok_or_else(|| Error::Options("step scratch overflows".into()))?;
                (arena.alloc(len), len)
            }
            _ => (0, 0),
        };
        let mut rest = Vec::new();
        for &j in node.inputs.iter().skip(1) {
            let l = loc[buf_of[j]].expect("inputs are written before they are read");
            rest.push((l, len_of(g, j)?));
        }
        steps.push(Step {
            name: node.name.clone(),
            kind,
            src: src_loc,
            dst: loc[b].expect("just set"),
            in_len: len_of(g, node.inputs[0])?,
            out_len: len_of(g, sized_by[b])?,
            rest,
            scratch,
        });
        if i < stretch {
            stretch_len = steps.len();
        }
        if scratch.1 > 0 {
            release(&mut arena, &mut held, i, scratch);
        }
        // Free every buffer whose last reader was this node.
        for (bb, &lu) in last_use.iter().enumerate() {
            if lu == i
                && let Some(Loc::Arena(off)) = loc[bb]
            {
                release(&mut arena, &mut held, i, (off, size[bb]));
            }
        }
    }
    let stretch = Some(0..stretch_len)
        .filter(|r| r.len() >= 2)
        .map(|steps| Stretch { steps, local });
    let mut outputs = Vec::with_capacity(g.outputs.len());
    for &o in &g.outputs {
        let len = len_of(g, o)?;
        match loc[buf_of[o]].expect("the output is written") {
            Loc::Arena(off) => outputs.push(off),
            src @ Loc::Input(_) => {
                let off = arena.alloc(len.max * opts.max_batch);
                steps.push(Step {
                    name: "copy".into(),
                    kind: Kind::Copy,
                    src,
                    dst: Loc::Arena(off),
                    in_len: len,
                    out_len: len,
                    rest: vec![],
                    scratch: (0, 0),
                });
                outputs.push(off);
            }
        }
    }
    Ok(Schedule {
        steps,
        arena,
        outputs,
        stretch,
    })
}

/// Which buffer holds each node's value, before any arena offset is chosen.
pub(super) struct Buffers {
    /// For a producer of an elided concat: (the concat node, its first column there).
    pub(super) into: Vec<Option<(usize, usize)>>,
    /// Nodes with no step of their own: Flatten, Dropout, Reshape, elided concats.
    pub(super) view: Vec<bool>,
    /// Node -> buffer. Views share their input's buffer, concat producers the concat's.
    pub(super) buf_of: Vec<usize>,
    /// Buffer -> the node whose shape sizes it.
    pub(super) sized_by: Vec<usize>,
    /// Buffer -> the last node that reads it (`usize::MAX`: the output, never freed).
    pub(super) last_use: Vec<usize>,
}

impl Buffers {
    pub(super) fn assign(g: &Graph) -> Buffers {
        // Concats marked by `elide_concat` get no step; each producer GEMM writes its columns
        // of the concat buffer (row stride = the concat's width).
        let n = g.nodes.len();
        let mut into = vec![None; n];
        let mut elided = vec![false; n];
        for (i, node) in g.nodes.iter().enumerate() {
            if let Op::Concat { axis, elided: true } = node.op {
                let mut col = 0;
                for &p in &node.inputs {
                    into[p] = Some((i, col));
                    col += g.nodes[p].shape[axis];
                }
                elided[i] = true;
            }
        }
        let view: Vec<bool> = (0..n)
            .map(|i| elided[i] || matches!(g.nodes[i].op, Op::Flatten | Op::Dropout | Op::Reshape))
            .collect();
        let mut buf_of = vec![usize::MAX; n];
        let mut sized_by: Vec<usize> = Vec::new();
        for (i, node) in g.nodes.iter().enumerate() {
            buf_of[i] = if let Some((c, _)) = into[i] {
                if buf_of[c] == usize::MAX {
                    sized_by.push(c);
                    buf_of[c] = sized_by.len() - 1;
                }
                buf_of[c]
            } else if elided[i] {
                buf_of[i]
            } else if view[i] {
                buf_of[node.inputs[0]]
            } else {
                sized_by.push(i);
                sized_by.len() - 1
            };
        }
        let mut last_use = vec![0usize; sized_by.len()];
        for (i, node) in g.nodes.iter().enumerate() {
            for &j in &node.inputs {
                last_use[buf_of[j]] = i;
            }
        }
        for &o in &g.outputs {
            last_use[buf_of[o]] = usize::MAX;
        }
        Buffers {
            into,
            view,
            buf_of,
            sized_by,
            last_use,
        }
    }
}
