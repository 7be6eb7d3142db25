//! A real PostgreSQL for tests: Debian's `postgresql` package (installed
//! with apt on first use when `initdb` is missing), a cluster made with
//! `initdb` in a directory of its own, started on a free loopback port with
//! its socket in that directory, and stopped by PID.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, the
//! cluster's directory belongs to `nobody` and `initdb` and `postgres` run
//! as that user (set in the child before `exec`, no `su` in between, so the
//! PID held is the server's own).
//!
//! This one file serves the integration tests (`tests/support`) and the
//! library's unit tests (the store conformance suite includes it by path),
//! so that both start PostgreSQL the same way. It uses only the standard
//! library, `libc` and the binaries of the package: no client library, so
//! it works inside and outside an async runtime alike.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL cluster, stopped (and its directory removed) when
/// dropped. One made by [`Postgres::shared`] lives as long as the test
/// process: the kernel stops it when the process ends (parent-death signal),
/// and the next run removes its directory.
pub struct Postgres {
    pub port: u16,
    /// Ports the start found taken ("Address already in use") and moved on
    /// from, in order: empty when the first one served.
    pub busy_ports: Vec<u16>,
    bin: PathBuf,
    dir: PathBuf,
    pid: u32,
    waiter: Option<std::thread::JoinHandle<()>>,
    databases: AtomicU64,
}

/// Who runs the cluster: this process's user, or `nobody` when that is root.
#[derive(Clone, Copy)]
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn run_as() -> Option<RunAs> {
    // SAFETY: geteuid cannot fail; getpwnam returns a pointer into static
    // storage, read at once (the harness looks users up from this thread only
    // during start-up, and the fields are copied out before anything else).
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"nobody".as_ptr());
        assert!(!pw.is_null(), "running as root, and there is no user `nobody` to run PostgreSQL as");
        Some(RunAs { uid: (*pw).pw_uid, gid: (*pw).pw_gid })
    }
}

/// A command that runs as `who` (when set), and, with `die_with_parent`,
/// gets SIGINT (PostgreSQL's fast shutdown) when the thread that started it
/// ends.
fn command(program: &Path, who: Option<RunAs>, die_with_parent: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if let Some(w) = who
                && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(w.gid) != 0 || libc::setuid(w.uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After setuid: a change of user clears the parent-death signal.
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// The newest installed PostgreSQL's `bin` directory (Debian keeps them in
/// `/usr/lib/postgresql/<version>/bin`).
fn installed_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Where PostgreSQL's binaries are, installing Debian's package first if
/// they are missing.
pub fn postgres_bin() -> PathBuf {
    super::install::ensure_installed("PostgreSQL (Debian's postgresql package)", installed_bin, || {
        super::install::apt_install(&["postgresql"])
    })
}

const DIR_PREFIX: &str = "gatekeeper-pg-";

/// Removes the directories of clusters whose test process is gone (a shared
/// cluster's is never removed by its own process).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)).and_then(|r| r.split('-').next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<libc::pid_t>() else { continue };
        // SAFETY: signal 0 only checks that the process exists.
        let gone =
            unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn output(c: &mut Command) -> Result<String, String> {
    let shown = format!("{c:?}");
    let out = c.stdin(Stdio::null()).output().map_err(|e| format!("{shown} could not start: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(format!(
        "{shown} ended with {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// A CA and a server certificate signed by it, for `127.0.0.1` and
/// `localhost`, in `dir` (with `openssl`, which Debian's `postgresql`
/// package depends on through `ssl-cert`). The key is the server user's,
/// readable by it alone, as PostgreSQL demands.
fn make_certificates(dir: &Path, who: Option<RunAs>) {
    let openssl = |args: &[&str]| {
        output(Command::new("openssl").current_dir(dir).args(args)).unwrap_or_else(|e| panic!("{e}"));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-days", "7", "-subj", "/CN=gatekeeper-test-ca", "-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[&["req"], &ec[..], &["-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]].concat());
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "7",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    let key = dir.join("server.key");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    if let Some(w) = who {
        for file in ["server.key", "server.crt"] {
            let path = std::ffi::CString::new(dir.join(file).as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), w.uid, w.gid) }, 0, "chown {file}");
        }
    }
}

/// Why a server started by [`Postgres::start`] is not ready: its log.
enum NotReady {
    /// It ended (it could not bind its port, or refused its settings).
    Ended(String),
    TimedOut(String),
}

/// Waits until the server on `port` accepts connections: its own, as its
/// log says it listens there (on a port taken by another test process's
/// cluster, that one would answer `pg_isready`).
fn wait_ready(bin: &Path, port: u16, waiter: &std::thread::JoinHandle<()>, log: &Path) -> Result<(), NotReady> {
    let listening = format!("listening on IPv4 address \"127.0.0.1\", port {port}\n");
    let start = Instant::now();
    loop {
        let text = || std::fs::read_to_string(log).unwrap_or_default();
        let ready = text().contains(&listening)
            && Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        if waiter.is_finished() {
            return Err(NotReady::Ended(text()));
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(NotReady::TimedOut(text()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Postgres {
    /// A fresh cluster, stopped when the value is dropped.
    pub fn start() -> Postgres {
        Self::start_trying(None)
    }

    /// [`Self::start`] trying port `first` first (a test makes it one in use).
    pub fn start_trying_first(first: u16) -> Postgres {
        Self::start_trying(Some(first))
    }

    fn start_trying(mut first: Option<u16>) -> Postgres {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        sweep_stale();
        let bin = postgres_bin();
        let who = run_as();
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        if let Some(w) = who {
            let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), w.uid, w.gid) }, 0, "chown {}", dir.display());
        }
        let data = dir.join("data");
        output(command(&bin.join("initdb"), who, false).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]))
        .unwrap_or_else(|e| panic!("initdb failed: {e}"));
        make_certificates(&dir, who);
        // A port that turns out taken when the server binds it (see
        // `ports`: another process may have started a server on it since it
        // was chosen) is not a failure of the test: the server is started
        // again on another one.
        let log_path = dir.join("postgres.log");
        let mut taken = Vec::new();
        loop {
            let port = first.take().unwrap_or_else(super::ports::free_port);
            let log = std::fs::File::create(&log_path).unwrap();
            let mut c = command(&bin.join("postgres"), who, true);
            c.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&dir)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=32MB"])
                // The product's durability rests on synchronous commit: the
                // tests run with PostgreSQL's defaults (fsync on), not without.
                .args(["-c", "synchronous_commit=on", "-c", "max_connections=200"])
                // TLS offered (clients choose): a certificate for 127.0.0.1 from
                // a CA of the cluster's own, see `ca_file`.
                .args(["-c", "ssl=on", "-c"])
                .arg(format!("ssl_cert_file={}", dir.join("server.crt").display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // Started from a thread that lives exactly as long as the server:
            // the parent-death signal fires when that thread ends, which is
            // when the test process ends (or the server has stopped anyway).
            let (tx, rx) = std::sync::mpsc::channel();
            let waiter = std::thread::spawn(move || match c.spawn() {
                Ok(mut child) => {
                    tx.send(Ok(child.id())).unwrap();
                    let _ = child.wait();
                }
                Err(e) => tx.send(Err(format!("starting postgres: {e}"))).unwrap(),
            });
            let pid = rx.recv().unwrap().unwrap_or_else(|e| panic!("{e}"));
            match wait_ready(&bin, port, &waiter, &log_path) {
                Ok(()) => {
                    let databases = AtomicU64::new(0);
                    return Postgres { port, busy_ports: taken, bin, dir, pid, waiter: Some(waiter), databases };
                }
                Err(NotReady::Ended(log)) if log.contains("Address already in use") && taken.len() < 4 => {
                    let _ = waiter.join();
                    let _ = std::fs::rename(&log_path, dir.join(format!("postgres-{port}-taken.log")));
                    taken.push(port);
                }
                Err(NotReady::Ended(log)) => {
                    let _ = waiter.join();
                    panic!(
                        "PostgreSQL ended before it was ready (port {port}, ports taken before: {taken:?}); its log:\n{log}"
                    );
                }
                Err(NotReady::TimedOut(log)) => {
                    // Dropped: stopped, and its directory removed.
                    let databases = AtomicU64::new(0);
                    drop(Postgres { port, busy_ports: taken, bin, dir, pid, waiter: Some(waiter), databases });
                    panic!("PostgreSQL was not ready after 60 s (port {port}); its log:\n{log}");
                }
            }
        }
    }

    /// One cluster for the whole test process, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// Runs one SQL statement as the superuser, in database `postgres`.
    pub fn sql(&self, statement: &str) -> String {
        output(Command::new(self.bin.join("psql")).args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            statement,
        ]))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new, empty database of its own, and the URL to reach it.
    pub fn create_database(&self) -> String {
        let name = format!("gk_{}", self.databases.fetch_add(1, Ordering::SeqCst));
        self.sql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The CA certificate (PEM) that signed the server's certificate (for
    /// `127.0.0.1` and `localhost`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server's PID (the postmaster), e.g. to stop it abruptly.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SAFETY: the PID is the server's own, still ours until reaped by
        // the waiter thread, which is joined below.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.waiter.as_ref().is_some_and(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.waiter.as_ref().is_some_and(|w| !w.is_finished()) {
            // SAFETY: as above.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
