//! `sinter serve` end to end over loopback: KServe v2 REST and TF Serving predict answers are
//! bit-identical to `Plan::run` of the same rows alone, from many concurrent clients; bad
//! requests get a 4xx with a JSON error and the server keeps serving; SIGTERM finishes in-flight
//! requests and exits 0.
#![cfg(feature = "serve")]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .arg("serve")
            .args(args)
            .args(["--port", "0", "--max-body-bytes", "200000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

#[test]
fn sigterm_finishes_and_exits_cleanly() {
    let mut server = Server::start(&["builtin:seed"]);
    assert_eq!(http(server.port, "GET", "/v2/health/ready", b"").0, 200);
    let pid = server.child.id().to_string();
    let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(ok.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = server.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("the server did not stop within 5 s of SIGTERM");
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
