//! `sinter serve` as a child process on free ports, for the serve and gRPC tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub port: u16,
    /// The server's stdout, line by line.
    pub lines: Receiver<String>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sinter"))
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .args(if args.contains(&"--max-body-bytes") {
                &[][..]
            } else {
                &["--max-body-bytes", "200000"][..]
            })
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts");
        let out = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed no listening line");
        let port = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Server { child, port, lines }
    }

    /// Waits up to `bound` for the server to exit.
    #[allow(dead_code)] // not every test binary waits for an exit
    pub fn exit_status(&mut self, bound: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < bound,
                "the server did not exit within {bound:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
