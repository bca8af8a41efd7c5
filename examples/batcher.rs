//! A service that embeds a `Batcher`: many request handlers (here plain threads; async tasks
//! use `Batcher::run_async` the same way) share one plan through dynamic batching, and each
//! gets exactly the answer it would get alone.
//!
//! Run: `cargo run --release --example batcher`

use sinter::io::npy::Array;
use sinter::{Batcher, BatcherOptions, CompileOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> sinter::Result<()> {
    let model = sinter::builtin::mnist_mlp();
    let plan = Arc::new(model.compile(&CompileOptions::new().max_batch(64))?);
    let opts = BatcherOptions::new()
        .max_batch(64)
        .max_delay(Duration::from_micros(300))
        .queue_rows(1024);
    let batcher = Batcher::new(plan.clone(), opts)?;

    let handlers = 32;
    let per_handler = 200;
    let start = Instant::now();
    let threads: Vec<_> = (0..handlers)
        .map(|h| {
            let (batcher, plan) = (batcher.clone(), plan.clone());
            std::thread::spawn(move || -> sinter::Result<usize> {
                let mut same = 0;
                for i in 0..per_handler {
                    // One sample per request, as an HTTP handler would receive it.
                    let x: Vec<f32> = (0..plan.input_len())
                        .map(|j| ((h * 7919 + i * 31 + j) % 255) as f32 / 255.0)
                        .collect();
                    let y = batcher.run(vec![Array::F32(x.clone())])?;
                    let alone = plan.run(&x)?;
                    same += usize::from(y[0] == alone);
                }
                Ok(same)
            })
        })
        .collect();
    let mut same = 0;
    for t in threads {
        same += t.join().expect("handler panicked")?;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = batcher.stats();
    println!(
        "{} requests from {handlers} handlers in {secs:.2} s: {} plan runs ({:.1} requests per run); {same} of {} answers identical to a run alone",
        s.requests,
        s.runs,
        s.requests as f64 / s.runs.max(1) as f64,
        handlers * per_handler
    );
    Ok(())
}
