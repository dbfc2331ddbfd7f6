//! The examples each subcommand's `--help` ends with.

/// `freeze-and-snap`.
pub const FREEZE_AND_SNAP: &str = "\
Examples:
  lightsnap freeze-and-snap /data
  lightsnap freeze-and-snap /data /var/lib/postgresql   (one consistency group)
  lightsnap freeze-and-snap --disk data-1 --tag env=prod /data --wait
  lightsnap -q freeze-and-snap /data                    (silent unless it fails, for cron)";

/// `snap-instance`.
pub const SNAP_INSTANCE: &str = "\
Examples:
  lightsnap snap-instance
  lightsnap snap-instance --exclude '/mnt/scratch*' --wait";

/// `run`.
pub const RUN: &str = "\
Examples:
  lightsnap run                  (what lightsnap-snapshot.service runs)
  lightsnap run --dry-run";

/// `plan`.
pub const PLAN: &str = "\
Examples:
  lightsnap plan /data
  lightsnap plan --output json / /data";

/// `thaw`.
pub const THAW: &str = "\
Examples:
  lightsnap thaw --recover       (everything an interrupted run left frozen or unmounted)
  lightsnap thaw /data";

/// `list`.
pub const LIST: &str = "\
Examples:
  lightsnap list
  lightsnap list --disk data-1 --output json";

/// `prune`.
pub const PRUNE: &str = "\
Examples:
  lightsnap prune --keep 7 --dry-run
  lightsnap prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
  lightsnap prune --older-than 30d --disk data-1";

/// `status`.
pub const STATUS: &str = "\
Examples:
  lightsnap status
  lightsnap status --refresh
  lightsnap status --forget /dta";

/// `verify`.
pub const VERIFY: &str = "\
Examples:
  lightsnap verify data-1-20261207-000512
  lightsnap verify --latest /data";

/// `check`.
pub const CHECK: &str = "\
Examples:
  lightsnap check --max-age 26h
  lightsnap check -w 25h -c 49h /data
  (Nagios/Icinga: command_line /usr/bin/lightsnap check -w 25h -c 49h)";

/// `config`.
pub const CONFIG: &str = "\
Examples:
  lightsnap config                       (each setting, its value and the file it came from)
  lightsnap config check                 (validate, without credentials or network)
  lightsnap --config ./new.toml config check";

/// `completions`.
pub const COMPLETIONS: &str = "\
Examples:
  lightsnap completions bash > /usr/share/bash-completion/completions/lightsnap
  lightsnap completions zsh > /usr/local/share/zsh/site-functions/_lightsnap
  lightsnap completions fish > ~/.config/fish/completions/lightsnap.fish";

/// `man`.
pub const MAN: &str = "\
Examples:
  lightsnap man | man -l -
  lightsnap man --out-dir /usr/local/share/man/man8   (then move lightsnap.toml.5 to man5)";
