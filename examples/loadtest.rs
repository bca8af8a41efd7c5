//! Load test for `sinter serve` (or any KServe v2 REST server) on loopback: `CLIENTS` threads,
//! each with a keep-alive connection, send one-sample `infer` requests for `SECONDS` and check
//! every answer bit for bit against `builtin:mnist-mlp` run alone in this process (pass
//! `--no-check` for a server of another runtime). Prints throughput, p50/p99 latency, errors.
//! Bounded in time and count; it stops by itself.
//!
//! ```sh
//! cargo run --release -- serve builtin:mnist-mlp --port 8000 &
//! cargo run --release --example loadtest -- 8000 64 10
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|a| a.parse().ok()).unwrap_or(8000);
    let clients: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    let check = !args.iter().any(|a| a == "--no-check");
    let model = args
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "mnist-mlp".into());
    let input_name = args
        .iter()
        .position(|a| a == "--input-name")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "input_layer".into());
    let plan = Arc::new(
        sinter::builtin::mnist_mlp()
            .compile(&sinter::CompileOptions::new().threads(1))
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (plan, model, input_name) = (plan.clone(), model.clone(), input_name.clone());
            std::thread::spawn(move || client(port, c, deadline, check, &plan, &model, &input_name))
        })
        .collect();
    let mut lat = Vec::new();
    let (mut errors, mut mismatches) = (0usize, 0usize);
    for h in handles {
        let (l, e, m) = h.join().expect("client thread");
        lat.extend(l);
        errors += e;
        mismatches += m;
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e3)
    };
    println!(
        "{clients} clients, {wall:.1} s: {} requests, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors, {mismatches} answers not bit-identical{}",
        lat.len(),
        lat.len() as f64 / wall,
        pct(0.50),
        pct(0.99),
        if check { "" } else { " (not checked)" }
    );
}

/// One client: requests on one keep-alive connection until the deadline.
fn client(
    port: u16,
    c: usize,
    deadline: Instant,
    check: bool,
    plan: &sinter::Plan,
    model: &str,
    input_name: &str,
) -> (Vec<Duration>, usize, usize) {
    let (mut lat, mut errors, mut mismatches) = (Vec::new(), 0, 0);
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        Some(s)
    };
    let mut stream = connect();
    let mut i = 0usize;
    while Instant::now() < deadline && i < 1_000_000 {
        i += 1;
        let x: Vec<f32> = (0..784)
            .map(|j| (((j * 31 + c * 7919 + i * 13) % 997) as f32 / 997.0) - 0.5)
            .collect();
        let body = format!(
            "{{\"inputs\":[{{\"name\":\"{input_name}\",\"shape\":[1,784],\"datatype\":\"FP32\",\"data\":{}}}]}}",
            serde_json::to_string(&x).unwrap()
        );
        let t = Instant::now();
        let Some(s) = stream.as_mut() else {
            errors += 1;
            stream = connect();
            continue;
        };
        match request(s, port, model, &body) {
            Some((200, resp)) => {
                lat.push(t.elapsed());
                if check {
                    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
                    let got: Vec<u32> = v["outputs"][0]["data"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|x| (x.as_f64().unwrap_or(f64::NAN) as f32).to_bits())
                                .collect()
                        })
                        .unwrap_or_default();
                    let want: Vec<u32> =
                        plan.run(&x).unwrap().iter().map(|v| v.to_bits()).collect();
                    mismatches += usize::from(got != want);
                }
            }
            _ => {
                errors += 1;
                stream = connect();
            }
        }
    }
    (lat, errors, mismatches)
}

/// One request on a keep-alive connection: (status, body).
fn request(s: &mut TcpStream, port: u16, model: &str, body: &str) -> Option<(u16, Vec<u8>)> {
    write!(
        s,
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.get(9..12)?.parse().ok()?;
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).ok()?;
    Some((status, buf))
}
