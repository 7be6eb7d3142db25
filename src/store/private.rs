//! What Gatekeeper keeps is readable by its own user only: strangers'
//! messages, the owners' settings and, in client mode, decrypted
//! end-to-end encrypted text and the device's keys. sled and SQLite create
//! their files with the process umask (world-readable under the usual
//! 022), so a store's directory is made 0700 and everything in it 0600
//! (directories 0700) each time it is opened, whatever the umask.

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if needed, then makes it and everything
/// under it private to this user. Symbolic links are left alone.
pub fn make_private(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    restrict(dir)
}

#[cfg(unix)]
fn restrict(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    // Group and others lose every bit; the user keeps theirs (a directory
    // must stay searchable by them).
    let wanted = if meta.is_dir() {
        0o700
    } else if meta.is_file() {
        mode & 0o700
    } else {
        return Ok(());
    };
    if mode != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            restrict(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    /// Every entry under `dir` that others may read, with its mode.
    pub(crate) fn open_entries(dir: &Path) -> Vec<(String, u32)> {
        let mut open = Vec::new();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            open.push((dir.display().to_string(), mode));
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                open.extend(open_entries(&path));
            } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                open.push((path.display().to_string(), meta.permissions().mode() & 0o777));
            }
        }
        open
    }

    /// Runs `f` with the usual umask 022, under which files are made
    /// world-readable unless their maker says otherwise.
    pub(crate) fn under_umask_022<T>(f: impl FnOnce() -> T) -> T {
        // SAFETY: umask has no memory effects; it only sets the mode mask.
        let old = unsafe { libc::umask(0o022) };
        let result = f();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        result
    }

    #[test]
    fn a_tree_made_private_is_readable_by_its_user_only() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        under_umask_022(|| {
            std::fs::create_dir_all(dir.join("sub")).unwrap();
            std::fs::write(dir.join("file"), "x").unwrap();
            std::fs::write(dir.join("sub/inner"), "y").unwrap();
        });
        assert!(!open_entries(&dir).is_empty(), "the umask made them readable by others");
        super::make_private(&dir).unwrap();
        assert_eq!(open_entries(&dir), Vec::<(String, u32)>::new());
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(dir.join("file")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
