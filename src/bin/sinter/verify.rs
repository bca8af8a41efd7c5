//! `sinter verify`: the invariants, checked on random inputs with hostile values mixed in.

use crate::load_model;
use sinter::model::init::SplitMix64;
use sinter::plan::CompileOptions;
use sinter::{Error, Isa, Result};
use std::sync::Arc;

fn inputs(n: usize) -> Vec<f32> {
    let mut r = SplitMix64::new(0x5eed);
    const SPECIAL: [f32; 8] = [
        0.0,
        -0.0,
        1e-40,
        1e30,
        -1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    (0..n)
        .map(|i| {
            if i % 11 == 5 {
                SPECIAL[(r.next_u64() % 8) as usize]
            } else {
                r.next_signed() * 3.0
            }
        })
        .collect()
}

pub(crate) fn run(spec: &str, batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::EmptyBatch);
    }
    let model = load_model(spec)?;
    let per: usize = model.input_shape().iter().product();
    let x = inputs(batch * per);
    let outputs = |opts: CompileOptions| -> Result<Vec<f32>> {
        let plan = Arc::new(model.compile(&CompileOptions {
            max_batch: batch,
            ..opts
        })?);
        plan.run(&x)
    };
    let base = outputs(CompileOptions {
        threads: 1,
        ..Default::default()
    })?;
    let out_per = base.len() / batch;
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
    let separate = outputs(CompileOptions {
        fuse: false,
        threads: 1,
        ..Default::default()
    })?;
    check("fused == separate".into(), &separate, &base);
    for threads in [2, 3] {
        let got = outputs(CompileOptions {
            threads,
            ..Default::default()
        })?;
        check(format!("threads {threads} == threads 1"), &got, &base);
    }
    for isa in Isa::available() {
        let got = outputs(CompileOptions {
            isa: Some(isa),
            ..Default::default()
        })?;
        check(format!("isa {isa} == default"), &got, &base);
    }
    let plan = Arc::new(model.compile(&CompileOptions {
        max_batch: batch,
        ..Default::default()
    })?);
    let mut s = plan.session()?;
    let mut rows_ok = true;
    for r in 0..batch {
        let alone = s.run(&x[r * per..(r + 1) * per])?;
        rows_ok &= alone
            .iter()
            .zip(&base[r * out_per..(r + 1) * out_per])
            .all(|(a, b)| a.to_bits() == b.to_bits());
    }
    check(
        format!("each of {batch} rows alone == in the batch"),
        &[f32::from(u8::from(rows_ok))],
        &[1.0],
    );
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
