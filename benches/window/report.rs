//! BENCHMARKS.md: the machine, the headline, the goals (judged in `goals`) and one table per
//! section.

use std::fmt::Write as _;

use crate::goals::{
    alone_ms, alone_tag, evaluate, goal_notes, headline, measured, met_cell, runs_of, summarise,
    tls_difference, tls_rows,
};
use crate::rig::{EndFacts, Facts, Rig, Run, CONFIGS, EXP, EXP_FLAG};
use crate::sections::{tls_tag, Outcome, Results, TLS_ENDPOINTS};
use crate::stats::{f1, fmt, fmt_ratio, med, med_p95, pair};

/// `2026-01-31 12:34 UTC`.
pub fn utc_now() -> String {
    let text = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // 2026-01-31T12:34:56Z
    format!("{} {} UTC", &text[..10], &text[11..16])
}

fn size_label(mib: u64) -> String {
    if mib == 0 {
        "0".into()
    } else if mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

fn mp(vals: impl IntoIterator<Item = Option<f64>>) -> String {
    pair(med_p95(vals))
}

/// BENCHMARKS.md.
pub fn render(
    rig: &Rig,
    facts: &Facts,
    facts_end: &EndFacts,
    results: &Results,
    started: &str,
    elapsed: f64,
) -> String {
    let cfg = &rig.cfg;
    let mut out: Vec<String> = Vec::new();
    let mut w = |s: String| out.push(s);
    let mode = if cfg.quick {
        "quick mode: CI-size, few runs, small dirty sizes — not the figures to quote"
    } else {
        "full run"
    };
    w("# Benchmarks: how long writes are paused\n".into());
    w(format!(
        "Written by `scripts/bench{}` on {started} in {elapsed:.0} s ({mode}). Regenerate it with `sudo scripts/bench`; do not edit by hand.\n",
        if cfg.quick { " --quick" } else { "" }
    ));
    w("The number lightsnap lives by is the **frozen window**: how long applications cannot write. \
       Each run below is one `lightsnap freeze-and-snap` (or one run of the naive script) on a loop-device \
       filesystem, against the bundled fake Lightsail answering `CreateDiskSnapshot` after an injected \
       latency **L**, while a separate writer process appends 128-byte records and fsyncs each one \
       (every 2 ms) and records how long every write took. The window is counted from the first FIFREEZE *called* \
       (the kernel blocks writers during the call, not only once it returns) to the last FITHAW returned, for lightsnap \
       and for the naive script alike.\n".into());

    // machine
    w("## Machine\n".into());
    w("| | |\n| --- | --- |".into());
    w(format!("| cores | {} × {} |", facts.cores, facts.cpu));
    w(format!("| memory | {} |", facts.memory));
    w(format!("| kernel | {} ({}) |", facts.kernel, facts.os));
    w(format!(
        "| filesystems | ext4 ({}), xfs ({}), on loop devices (buffered) over sparse image files on {} |",
        facts.mkfs_ext4, facts.mkfs_xfs, facts.host_fs
    ));
    w(format!(
        "| dirty_ratio / dirty_background_ratio | {} % |",
        facts.dirty_ratio
    ));
    w(format!(
        "| timer frequency / `rcu_expedited` at start, end | CONFIG_HZ={} / {}, {} (FIFREEZE waits for RCU grace periods: see the goals; `{EXP_FLAG}` turns the \
         switch on for its freeze calls, and the benchmark for its expedited FIFREEZE-alone calls) |",
        facts.hz, facts.rcu_expedited, facts_end.rcu_expedited
    ));
    w(format!(
        "| load average at start / end | {} / {} |",
        facts.loadavg.join(" "),
        facts_end.loadavg.join(" ")
    ));
    w(format!(
        "| other work seen (compilers, fuzzers; looked for before every run) | {} |",
        rig.others.summary()
    ));
    w(format!(
        "| lightsnap | {}, release build |",
        facts.lightsnap
    ));
    w(format!(
        "| naive script | `fsfreeze -f; aws lightsail create-disk-snapshot --endpoint-url ...; fsfreeze -u` with {} |",
        facts.aws
    ));
    w(format!(
        "| writer | `lightsnap-writer latencies` ([`tests/writer/writer.rs`](tests/writer/writer.rs)), release build, {} |",
        facts.rustc
    ));
    w(String::new());

    if let Some(h) = headline(cfg, results) {
        let mut s = format!(
            "**Headline** (ext4, L = 50 ms, medians): lightsnap paused writes for **{:.1} ms** by its own \
             window (FIFREEZE called → FITHAW returned; the FIFREEZE call alone takes {} ms here), the naive script \
             for **{:.0} ms**: **{:.0}× shorter**. Seen by the writer \
             (longest stall): {} ms against {} ms, {}.",
            h.lightsnap_ms,
            f1(h.alone_ms),
            h.naive_ms,
            h.ratio,
            f1(h.stall_lightsnap_ms),
            f1(h.stall_naive_ms),
            fmt_ratio(h.stall_naive_ms, h.stall_lightsnap_ms)
        );
        if let Some(e) = h.exp_ms {
            let _ = write!(
                s,
                " With `{EXP_FLAG}` (opt-in, see below): **{e:.1} ms**, **{} shorter** \
                 than the naive script (the FIFREEZE call alone, expedited: {} ms); longest stall \
                 {} ms.",
                fmt_ratio(Some(h.naive_ms), Some(e)),
                fmt(h.alone_exp_ms, 2),
                f1(h.stall_exp_ms)
            );
        }
        if let Some((t, p, k, n)) = h.tls {
            let _ = write!(
                s,
                " With the endpoint over TLS (section 5): {t:.1} ms against {p:.1} ms over plain HTTP, \
                 `CreateDiskSnapshot` on a pre-opened connection in {k} of {n} runs."
            );
        }
        s.push('\n');
        w(s);
    }
    let goals = evaluate(cfg, results);
    w("## Goals\n".into());
    w(format!(
        "Each goal for both configurations. **lightsnap** is lightsnap as it runs by default. **lightsnap {EXP_FLAG}** is opt-in \
         (the flag, or `expedite_freeze = true` in the configuration): its watchdog turns on `/sys/kernel/rcu_expedited`, a \
         system-wide kernel switch — while it is on, every RCU grace period on the machine is expedited, by interrupting all CPUs, \
         not only the freeze's — for the freeze calls only, and puts it back before the API call. lightsnap never touches it \
         otherwise.\n"
    ));
    w(format!(
        "| goal | lightsnap (default) | met | lightsnap {EXP_FLAG} (opt-in) | met |\n| --- | --- | --- | --- | --- |"
    ));
    for g in &goals {
        let (d, e) = (g.of("lightsnap"), g.of(EXP));
        w(format!(
            "| {} | {} | {} | {} | {} |",
            g.goal,
            d.measured,
            met_cell(d.met),
            e.measured,
            met_cell(e.met)
        ));
    }
    w(String::new());
    if measured(results, EXP) {
        let n_exp = results
            .latency
            .values()
            .chain(results.disks.as_ref().map(|d| &d.section))
            .chain(results.tls.as_ref())
            .flat_map(|s| s.runs.iter())
            .filter(|r| {
                r.tag == EXP
                    || TLS_ENDPOINTS
                        .iter()
                        .any(|(endpoint, _)| r.tag == tls_tag(EXP, endpoint))
            })
            .count();
        let initial = rig.rcu.initial.as_deref().unwrap_or("?");
        let left = &rig.rcu.left_on;
        let text = if left.is_empty() {
            format!("back at {initial} after all {n_exp}.")
        } else {
            let mut values: Vec<&str> = left
                .iter()
                .map(|(_, v)| v.as_deref().unwrap_or("?"))
                .collect();
            values.sort();
            values.dedup();
            format!(
                "**left at {} after {} of {n_exp}** (found at {initial}; the benchmark put it back each time).",
                values.join(", "),
                left.len()
            )
        };
        w(format!(
            "`rcu_expedited` after each `{EXP_FLAG}` run: {text}\n"
        ));
    }
    let notes = goal_notes(cfg, results, &goals, facts);
    if !notes.is_empty() {
        w("Where a goal was missed, what the figures say about why:\n".into());
        for n in notes {
            w(format!("- {n}"));
        }
        w(String::new());
    }

    // latency
    w("## 1. The window against API latency\n".into());
    w(format!(
        "{} runs of lightsnap, {} of lightsnap {EXP_FLAG} and {} of the naive script per row, \
         interleaved (the two lightsnap configurations in shuffled order, then the naive script), latencies in shuffled order each \
         round, after one discarded warm-up of each; and once a round, FIFREEZE alone, plain and expedited. \
         Every figure is **median / p95**, in ms unless marked.\n",
        cfg.runs, cfg.exp_runs, cfg.naive_runs
    ));
    w("- **window**: FIFREEZE called → FITHAW returned. lightsnap's own figure (`window_ms` of `--output json`: from just before it asks \
       its watchdog to freeze to the thaw's answer); for the naive script the same two instants, taken with bash's `$EPOCHREALTIME` \
       before `fsfreeze -f` and after `fsfreeze -u` (its share includes starting the `fsfreeze` process, a millisecond or two).".into());
    w(format!(
        "- **FIFREEZE alone**: FIFREEZE then FITHAW on the same filesystem, called straight from the benchmark (lightsnap's own \
         `MountHandle`, from the benchmark's process: no process started, no API call): the kernel's own cost, which every tool pays inside its window. **rcu wait**: the share \
         of the call's kernel-stack samples (`/proc/TID/stack`, every 0.5 ms) spent in `synchronize_rcu` under `rcu_sync_enter` in \
         `freeze_super`. **Expedited**: the same with `/sys/kernel/rcu_expedited` turned on just before the call and off as soon \
         as it returns, as `{EXP_FLAG}` does: that configuration's floor."
    ));
    w(format!(
        "- **beyond L and FIFREEZE alone**: window − L − FIFREEZE alone (medians), the expedited FIFREEZE alone for the \
         `{EXP_FLAG}` rows."
    ));
    w("- **writer's longest stall**: the longest single write + fsync of the writer that was in progress at any time during the run \
       — what an application saw, measured outside either tool.".into());
    w("- **wall**: the whole command, start to exit. **RSS**: peak resident set size from `/usr/bin/time -v` (the largest process of the run: \
       lightsnap or its watchdog; for the naive script, the AWS CLI), median / max, MB. **naive ÷ this**: the naive script's \
       median / p95 over this row's, at the same L.\n".into());
    for (fstype, data) in &results.latency {
        w(format!("### {fstype}\n"));
        let nv_all = summarise(&runs_of(data, "naive", None), 0);
        let alone_txt = |tag: &str| {
            let al: Vec<&Run> = runs_of(data, tag, None)
                .into_iter()
                .filter(|r| r.ok())
                .collect();
            format!(
                "({} runs): the call {} ms, \
                 FIFREEZE called → FITHAW returned {} ms, \
                 writer's longest stall {} ms; \
                 rcu wait {} %, writing out {} % of the call (median)",
                al.len(),
                mp(al.iter().map(|r| r.freeze_call_ms)),
                mp(al.iter().map(|r| r.window_ms)),
                mp(al.iter().map(|r| r.stall_ms)),
                fmt(med(al.iter().map(|r| r.rcu_share.map(|s| s * 100.0))), 0),
                fmt(med(al.iter().map(|r| r.flush_share.map(|s| s * 100.0))), 0),
            )
        };
        let exp_txt = if runs_of(data, "alone-exp", None).is_empty() {
            String::new()
        } else {
            format!("**Expedited** {}. ", alone_txt("alone-exp"))
        };
        w(format!(
            "The writer's typical write + fsync, outside any freeze: {} ms. \
             **FIFREEZE alone** {}. {exp_txt}The naive script's `fsfreeze -f` took {} ms (process start-up included).\n",
            fmt(data.typical_write_ms, 2),
            alone_txt("alone"),
            pair(nv_all.freeze_call)
        ));
        w("| tool | L | runs (failed) | window | window − L | beyond L and FIFREEZE alone (median) | writer's longest stall | wall | RSS MB | naive ÷ this (window) | naive ÷ this (stall) |".into());
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
        for &l in &cfg.latencies {
            let nv = summarise(&runs_of(data, "naive", Some(l)), l);
            for (tag, name) in CONFIGS.iter().copied().chain([("naive", "naive")]) {
                let rs = runs_of(data, tag, Some(l));
                if rs.is_empty() {
                    continue;
                }
                let s = summarise(&rs, l);
                let alone = alone_ms(data, if tag == "naive" { "lightsnap" } else { tag });
                let ratio = if tag == "naive" {
                    (String::new(), String::new())
                } else {
                    (
                        format!(
                            "{} / {}",
                            fmt_ratio(nv.window.0, s.window.0),
                            fmt_ratio(nv.window.1, s.window.1)
                        ),
                        format!(
                            "{} / {}",
                            fmt_ratio(nv.stall.0, s.stall.0),
                            fmt_ratio(nv.stall.1, s.stall.1)
                        ),
                    )
                };
                let beyond = match (s.window_minus_l.0, alone) {
                    (Some(x), Some(a)) => Some(x - a),
                    _ => None,
                };
                w(format!(
                    "| {name} | {l} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.n,
                    s.failed,
                    pair(s.window),
                    pair(s.window_minus_l),
                    f1(beyond),
                    pair(s.stall),
                    pair(s.wall),
                    pair(s.rss_mb),
                    ratio.0,
                    ratio.1
                ));
            }
        }
        w(String::new());
    }

    // dirty
    w("## 2. Dirty data\n".into());
    match &results.dirty {
        Some(Outcome::Skipped { skipped }) => w(format!("Skipped: {skipped}.\n")),
        Some(Outcome::Measured(d)) => {
            w(format!(
                "ext4, L = {} ms, {} run{} per row. Just before each run, a file of the given size is written \
                 to the filesystem and not flushed (page cache only: well under the dirty thresholds above, so the kernel does not start \
                 writing it back by itself); it is deleted and the filesystem synced after the run. The writer keeps writing throughout.\n",
                cfg.dirty_latency,
                cfg.dirty_runs,
                if cfg.dirty_runs > 1 { "s" } else { "" }
            ));
            w("- **lightsnap** calls `syncfs` before the freeze (writes go on meanwhile), so FIFREEZE has little left to flush.".into());
            w("- **lightsnap --no-syncfs** is the same run without that flush: FIFREEZE writes out all the dirty data itself, with writes \
               already blocked, and the window (which opens when FIFREEZE is called) counts it. Like for like: the difference between the two \
               rows is what the flush saves.".into());
            w("- **naive** (`fsfreeze -f`, which has no flush before it either) reports how long its FIFREEZE call took, the part of the \
               window lightsnap does not report separately: **freeze call**, from starting `fsfreeze -f` to its return.".into());
            w("- **control**: `sync -f` (syncfs) alone on the same dirty data, no freeze and no API call: what the flush by itself \
               costs the writer, whose fsyncs queue behind it. lightsnap's longest stall with dirty data is to be read against it.\n".into());
            w(format!(
                "The writer's typical write + fsync: {} ms.\n",
                fmt(d.typical_write_ms, 2)
            ));
            w("| dirty | tool | runs (failed) | window | window − L | freeze call | writer's longest stall | wall |".into());
            w("| --- | --- | --- | --- | --- | --- | --- | --- |".into());
            for &mib in &cfg.dirty_sizes {
                for (tool, lbl) in [
                    ("lightsnap", "lightsnap (syncfs first)"),
                    ("lightsnap-nosyncfs", "lightsnap --no-syncfs"),
                    ("naive", "naive (no syncfs)"),
                    ("sync", "control: `sync -f` alone"),
                ] {
                    let rs: Vec<&Run> = d
                        .runs
                        .iter()
                        .filter(|r| r.tag == tool && r.dirty_mib == Some(mib))
                        .collect();
                    let s = summarise(&rs, cfg.dirty_latency);
                    let fc = match tool {
                        "naive" => pair(s.freeze_call),
                        t if t.starts_with("lightsnap") => "in the window".into(),
                        _ => "–".into(),
                    };
                    let (win, wml) = if tool == "sync" {
                        ("–".to_string(), "–".to_string())
                    } else {
                        (pair(s.window), pair(s.window_minus_l))
                    };
                    w(format!(
                        "| {} | {lbl} | {} ({}) | {win} | {wml} | {fc} | {} | {} |",
                        size_label(mib),
                        s.n,
                        s.failed,
                        pair(s.stall),
                        pair(s.wall)
                    ));
                }
            }
            w(String::new());
        }
        None => {}
    }

    // disks
    w("## 3. Several disks as one group\n".into());
    if let Some(disks) = &results.disks {
        let dk = &disks.section;
        let ind = &disks.independence;
        w(format!(
            "`lightsnap freeze-and-snap /a /b ...`: k ext4 filesystems on k loop devices, one fake Lightsail disk each \
             (found by device path through the fake's metadata service), frozen at once (one wave: a watchdog thread each), the k `CreateDiskSnapshot` calls made together, \
             thawed newest first. **calls' arrival spread**: from the first to the last of the k `CreateDiskSnapshot` requests reaching the fake (median / p95, ms). \
             {} runs per row of lightsnap and {} of lightsnap {EXP_FLAG}, counts, latencies and the two \
             configurations shuffled each round. The writer is on the first \
             filesystem. **k FIFREEZE alone**: FIFREEZE on the k filesystems at once (a thread each) and FITHAW, straight from the benchmark, \
             once a round per count, plain and (for the `{EXP_FLAG}` rows) expedited: the kernel's floor for freezing k filesystems in \
             parallel (median / p95, ms). **vs 1 disk** and **added per extra disk**: against the same configuration's one-disk row.\n",
            cfg.disk_runs, cfg.disk_exp_runs
        ));
        let wave_txt = match &ind.waves {
            None => "`lightsnap plan` could not be read".to_string(),
            Some(waves) => {
                let mut distinct = waves.clone();
                distinct.dedup();
                format!(
                    "`lightsnap plan` on all {} puts them in wave{} {}{}",
                    ind.filesystems,
                    if distinct.len() > 1 { "s" } else { "" },
                    distinct
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if distinct.len() == 1 {
                        " (all frozen at once)"
                    } else {
                        " (**not** all frozen at once)"
                    }
                )
            }
        };
        let homes = if ind.backing_homes.is_empty() {
            "?".to_string()
        } else {
            ind.backing_homes.join(", ")
        };
        w(format!(
            "Independent filesystems, checked before the runs: their {} image files are in the scratch directory, on \
             `{homes}` (the host filesystem holding the scratch directory is `{}`), \
             {} inside another's mount or mounted below another; {wave_txt}.\n",
            ind.filesystems,
            ind.host_of_scratch,
            if ind.nested.is_empty() {
                "none".to_string()
            } else {
                ind.nested.join(", ")
            }
        ));
        w("| L | tool | disks | runs (failed) | window | window − L | vs 1 disk (median) | added per extra disk (median) | k FIFREEZE alone | calls' arrival spread | writer's longest stall | wall | RSS MB |".into());
        w(
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
                .into(),
        );
        for &l in &cfg.disk_latencies {
            for (tag, name) in CONFIGS {
                let tagged = runs_of(dk, tag, Some(l));
                if tagged.is_empty() {
                    continue;
                }
                let one_runs: Vec<&Run> = tagged
                    .iter()
                    .copied()
                    .filter(|r| r.disks == Some(1))
                    .collect();
                let one = summarise(&one_runs, l);
                for &k in &cfg.disk_counts {
                    let rs: Vec<&Run> = tagged
                        .iter()
                        .copied()
                        .filter(|r| r.disks == Some(k))
                        .collect();
                    let s = summarise(&rs, l);
                    let spread = if k > 1 {
                        mp(rs.iter().filter(|r| r.ok()).map(|r| r.calls_spread_ms))
                    } else {
                        "–".into()
                    };
                    let extra = match (k, s.window.0, one.window.0) {
                        (1, _, _) => "–".into(),
                        (_, Some(a), Some(b)) => f1(Some((a - b) / (k as f64 - 1.0))),
                        _ => "–".into(),
                    };
                    let al = dk
                        .runs
                        .iter()
                        .filter(|r| r.tag == alone_tag(tag) && r.disks == Some(k) && r.ok())
                        .map(|r| r.freeze_call_ms);
                    w(format!(
                        "| {l} | {name} | {k} | {} ({}) | {} | {} | {} | {extra} | {} | {spread} | {} | {} | {} |",
                        s.n,
                        s.failed,
                        pair(s.window),
                        pair(s.window_minus_l),
                        fmt_ratio(s.window.0, one.window.0),
                        mp(al),
                        pair(s.stall),
                        pair(s.wall),
                        pair(s.rss_mb)
                    ));
                }
            }
        }
        w(String::new());
    }

    // breakdown
    match &results.breakdown {
        None => {}
        Some(Outcome::Skipped { skipped }) => {
            w("## 4. Where lightsnap's window goes\n".into());
            w(format!("Skipped: {skipped}.\n"));
        }
        Some(Outcome::Measured(bd)) => {
            w("## 4. Where lightsnap's window goes\n".into());
            let exp = cfg.exp_runs > 0;
            w(format!(
                "ext4, L = 0, {} rounds of: one lightsnap run under `strace --seccomp-bpf -f -T -e trace=ioctl` (which stops \
                 it only at its ioctls), for how long its watchdog's FIFREEZE syscall itself took against the window lightsnap reports{}\
                 ; `fsfreeze -f` under the same strace; FIFREEZE alone (as in section 1{}). The writer runs throughout. Median / p95, ms.\n",
                cfg.breakdown_runs,
                if exp {
                    format!(", and one of lightsnap {EXP_FLAG} the same way (the two in shuffled order)")
                } else {
                    String::new()
                },
                if exp { ", plain and expedited" } else { "" }
            ));
            let rs = &bd.runs;
            let ff: Vec<&Run> = rs
                .iter()
                .filter(|r| r.tag == "fsfreeze-strace" && r.ok() && r.fifreeze_ms.is_some())
                .collect();
            w("| | runs | window | FIFREEZE syscall | window − FIFREEZE syscall | writer's longest stall |".into());
            w("| --- | --- | --- | --- | --- | --- |".into());
            for (tag, name) in CONFIGS {
                let ls: Vec<&Run> = rs
                    .iter()
                    .filter(|r| {
                        r.tag == format!("{tag}-strace") && r.ok() && r.fifreeze_ms.is_some()
                    })
                    .collect();
                if !ls.is_empty() {
                    w(format!(
                        "| {name} (its watchdog's FIFREEZE{}) | {} | {} | {} | {} | {} |",
                        if tag == EXP { ", expedited" } else { "" },
                        ls.len(),
                        mp(ls.iter().map(|r| r.window_ms)),
                        mp(ls.iter().map(|r| r.fifreeze_ms)),
                        mp(ls.iter().map(|r| Some(r.window_ms? - r.fifreeze_ms?))),
                        mp(ls.iter().map(|r| r.stall_ms))
                    ));
                }
            }
            w(format!(
                "| `fsfreeze -f` | {} | – | {} | – | {} |",
                ff.len(),
                mp(ff.iter().map(|r| r.fifreeze_ms)),
                mp(ff.iter().map(|r| r.stall_ms))
            ));
            for (tag, name) in [
                ("alone", "FIFREEZE alone (from the benchmark's own process)"),
                ("alone-exp", "FIFREEZE alone, expedited"),
            ] {
                let al: Vec<&Run> = rs.iter().filter(|r| r.tag == tag && r.ok()).collect();
                if !al.is_empty() {
                    w(format!(
                        "| {name} | {} | {} | {} | {} | {} |",
                        al.len(),
                        mp(al.iter().map(|r| r.window_ms)),
                        mp(al.iter().map(|r| r.freeze_call_ms)),
                        mp(al.iter().map(|r| Some(r.window_ms? - r.freeze_call_ms?))),
                        mp(al.iter().map(|r| r.stall_ms))
                    ));
                }
            }
            w(String::new());
            w(format!(
                "**window − FIFREEZE syscall** is lightsnap's own share of its window: asking the watchdog, the watchdog's thread, \
                 the answers, the thaw. Where the FIFREEZE syscall made by lightsnap's watchdog or by `fsfreeze` is longer than FIFREEZE \
                 alone, that is the kernel's call taking longer, not anything lightsnap does around it: almost all of the call is waiting \
                 for RCU grace periods (section 1), whose length varies with what the CPUs are doing when they are asked for. Why it is \
                 longer when made by a freshly started process than by the benchmark's long-running one is not pinned down.{}\n",
                if exp {
                    format!(
                        " With `{EXP_FLAG}`, lightsnap's own share also holds the watchdog turning `rcu_expedited` on before the call and \
                         off after it (two writes to sysfs)."
                    )
                } else {
                    String::new()
                }
            ));
        }
    }

    // over TLS
    if let Some(data) = &results.tls {
        w("## 5. The endpoint over TLS\n".into());
        w(format!(
            "lightsnap on ext4, against two fakes with the same disk answering `CreateDiskSnapshot` after L = {} ms: one over \
             plain HTTP, one over TLS (a certificate made at its start for `localhost`, its CA trusted through `SSL_CERT_FILE` as \
             a private CA would be; the metadata service stays plain HTTP, as the real one). {} runs per row of lightsnap and {} of \
             lightsnap {EXP_FLAG} (whose FIFREEZE, a millisecond or two instead of some tens, leaves less noise around a difference \
             of 2 ms), the four in shuffled order each round, after one discarded warm-up of each; the writer runs throughout, as \
             in section 1. **pre-opened connection**: the fake saw the run's `CreateDiskSnapshot` arrive on a connection that had \
             already served a request (lightsnap opens and uses it after the hooks and syncfs, before the freeze); a fresh one \
             would put a TCP connect and, over TLS, a handshake inside the window. **on a TLS connection**: one with a TLS \
             handshake, as the fake saw it. Window, stall and wall: **median / p90**, ms. The writer's typical write + fsync, \
             outside any freeze: {} ms.\n",
            cfg.tls_latency,
            cfg.tls_runs,
            cfg.tls_exp_runs,
            fmt(data.typical_write_ms, 2)
        ));
        w("| tool | endpoint | runs (failed) | window | window − L (median) | writer's longest stall | wall | CreateDiskSnapshot on a pre-opened connection | on a TLS connection | TLS − plain HTTP (medians) |".into());
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".into());
        for (tag, name) in CONFIGS {
            let Some(rows) = tls_rows(results, tag) else {
                continue;
            };
            let diff = tls_difference(&rows).map_or_else(|| "–".into(), |d| format!("{d:+.1}"));
            for (k, r) in rows.iter().enumerate() {
                w(format!(
                    "| {name} | {} | {} ({}) | {} | {} | {} | {} | {} of {} | {} of {} | {} |",
                    r.name,
                    r.n,
                    r.failed,
                    pair(r.window),
                    f1(r.window.0.map(|x| x - cfg.tls_latency as f64)),
                    pair(r.stall),
                    pair(r.wall),
                    r.preopened,
                    r.n,
                    r.over_tls,
                    r.n,
                    if k == 1 { diff.as_str() } else { "" }
                ));
            }
        }
        w(String::new());
    }

    w("## Caveats\n".into());
    w("- The API is a local fake: the latency is injected (`--fault CreateDiskSnapshot=latency:Lms`), on top of a loopback round trip. \
       Its disks have no `backing`, so it copies nothing and the copy's time is not counted as API latency.".into());
    w("- Loop devices are buffered by the host's page cache, so flushes are cheaper than on a real EBS volume; the dirty-data rows \
       understate what 1 GiB costs there.".into());
    w("- lightsnap's window opens just before it asks its watchdog (another process) to freeze, so the request's trip and the \
       watchdog starting a thread per filesystem are counted in it; the writers are blocked only part of the FIFREEZE call.".into());
    if results.tls.is_some() {
        w("- Section 5's fake is on loopback: a fresh connection (TCP and TLS handshake, no DNS) costs far less here than to the \
           real regional endpoint, so one opened inside the window would add little to the TLS row's window here; the pre-opened \
           count is the figure that carries over to the field.".into());
    }
    w("- The machine may be shared (see the load average): other work on its cores shows up as spread in the p95 column.".into());
    w("- Raw per-run figures of the last run: `target/bench/results.json`.".into());
    w(String::new());
    out.join("\n")
}
