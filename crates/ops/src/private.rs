//! Files and directories only their owner can open, whatever the umask: backups, tenant
//! archives and the deploy's Compose overlay hold password hashes, tenant data or resolved
//! secrets. The mode is set by the creating call itself: a chmod afterwards would leave a
//! moment in which others can open the file.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Creates `path` (which must not exist) readable by its owner only.
pub fn create_private_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// [`create_private_file`] after removing whatever `path` names. Whatever was planted there
/// (a file with a wider mode, a link to another file) is unlinked, never written through.
pub fn recreate_private_file(path: &Path) -> Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace {}", path.display()))
        }
        _ => {}
    }
    create_private_file(path)
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or the new one, and the
/// new one is readable by its owner only from the moment it exists.
pub fn replace_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut f = recreate_private_file(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Creates `dir` and its missing parents, each accessible to its owner only (an existing
/// directory keeps its mode; `backup verify` warns about a wider one).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Under umask 000 a plain write would create the file 0666; a file or link planted at the
    /// temporary name would be written through (and a chmod afterwards would leave the window).
    #[test]
    fn a_replaced_file_is_private_from_its_creation_and_never_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.colours.yml");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(".compose.colours.yml.tmp"))
            .unwrap();
        // SAFETY: umask only swaps the process's file-creation mask; it is restored below.
        let old = unsafe { libc::umask(0) };
        let written = replace_private_file(&path, b"secret: 1\n");
        unsafe { libc::umask(old) };
        written.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret: 1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "untouched");
        assert!(!dir.path().join(".compose.colours.yml.tmp").exists());
    }
}
