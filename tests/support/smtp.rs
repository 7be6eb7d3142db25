//! A real SMTP server for tests: aiosmtpd from PyPI (installed into the
//! Synapse venv), storing what it receives in a Maildir; messages are
//! parsed with Python's own `email` package.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{free_port, install, stop_by_pid, synapse_venv, wait_until_serving};

const AIOSMTPD_VERSION: &str = "1.4.6";

pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    python: PathBuf,
    child: Option<Child>,
}

impl SmtpServer {
    pub async fn start(dir: &Path) -> SmtpServer {
        let venv = synapse_venv();
        // `python -m`, not the venv's scripts: their first line names the
        // interpreter by absolute path, which breaks when a target/ is copied.
        let python = venv.join("bin/python");
        let present = || {
            Command::new(&python)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        install::ensure_installed(
            &format!("aiosmtpd {AIOSMTPD_VERSION} into {}", venv.display()),
            || present().then_some(()),
            || {
                install::run(
                    Command::new(&python)
                        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                        .arg(format!("aiosmtpd=={AIOSMTPD_VERSION}")),
                )
            },
        );
        let port = free_port();
        let maildir = dir.join("maildir");
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("smtp.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        // Held by the value from here on, so that a failed wait stops it.
        let mut server = SmtpServer { port, maildir, python, child: Some(child) };
        let listening = wait_until_serving(
            "the SMTP server to listen",
            server.child.as_mut().unwrap(),
            std::slice::from_ref(&log),
            Duration::from_secs(30),
            || async move { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() },
        )
        .await;
        if let Err(exited) = listening {
            server.child = None;
            panic!("the SMTP server exited before it listened ({}):\n{}", exited.status, exited.logs);
        }
        server
    }

    /// Every message received, parsed: headers, and the decoded parts.
    pub fn messages(&self) -> Vec<Value> {
        let script = r#"
import email, email.policy, json, mailbox, sys
out = []
for key, msg in sorted(mailbox.Maildir(sys.argv[1], create=True).items()):
    m = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    parts = [{"type": p.get_content_type(), "content": p.get_content()} for p in m.walk() if not p.is_multipart()]
    out.append({"headers": {k: str(v) for k, v in m.items()}, "content_type": m.get_content_type(), "parts": parts})
print(json.dumps(out))
"#;
        let output = Command::new(&self.python).arg("-c").arg(script).arg(&self.maildir).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_by_pid(child, Duration::from_secs(5));
        }
    }
}
