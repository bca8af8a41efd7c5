//! `rten_encoder MODEL.onnx SEQ BATCHES THREADS`: rten's median latency on an encoder whose
//! inputs are token ids, a mask of ones and token types of zeros (`[batch, SEQ]` each, fed
//! by name), one JSON line per batch, as `scripts/ort_time_encoder.py` prints ONNX Runtime's.

use std::time::Instant;

fn median_us(mut f: impl FnMut(), budget_s: f64) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut v = Vec::new();
    let start = Instant::now();
    while v.len() < 10 || start.elapsed().as_secs_f64() < budget_s {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, seq, batches, threads] = &args[..] else {
        return Err("usage: rten_encoder MODEL.onnx SEQ BATCHES THREADS".into());
    };
    let seq: usize = seq.parse()?;
    let threads: usize = threads.parse()?;
    // rten packs weights on its global pool at load (sized from RTEN_NUM_THREADS at first use)
    // and runs on the pool given in RunOptions: both get THREADS.
    std::env::set_var("RTEN_NUM_THREADS", threads.to_string());
    let pool = std::sync::Arc::new(rten::ThreadPool::with_num_threads(threads));
    let opts = rten::RunOptions::default().with_thread_pool(Some(pool));
    let model = rten::Model::load_file(path)?;
    let outputs = model.output_ids().to_vec();
    for b in batches.split(',') {
        let b: usize = b.parse()?;
        let n = b * seq;
        // Ids spread over a BERT vocabulary, every position kept, one segment.
        let ids: Vec<i32> = (0..n).map(|i| 1000 + ((i * 7919) % 29000) as i32).collect();
        let ones = vec![1i32; n];
        let zeros = vec![0i32; n];
        let shape = [b, seq];
        let mut inputs = Vec::new();
        for &id in model.input_ids() {
            let name = model
                .node_info(id)
                .and_then(|i| i.name().map(str::to_string));
            let data = match name.as_deref() {
                Some("input_ids") => &ids,
                Some("attention_mask") => &ones,
                Some("token_type_ids") => &zeros,
                other => return Err(format!("unexpected input {other:?}").into()),
            };
            inputs.push((id, rten_tensor::TensorView::from_data(&shape, &data[..])));
        }
        let run = || {
            let feed = inputs
                .iter()
                .map(|(id, t)| (*id, t.view().into()))
                .collect();
            model.run(feed, &outputs, Some(opts.clone()))
        };
        run()?;
        let us = median_us(
            || {
                std::hint::black_box(run().expect("runs"));
            },
            2.0,
        );
        println!(
            "{{\"batch\": {b}, \"seq\": {seq}, \"threads\": {threads}, \"rten_us\": {us:.1}}}"
        );
    }
    Ok(())
}
