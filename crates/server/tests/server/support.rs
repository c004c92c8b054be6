use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A command for the real binary, run in `dir`, with a clean GATEHOUSE_* environment.
pub fn gatehouse(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEHOUSE_") && !key.starts_with("GATEHOUSE_TEST_") {
            command.env_remove(key);
        }
    }
    command.env("GATEHOUSE_SERVER__LISTEN", "127.0.0.1:0");
    // Relying parties in the tests listen on 127.0.0.1.
    command.env("GATEHOUSE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true");
    command
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("run gatehouse")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A running server; killed on drop if the test did not stop it.
pub struct Server {
    child: Child,
    pub base_url: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads copying the pipes; they end when the process has exited.
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// The URL at the start of `text`, in a plain or a JSON log line alike.
fn listen_url(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '[' | ']'))
        .collect()
}

impl Server {
    pub fn start(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gatehouse serve");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        let base_url = loop {
            if let Some(url) = stderr
                .lock()
                .unwrap()
                .lines()
                .find_map(|l| l.split("listening on ").nth(1).map(listen_url))
            {
                break url;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("server exited with {status}: {}", stderr.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Answering HTTP means the server loop, and its signal handling, is running.
        let client = http();
        while client.get(format!("{base_url}/readyz")).send().is_err() {
            assert!(
                Instant::now() < deadline,
                "server never answered: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            base_url,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL: the process ends wherever it is, mid-transaction or not.
    pub fn kill_hard(mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM, waits for a graceful exit and for everything the process
    /// wrote: the exit status, its whole stdout and stderr.
    pub fn stop(mut self) -> (ExitStatus, String, String) {
        let status = self.signal_term_and_wait();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        (status, self.stdout(), self.stderr())
    }

    /// Sends SIGTERM and waits for a graceful exit.
    pub fn terminate(self) -> ExitStatus {
        self.stop().0
    }

    fn signal_term_and_wait(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
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

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("gatehouse-data")
}

/// A directory whose data directory the first `gatehouse serve` has set up (the
/// default tenant, its keys), with that server stopped again.
pub fn started_once() -> tempfile::TempDir {
    let dir = temp_dir();
    assert!(
        Server::start(gatehouse(dir.path(), &["serve"]))
            .terminate()
            .success()
    );
    dir
}

/// A pool on the SQLite database in `dir`'s data directory.
pub fn sqlite_store(dir: &Path) -> gatehouse_identity_store::db::Pool {
    let url = format!("sqlite://{}", data_dir(dir).join("gatehouse.db").display());
    gatehouse_identity_store::db::pool(&gatehouse_identity_store::db::ConnectOptions::new(&url))
        .unwrap()
}

/// Asserts that the command succeeded (showing its stderr if not); its stdout.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        stderr(output)
    );
    stdout(output)
}
