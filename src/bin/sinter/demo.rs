//! `sinter` with no arguments: the seed model, both plans, bits compared, latency.

use crate::bench::median;
use sinter::model::init::SplitMix64;
use sinter::plan::CompileOptions;
use sinter::plan::Values;
use sinter::{Error, Result, builtin};
use std::sync::Arc;

pub(crate) fn run() -> Result<()> {
    let model = builtin::seed();
    say!("The seed model, built in code with deterministic weights:");
    say!("  Input(784) -> Dense(32, tanh) -> Activation(relu) -> Dense(8, softmax)\n");
    say_raw!("{}", model.summary());
    let batch = 64;
    let mut outputs = Vec::new();
    let mut times = Vec::new();
    let mut r = SplitMix64::new(42);
    let x: Vec<f32> = (0..batch * 784).map(|_| r.next_signed()).collect();
    for fuse in [true, false] {
        let plan = Arc::new(model.compile(&CompileOptions::new().fuse(fuse).max_batch(batch))?);
        say!("\n{plan}");
        let mut session = plan.session()?;
        outputs.push(session.run(&x)?.to_vec());
        times.push(median(&mut session, &[Values::F32(&x)], 0.5)?);
    }
    let same = outputs[0]
        .iter()
        .zip(&outputs[1])
        .all(|(a, b)| a.to_bits() == b.to_bits());
    say!("\nA batch of {batch} random inputs through each plan:");
    say!(
        "  fused:    median {:>8.2} us",
        times[0].as_secs_f64() * 1e6
    );
    say!(
        "  separate: median {:>8.2} us",
        times[1].as_secs_f64() * 1e6
    );
    if same {
        say!(
            "  outputs: bit-identical ({} values compared with to_bits)",
            outputs[0].len()
        );
        Ok(())
    } else {
        Err(Error::Model(
            "fused and separate outputs differ: this is a bug".into(),
        ))
    }
}
