//! Debian's strace (installed by the harness if missing), and reading what
//! it wrote: which system calls a process made, in order.

use std::collections::HashMap;
use std::path::PathBuf;

use super::install;

/// The strace binary, installed from Debian's packages on first use.
pub fn strace() -> PathBuf {
    install::ensure_installed(
        "Debian's strace for the durability test",
        || ["/usr/bin/strace", "/bin/strace"].into_iter().map(PathBuf::from).find(|p| p.exists()),
        || install::apt_install(&["strace"]),
    )
}

/// One system call of a `strace -f -y` trace, its entry and its end put
/// together (strace splits a call that another thread interrupted into
/// `<unfinished ...>` and `<... resumed>` lines).
#[derive(Debug, Clone)]
pub struct Call {
    pub pid: u32,
    pub name: String,
    /// The first argument as `-y` shows it: `7</path/to/file>`, `9<socket:[123]>`.
    pub fd: String,
    /// Everything strace printed of it (arguments, result).
    pub text: String,
    /// Line of the trace on which the call was entered, and on which it ended.
    pub entered: usize,
    pub ended: usize,
    /// The result, once it ended.
    pub result: Option<String>,
}

/// The calls of a trace, in the order they were entered.
pub fn calls(trace: &str) -> Vec<Call> {
    let mut out: Vec<Call> = Vec::new();
    let mut open: HashMap<u32, usize> = HashMap::new();
    for (line_no, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        let Ok(pid) = pid.trim().parse::<u32>() else { continue };
        let rest = rest.trim_start();
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some(i) = open.remove(&pid) {
                let call = &mut out[i];
                call.text.push_str(resumed);
                call.ended = line_no;
                call.result = resumed.rsplit_once(" = ").map(|(_, r)| r.trim().to_owned());
            }
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else { continue };
        if name.contains(' ') || name.is_empty() {
            continue;
        }
        let fd = args.split([',', ')']).next().unwrap_or("").trim().to_owned();
        let unfinished = rest.ends_with("<unfinished ...>");
        out.push(Call {
            pid,
            name: name.to_owned(),
            fd,
            text: rest.to_owned(),
            entered: line_no,
            ended: line_no,
            result: if unfinished { None } else { rest.rsplit_once(" = ").map(|(_, r)| r.trim().to_owned()) },
        });
        if unfinished {
            open.insert(pid, out.len() - 1);
        }
    }
    out
}
