//! What a command will create or write where the config says, checked
//! before it starts anything: the audit file, the SQLite store (and the
//! `-wal` and `-shm` files SQLite puts beside it), the bootstrap token
//! file. Loading a config reads the files it names and reports those; the
//! files it *writes* are checked here, so `check-config` does not say ok to
//! a config `serve` then refuses, and `serve` and `store init` stop before
//! they create half of something (a store whose first admin token could not
//! be written is a store nobody can administer).
//!
//! Each problem names the setting and the path. Nothing is created or
//! written here: what a directory lacks is found from its metadata and
//! access(2) for the user running the command.

use std::path::{Path, PathBuf};

use super::{AuditSink, Config, StoreBackend};

/// The command about to run: what it writes decides what is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `check-config`: whatever `serve` or `store init` would write on this
    /// machine.
    Check,
    /// `serve`.
    Serve,
    /// `store init`: the store and its bootstrap token file, nothing else.
    StoreInit,
}

/// What checking found, each `setting: message`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Preflight {
    /// What would stop the command.
    pub problems: Vec<String>,
    /// What this machine lacks that a later step makes: `check-config` says
    /// so without failing (a store `store init` is yet to create).
    pub notes: Vec<String>,
}

impl Config {
    /// Check what `purpose` will create or write (see the module's doc).
    pub fn preflight(&self, purpose: Purpose) -> Preflight {
        let mut found = Preflight::default();
        if purpose != Purpose::StoreInit
            && let AuditSink::File { path } = &self.audit.sink
            && let Err(why) = creatable(path, Dirs::Existing)
        {
            found.problems.push(format!("audit.sink.file.path: {why}"));
        }
        let Some(store) = &self.store else { return found };
        let setting = store.backend.setting();
        // Whether this command may create the store, and so write the
        // bootstrap token file.
        let may_create = purpose != Purpose::Serve || store.create_if_missing;
        let creates = match &store.backend {
            StoreBackend::Sqlite { path } if std::fs::symlink_metadata(path).is_ok() => {
                if let Err(why) = sqlite_in_place(path) {
                    found.problems.push(format!("{setting}: {why}"));
                }
                false
            }
            StoreBackend::Sqlite { path } if !may_create => {
                let missing = format!(
                    "{setting}: no store at {}: create it with `narrowgate store init --config FILE` (or set create_if_missing for a throwaway store)",
                    path.display()
                );
                match purpose {
                    Purpose::Check => found.notes.push(format!("{missing}; serve refuses to start until then")),
                    _ => found.problems.push(missing),
                }
                false
            }
            StoreBackend::Sqlite { path } => {
                if let Err(why) = creatable(path, Dirs::Created) {
                    found.problems.push(format!("{setting}: {why}"));
                }
                true
            }
            // A database's state is not known without connecting: it may be
            // created whenever this command may create one.
            StoreBackend::Postgres { .. } => may_create,
        };
        if creates
            && let Some(file) = &self.bootstrap.token_file
            && let Err(why) = creatable(file, Dirs::Created)
        {
            found.problems.push(format!("{}.bootstrap_token_file: {why}", store.backend.section()));
        }
        found
    }
}

/// Whether the directories on the way to a file must exist already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dirs {
    /// Only the file is created (the audit file, the addresses file).
    Existing,
    /// Missing directories are created too (the store, the bootstrap token
    /// file).
    Created,
}

/// Whether `path` can be created or written to (appended, replaced) by
/// this user: `Err` says why not, naming the path or the directory.
pub fn creatable(path: &Path, dirs: Dirs) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(format!("{} is a directory", path.display())),
        Ok(_) => return writable(path, "file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Behind a file, or a directory this user may not enter: what is
        // in the way is named below.
        Err(_) => {}
    }
    let dir = parent(path);
    let (existing, missing) = nearest_existing(&dir);
    match std::fs::metadata(&existing) {
        Ok(meta) if !meta.is_dir() => {
            Err(format!("{} is not a directory, so {} cannot be created", existing.display(), path.display()))
        }
        Ok(_) if missing && dirs == Dirs::Existing => {
            Err(format!("the directory {} does not exist (the file is created, its directory is not)", dir.display()))
        }
        Ok(_) => writable(&existing, "directory"),
        Err(e) => Err(format!("cannot reach {}: {e}", existing.display())),
    }
}

/// A SQLite store that exists: a file this user may write, in a directory
/// where SQLite may put its `-wal` and `-shm` files.
fn sqlite_in_place(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{} is a directory, not a store", path.display())),
        Ok(_) => writable(path, "store").and_then(|()| {
            writable(&parent(path), "directory")
                .map_err(|why| format!("{why} (SQLite writes its -wal and -shm files beside the store)"))
        }),
        Err(e) => Err(format!("cannot reach {}: {e}", path.display())),
    }
}

/// The directory a file is created in (`.` for a bare file name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `dir` or its nearest ancestor that exists (anything, a file included),
/// and whether `dir` itself is missing.
fn nearest_existing(dir: &Path) -> (PathBuf, bool) {
    let mut at = dir;
    loop {
        if std::fs::symlink_metadata(at).is_ok() {
            return (at.to_path_buf(), at != dir);
        }
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            // Nothing of a relative path exists: it starts here.
            _ => return (PathBuf::from("."), true),
        }
    }
}

/// Whether this user may write `path` (a directory: create files in it).
fn writable(path: &Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use rustix::fs::{Access, access};
        let wanted = if what == "directory" { Access::WRITE_OK | Access::EXEC_OK } else { Access::WRITE_OK };
        access(path, wanted).map_err(|e| match e {
            rustix::io::Errno::ROFS => format!("the {what} {} is on a read-only file system", path.display()),
            _ => format!("the {what} {} is not writable by this user", path.display()),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, what);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is in the way of a file is named, for a file alone and for one
    /// whose directories are created too.
    #[test]
    fn what_stands_in_the_way_of_a_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("a-file"), "x").expect("write");
        std::fs::create_dir(d.join("a-dir")).expect("mkdir");
        struct Case {
            name: &'static str,
            path: &'static str,
            dirs: Dirs,
            want: Option<&'static str>,
        }
        let cases = [
            Case { name: "a new file in a directory", path: "audit.jsonl", dirs: Dirs::Existing, want: None },
            Case { name: "an existing file", path: "a-file", dirs: Dirs::Existing, want: None },
            Case {
                name: "a missing directory",
                path: "logs/audit.jsonl",
                dirs: Dirs::Existing,
                want: Some("logs does not exist"),
            },
            Case { name: "a missing directory, created", path: "data/x/ng.db", dirs: Dirs::Created, want: None },
            Case {
                name: "a file where a directory should be",
                path: "a-file/audit.jsonl",
                dirs: Dirs::Existing,
                want: Some("a-file is not a directory"),
            },
            Case {
                name: "a file on the way, created",
                path: "a-file/x/ng.db",
                dirs: Dirs::Created,
                want: Some("a-file is not a directory"),
            },
            Case { name: "a directory", path: "a-dir", dirs: Dirs::Existing, want: Some("a-dir is a directory") },
        ];
        for c in cases {
            let got = creatable(&d.join(c.path), c.dirs);
            match c.want {
                None => assert!(got.is_ok(), "{}: {got:?}", c.name),
                Some(want) => {
                    let why = got.expect_err(c.name);
                    assert!(why.contains(want), "{}: {why}", c.name);
                }
            }
        }
    }
}
