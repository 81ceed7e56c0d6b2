//! Files and directories only their owner may read: the data directory
//! (0700), the database, the credentials key and token files (0600). On
//! systems without Unix permissions these are plain creates.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates `path` for writing, failing if it exists, readable by its
/// owner alone.
pub fn create_new(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Creates `dir` (and its parents) if missing, and makes it the owner's
/// alone. A directory we cannot change (another owner) is left as it is,
/// with a warning.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    restrict(dir, 0o700);
    Ok(())
}

/// Makes an existing file or directory the owner's alone (`mode`), if it
/// is not already; failures are logged, not fatal.
pub fn restrict(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.permissions().mode() & 0o777 & !mode == 0 {
            return;
        }
        if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), error = %err, "cannot restrict permissions");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}
