//! A real PostgreSQL server of a test's own (Debian's `postgresql` package, which
//! `scripts/deps` installs): a cluster made with `initdb` in a directory the test chooses,
//! listening on a unix socket only, in a directory of its own; stopped on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{run, wait_until};

/// The directory of PostgreSQL's server programs (`/usr/lib/postgresql/<v>/bin`), or `None`
/// (having said why, outside CI) when PostgreSQL is not installed.
pub fn pg_bin_or_skip(test: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    if let Some(bin) = found.pop() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs PostgreSQL (Debian package postgresql); scripts/test installs it"
    );
    eprintln!("skipping {test}: PostgreSQL is not installed (scripts/test installs it)");
    None
}

/// The `postgres` user's uid.
pub fn postgres_uid() -> u32 {
    nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the postgres user")
        .uid
        .as_raw()
}

/// A running PostgreSQL server.
pub struct Pg {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
}

impl Pg {
    /// A server program run as the postgres user.
    pub fn as_postgres(&self, program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .current_dir("/");
        cmd
    }

    /// Makes a cluster in `data` (created, owned by postgres, mode 0700); its parents must be
    /// reachable by the postgres user.
    pub fn init(bin: &Path, data: &Path) {
        std::fs::create_dir(data).unwrap();
        std::os::unix::fs::chown(data, Some(postgres_uid()), Some(0)).unwrap();
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).unwrap();
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(data)
            .current_dir("/")
            .stdout(Stdio::null()));
    }

    /// Starts the server of the cluster in `data`, its socket in `socket` (made).
    pub fn start(bin: &Path, data: &Path, socket: &Path) -> Pg {
        std::fs::create_dir_all(socket).unwrap();
        std::os::unix::fs::chown(socket, Some(postgres_uid()), None).unwrap();
        // A free port (it only names the socket file; there is no TCP listener).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg {
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            socket: socket.to_path_buf(),
            port,
        };
        let options = format!("-k {} -p {port} -c listen_addresses=''", socket.display());
        let log = socket.join("server.log");
        let out = pg
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "starting PostgreSQL on {}: {}{}\n--- server log\n{}",
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        pg
    }

    /// One query's result, unaligned, tuples only.
    pub fn sql(&self, query: &str) -> String {
        let out = run(Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.socket)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops it, and waits (bounded) until its postmaster is gone.
    pub fn stop(&self) {
        let pid: i32 = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid of a running server")
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        run(self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "fast", "stop"]));
        wait_until("the postmaster gone", Duration::from_secs(30), || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // After a failure: stop it if it still runs, so its filesystem can be unmounted.
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
