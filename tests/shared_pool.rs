//! Plans compiled with the default thread count share one process-wide worker pool: ten models
//! do not start ten pools. (Its own test binary: it counts the process's threads.)

use sinter::CompileOptions;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

#[test]
fn default_plans_share_one_pool() {
    if threads() == 0 || sinter::plan::default_threads() < 2 {
        return; // no /proc, or one core: no pool at all
    }
    let model = sinter::builtin::mnist_mlp();
    let first = model.compile(&CompileOptions::new()).unwrap();
    let before = threads();
    let plans: Vec<_> = (0..10)
        .map(|_| model.compile(&CompileOptions::new()).unwrap())
        .collect();
    assert_eq!(
        threads(),
        before,
        "default plans started threads of their own"
    );
    // They all run, on the shared pool, with the first plan's bits.
    let x = vec![0.25f32; 64 * 784];
    let want = first.run(&x).unwrap();
    for p in &plans {
        assert_eq!(p.run(&x).unwrap(), want);
    }
    // An explicit thread count other than the default gets its own pool.
    let own = model
        .compile(&CompileOptions::new().threads(sinter::plan::default_threads() + 1))
        .unwrap();
    assert!(
        threads() > before,
        "a plan with its own thread count shares the pool"
    );
    assert_eq!(own.run(&x).unwrap(), want);
}
