//! `sinter verify`: the invariants, checked on random inputs with hostile values mixed in.

use crate::{inputs, load_model_with};
use sinter::plan::CompileOptions;
use sinter::{Error, Isa, Result};
use std::sync::Arc;

/// `outputs`: the outputs to check (all if empty).
pub(crate) fn run(spec: &str, batch: usize, outputs: &[String]) -> Result<()> {
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    let mut opts = sinter::LoadOptions::new();
    if !outputs.is_empty() {
        opts = opts.outputs(outputs);
    }
    let model = load_model_with(spec, &opts)?;
    let plan = Arc::new(model.compile(&CompileOptions::new().max_batch(batch))?);
    let arrays = inputs::random(&plan, batch, 0x5eed, 3.0, true);
    let x = inputs::views(&arrays);
    // Finite inputs too: hostile values can make every output NaN (a global pool spreads one
    // NaN over the whole sample), and NaN == NaN compares nothing.
    let finite = inputs::random(&plan, batch, 0x5eed, 3.0, false);
    let sets = [x.clone(), inputs::views(&finite)];
    let lens: Vec<usize> = plan.inputs().iter().map(|i| i.len).collect();
    let outputs = |opts: CompileOptions| -> Result<Vec<f32>> {
        let plan = Arc::new(model.compile(&opts.max_batch(batch))?);
        let mut all = Vec::new();
        for x in &sets {
            all.extend(plan.run_all(x)?.concat());
        }
        Ok(all)
    };
    let base = outputs(CompileOptions::new().threads(1))?;
    let out_lens: Vec<usize> = plan.outputs().iter().map(|o| o.len).collect();
    let out_per: usize = out_lens.iter().sum();
    let mut failures = 0;
    let mut check = |what: String, got: &[f32], want: &[f32]| {
        let diff = got
            .iter()
            .zip(want)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        match diff {
            None => say!("ok    {what}"),
            Some(i) => {
                failures += 1;
                say!("FAIL  {what}: element {i}: {} vs {}", got[i], want[i]);
            }
        }
    };
    let separate = outputs(CompileOptions::new().fuse(false).threads(1))?;
    check("fused == separate".into(), &separate, &base);
    for threads in [2, 3] {
        let got = outputs(CompileOptions::new().threads(threads))?;
        check(format!("threads {threads} == threads 1"), &got, &base);
    }
    for isa in Isa::available() {
        let got = outputs(CompileOptions::new().isa(Some(isa)))?;
        check(format!("isa {isa} == default"), &got, &base);
    }
    let mut s = plan.session()?;
    let full = s
        .run_all(&x)?
        .iter()
        .map(<[f32]>::to_vec)
        .collect::<Vec<_>>();
    let mut rows_ok = true;
    for r in 0..batch {
        let alone = s.run_all(&inputs::row(&arrays, &lens, r))?;
        for (k, &l) in out_lens.iter().enumerate() {
            rows_ok &= alone
                .get(k)
                .iter()
                .zip(&full[k][r * l..(r + 1) * l])
                .all(|(a, b)| a.to_bits() == b.to_bits());
        }
    }
    check(
        format!("each of {batch} rows alone == in the batch"),
        &[f32::from(u8::from(rows_ok))],
        &[1.0],
    );
    if let Some(range) = plan.seq_range() {
        let max = *range.end();
        // A shorter sequence in the plan for the longest == the model loaded for it.
        let len = (max / 2).max(*range.start());
        let short = inputs::cut(&plan, &arrays, (0, batch), len);
        let got = plan.run_seq(len, &inputs::views(&short))?.concat();
        let fixed = load_model_with(spec, &opts.clone().seq(len))?;
        let fixed = Arc::new(fixed.compile(&CompileOptions::new().max_batch(batch))?);
        let want = fixed.run_all(&inputs::views(&short))?.concat();
        check(
            format!("a sequence of {len} in the plan for {max} == loaded for {len}"),
            &got,
            &want,
        );
        if plan.pads() {
            // Each sample alone at its own length (what its mask keeps, else a length of its
            // own) == its real positions in a batch of them padded with zeros to the longest,
            // as the batcher joins requests.
            let own: Vec<usize> = (0..batch)
                .map(|r| inputs::kept(&plan, &arrays, r).unwrap_or(1 + (r * 5 + 3) % max))
                .collect();
            let alone: Vec<Vec<sinter::io::npy::Array>> = (0..batch)
                .map(|r| inputs::cut(&plan, &arrays, (r, 1), own[r]))
                .collect();
            let padded = inputs::pad(&plan, &alone, max)?;
            let together = plan.run_seq(max, &inputs::views(&padded))?;
            let mut same = true;
            for r in 0..batch {
                let one = plan.run_seq(own[r], &inputs::views(&alone[r]))?;
                for (k, (o, info)) in one.iter().zip(plan.outputs()).enumerate() {
                    let l = info.len_at(max);
                    let mine = together[k][r * l..(r + 1) * l].iter();
                    same &= o.iter().zip(mine).all(|(a, b)| a.to_bits() == b.to_bits())
                        && o.len() == info.len_at(own[r]);
                }
            }
            check(
                format!("each of {batch} sequences alone at its own length == padded to {max}"),
                &[f32::from(u8::from(same))],
                &[1.0],
            );
        }
    }
    if failures > 0 {
        return Err(Error::Model(format!(
            "{failures} invariant check(s) failed"
        )));
    }
    say!(
        "all invariants hold on {batch} random samples ({} values each)",
        out_per
    );
    Ok(())
}
