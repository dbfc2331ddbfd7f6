//! `lightsnap config`: the settings in force and the file each came from (as `git config
//! --show-origin` shows them); `lightsnap config check`: the configuration files validated —
//! read, merged and checked as a run would, without credentials or network — exit 0, or 2
//! with the file and key at fault.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Globals, Output};
use crate::config::{self, keys};
use crate::exit_code::{ExitCode, Failure};

/// Show the configuration in force, or check it.
#[derive(Debug, Args)]
pub struct ConfigCmd {
    /// What to do (default: show every setting in force and where it came from).
    #[command(subcommand)]
    pub action: Option<Action>,
}

/// The `config` document: every setting in force.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ConfigDoc {
    /// The files read, in order.
    pub(crate) files: Vec<std::path::PathBuf>,
    /// Each setting in force (keys without a value left out), with where it came from.
    pub(crate) settings: Vec<keys::Effective>,
}

/// The `config check` document (printed only when the files are valid; otherwise the error
/// document).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct ConfigCheckDoc {
    /// Always true.
    #[schemars(extend("const" = true))]
    pub(crate) valid: bool,
    /// The files read, in order.
    pub(crate) files: Vec<std::path::PathBuf>,
}

/// `config`'s actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Validate the configuration files without credentials or network: exit 0 when they
    /// are valid, else 2 naming the file and the key.
    Check,
}

impl ConfigCmd {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let files = config::sources(&globals.config_root)?;
        // Whatever is wrong with the files is a usage error (2), its message naming the file.
        let settings = config::load(&globals.config_root).map_err(|e| {
            let code = match ExitCode::of(&e) {
                ExitCode::Failure => ExitCode::Usage,
                other => other,
            };
            anyhow::Error::from(Failure::new(code, format!("{e:#}")))
        })?;
        match self.action {
            Some(Action::Check) => {
                if globals.output == Output::Json {
                    super::print_json(ConfigCheckDoc { valid: true, files })?;
                } else {
                    let names: Vec<String> =
                        files.iter().map(|f| f.display().to_string()).collect();
                    println!(
                        "configuration valid: {}",
                        if names.is_empty() {
                            "no file, the defaults apply".to_string()
                        } else {
                            names.join(", ")
                        }
                    );
                }
            }
            None => {
                let all = keys::effective(&settings, &files)?;
                if globals.output == Output::Json {
                    super::print_json(ConfigDoc {
                        files,
                        settings: all,
                    })?;
                } else {
                    for e in &all {
                        println!("{}\t{} = {}", e.origin, e.key, e.value);
                    }
                }
            }
        }
        Ok(ExitCode::Success)
    }
}
