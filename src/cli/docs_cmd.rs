//! `lightsnap completions SHELL` and `lightsnap man [--out-dir DIR]`: the shell completions
//! and the man pages for people who build lightsnap themselves (`cargo install`), made from
//! the same definitions as the packages' (`__generate`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::exit_code::ExitCode;

/// Print the shell completions.
#[derive(Debug, Args)]
pub struct Completions {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl Completions {
    /// Runs it: the completions on stdout.
    pub fn run(self) -> Result<ExitCode> {
        let mut out = std::io::stdout().lock();
        super::generate::completions(self.shell, &mut out);
        out.flush()?;
        Ok(ExitCode::Success)
    }
}

/// Print lightsnap(8), or write every man page into a directory.
#[derive(Debug, Args)]
pub struct ManPages {
    /// Write every man page (lightsnap.8, lightsnap-COMMAND.8, lightsnap.toml.5) into DIR,
    /// printing their paths; without it, lightsnap(8) goes to stdout (`| man -l -`).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

impl ManPages {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode> {
        match self.out_dir {
            Some(dir) => {
                for path in super::generate::write_man_pages(&dir)? {
                    println!("{}", path.display());
                }
            }
            None => {
                let mut out = std::io::stdout().lock();
                super::generate::main_man_page(&mut out)?;
                out.flush()?;
            }
        }
        Ok(ExitCode::Success)
    }
}
