//! What makes a sled write survive a power cut, not only `kill -9`.
//!
//! sled 0.34's `flush` ends in `sync_file_range` on Linux: the data reaches
//! the device, but neither the device's write cache nor the file's size is
//! flushed, and sled calls `fsync` only from its background flusher (every
//! 500 ms). Values too large for its log go to files of their own under
//! `blobs/`, which sled never syncs at all. So after sled's flush, this
//! syncs the log file (`fdatasync`), every blob file not synced yet, and
//! the blob directory when it gained one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Open handles on a sled database's files, to sync them after its flush.
pub struct FileSync {
    log: File,
    blobs: PathBuf,
    /// Blob files synced already, with the length they had (sled never
    /// rewrites one, a new version of a value is a new file; but one may
    /// be seen while sled is still writing it, and is synced again).
    synced: Mutex<HashMap<OsString, u64>>,
}

impl FileSync {
    /// Opens the database's files at `path` (a sled directory, opened
    /// already) and syncs everything in it once, the directory entries too.
    pub fn open(path: &Path) -> io::Result<Self> {
        let log = File::open(path.join("db"))?;
        let sync = FileSync { log, blobs: path.join("blobs"), synced: Mutex::new(HashMap::new()) };
        if let Ok(conf) = File::open(path.join("conf")) {
            conf.sync_all()?;
        }
        sync.sync()?;
        sync.log.sync_all()?;
        File::open(path)?.sync_all()?;
        Ok(sync)
    }

    /// sled's flush, then [`FileSync::sync`]: everything written to `db`
    /// so far made durable. The intake journal's checkpoint.
    pub fn flush_and_sync(&self, db: &sled::Db) -> io::Result<()> {
        db.flush().map_err(io::Error::other)?;
        self.sync()
    }

    /// Makes everything sled has written (and flushed) so far durable.
    pub fn sync(&self) -> io::Result<()> {
        // Blobs first: the log's entries point to them.
        self.sync_blobs()?;
        self.log.sync_data()
    }

    /// Syncs the blob files sled made since the last call, and their
    /// directory. sled writes a blob before the log entry that points to
    /// it, but syncs neither; its own flusher may sync the entry first, so
    /// a power cut could leave an entry whose blob is gone, and sled's
    /// recovery skips such an entry. One directory read when none is new.
    pub fn sync_blobs(&self) -> io::Result<()> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut present = HashMap::with_capacity(synced.len());
        let mut added = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            // Removed by sled meanwhile: an older version of a value.
            let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
            let len = match entry.metadata() {
                Ok(m) => m.len(),
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if synced.get(&name) != Some(&len) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_data()?,
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                }
                added = true;
            }
            present.insert(name, len);
        }
        if added {
            File::open(&self.blobs)?.sync_all()?;
        }
        *synced = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_blob_seen_while_sled_was_writing_it_is_synced_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let files = FileSync::open(dir.path()).unwrap();
        let blob = dir.path().join("blobs").join("42");
        let mut half = File::create(&blob).unwrap();
        half.write_all(b"first half").unwrap();
        files.sync().unwrap();
        let synced_len = |files: &FileSync| files.synced.lock().unwrap().get(std::ffi::OsStr::new("42")).copied();
        assert_eq!(synced_len(&files), Some(10));
        half.write_all(b", second half").unwrap();
        files.sync_blobs().unwrap();
        assert_eq!(synced_len(&files), Some(23), "synced again once whole");
        std::fs::remove_file(&blob).unwrap();
        files.sync_blobs().unwrap();
        assert_eq!(synced_len(&files), None, "a blob sled removed is forgotten");
    }
}
