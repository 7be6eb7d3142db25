//! The process's memory settings, made before anything large is allocated:
//! the binary and the benches that measure it call [`settle`] first.

/// Turns transparent huge pages off for this process.
///
/// mimalloc (the binary's allocator) asks the kernel for huge pages on
/// its segments (`madvise(MADV_HUGEPAGE)`), which Debian's default
/// (`madvise`) grants: measured with `cargo bench --bench memory`, an
/// empty store then took 41 MiB resident instead of 6, and the whole run
/// peaked at 137 MiB instead of 93, for no gain in throughput (the kernel
/// zeroes each 2 MiB page whole on its first touch). An operator sizing a
/// server by the page cache setting should see that, not 2 MiB steps.
/// Returns whether the kernel took the setting (it cannot fail on Linux
/// 3.15 and later; elsewhere memory is only larger).
pub fn settle() -> bool {
    // SAFETY: PR_SET_THP_DISABLE sets a flag on the process's memory
    // descriptor; no memory of this process is read or written.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_are_off_once_settled() {
        assert!(super::settle());
        // SAFETY: reads the process's flag, as above.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        // The line is there since Linux 5.0 (these machines run 6.x).
        assert!(status.lines().any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])), "{status}");
    }
}
