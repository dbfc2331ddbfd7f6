//! `lightsnap __generate --out-dir DIR` (hidden): the man page and shell completions, made
//! from the clap definition at packaging time. Stub until the packaging work lands.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::exit_code::ExitCode;

/// Write the man page and completions.
#[derive(Debug, Args)]
pub struct Generate {
    /// Where to write them.
    #[arg(long)]
    pub out_dir: PathBuf,
}

impl Generate {
    /// Runs it.
    pub fn run(self) -> Result<ExitCode> {
        anyhow::bail!("not implemented yet: {}", self.out_dir.display())
    }
}
