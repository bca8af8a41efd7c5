//! The mutable half of a plan: the arena.

use super::{Kind, Loc, Plan};
use crate::error::{Error, Result};
use crate::kernels::{self, ops};
use std::sync::Arc;

/// Run state for one [`Plan`]: owns the arena. One per thread; cheap to keep around.
///
/// A session holds the `Arc` of the plan it was made from and can only run that plan: using
/// it with another plan is not expressible. Any number of sessions may run one plan at once
/// (`tests/concurrency.rs`). Inputs are not validated beyond their length: NaN and infinities
/// propagate through the arithmetic (every activation maps a NaN to the canonical quiet NaN),
/// never a panic.
#[derive(Debug)]
pub struct Session {
    plan: Arc<Plan>,
    arena: Vec<f32>,
}

impl Session {
    /// A session for `plan`, with its arena allocated up front.
    pub fn new(plan: Arc<Plan>) -> Result<Session> {
        let mut arena = Vec::new();
        arena.try_reserve_exact(plan.arena_len).map_err(|_| {
            Error::Options(format!(
                "cannot allocate a {} byte arena (lower max_batch)",
                plan.arena_bytes()
            ))
        })?;
        arena.resize(plan.arena_len, 0.0);
        Ok(Session { plan, arena })
    }

    /// The plan this session runs.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Runs a batch: `input` is `batch x input_len` values, batch first. Returns the outputs,
    /// `batch x output_len`, borrowed from the arena until the next run. Allocates nothing.
    pub fn run(&mut self, input: &[f32]) -> Result<&[f32]> {
        let Session { plan, arena } = self;
        let per = plan.in_len;
        if input.is_empty() {
            return Err(Error::EmptyBatch);
        }
        if !input.len().is_multiple_of(per) {
            return Err(Error::InputLength {
                per_sample: per,
                got: input.len(),
            });
        }
        let batch = input.len() / per;
        if batch > plan.max_batch {
            return Err(Error::BatchTooLarge {
                batch,
                max: plan.max_batch,
            });
        }
        let Some(results) = plan.results.filter(|_| batch > plan.chunk) else {
            run_steps(plan, arena, input, batch);
            let Loc::Arena(o) = plan.output else {
                unreachable!("the plan copies an input-aliased output into the arena")
            };
            return Ok(&arena[o..o + batch * plan.out_len]);
        };
        let Loc::Arena(o) = plan.output else {
            unreachable!("the plan copies an input-aliased output into the arena")
        };
        let out = plan.out_len;
        for (i, x) in input.chunks(plan.chunk * per).enumerate() {
            let b = x.len() / per;
            run_steps(plan, arena, x, b);
            let dst = results + i * plan.chunk * out;
            arena.copy_within(o..o + b * out, dst);
        }
        Ok(&arena[results..results + batch * out])
    }
}

/// Runs every step of `plan` on `batch` samples (at most the plan's chunk).
fn run_steps(plan: &Plan, arena: &mut [f32], input: &[f32], batch: usize) {
    for step in &plan.steps {
        let (il, ol) = (batch * step.in_len, batch * step.out_len);
        match &step.kind {
            Kind::Dense {
                w,
                ops,
                rows,
                conv,
                ldc,
                col,
                ..
            } => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                match conv {
                    None => plan.exec_dense(w, ops, batch * rows, a, w.k(), &mut c[*col..], *ldc),
                    Some((lda, a_off)) => plan.exec_conv(
                        w,
                        ops,
                        (*rows, *lda, *a_off),
                        (a, step.in_len),
                        (c, step.out_len),
                        (*ldc, *col),
                    ),
                }
            }
            Kind::Pad { left, right, ch } => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                for (x, y) in a
                    .chunks_exact(step.in_len)
                    .zip(c.chunks_exact_mut(step.out_len))
                {
                    ops::pad(left * ch, right * ch, x, y);
                }
            }
            Kind::Activation { act, width } => {
                let data = if step.src == step.dst {
                    let Loc::Arena(o) = step.dst else {
                        unreachable!("in-place steps write the arena")
                    };
                    &mut arena[o..o + ol]
                } else {
                    let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                    c.copy_from_slice(a);
                    c
                };
                if act.is_row_wise() {
                    kernels::rows(plan.isa, *act, data, *width);
                } else {
                    kernels::activation(plan.isa, *act, data);
                }
            }
            Kind::Copy => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                c.copy_from_slice(a);
            }
            Kind::Im2col { w, ch } => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                for (x, y) in a
                    .chunks_exact(step.in_len)
                    .zip(c.chunks_exact_mut(step.out_len))
                {
                    ops::im2col(w.size, *ch, |o, t| w.source(o, t), x, y);
                }
            }
            Kind::Pool { max, w, ch } => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                for (x, y) in a
                    .chunks_exact(step.in_len)
                    .zip(c.chunks_exact_mut(step.out_len))
                {
                    ops::pool(*max, *ch, |o| w.sources(o), x, y);
                }
            }
            Kind::Concat { outer, inner } => {
                let total: usize = inner.iter().sum();
                let mut offset = 0;
                let srcs =
                    std::iter::once((step.src, step.in_len)).chain(step.rest.iter().copied());
                for ((src, len), &width) in srcs.zip(inner) {
                    let (a, c) = views(arena, input, src, step.dst, batch * len, ol);
                    for (x, y) in a.chunks_exact(len).zip(c.chunks_exact_mut(step.out_len)) {
                        ops::concat_part(*outer, width, total, offset, x, y);
                    }
                    offset += width;
                }
            }
            Kind::Add => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                c.copy_from_slice(a);
                for &(src, len) in &step.rest {
                    let (a, c) = views(arena, input, src, step.dst, batch * len, ol);
                    ops::add(a, c);
                }
            }
            Kind::Permute { shape, perm } => {
                let (a, c) = views(arena, input, step.src, step.dst, il, ol);
                for (x, y) in a
                    .chunks_exact(step.in_len)
                    .zip(c.chunks_exact_mut(step.out_len))
                {
                    ops::permute(shape, perm, x, y);
                }
            }
        }
    }
}

/// Source and destination of a step: disjoint by construction of the arena offsets.
fn views<'a>(
    arena: &'a mut [f32],
    input: &'a [f32],
    src: Loc,
    dst: Loc,
    src_len: usize,
    dst_len: usize,
) -> (&'a [f32], &'a mut [f32]) {
    let Loc::Arena(d) = dst else {
        unreachable!("steps write the arena")
    };
    match src {
        Loc::Input => (&input[..src_len], &mut arena[d..d + dst_len]),
        Loc::Arena(s) if s < d => {
            let (lo, hi) = arena.split_at_mut(d);
            (&lo[s..s + src_len], &mut hi[..dst_len])
        }
        Loc::Arena(s) => {
            let (lo, hi) = arena.split_at_mut(s);
            (&hi[..src_len], &mut lo[d..d + dst_len])
        }
    }
}
