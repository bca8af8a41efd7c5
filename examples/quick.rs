use std::sync::Arc;
fn main() {
    let m = sinter::builtin::seed();
    print!("{}", m.summary());
    for fuse in [true, false] {
        let plan = Arc::new(m.compile(&sinter::plan::CompileOptions { fuse, ..Default::default() }).unwrap());
        println!("{plan}");
        let x: Vec<f32> = (0..784 * 3).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let y = plan.run(&x).unwrap();
        println!("{:?}", &y[..8]);
    }
}
