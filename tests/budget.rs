//! `[run] budget`: a run whose waits before the snapshot do not fit in it is refused before
//! anything is done, naming the settings; the same configuration with a shorter
//! automatic-snapshot wait runs. (That the unit's TimeoutStartSec=/TimeoutStopSec= are the
//! budget's and the undo's is checked by the unit tests of `src/budget.rs`.)

mod common;

use common::*;

#[test]
fn a_run_whose_waits_exceed_the_budget_is_refused_naming_the_settings() {
    let Some(s) =
        OneDisk::new("a_run_whose_waits_exceed_the_budget_is_refused_naming_the_settings")
    else {
        return;
    };
    write_conf(
        &s.scratch,
        "etc/lightsnap/config.toml",
        &format!(
            "[run]\nbudget = \"30m\"\n[[snapshot]]\npath = \"{}\"\ndisk = \"data-1\"\n",
            s.fs.mount_point.display()
        ),
    );
    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args(["run", "--trigger", "timer"]));
    assert_eq!(r.code, 2, "{r:?}");
    for needle in [
        "[run] budget = 30m",
        "--auto-snapshot-wait 50m",
        "freeze_timeout 10s",
    ] {
        assert!(r.stderr.contains(needle), "{needle:?}: {r:?}");
    }
    s.assert_untouched(&r);

    let r = finish(configured_lightsnap(&s.scratch, &s.fake).args([
        "run",
        "--trigger",
        "timer",
        "--auto-snapshot-wait",
        "10m",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(create_calls(&s.fake).len(), 1, "{r:?}");
}

#[test]
fn a_budget_out_of_bounds_is_a_configuration_error_naming_its_line() {
    let scratch = Scratch::new();
    let fake = fake(&scratch, seed(&[], None));
    write_conf(
        &scratch,
        "etc/lightsnap/config.toml",
        "[run]\nbudget = \"2d\"\n",
    );
    let r = finish(configured_lightsnap(&scratch, &fake).args(["run", "--dry-run"]));
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("config.toml") && r.stderr.contains("at most 1day"),
        "{r:?}"
    );
}
