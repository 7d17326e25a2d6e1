//! The `--report FILE` copy of the JSON report: opened before anything slow
//! happens, so that a path that cannot be written fails the run at once, and
//! written through the same handle once the run is over.
//!
//! Opening creates the file when it is missing but leaves an existing one
//! as it is until the new report replaces it; a file this run created and
//! never wrote (the build failed, say) is removed again.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use crate::RunnerError;

/// The open `--report` file.
#[derive(Debug)]
pub(crate) struct ReportFile {
    path: PathBuf,
    file: File,
    /// This run created the file and has not written it yet: remove it if
    /// the run ends without a report.
    created_empty: bool,
}

impl ReportFile {
    /// Opens (creating it if needed) `path` for writing; the error names the
    /// path and the system's reason (a missing or read-only directory, a
    /// directory in the file's place).
    pub fn open(path: &Path) -> Result<ReportFile, RunnerError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(RunnerError::io(format!(
                "cannot write the report to {}",
                path.display()
            )))?;
        Ok(ReportFile {
            path: path.to_owned(),
            file,
            created_empty: !existed,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file's content with `text` (a device or a pipe, such as
    /// `/dev/stdout`, is only written to).
    pub fn write(&mut self, text: &str) -> Result<(), RunnerError> {
        self.created_empty = false;
        self.replace(text)
            .map_err(RunnerError::io(format!("writing {}", self.path.display())))
    }

    fn replace(&mut self, text: &str) -> std::io::Result<()> {
        if self.file.metadata()?.is_file() {
            self.file.set_len(0)?;
            self.file.rewind()?;
        }
        self.file.write_all(text.as_bytes())?;
        self.file.flush()
    }
}

impl Drop for ReportFile {
    fn drop(&mut self) {
        if self.created_empty {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("report-file-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_unwritable_path_fails_at_open_naming_it() {
        let dir = scratch("bad");
        let missing = dir.join("no-such-dir/report.json");
        let err = ReportFile::open(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot write the report to {}: ",
                missing.display()
            )),
            "{err}"
        );
        assert!(err.contains("No such file or directory"), "{err}");
        let err = ReportFile::open(&dir).unwrap_err().to_string();
        assert!(err.contains("Is a directory"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_is_replaced_on_write_and_an_unwritten_new_one_removed() {
        let dir = scratch("write");
        let old = dir.join("old.json");
        fs::write(&old, "a much longer earlier report\n").unwrap();
        let mut report = ReportFile::open(&old).unwrap();
        assert_eq!(
            fs::read_to_string(&old).unwrap(),
            "a much longer earlier report\n",
            "opening must not clobber the old report"
        );
        report.write("{}\n").unwrap();
        drop(report);
        assert_eq!(fs::read_to_string(&old).unwrap(), "{}\n");

        let new = dir.join("new.json");
        drop(ReportFile::open(&new).unwrap());
        assert!(!new.exists(), "an unwritten report file was left behind");
        let mut full = ReportFile::open(Path::new("/dev/full")).unwrap();
        let err = full.write("{}\n").unwrap_err().to_string();
        assert!(err.starts_with("writing /dev/full: No space left"), "{err}");
        let kept = ReportFile::open(&old).unwrap();
        drop(kept);
        assert!(old.exists(), "an existing report was removed");
        fs::remove_dir_all(&dir).unwrap();
    }
}
