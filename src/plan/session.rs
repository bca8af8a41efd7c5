//! The mutable half of a plan: the arena.

use super::{Kind, Loc, Plan};
use crate::error::{Error, Result};
use crate::kernels;
use std::sync::Arc;

/// Run state for one [`Plan`]: owns the arena. One per thread; cheap to keep around.
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
        let plan = &*self.plan;
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
        for step in &plan.steps {
            let (il, ol) = (batch * step.in_len, batch * step.out_len);
            match &step.kind {
                Kind::Dense { w, ops, rows } => {
                    let (a, c) = views(&mut self.arena, input, step.src, step.dst, il, ol);
                    plan.exec_dense(w, ops, batch * rows, a, c);
                }
                Kind::Activation { act, width } => {
                    let data = if step.src == step.dst {
                        let Loc::Arena(o) = step.dst else {
                            unreachable!("in-place steps write the arena")
                        };
                        &mut self.arena[o..o + ol]
                    } else {
                        let (a, c) = views(&mut self.arena, input, step.src, step.dst, il, ol);
                        c.copy_from_slice(a);
                        c
                    };
                    if act.is_row_wise() {
                        kernels::rows(plan.isa, &[kernels::EpOp::Act(*act)], data, *width);
                    } else {
                        kernels::activation(plan.isa, *act, data);
                    }
                }
                Kind::Copy => {
                    let (a, c) = views(&mut self.arena, input, step.src, step.dst, il, ol);
                    c.copy_from_slice(a);
                }
            }
        }
        let Loc::Arena(o) = plan.output else {
            unreachable!("the plan copies an input-aliased output into the arena")
        };
        Ok(&self.arena[o..o + batch * plan.out_len])
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
