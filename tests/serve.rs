//! `sinter serve` end to end over loopback: KServe v2 REST and TF Serving predict answers are
//! bit-identical to `Plan::run` of the same rows alone, from many concurrent clients; bad
//! requests get a 4xx with a JSON error and the server keeps serving; a full batch queue
//! answers 503 with `Retry-After`; a stalled client's headers or body time out; connections
//! past `--max-connections` wait until one closes; SIGTERM refuses new connections, finishes
//! a request whose body is still arriving and exits 0.
//!
//! Timing (the machine may be loaded): every wait for something to happen has a bound far above
//! what it needs but below the defaults a broken flag would fall back to; the one check that
//! something does not happen (the third connection's answer, for 1 s) can only pass wrongly on
//! a slow machine, never fail; lower bounds (a timeout fires no earlier than set) are exact.
#![cfg(feature = "serve")]

use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;
use server::Server;

/// One HTTP/1.1 request; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (status, _, body) = http_with(port, method, path, "", body);
    (status, body)
}

/// One HTTP/1.1 request with extra header lines (each ending in `\r\n`); returns (status,
/// response headers, body).
fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    (status, head, raw[at..].to_vec())
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads one response (its headers, then `Content-Length` bytes of body) without waiting for
/// the connection to close; returns (status, lowercase headers, body).
fn read_one(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut more = |raw: &mut Vec<u8>| {
        let n = s.read(&mut buf).unwrap_or_else(|e| {
            panic!("no response ({e}) after {:?}", String::from_utf8_lossy(raw))
        });
        assert!(
            n > 0,
            "the connection closed after {:?}",
            String::from_utf8_lossy(raw)
        );
        raw.extend(&buf[..n]);
    };
    let at = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        more(&mut raw);
    };
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while raw.len() < at + len {
        more(&mut raw);
    }
    (status, head, raw[at..at + len].to_vec())
}

/// The request line and headers of a KServe infer with a JSON body of `len` bytes.
fn infer_head(model: &str, len: usize) -> String {
    format!(
        "POST /v2/models/{model}/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A KServe JSON request for `builtin:seed`.
fn seed_request(x: &[f32]) -> Vec<u8> {
    json!({"inputs": [{"name": "x", "shape": [x.len() / 784, 784], "datatype": "FP32", "data": x}]})
        .to_string()
        .into_bytes()
}

/// Checks a 200 answer of `builtin:seed` against `Plan::run` of the same rows alone.
fn assert_seed_answer(status: u16, body: &[u8], x: &[f32]) {
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(body));
    let plan = sinter::builtin::seed()
        .compile(&sinter::CompileOptions::new())
        .unwrap();
    let want: Vec<u32> = plan.run(x).unwrap().iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits_of(&json_of(body)["outputs"][0]["data"]), want);
}

/// A request in KServe's binary tensor extension, as `tritonclient` sends it by default: the
/// JSON header, then the tensors' bytes. Returns the extra header line and the body.
fn binary_request(header: &Value, tensors: &[&[u8]]) -> (String, Vec<u8>) {
    let mut body = header.to_string().into_bytes();
    let line = format!("Inference-Header-Content-Length: {}\r\n", body.len());
    tensors.iter().for_each(|t| body.extend(*t));
    (line, body)
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn input(rows: usize, seed: usize) -> Vec<f32> {
    (0..rows * 784)
        .map(|i| (((i * 31 + seed * 7919) % 997) as f32 / 997.0) - 0.5)
        .collect()
}

fn bits_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| (x.as_f64().unwrap() as f32).to_bits())
        .collect()
}

#[test]
fn kserve_and_tf_serving_answers_are_bit_exact() {
    let server = Server::start(&["builtin:mnist-mlp", "s=builtin:seed", "--max-batch", "16"]);
    let plan = sinter::builtin::mnist_mlp()
        .compile(&sinter::CompileOptions::new())
        .unwrap();
    assert_eq!(http(server.port, "GET", "/v2/health/live", b"").0, 200);
    assert_eq!(http(server.port, "GET", "/v2/models/s/ready", b"").0, 200);
    let (status, meta) = http(server.port, "GET", "/v2/models/mnist-mlp", b"");
    assert_eq!(status, 200);
    let meta = json_of(&meta);
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 784]));
    let name = meta["inputs"][0]["name"].as_str().unwrap().to_string();

    // Many concurrent clients, each request checked against a run alone.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (port, name) = (server.port, name.clone());
            std::thread::spawn(move || {
                let plan = sinter::builtin::mnist_mlp()
                    .compile(&sinter::CompileOptions::new())
                    .unwrap();
                for i in 0..12 {
                    let rows = 1 + (t + i) % 3;
                    let x = input(rows, t * 100 + i);
                    let req = json!({"inputs": [{"name": name, "shape": [rows, 784], "datatype": "FP32", "data": x}]});
                    let (status, body) = http(port, "POST", "/v2/models/mnist-mlp/infer", req.to_string().as_bytes());
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    let out = json_of(&body);
                    assert_eq!(out["outputs"][0]["shape"], json!([rows, 10]));
                    let want: Vec<u32> = plan.run(&x).unwrap().iter().map(|v| v.to_bits()).collect();
                    assert_eq!(bits_of(&out["outputs"][0]["data"]), want, "client {t} request {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // TF Serving's predict, row format.
    let x = input(2, 5);
    let rows: Vec<Vec<f32>> = x.chunks(784).map(<[f32]>::to_vec).collect();
    let (status, body) = http(
        server.port,
        "POST",
        "/v1/models/mnist-mlp:predict",
        json!({ "instances": rows }).to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    let preds = json_of(&body);
    let want = plan.run(&x).unwrap();
    for (r, p) in preds["predictions"].as_array().unwrap().iter().enumerate() {
        let w: Vec<u32> = want[r * 10..(r + 1) * 10]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits_of(p), w);
    }
    // The same rows as one object per sample, and columnar: the same answer.
    let objects: Vec<Value> = rows.iter().map(|r| json!({ name.as_str(): r })).collect();
    for req in [
        json!({ "instances": objects }),
        json!({ "inputs": { name.as_str(): rows } }),
    ] {
        let (status, again) = http(
            server.port,
            "POST",
            "/v1/models/mnist-mlp:predict",
            req.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&again));
        assert_eq!(json_of(&again), preds, "{req}");
    }

    // Metrics count what happened.
    let (status, metrics) = http(server.port, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("sinter_requests_total"), "{metrics}");
    assert!(
        metrics.contains("sinter_batch_size_bucket{model=\"mnist-mlp\""),
        "{metrics}"
    );
}

#[test]
fn binary_tensors_as_tritonclient_sends_them() {
    let server = Server::start(&["m=builtin:mnist-mlp", "--max-batch", "8"]);
    let plan = sinter::builtin::mnist_mlp()
        .compile(&sinter::CompileOptions::new())
        .unwrap();
    let name = plan.inputs()[0].name.clone();
    let x = input(3, 11);
    let want: Vec<u32> = plan.run(&x).unwrap().iter().map(|v| v.to_bits()).collect();
    let tensor = |params: Value| json!({"name": name, "shape": [3, 784], "datatype": "FP32", "parameters": params});
    // Binary in, binary out (no outputs listed: `binary_data_output`), on the versioned path.
    let header = json!({
        "inputs": [tensor(json!({"binary_data_size": 3 * 784 * 4}))],
        "parameters": {"binary_data_output": true},
    });
    let (line, body) = binary_request(&header, &[&le_bytes(&x)]);
    let (status, head, resp) = http_with(
        server.port,
        "POST",
        "/v2/models/m/versions/1/infer",
        &line,
        &body,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
    let n: usize = head
        .split("inference-header-content-length:")
        .nth(1)
        .and_then(|v| v.lines().next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no header length in {head}"));
    let meta = json_of(&resp[..n]);
    let out = &meta["outputs"][0];
    assert_eq!(out["shape"], json!([3, 10]));
    assert_eq!(out["parameters"]["binary_data_size"], json!(3 * 10 * 4));
    assert!(out.get("data").is_none());
    let got: Vec<u32> = resp[n..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, want);
    // Binary in, the listed output inline.
    let out_name = plan.outputs()[0].name.clone();
    let header = json!({
        "inputs": [tensor(json!({"binary_data_size": 3 * 784 * 4}))],
        "outputs": [{"name": out_name, "parameters": {"binary_data": false}}],
    });
    let (line, body) = binary_request(&header, &[&le_bytes(&x)]);
    let (status, head, resp) = http_with(server.port, "POST", "/v2/models/m/infer", &line, &body);
    assert_eq!(status, 200);
    assert!(!head.contains("inference-header-content-length"), "{head}");
    assert_eq!(bits_of(&json_of(&resp)["outputs"][0]["data"]), want);

    // Bad binary requests: 400 naming what is wrong.
    let sized = |size: usize| json!({"inputs": [tensor(json!({"binary_data_size": size}))]});
    let four = le_bytes(&x[..1]);
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        (
            "Inference-Header-Content-Length: 99999\r\n".into(),
            b"{}".to_vec(),
            "must be a number of bytes",
        ),
        (
            "Inference-Header-Content-Length: ten\r\n".into(),
            b"{}".to_vec(),
            "must be a number of bytes",
        ),
        {
            let (l, b) = binary_request(&sized(8), &[&four]);
            (l, b, "4 bytes of binary data are left")
        },
        {
            let (l, b) = binary_request(&sized(4), &[&four, &four]);
            (l, b, "bytes of binary data that no input declares")
        },
        {
            let (l, b) = binary_request(&sized(3), &[&four[..3]]);
            (l, b, "not a whole number of FP32 values")
        },
        {
            let h = json!({"inputs": [{"name": name, "parameters": {"binary_data_size": 4}}]});
            let (l, b) = binary_request(&h, &[&four]);
            (l, b, "needs a \"datatype\"")
        },
        {
            let h = json!({"inputs": [tensor(json!({"binary_data_size": 3 * 784 * 4}))],
                           "outputs": [{"name": "nope"}]});
            let (l, b) = binary_request(&h, &[&le_bytes(&x)]);
            (l, b, "no output named \"nope\"")
        },
    ];
    for (line, body, words) in cases {
        let (status, _, got) = http_with(server.port, "POST", "/v2/models/m/infer", &line, &body);
        let text = String::from_utf8_lossy(&got);
        assert_eq!(status, 400, "{words}: {text}");
        assert!(
            json_of(&got)["error"].as_str().unwrap().contains(words),
            "{words}: {text}"
        );
    }
}

#[test]
fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let server = Server::start(&["builtin:seed"]);
    let p = server.port;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("POST", "/v2/models/seed/infer", b"{not json".to_vec(), 400, "malformed JSON"),
        ("POST", "/v2/models/seed/infer", b"{}".to_vec(), 400, "inputs"),
        (
            "POST",
            "/v2/models/seed/infer",
            json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).to_string().into_bytes(),
            400,
            "the model takes [rows, 784]",
        ),
        (
            "POST",
            "/v2/models/seed/infer",
            json!({"inputs": [{"name": "x", "datatype": "FP32", "data": [1, 2, 3]}]}).to_string().into_bytes(),
            400,
            "not a whole number of samples",
        ),
        (
            "POST",
            "/v2/models/seed/infer",
            json!({"inputs": [{"name": "x", "datatype": "BYTES", "data": ["a"]}]}).to_string().into_bytes(),
            400,
            "datatype BYTES",
        ),
        (
            "POST",
            "/v2/models/seed/infer",
            json!({"inputs": [{"name": "x", "shape": [2, 784], "datatype": "FP32", "data": vec![0.5; 784]}]}).to_string().into_bytes(),
            400,
            "shape",
        ),
        ("POST", "/v2/models/nope/infer", b"{}".to_vec(), 404, "no model named"),
        ("GET", "/v2/nothing", vec![], 404, "no route"),
        ("POST", "/v2/models/seed/infer", vec![b' '; 300_000], 413, "over 200000 bytes"),
    ];
    for (method, path, body, want, words) in cases {
        let (status, got) = http(p, method, path, &body);
        let text = String::from_utf8_lossy(&got);
        assert_eq!(status, want, "{path}: {text}");
        assert!(
            json_of(&got)["error"].as_str().unwrap().contains(words),
            "{path}: {text}"
        );
    }
    // A client that sends half a request and stalls does not stop others.
    let mut slow = TcpStream::connect(("127.0.0.1", p)).unwrap();
    slow.write_all(b"POST /v2/models/seed/infer HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    let x = input(1, 1);
    let req = json!({"inputs": [{"name": "x", "shape": [1, 784], "datatype": "FP32", "data": x}]});
    let (status, _) = http(
        p,
        "POST",
        "/v2/models/seed/infer",
        req.to_string().as_bytes(),
    );
    assert_eq!(status, 200);
    drop(slow);
}

/// A full queue: 503 with a JSON error and `Retry-After`, every other answer a correct 200,
/// and the server serves on.
#[test]
fn a_full_queue_answers_503_and_the_server_keeps_serving() {
    // 4 rows may wait; a batch runs when 8 rows wait or the oldest has waited 2 s. So the
    // first 4 single-row requests fill the queue for 2 s, and any arriving meanwhile is refused
    // (machine speed does not matter, only that 16 requests arrive within 2 s).
    let server = Server::start(&[
        "builtin:seed",
        "--max-batch",
        "8",
        "--queue-rows",
        "4",
        "--max-delay-us",
        "2000000",
    ]);
    let p = server.port;
    let clients: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                let x = input(1, 40 + t);
                let (status, head, body) =
                    http_with(p, "POST", "/v2/models/seed/infer", "", &seed_request(&x));
                (x, status, head, body)
            })
        })
        .collect();
    let mut refused = 0;
    for c in clients {
        let (x, status, head, body) = c.join().unwrap();
        if status == 503 {
            refused += 1;
            let msg = json_of(&body)["error"].as_str().unwrap().to_string();
            assert!(msg.contains("rows are queued"), "{msg}");
            assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
        } else {
            assert_seed_answer(status, &body, &x);
        }
    }
    assert!(
        refused > 0,
        "16 requests against a queue of 4 rows: none refused"
    );
    assert!(refused < 16, "every request refused");
    // Every client has its answer, so the queue is empty: a request of a whole batch is
    // accepted and runs at once.
    let x = input(8, 3);
    let (status, body) = http(p, "POST", "/v2/models/seed/infer", &seed_request(&x));
    assert_seed_answer(status, &body, &x);
}

/// A client that stalls in its headers is disconnected, one that stalls in its body gets 408,
/// both after the configured timeouts (far below the defaults, 10 s and 30 s).
#[test]
fn stalled_headers_and_bodies_time_out() {
    let server = Server::start(&[
        "builtin:seed",
        "--header-timeout-ms",
        "300",
        "--body-timeout-ms",
        "300",
    ]);
    let p = server.port;
    let bound = Duration::from_secs(8);
    let timeout = Duration::from_millis(300);

    // Half the headers, then nothing: the connection is closed (hyper may first answer 408).
    let start = Instant::now();
    let mut s = connect(p);
    s.set_read_timeout(Some(bound)).unwrap();
    s.write_all(b"POST /v2/models/seed/infer HTTP/1.1\r\nHost: localhost\r\nContent-Le")
        .unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => assert!(
            raw.is_empty() || raw.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&raw)
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not disconnected within {bound:?} of stalling in the headers: {e}"),
    }
    assert!(
        start.elapsed() >= timeout,
        "closed before the header timeout"
    );

    // The headers and part of the body, then nothing: 408 with a JSON error.
    let x = input(1, 2);
    let body = seed_request(&x);
    let start = Instant::now();
    let mut s = connect(p);
    s.set_read_timeout(Some(bound)).unwrap();
    s.write_all(infer_head("seed", body.len()).as_bytes())
        .unwrap();
    s.write_all(&body[..body.len() / 2]).unwrap();
    let (status, _, got) = read_one(&mut s);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(status, 408, "{text}");
    let msg = json_of(&got)["error"].as_str().unwrap().to_string();
    assert!(msg.contains("did not arrive within 300 ms"), "{msg}");
    assert!(start.elapsed() >= timeout, "408 before the body timeout");

    // The server serves on.
    let (status, got) = http(p, "POST", "/v2/models/seed/infer", &body);
    assert_seed_answer(status, &got, &x);
}

/// With `--max-connections 2`, two open idle connections hold both slots: a third
/// connection's request is not served until one of them closes, then it is.
#[test]
fn connections_past_the_cap_wait_until_one_closes() {
    // Idle keep-alive connections are closed after the header timeout: make it long.
    let server = Server::start(&[
        "builtin:seed",
        "--max-connections",
        "2",
        "--header-timeout-ms",
        "120000",
    ]);
    let p = server.port;
    let live = b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // Each answers one request (so it is being served) and stays open, idle.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(p);
            s.write_all(live).unwrap();
            assert_eq!(read_one(&mut s).0, 200);
            s
        })
        .collect();
    // The kernel completes the third connection's handshake, but the server does not accept it.
    let mut third = connect(p);
    third.write_all(live).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    match third.read(&mut [0u8; 64]) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a third connection was served while two were open: {other:?}"),
    }
    // The two held connections are still served.
    for s in &mut held {
        s.write_all(live).unwrap();
        assert_eq!(read_one(s).0, 200);
    }
    // One closes: the third is accepted and answered.
    drop(held.pop());
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (status, _, body) = read_one(&mut third);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

/// `sinter_requests_total` of `/metrics` (this request included).
fn requests_total(port: u16) -> u64 {
    let (status, text) = http(port, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    String::from_utf8(text)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("sinter_requests_total "))
        .and_then(|v| v.parse().ok())
        .expect("sinter_requests_total")
}

/// SIGTERM while a request's body is still arriving: new connections are refused at once, the
/// request gets its correct answer once the rest of its body arrives, then the server exits 0.
#[test]
fn sigterm_refuses_new_connections_finishes_the_request_in_flight_and_exits_0() {
    let mut server = Server::start(&["builtin:seed"]);
    let p = server.port;
    let x = input(2, 7);
    let body = seed_request(&x);
    let (first, rest) = body.split_at(body.len() / 2);
    let mut in_flight = connect(p);
    in_flight
        .write_all(infer_head("seed", body.len()).as_bytes())
        .unwrap();
    in_flight.write_all(first).unwrap();
    // Wait until the server is in the request's handler (its headers read, its body not
    // complete): every handled request counts, this test's /metrics requests included.
    let mut polls = 0;
    loop {
        polls += 1;
        if requests_total(p) > polls {
            break;
        }
        assert!(polls < 500, "the server never started on the request");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = server.child.id().to_string();
    let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(ok.success());
    let line = server
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("no shutdown line after SIGTERM");
    assert!(line.contains("shutting down"), "{line}");
    // It stopped accepting: a new connection is refused, not left waiting.
    match TcpStream::connect(("127.0.0.1", p)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("a connection after SIGTERM: {other:?}"),
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited with a request in flight"
    );
    // The rest of the body: the request is answered in full.
    in_flight.write_all(rest).unwrap();
    let (status, _, got) = read_one(&mut in_flight);
    assert_seed_answer(status, &got, &x);
    let status = server.exit_status(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

#[test]
fn mutated_requests_get_an_answer_and_never_crash_the_server() {
    let mut server = Server::start(&["builtin:seed"]);
    let p = server.port;
    let x = input(2, 3);
    let plan = sinter::builtin::seed()
        .compile(&sinter::CompileOptions::new())
        .unwrap();
    let out = plan.outputs()[0].name.clone();
    let json_req =
        json!({"inputs": [{"name": "x", "shape": [2, 784], "datatype": "FP32", "data": x}],
                          "outputs": [{"name": out}]})
        .to_string()
        .into_bytes();
    let header = json!({
        "inputs": [{"name": "x", "shape": [2, 784], "datatype": "FP32",
                    "parameters": {"binary_data_size": 2 * 784 * 4}}],
        "parameters": {"binary_data_output": true},
    });
    let (line, bin_req) = binary_request(&header, &[&le_bytes(&x)]);
    let mut rng = sinter::model::init::SplitMix64::new(16);
    let mut pick = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    for round in 0..300 {
        let binary = round % 2 == 1;
        let mut body = if binary {
            bin_req.clone()
        } else {
            json_req.clone()
        };
        let mut extra = if binary { line.clone() } else { String::new() };
        match pick(5) {
            0 => body.truncate(pick(body.len())),
            1 => {
                for _ in 0..1 + pick(8) {
                    let at = pick(body.len());
                    body[at] = pick(256) as u8;
                }
            }
            2 => {
                // Insert a copy of one stretch of the body into another place.
                let (a, b) = (pick(body.len()), pick(body.len()));
                let piece: Vec<u8> = body[a.min(b)..a.max(b)].iter().take(64).copied().collect();
                let at = pick(body.len());
                body.splice(at..at, piece);
            }
            3 => {
                extra = format!(
                    "Inference-Header-Content-Length: {}\r\n",
                    pick(body.len() + 8)
                )
            }
            _ => {
                // Mutate only the JSON header of a binary request: the sizes no longer add up.
                let n = header.to_string().len().min(body.len());
                let at = pick(n);
                body[at] = b"0123456789{}[],:\"x"[pick(18)];
                extra = line.clone();
            }
        }
        let (status, _, got) = http_with(p, "POST", "/v2/models/seed/infer", &extra, &body);
        assert!(
            status == 200 || (400..500).contains(&status),
            "round {round}: status {status}: {}",
            String::from_utf8_lossy(&got)
        );
        if status != 200 {
            let text = String::from_utf8_lossy(&got);
            assert!(json_of(&got)["error"].is_string(), "round {round}: {text}");
        }
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
    let (status, _) = http(p, "POST", "/v2/models/seed/infer", &json_req);
    assert_eq!(status, 200);
}

/// Token ids for an Embedding: INT64 JSON, INT32 binary and whole-number FP32 JSON all give
/// the bits of `Plan::run_all`; a fraction for an integer input is a 400.
#[test]
fn integer_inputs_as_json_and_binary() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/graphs/text_cnn.keras"
    );
    let server = Server::start(&[&format!("t={path}")]);
    let plan = sinter::load(std::path::Path::new(path))
        .unwrap()
        .compile(&sinter::CompileOptions::new())
        .unwrap();
    let info = &plan.inputs()[0];
    let (name, dtype) = (info.name.clone(), info.dtype);
    assert_ne!(dtype, sinter::DType::F32);
    let ids: Vec<i64> = (0..2 * 20).map(|i| (i * 7 % 50) as i64).collect();
    let array = match dtype {
        sinter::DType::I32 => sinter::io::npy::Array::I32(ids.iter().map(|&i| i as i32).collect()),
        _ => sinter::io::npy::Array::I64(ids.clone()),
    };
    let want: Vec<u32> = plan.run_all(&[array.values()]).unwrap()[0]
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let tensor = |datatype: &str, data: Value| json!({"inputs": [{"name": name, "shape": [2, 20], "datatype": datatype, "data": data}]});
    let floats: Vec<f64> = ids.iter().map(|&i| i as f64).collect();
    for req in [tensor("INT64", json!(ids)), tensor("FP32", json!(floats))] {
        let (status, got) = http(
            server.port,
            "POST",
            "/v2/models/t/infer",
            req.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
        assert_eq!(bits_of(&json_of(&got)["outputs"][0]["data"]), want, "{req}");
    }
    let header = json!({"inputs": [{"name": name, "shape": [2, 20], "datatype": "INT32",
                                    "parameters": {"binary_data_size": 40 * 4}}]});
    let raw: Vec<u8> = ids.iter().flat_map(|&i| (i as i32).to_le_bytes()).collect();
    let (line, body) = binary_request(&header, &[&raw]);
    let (status, _, got) = http_with(server.port, "POST", "/v2/models/t/infer", &line, &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
    assert_eq!(bits_of(&json_of(&got)["outputs"][0]["data"]), want);
    let mut fraction: Vec<Value> = ids.iter().map(|&i| json!(i)).collect();
    fraction[3] = json!(2.5);
    let (status, got) = http(
        server.port,
        "POST",
        "/v2/models/t/infer",
        tensor("INT64", json!(fraction)).to_string().as_bytes(),
    );
    assert_eq!(status, 400);
    let msg = json_of(&got)["error"].as_str().unwrap().to_string();
    assert!(msg.contains("2.5 is not an integer"), "{msg}");
}

/// The encoder fixture `file` served as `name` for up to 8 positions, batching requests
/// within 3 ms, and its plan for running requests alone.
fn serve_encoder(name: &str, file: &str) -> (Server, std::sync::Arc<sinter::Plan>) {
    let path = format!(
        "{}/tests/fixtures/transformers/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let server = Server::start(&[
        &format!("{name}={path}"),
        "--seq",
        "8",
        "--max-delay-us",
        "3000",
    ]);
    let model = sinter::io::load_with(
        std::path::Path::new(&path),
        &sinter::io::LoadOptions::new().seq(8),
    )
    .unwrap();
    let plan = std::sync::Arc::new(model.compile(&sinter::CompileOptions::new()).unwrap());
    (server, plan)
}

/// A BERT encoder served for up to 8 tokens: concurrent requests of every length (KServe
/// shapes `[rows, len]`) share batches, padded, and each answer is the bits of that request
/// run alone at its own length, with its own length in the output shape.
#[test]
fn sequences_of_any_length_share_batches_and_keep_their_bits() {
    let (server, plan) = serve_encoder("bert", "bert.ts.onnx");
    let (status, meta) = http(server.port, "GET", "/v2/models/bert", b"");
    assert_eq!(status, 200);
    assert_eq!(json_of(&meta)["inputs"][0]["shape"], json!([-1, -1]));
    let clients: Vec<_> = (0..8usize)
        .map(|c| {
            let (port, plan) = (server.port, plan.clone());
            std::thread::spawn(move || {
                for i in 0..6usize {
                    let len = 1 + (c * 5 + i * 3) % 8;
                    let ids: Vec<i64> = (0..len).map(|j| ((c + 3 * j + i) % 50) as i64).collect();
                    let mask: Vec<i64> = (0..len).map(|j| i64::from(j + (c % 3) < len || j == 0)).collect();
                    let types = vec![0i64; len];
                    let tensor = |name: &str, v: &[i64]| json!({"name": name, "shape": [1, len], "datatype": "INT64", "data": v});
                    let req = json!({"inputs": [tensor("input_ids", &ids), tensor("attention_mask", &mask), tensor("token_type_ids", &types)]});
                    let (status, got) = http(port, "POST", "/v2/models/bert/infer", req.to_string().as_bytes());
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
                    let got = json_of(&got);
                    let arrays = [ids.clone(), mask.clone(), types.clone()].map(sinter::io::npy::Array::I64);
                    let values: Vec<sinter::Values> = arrays.iter().map(|a| a.values()).collect();
                    let alone = plan.run_seq(len, &values).unwrap();
                    for (k, want) in alone.iter().enumerate() {
                        let out = &got["outputs"][k];
                        let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(bits_of(&out["data"]), want, "client {c} request {i} length {len} output {k}");
                        if k == 0 {
                            assert_eq!(out["shape"], json!([1, len, 16]));
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // Longer than the plan's longest: a 400 naming the input.
    let req = json!({"inputs": [{"name": "input_ids", "shape": [1, 9], "datatype": "INT64", "data": vec![1; 9]}]});
    let (status, got) = http(
        server.port,
        "POST",
        "/v2/models/bert/infer",
        req.to_string().as_bytes(),
    );
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&got).contains("1..=8"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

/// PyTorch's `nn.TransformerEncoder` served with its boolean padding mask (true marks
/// padding): JSON `true`/`false` and binary BOOL bytes. Requests of different lengths join
/// one batch padded with true (the mask's padding), and each answer keeps the bits of the
/// request run alone.
#[test]
fn boolean_padding_masks_join_batches_and_keep_their_bits() {
    let (server, plan) = serve_encoder("te", "te_pre.dynamo.onnx");
    assert!(plan.pads() && plan.inputs()[1].pad_one);
    let (status, meta) = http(server.port, "GET", "/v2/models/te", b"");
    assert_eq!(status, 200);
    assert_eq!(json_of(&meta)["inputs"][1]["datatype"], "BOOL");
    let clients: Vec<_> = (0..6usize)
        .map(|c| {
            let (port, plan) = (server.port, plan.clone());
            std::thread::spawn(move || {
                for i in 0..5usize {
                    let len = 1 + (c * 3 + i * 5) % 8;
                    let x: Vec<f32> = (0..len * 16).map(|j| ((c * 7 + i * 3 + j) % 13) as f32 * 0.25 - 1.5).collect();
                    // The last position of some requests is padding inside the request.
                    let pad: Vec<bool> = (0..len).map(|j| len > 1 && j + 1 == len && c % 2 == 1).collect();
                    let xt = json!({"name": "x", "shape": [1, len, 16], "datatype": "FP32", "data": x});
                    let (status, got) = if i % 2 == 0 {
                        let pt = json!({"name": "padding_mask", "shape": [1, len], "datatype": "BOOL", "data": pad});
                        let req = json!({"inputs": [xt, pt]});
                        http(port, "POST", "/v2/models/te/infer", req.to_string().as_bytes())
                    } else {
                        let raw: Vec<u8> = pad.iter().map(|&p| u8::from(p)).collect();
                        let header = json!({"inputs": [xt, {"name": "padding_mask", "shape": [1, len], "datatype": "BOOL", "parameters": {"binary_data_size": raw.len()}}]});
                        let (head, body) = binary_request(&header, &[&raw]);
                        let (status, _, body) = http_with(port, "POST", "/v2/models/te/infer", &head, &body);
                        (status, body)
                    };
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
                    let got = json_of(&got);
                    let alone = plan
                        .run_seq(len, &[sinter::Values::F32(&x), sinter::Values::Bool(&pad)])
                        .unwrap();
                    let want: Vec<u32> = alone[0].iter().map(|v| v.to_bits()).collect();
                    assert_eq!(bits_of(&got["outputs"][0]["data"]), want, "client {c} request {i} length {len}");
                    assert_eq!(got["outputs"][0]["shape"], json!([1, len, 16]));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // A BOOL value that is neither true nor false.
    let req = json!({"inputs": [
        {"name": "x", "shape": [1, 1, 16], "datatype": "FP32", "data": vec![0.5; 16]},
        {"name": "padding_mask", "shape": [1, 1], "datatype": "BOOL", "data": [2]}]});
    let (status, got) = http(
        server.port,
        "POST",
        "/v2/models/te/infer",
        req.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&got));
}

/// A value of `/metrics`.
fn metric(port: u16, name: &str) -> u64 {
    let (status, text) = http(port, "GET", "/metrics", b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(text).unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The server's peak resident memory (`VmHWM`), bytes; `None` off Linux.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Hostile bodies against a small memory budget: six clients send 7.8 MB JSON bodies at once
/// (valid shapes and shapes the model refuses), one trickles a body, while a normal client
/// and a liveness probe run. The budget refuses what does not fit with 503 and
/// `Retry-After`, every normal request is answered bit-exactly, every probe answers, the
/// budget is whole again afterwards, and the server's peak memory stays near the budget
/// (a JSON tree of one such body alone would be about 80 MB).
#[test]
fn hostile_bodies_stay_within_the_budget_and_probes_answer() {
    const BUDGET: u64 = 20_000_000;
    let server = Server::start(&[
        "builtin:seed",
        "--max-body-bytes",
        "8000000",
        "--max-inflight-bytes",
        "20000000",
        "--body-timeout-ms",
        "2000",
    ]);
    let p = server.port;
    let rows = 2500;
    let body_of = |shape: [usize; 2]| {
        let mut b = format!(
            "{{\"inputs\":[{{\"name\":\"input_layer\",\"shape\":[{},{}],\"datatype\":\"FP32\",\"data\":[",
            shape[0], shape[1]
        );
        b.push_str(&vec!["0.5"; rows * 784].join(","));
        b.push_str("]}]}");
        b.into_bytes()
    };
    let valid = std::sync::Arc::new(body_of([rows, 784]));
    let refused = std::sync::Arc::new(body_of([rows * 784 / 3, 3]));
    assert!(valid.len() < 8_000_000);
    let start = std::sync::Arc::new(std::sync::Barrier::new(6));
    let hostile: Vec<_> = (0..6)
        .map(|k| {
            let body = if k % 2 == 0 {
                valid.clone()
            } else {
                refused.clone()
            };
            let start = start.clone();
            std::thread::spawn(move || {
                let mut s = connect(p);
                // Headers first: the budget is charged from Content-Length before the body.
                s.write_all(infer_head("seed", body.len()).as_bytes())
                    .unwrap();
                start.wait();
                let _ = s.write_all(&body); // a refused body may be cut off
                let (status, head, got) = read_one(&mut s);
                (k, status, head, got)
            })
        })
        .collect();
    // A body that trickles: it times out (408) and gives its bytes back.
    let slow = std::thread::spawn(move || {
        let mut s = connect(p);
        s.write_all(infer_head("seed", 1_000_000).as_bytes())
            .unwrap();
        for _ in 0..10 {
            if s.write_all(b"[").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        read_one(&mut s).0
    });
    let probe = std::thread::spawn(move || {
        let mut answers = 0;
        for _ in 0..40 {
            let (status, _) = http(p, "GET", "/v2/health/live", b"");
            assert_eq!(status, 200);
            answers += 1;
            std::thread::sleep(Duration::from_millis(25));
        }
        answers
    });
    for seed in 0..20 {
        let x = input(1, seed);
        let (status, got) = http(p, "POST", "/v2/models/seed/infer", &seed_request(&x));
        assert_seed_answer(status, &got, &x);
    }
    let mut statuses = Vec::new();
    for h in hostile {
        let (k, status, head, got) = h.join().unwrap();
        let text = String::from_utf8_lossy(&got);
        match status {
            200 => assert_eq!(k % 2, 0, "a refused shape was answered: {text}"),
            400 => {
                assert_eq!(k % 2, 1, "{text}");
                assert!(text.contains("the model takes [rows, 784]"), "{text}");
            }
            503 => {
                assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
                assert!(text.contains("memory budget"), "{text}");
            }
            _ => panic!("status {status}: {text}"),
        }
        statuses.push(status);
    }
    eprintln!("hostile statuses {statuses:?}");
    assert!(
        statuses.contains(&503),
        "six 7.8 MB bodies fit a 20 MB budget: {statuses:?}"
    );
    assert_eq!(slow.join().unwrap(), 408);
    assert_eq!(probe.join().unwrap(), 40);
    assert!(metric(p, "sinter_requests_refused_memory_total") > 0);
    assert!(metric(p, "sinter_inflight_bytes_peak") <= BUDGET);
    // Answers are written before their bytes go back: wait for the last ones.
    let t = Instant::now();
    while metric(p, "sinter_inflight_bytes") != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the budget was not given back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(rss) = peak_rss(server.child.id()) {
        assert!(
            rss < BUDGET + 80_000_000,
            "peak RSS {} MB with a {} MB budget",
            rss / 1_000_000,
            BUDGET / 1_000_000
        );
        eprintln!("peak RSS {} MB", rss / 1_000_000);
    }
}

/// A JSON body whose declared shape the model refuses is answered 400 from its first bytes:
/// the client sends 100 KB of a 7.8 MB body and stops, and gets the 400 (not the 408 the
/// unsent rest would earn).
#[test]
fn a_refused_shape_is_answered_before_the_body_is_in() {
    let server = Server::start(&["builtin:seed", "--max-body-bytes", "8000000"]);
    // Named as the model names its input: a tensor that names none of them waits for the
    // whole body (it may not be the one used).
    let head = "{\"inputs\":[{\"name\":\"input_layer\",\"shape\":[650000,3],\"datatype\":\"FP32\",\"data\":[";
    let mut first = head.as_bytes().to_vec();
    while first.len() < 100_000 {
        first.extend_from_slice(b"0.5,");
    }
    let mut s = connect(server.port);
    s.write_all(infer_head("seed", 7_800_000).as_bytes())
        .unwrap();
    s.write_all(&first).unwrap();
    let (status, _, got) = read_one(&mut s);
    let text = String::from_utf8_lossy(&got);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("the model takes [rows, 784]"), "{text}");
}
