//! The real server in a child process on an ephemeral loopback port, and raw HTTP/1.1 requests
//! to it (no HTTP client dependency).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::submit;

pub struct Server {
    pub token: Option<String>,
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// `submit serve --models models --addr 127.0.0.1:0 --poll-ms 50 EXTRA...` in `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut command = submit(dir);
        command.args([
            "serve",
            "--models",
            "models",
            "--addr",
            "127.0.0.1:0",
            "--poll-ms",
            "50",
        ]);
        Server::spawn(command.args(extra))
    }

    /// `submit serve EXTRA...` in `dir` with `conf_dir` as `SUBMIT_CONF_DIR`, nothing else given.
    pub fn start_with_conf(dir: &Path, conf_dir: &Path, extra: &[&str]) -> Server {
        let mut command = submit(dir);
        command.env("SUBMIT_CONF_DIR", conf_dir).arg("serve");
        Server::spawn(command.args(extra))
    }

    fn spawn(command: &mut std::process::Command) -> Server {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://")
                    && let Some(sender) = sender.take()
                {
                    let rest = &line[at + "listening on http://".len()..];
                    let _ = sender.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let addr = receiver
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        Server {
            token: None,
            child,
            addr,
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, words: &str) {
        let started = Instant::now();
        while !self.log().contains(words) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {words:?} in the log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let authorization = self.token.as_ref().map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        http_with(&self.addr, method, path, &headers, content_type, body)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.request(
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        );
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.request("GET", path, "", b"");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
    }

    /// SIGTERM, and the exit status.
    pub fn stop(self) -> Option<i32> {
        self.terminate();
        self.wait()
    }

    /// Waits (at most 30 s) for the server to exit; its exit status.
    pub fn wait(mut self) -> Option<i32> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("the server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// One HTTP/1.1 request on a fresh connection; the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    http_with(addr, method, path, &[], content_type, body)
}

/// [`http`] with extra header lines.
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}
