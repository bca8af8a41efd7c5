//! `Display` for [`Plan`]: steps, kernels, epilogues, buffer offsets, arena bytes.

use super::{Kind, Loc, Plan, Step};
use crate::kernels::EpOp;
use std::fmt;

fn loc(l: Loc, len: usize) -> String {
    match l {
        Loc::Input(k) => format!("input{k}[{len}]"),
        Loc::Arena(o) => format!("arena@{}[{len}]", o * 4),
    }
}

fn epilogue(ops: &[EpOp<'_>]) -> String {
    if ops.is_empty() {
        return "store".into();
    }
    let parts: Vec<String> = ops
        .iter()
        .map(|op| match op {
            EpOp::Bias(_) => "bias".to_string(),
            EpOp::ScaleShift { .. } => "scale+shift".to_string(),
            EpOp::Norm(_) => "layer norm (row)".to_string(),
            EpOp::AddC(_) => "add C".to_string(),
            EpOp::Act(a) if a.is_row_wise() => format!("{a} (row)"),
            EpOp::Act(a) => a.to_string(),
        })
        .collect();
    parts.join(" -> ")
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Plan ({}): isa {}, threads {}, max batch {}",
            if self.fused { "fused" } else { "separate" },
            self.isa,
            self.threads,
            self.max_batch
        )?;
        writeln!(f, "passes: {}", self.passes.join(", "))?;
        match (&self.seq, &self.seq_fixed) {
            (Some(r), _) => writeln!(
                f,
                "sequence: {} to {} positions per run (buffers sized for {}); {}",
                r.start(),
                r.end(),
                r.end(),
                if self.pads {
                    "different lengths share a run, padded"
                } else {
                    "only equal lengths share a run"
                }
            )?,
            (None, Some(why)) => writeln!(f, "sequence: fixed ({why})")?,
            (None, None) => {}
        }
        let rows: Vec<[String; 5]> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (kernel, epi) = self.describe(s);
                let mut srcs = loc(s.src, s.in_len.max);
                for &(l, n) in &s.rest {
                    srcs = format!("{srcs}, {}", loc(l, n.max));
                }
                [
                    i.to_string(),
                    s.name.clone(),
                    kernel,
                    epi,
                    format!("{srcs} -> {}", loc(s.dst, s.out_len.max)),
                ]
            })
            .collect();
        let head = ["#", "step", "kernel", "epilogue", "buffers (per sample)"];
        let w: Vec<usize> = (0..5)
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([head[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: &[String; 5]| {
            format!(
                "  {:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3]
            )
        };
        writeln!(f, "{}", line(&head.map(String::from)).trim_end())?;
        for r in &rows {
            writeln!(f, "{}", line(r))?;
        }
        write!(
            f,
            "arena: {} bytes per session ({} separate activation passes); packed weights: {} bytes",
            self.arena_bytes(),
            self.activation_steps(),
            self.weight_bytes()
        )?;
        if self.chunk < self.max_batch {
            write!(
                f,
                "\nbatches run {} samples at a time (activations stay in L2)",
                self.chunk
            )?;
        }
        if let Some(s) = &self.stretch {
            write!(
                f,
                "\nsteps {}..{} run one sample at a time through all of them (maps stay in L2)",
                s.steps.start, s.steps.end
            )?;
        }
        Ok(())
    }
}

impl Plan {
    /// What step `i` runs, as `sinter plan`'s kernel column shows it (`None` past the last).
    pub fn step_kernel(&self, i: usize) -> Option<String> {
        self.steps.get(i).map(|s| self.describe(s).0)
    }

    /// The kernel and epilogue columns of step `s`.
    fn describe(&self, s: &Step) -> (String, String) {
        match &s.kind {
            Kind::Dense {
                w,
                ops,
                conv,
                col,
                ldc,
                tuned,
                rows,
                ..
            } => {
                let mut tile = format!("{}x{} tiles", self.isa.mr_for(w.nr()), w.nr());
                if let Some(t) = tuned {
                    let blocking = match w.blocking() {
                        Some(b) => {
                            format!("kc {} mc {} nc {}", b.kc, b.mc, b.nc_panels * w.nr())
                        }
                        None => "default blocking".into(),
                    };
                    tile = format!(
                        "{tile}, tuned: {blocking}, {:.1} us vs {:.1} default, {} candidates",
                        t.best.as_secs_f64() * 1e6,
                        t.default.as_secs_f64() * 1e6,
                        t.candidates
                    );
                }
                let mut kernel = format!("gemm {}x{} ({tile})", w.k(), w.n());
                match conv {
                    Some(c) if c.bands > 1 => {
                        let rows = rows / c.bands;
                        kernel =
                            format!("conv {kernel}, implicit im2col, {} rows of {rows}", c.bands);
                    }
                    Some(_) => kernel = format!("conv {kernel}, implicit im2col"),
                    None => {}
                }
                if *ldc != w.n() {
                    kernel = format!("{kernel} -> concat cols {col}..{}", col + w.n());
                }
                (kernel, epilogue(ops))
            }
            Kind::Pad {
                left,
                right,
                transposed,
                ..
            } => {
                let t = if *transposed {
                    " from channels-first"
                } else {
                    ""
                };
                (format!("pad {left}+{right}{t}"), "-".into())
            }
            Kind::Activation { act, .. } => {
                let kind = if act.is_row_wise() {
                    "row pass"
                } else {
                    "elementwise"
                };
                let inplace = if s.src == s.dst { ", in place" } else { "" };
                (format!("{kind}{inplace}"), act.to_string())
            }
            Kind::Copy => ("copy".into(), "-".into()),
            Kind::Concat { inner, .. } => {
                (format!("concat copy ({} inputs)", inner.len()), "-".into())
            }
            Kind::Affine { scale, .. } => {
                let inplace = if s.src == s.dst { ", in place" } else { "" };
                (format!("scale+shift x{}{inplace}", scale.len()), "-".into())
            }
            Kind::Norm { norm, width } => {
                let inplace = if s.src == s.dst { ", in place" } else { "" };
                let what = if norm.rms { "rms norm" } else { "layer norm" };
                (format!("{what} row pass x{width}{inplace}"), "-".into())
            }
            Kind::Gather { table, dim } => (
                format!("gather {} x {dim} table", table.len() / dim),
                "-".into(),
            ),
            Kind::Permute { shape, perm } => (
                format!(
                    "permute {shape:?} -> {:?}",
                    perm.iter().map(|&a| shape[a]).collect::<Vec<_>>()
                ),
                "-".into(),
            ),
            Kind::Op(op) => {
                let mut kernel = op.0.describe();
                if !s.rest.is_empty() {
                    kernel = format!("{kernel} ({} inputs)", s.rest.len() + 1);
                }
                if op.0.in_place() && s.src == s.dst {
                    kernel.push_str(", in place");
                }
                if s.scratch.1 > 0 {
                    let kib = (s.scratch.1 * 4).div_ceil(1024);
                    kernel.push_str(&format!(", scratch {kib} KiB"));
                }
                let epi = match op.0.epilogue() {
                    [] => "-".into(),
                    ops => epilogue(ops),
                };
                (kernel, epi)
            }
        }
    }
}
