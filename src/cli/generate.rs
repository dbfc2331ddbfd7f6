//! `lightsnap __generate --out-dir DIR` (hidden): the man pages and shell completions, made
//! from the clap definition at packaging time (`scripts/package` runs the built binary), so
//! they never drift from the options the binary really takes.
//!
//! Writes `lightsnap.8` (with the exit codes of [`EXIT_CODES_HELP`], the files lightsnap
//! reads and the subcommands), one `lightsnap-SUBCOMMAND.8` per visible subcommand (which
//! `lightsnap.8` refers to), and the completions `lightsnap.bash`, `_lightsnap` (zsh) and
//! `lightsnap.fish`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;

use super::{Cli, EXIT_CODES_HELP};
use crate::exit_code::ExitCode;

/// Man section 8: system administration commands (lightsnap runs as root).
const SECTION: &str = "8";

/// The FILES section of `lightsnap(8)`: path, what it is.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/lightsnap/config.toml",
        "The configuration (TOML): freeze_timeout, name_template, hook_dir, hook_timeout, \
         region, profile, [tags], [retention] and the [[snapshot]] paths that lightsnap run \
         snapshots. The packaged file is all comments, so the defaults apply.",
    ),
    (
        "/usr/lib/lightsnap/config.d/*.toml, /etc/lightsnap/config.d/*.toml, \
         /run/lightsnap/config.d/*.toml",
        "More configuration fragments: /usr/lib/lightsnap/config.d/ before \
         /etc/lightsnap/config.toml, /etc/lightsnap/config.d/ and then \
         /run/lightsnap/config.d/ after it, each directory in name order, later keys winning. \
         Every fragment, and the directory it is in, must be owned by root and not writable          by group or others; each directory above it too, or root's with the sticky bit.",
    ),
    (
        "/etc/lightsnap/hooks.d/",
        "Hooks: executables run in name order with the argument pre-freeze before anything is \
         frozen, and in reverse order with post-thaw after everything is thawed (preceded by \
         freeze-fail when the freeze or the snapshot failed); LIGHTSNAP_RESULT says success, \
         failure or stopped. A failing post-thaw hook fails the run (exit 16). Each hook, the \
         directory and every directory above it must be root-owned and not writable by group \
         or others (above it, root's with the sticky bit will do), checked again right before \
         each hook runs.",
    ),
    (
        "/usr/share/lightsnap/examples/hooks/",
        "Example hooks: a PostgreSQL CHECKPOINT, a MySQL read lock held across the snapshot.",
    ),
    (
        "/usr/share/lightsnap/pre-deploy",
        "Snapshots what the configuration names before a deploy, tagged with the deploy id; \
         exits non-zero to stop the deploy when the snapshot fails.",
    ),
    (
        "/run/lightsnap/",
        "The lock (one run at a time) and the recovery record that lightsnap thaw --recover \
         reads.",
    ),
];

/// The systemd units the packages ship, for SEE ALSO.
const UNITS: &[&str] = &[
    "lightsnap-snapshot.service",
    "lightsnap-snapshot.timer",
    "lightsnap-recover.service",
];

/// Write the man page and completions.
#[derive(Debug, Args)]
pub struct Generate {
    /// Where to write them.
    #[arg(long)]
    pub out_dir: PathBuf,
}

impl Generate {
    /// Runs it: writes every file and prints its path.
    pub fn run(self) -> Result<ExitCode> {
        for path in write_all(&self.out_dir)? {
            println!("{}", path.display());
        }
        Ok(ExitCode::Success)
    }
}

/// Writes the man pages and completions into `dir` (made if missing); returns their paths.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = write_man_pages(dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = without_hidden(Cli::command());
        let path = clap_complete::generate_to(shell, &mut cmd, "lightsnap", dir)
            .with_context(|| format!("writing the {shell} completions into {}", dir.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the completions for `shell` to `w` (`lightsnap completions SHELL`).
pub fn completions(shell: Shell, w: &mut dyn Write) {
    let mut cmd = without_hidden(Cli::command());
    clap_complete::generate(shell, &mut cmd, "lightsnap", w);
}

/// Writes `lightsnap(8)` to `w` (`lightsnap man` without a directory).
pub fn main_man_page(w: &mut dyn Write) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    main_page(&cmd, w).context("writing the man page")
}

/// Writes the man pages (`lightsnap.8`, one per subcommand, `lightsnap.toml.5`) into `dir`
/// (made if missing); returns their paths.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();

    let main = dir.join(format!("lightsnap.{SECTION}"));
    write_file(&main, |w| main_page(&cmd, w))?;
    written.push(main);
    for sub in visible_subcommands(&cmd) {
        let man = Man::new(sub.clone()).section(SECTION);
        let path = dir.join(man.get_filename());
        write_file(&path, |w| man.render(w))?;
        written.push(path);
    }

    // The configuration's page, from the same list of keys `lightsnap config` shows.
    let toml_page = dir.join("lightsnap.toml.5");
    let page = crate::config::keys::man_page(env!("CARGO_PKG_VERSION"));
    write_file(&toml_page, |w| w.write_all(page.as_bytes()))?;
    written.push(toml_page);
    Ok(written)
}

/// The command line as completions should offer it: clap_complete offers hidden subcommands
/// and options too (`__generate`, `--config-root`), so they are left out here.
fn without_hidden(cmd: clap::Command) -> clap::Command {
    clap::Command::new("lightsnap")
        .version(env!("CARGO_PKG_VERSION"))
        .about(cmd.get_about().cloned().unwrap_or_default())
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(visible_subcommands(&cmd).cloned())
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

fn write_file(path: &Path, render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    render(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

/// `lightsnap(8)`: clap_mangen's sections, with EXIT STATUS, FILES and SEE ALSO of our own in
/// place of its generic "EXTRA" (the after_help).
fn main_page(cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(cmd.clone()).section(SECTION);
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;

    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for (code, meaning) in exit_codes() {
        writeln!(w, ".TP\n\\fB{}\\fR\n{}", escape(code), escape(meaning))?;
    }

    writeln!(w, ".SH FILES")?;
    for (path, what) in FILES {
        writeln!(w, ".TP\n\\fI{}\\fR\n{}", escape(path), escape(what))?;
    }

    writeln!(w, ".SH \"SEE ALSO\"")?;
    let mut refs: Vec<String> = visible_subcommands(cmd)
        .map(|s| format!("\\fBlightsnap\\-{}\\fR({SECTION})", escape(s.get_name())))
        .collect();
    refs.extend(UNITS.iter().map(|u| format!("\\fI{}\\fR", escape(u))));
    refs.push("\\fBsystemctl\\fR(1)".into());
    writeln!(w, "{}", refs.join(",\n"))?;

    man.render_version_section(w)
}

/// The exit codes of the help text, as (code, meaning).
fn exit_codes() -> Vec<(&'static str, &'static str)> {
    EXIT_CODES_HELP
        .lines()
        .skip(1) // "Exit codes:"
        .filter_map(|line| line.trim().split_once("  "))
        .map(|(code, meaning)| (code.trim(), meaning.trim()))
        .collect()
}

/// Escapes text for roff: backslashes, hyphens (so they stay ASCII), and a leading control
/// character.
fn escape(text: &str) -> String {
    let body = text.replace('\\', "\\e").replace('-', "\\-");
    if body.starts_with(['.', '\'']) {
        format!("\\&{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_man_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "lightsnap.8",
            "lightsnap.toml.5",
            "lightsnap-config.8",
            "lightsnap-freeze-and-snap.8",
            "lightsnap-run.8",
            "lightsnap-thaw.8",
            "lightsnap.bash",
            "_lightsnap",
            "lightsnap.fish",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.contains("generate")),
            "the hidden subcommand has no page: {names:?}"
        );

        let page = std::fs::read_to_string(dir.path().join("lightsnap.8")).unwrap();
        assert!(page.contains("\n.TH lightsnap 8 "), "{page}");
        assert!(page.contains(".SH \"EXIT STATUS\""));
        for code in [
            "\\fB0\\fR",
            "\\fB13\\fR",
            "\\fB15\\fR",
            "\\fB129/130/143\\fR",
        ] {
            assert!(page.contains(code), "{code} missing from the man page");
        }
        assert!(page.contains("freeze deadline passed"));
        assert!(page.contains("/etc/lightsnap/hooks.d/"));
        assert!(!page.contains("__generate") && !page.contains("config\\-root"));

        let bash = std::fs::read_to_string(dir.path().join("lightsnap.bash")).unwrap();
        assert!(bash.contains("freeze-and-snap") && bash.contains("complete -F"));
        for file in ["lightsnap.bash", "_lightsnap", "lightsnap.fish"] {
            let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
            assert!(text.contains("snap-instance"), "{file}");
            assert!(
                !text.contains("__generate") && !text.contains("config-root"),
                "{file} offers a hidden subcommand or option"
            );
        }
    }

    #[test]
    fn every_exit_code_line_is_parsed() {
        let codes = exit_codes();
        assert_eq!(codes.len(), EXIT_CODES_HELP.lines().count() - 1);
        assert_eq!(codes[0], ("0", "success"));
        assert!(codes.iter().all(|(c, m)| !c.is_empty() && !m.is_empty()));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(escape("a-b"), "a\\-b");
        assert_eq!(escape(".x"), "\\&.x");
        assert_eq!(escape("a\\b"), "a\\eb");
    }
}
