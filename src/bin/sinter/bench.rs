//! `sinter bench`: median latency per batch size.

use crate::{PlanArgs, compile, load_model};
use sinter::Result;
use sinter::plan::{Session, Values};
use std::time::{Duration, Instant};

/// Median wall time of `session.run_all(x)` over about `seconds` (at least 11 samples).
pub(crate) fn median(session: &mut Session, x: &[Values<'_>], seconds: f64) -> Result<Duration> {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs_f64((seconds / 10.0).min(0.2)) {
        session.run_all(x)?;
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut times = Vec::with_capacity(4096);
    while times.len() < 11 || (start.elapsed() < budget && times.len() < 1_000_000) {
        let t = Instant::now();
        session.run_all(x)?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// The tier's single-thread FMA peak in GFLOP/s: the best of 5 runs of 12 independent FMA
/// chains (the figure GEMM throughput is a fraction of).
pub(crate) fn peak_gflops(isa: sinter::Isa) -> f64 {
    let iters = 200_000;
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let (flops, v) = sinter::kernels::fma_peak_probe(isa, std::hint::black_box(iters));
            std::hint::black_box(v);
            flops as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// The CPU's model name and x86 family/model (`/proc/cpuinfo`; virtual machines often show
/// only a vendor name), for quoting figures with the machine behind them.
pub(crate) fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    match (field("cpu family"), field("model")) {
        (Some(f), Some(m)) => format!("{name} (family {f} model {m})"),
        _ => name,
    }
}

pub(crate) fn run(
    model_spec: &str,
    batches: &[usize],
    args: &PlanArgs,
    (json, profile): (bool, bool),
    seconds: f64,
) -> Result<()> {
    let model = load_model(model_spec)?;
    let max = batches.iter().copied().max().unwrap_or(1).max(1);
    let plan = compile(model, args, max)?;
    let mut session = plan.session()?;
    let peak = peak_gflops(plan.isa());
    let cpu = cpu_model();
    if !json {
        say!(
            "{model_spec}: {} plan, isa {}, threads {}, on {cpu} (FMA peak {peak:.1} GFLOP/s per thread)",
            if plan.is_fused() { "fused" } else { "separate" },
            plan.isa(),
            plan.threads()
        );
        say!(
            "{:>7} {:>12} {:>14} {:>9} {:>7}",
            "batch",
            "median_us",
            "us/sample",
            "GFLOP/s",
            "%peak"
        );
    }
    for &batch in batches {
        if batch == 0 {
            return Err(sinter::Error::EmptyBatch);
        }
        let x = crate::inputs::random(&plan, batch, batch as u64, 1.0, false);
        let t = median(&mut session, &crate::inputs::views(&x), seconds)?;
        let us = t.as_secs_f64() * 1e6;
        let gflops = (plan.flops_per_sample() * batch) as f64 / t.as_secs_f64() / 1e9;
        let fraction = gflops / (peak * plan.threads() as f64);
        if json {
            say!(
                "{{\"model\":{},\"batch\":{batch},\"threads\":{},\"fused\":{},\"median_us\":{us:.3},\"isa\":\"{}\",\"gflops\":{gflops:.2},\"peak_gflops\":{:.2},\"peak_fraction\":{fraction:.3},\"cpu\":{}}}",
                serde_json::Value::from(model_spec),
                plan.threads(),
                plan.is_fused(),
                plan.isa(),
                peak * plan.threads() as f64,
                serde_json::Value::from(cpu.as_str()),
            );
        } else {
            say!(
                "{batch:>7} {us:>12.2} {:>14.3} {gflops:>9.2} {:>6.1}%",
                us / batch as f64,
                100.0 * fraction
            );
        }
        if profile {
            let runs = (seconds / t.as_secs_f64().max(1e-9)).clamp(11.0, 100_000.0) as usize;
            let times = session.profile(&crate::inputs::views(&x), runs)?;
            print_profile(&plan, batch, &times, json);
        }
    }
    Ok(())
}

/// Each step's median time per run at `batch`, and its share of their sum.
fn print_profile(plan: &sinter::plan::Plan, batch: usize, times: &[Duration], json: bool) {
    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    if !json {
        say!("  profile at batch {batch}: median per run of each step");
        say!("{:>9} {:>12} {:>7}  step: kernel", "#", "us", "share");
    }
    for (i, (step, t)) in plan.steps().iter().zip(times).enumerate() {
        let us = t.as_secs_f64() * 1e6;
        let share = t.as_secs_f64() / total.max(1e-12);
        let kernel = plan.step_kernel(i).unwrap_or_default();
        if json {
            say!(
                "{{\"batch\":{batch},\"step\":{i},\"name\":{},\"kernel\":{},\"us\":{us:.3},\"share\":{share:.4}}}",
                serde_json::Value::from(step.name()),
                serde_json::Value::from(kernel.as_str()),
            );
        } else {
            say!(
                "{i:>9} {us:>12.2} {:>6.1}%  {}: {kernel}",
                100.0 * share,
                step.name()
            );
        }
    }
}
