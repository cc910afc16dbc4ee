//! A real S3-compatible server on loopback for the tests: moto (PyPI `moto[server]`) in server
//! mode, started by the test itself on a free port and stopped when dropped.
//!
//! Why moto: it installs from PyPI with pip (the only registries reachable here), starts in
//! well under a second, needs no credentials or disk set-up, and implements the S3 REST API
//! (signature V4, PutObject with metadata, GetObject, 404 NoSuchKey) that object_store speaks.
//! `.ci/run` installs it; without it these tests FAIL (they never skip) and say how to install.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

/// Starts the server on port 0, prints the port it got, and runs until stdin closes.
const LAUNCHER: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

/// How to install what the S3 tests need.
pub const INSTALL: &str = "python3 -m pip install 'moto[server]'";

/// A running moto server.
pub struct Moto {
    /// The server process (killed on drop).
    child: Child,
    /// Held open: the launcher exits when it closes.
    _stdin: ChildStdin,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The port.
    port: u16,
}

impl Moto {
    /// Starts moto, or panics with how to install it.
    pub fn start() -> Moto {
        let mut child = match Command::new("python3")
            .args(["-c", LAUNCHER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!(
                "the S3 publication tests need python3 and moto ({INSTALL}); starting python3 failed: {e}"
            ),
        };
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Ok(port) = line.trim().parse::<u16>() else {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the S3 publication tests need moto's S3 server ({INSTALL}; .ci/run installs it), \
                 and it did not start:\n{err}"
            );
        };
        Moto {
            child,
            _stdin: stdin,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Creates a bucket (moto does not check signatures, so a bare PUT does).
    pub fn create_bucket(&self, name: &str) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
    }

    /// The environment the AWS SDKs (and object_store's `from_env`) read.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }

    /// The same as object_store configuration keys, for in-process targets.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint.clone()),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "testing".into()),
            ("aws_secret_access_key", "testing".into()),
            ("aws_region", "us-east-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
