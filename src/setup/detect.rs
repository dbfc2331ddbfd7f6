//! Databases running on this machine, for `setup` to install their example hooks: found by
//! their server process (`postgres`, `mysqld`, `mariadbd` in `/proc`), or, where processes
//! are hidden (`hidepid`), by a socket that answers at its packaged place.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A database lightsnap ships an example hook for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    /// PostgreSQL.
    #[serde(rename = "postgresql")]
    PostgreSql,
    /// MySQL or MariaDB.
    #[serde(rename = "mysql")]
    MySql,
}

impl Database {
    /// Its name, for people.
    pub fn label(self) -> &'static str {
        match self {
            Database::PostgreSql => "PostgreSQL",
            Database::MySql => "MySQL/MariaDB",
        }
    }

    /// The example hook's file name (in `/usr/share/lightsnap/examples/hooks`).
    pub fn example(self) -> &'static str {
        match self {
            Database::PostgreSql => "postgresql",
            Database::MySql => "mysql",
        }
    }

    /// The name it is installed under, as the example's own comment says.
    pub fn installed_name(self) -> &'static str {
        match self {
            Database::PostgreSql => "10-postgresql",
            Database::MySql => "20-mysql",
        }
    }

    /// Whether the example has a `verify` phase (and so is installed as a verify hook too,
    /// starting the server on the restored copy): both have one. A test below reads the
    /// examples, so that this cannot drift from them again (it said "no" for MySQL after the
    /// example had gained its phase, and setup left the first snapshot's database unchecked).
    pub fn verifies(self) -> bool {
        matches!(self, Database::PostgreSql | Database::MySql)
    }

    /// The variable that tells its verify hook where the data directory is, below the
    /// restored filesystem's mount point.
    pub fn verify_data_var(self) -> &'static str {
        match self {
            Database::PostgreSql => "LIGHTSNAP_PG_VERIFY_DATA",
            Database::MySql => "LIGHTSNAP_MYSQL_VERIFY_DATA",
        }
    }

    /// Server process names (`/proc/PID/comm`).
    fn processes(self) -> &'static [&'static str] {
        match self {
            Database::PostgreSql => &["postgres", "postmaster"],
            Database::MySql => &["mysqld", "mariadbd"],
        }
    }

    /// Where the distributions' packages put the server's socket.
    fn sockets(self) -> Vec<PathBuf> {
        match self {
            Database::PostgreSql => {
                let mut found: Vec<PathBuf> = std::fs::read_dir("/run/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(".s.PGSQL."))
                            && p.extension().is_none_or(|x| x != "lock")
                    })
                    .collect();
                found.sort();
                found
            }
            Database::MySql => vec![
                PathBuf::from("/run/mysqld/mysqld.sock"),
                PathBuf::from("/var/lib/mysql/mysql.sock"),
            ],
        }
    }
}

/// A database server found running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Running {
    /// Which database.
    pub database: Database,
    /// How it was found (`process postgres, pid 812`; the first server, when several run).
    pub found_by: String,
    /// The data directory of each server found running (a PostgreSQL server works in it),
    /// where known.
    pub data_dirs: Vec<PathBuf>,
}

/// The databases running, found through `proc` (`/proc`) and the packaged sockets; one entry
/// per database kind, with every server of it found. Under confinement (`LIGHTSNAP_CONFINE_TO`,
/// the tests' guard) only servers whose data directory is inside `confine` count, and the
/// packaged sockets (which are outside) are not looked at.
pub fn running(proc: &Path, confine: Option<&Path>) -> Vec<Running> {
    let mut found = Vec::new();
    for db in [Database::PostgreSql, Database::MySql] {
        if let Some(r) = by_process(proc, db, confine) {
            found.push(r);
            continue;
        }
        if confine.is_some() {
            continue;
        }
        if let Some(socket) = db
            .sockets()
            .into_iter()
            .find(|s| std::os::unix::net::UnixStream::connect(s).is_ok())
        {
            found.push(Running {
                database: db,
                found_by: format!("socket {}", socket.display()),
                data_dirs: Vec::new(),
            });
        }
    }
    found
}

/// The server processes of `db` (each one whose parent is not a server process of it: the
/// postmasters, not their workers), as one entry; `None` when there is none (inside
/// `confine`, when given).
fn by_process(proc: &Path, db: Database, confine: Option<&Path>) -> Option<Running> {
    let comm = |pid: &str| {
        std::fs::read_to_string(proc.join(pid).join("comm"))
            .map(|c| c.trim_end().to_string())
            .ok()
    };
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort();
    let mut found: Option<Running> = None;
    for pid in pids {
        let pid = pid.to_string();
        let Some(name) = comm(&pid) else { continue };
        if !db.processes().contains(&name.as_str()) {
            continue;
        }
        let parent = std::fs::read_to_string(proc.join(&pid).join("stat"))
            .ok()
            .and_then(|s| ppid(&s));
        if parent
            .and_then(|p| comm(&p.to_string()))
            .is_some_and(|p| db.processes().contains(&p.as_str()))
        {
            continue; // a worker of a server
        }
        // Both servers work in their data directory (PostgreSQL's postmaster, mysqld).
        let dir = std::fs::read_link(proc.join(&pid).join("cwd")).ok();
        if let Some(c) = confine {
            if !dir.as_ref().is_some_and(|d| d.starts_with(c)) {
                continue;
            }
        }
        let r = found.get_or_insert_with(|| Running {
            database: db,
            found_by: format!("process {name}, pid {pid}"),
            data_dirs: Vec::new(),
        });
        r.data_dirs.extend(dir);
    }
    found
}

/// The parent pid in a `/proc/PID/stat` line (after the command name, which may hold spaces
/// and parentheses).
fn ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(proc: &Path, pid: u32, comm: &str, ppid: u32, cwd: Option<&Path>) {
        let dir = proc.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n"),
        )
        .unwrap();
        if let Some(cwd) = cwd {
            std::os::unix::fs::symlink(cwd, dir.join("cwd")).unwrap();
        }
    }

    #[test]
    fn the_postmaster_is_found_with_its_data_directory_not_its_workers() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        process(proc, 1, "init", 0, None);
        process(proc, 40, "bash", 1, None);
        // A worker listed before its postmaster (pids wrap around).
        process(proc, 90, "postgres", 120, Some(Path::new("/nowhere")));
        process(
            proc,
            120,
            "postgres",
            1,
            Some(Path::new("/var/lib/postgresql/15/main")),
        );
        process(proc, 130, "mariadbd", 1, None);
        // A second cluster, with its own postmaster.
        process(proc, 140, "postgres", 1, Some(Path::new("/srv/pg")));
        process(proc, 141, "postgres", 140, Some(Path::new("/nowhere")));
        std::fs::create_dir_all(proc.join("self")).unwrap();
        let found = running(proc, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].database, Database::PostgreSql);
        assert_eq!(found[0].found_by, "process postgres, pid 120");
        assert_eq!(
            found[0].data_dirs,
            [
                PathBuf::from("/var/lib/postgresql/15/main"),
                PathBuf::from("/srv/pg")
            ]
        );
        assert_eq!(found[1].database, Database::MySql);
        assert!(found[1].data_dirs.is_empty());
        // Confined: only the server whose data directory is inside.
        let found = running(proc, Some(Path::new("/srv")));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].found_by, "process postgres, pid 140");
        assert_eq!(found[0].data_dirs, [PathBuf::from("/srv/pg")]);
        assert!(running(proc, Some(Path::new("/elsewhere"))).is_empty());
    }

    #[test]
    fn verifies_says_what_the_packaged_examples_do() {
        for db in [Database::PostgreSql, Database::MySql] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("packaging/examples/hooks")
                .join(db.example());
            let text = std::fs::read_to_string(&path).unwrap();
            // The phase's branch of the example's `case "$1"`.
            let has_phase = text.lines().any(|l| l.trim_start().starts_with("verify)"));
            assert_eq!(db.verifies(), has_phase, "{}", path.display());
            assert!(
                text.contains(db.verify_data_var()),
                "{} reads no {}",
                path.display(),
                db.verify_data_var()
            );
        }
    }

    #[test]
    fn a_command_name_with_parentheses_keeps_its_parent() {
        assert_eq!(ppid("7 (a) b) S 42 7 7 0"), Some(42));
        assert_eq!(ppid("garbage"), None);
    }
}
