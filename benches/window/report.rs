//! BENCHMARKS.md: the machine, the headline, each goal for both lightsnap configurations and
//! why a missed one was missed, and one table per section.

use std::fmt::Write as _;

use crate::rig::{cores, EndFacts, Facts, Rig, Run, CONFIGS, EXP, EXP_FLAG};
use crate::sections::{Outcome, Results, Section};
use crate::stats::{f1, fmt, fmt_ratio, max, med, med_p95, min, pair, pct};
use crate::Cfg;

// The goals the issue sets; BENCHMARKS.md says for each whether this run met it.
const GOAL_WINDOW_MINUS_L_MS: f64 = 15.0;
const GOAL_RATIO_AT_50: f64 = 20.0;
const GOAL_STALL_SLACK_MS: f64 = 20.0;
const GOAL_DISKS_RATIO: f64 = 1.5;
const GOAL_RSS_MB: f64 = 30.0;

/// `2026-01-31 12:34 UTC`.
pub fn utc_now() -> String {
    let text = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    // 2026-01-31T12:34:56Z
    format!("{} {} UTC", &text[..10], &text[11..16])
}

/// A run's windows, medians and p95s.
pub struct Summary {
    pub n: usize,
    pub failed: usize,
    pub window: (Option<f64>, Option<f64>),
    pub window_minus_l: (Option<f64>, Option<f64>),
    pub stall: (Option<f64>, Option<f64>),
    pub wall: (Option<f64>, Option<f64>),
    pub rss_mb: (Option<f64>, Option<f64>),
    pub freeze_call: (Option<f64>, Option<f64>),
}

pub fn summarise(runs: &[&Run], latency: u64) -> Summary {
    let ok: Vec<&&Run> = runs.iter().filter(|r| r.ok()).collect();
    let window = med_p95(ok.iter().map(|r| r.window_ms));
    let l = latency as f64;
    let rss = || {
        ok.iter()
            .filter_map(|r| r.rss_kb)
            .filter(|&k| k > 0)
            .map(|k| Some(k as f64 / 1024.0))
    };
    Summary {
        n: runs.len(),
        failed: runs.len() - ok.len(),
        window,
        window_minus_l: (window.0.map(|w| w - l), window.1.map(|w| w - l)),
        stall: med_p95(ok.iter().map(|r| r.stall_ms)),
        wall: med_p95(ok.iter().map(|r| r.wall_ms)),
        rss_mb: (med(rss()), max(rss())),
        freeze_call: med_p95(ok.iter().map(|r| r.freeze_call_ms)),
    }
}

/// The runs of a section with this tag (at this latency).
pub fn runs_of<'a>(data: &'a Section, tag: &str, latency: Option<u64>) -> Vec<&'a Run> {
    data.runs
        .iter()
        .filter(|r| r.tag == tag && (latency.is_none() || r.latency == latency))
        .collect()
}

fn alone_tag(tag: &str) -> &'static str {
    if tag == EXP {
        "alone-exp"
    } else {
        "alone"
    }
}

fn label(tag: &str) -> &'static str {
    CONFIGS
        .iter()
        .find(|(t, _)| *t == tag)
        .map_or("?", |(_, l)| l)
}

/// The median FIFREEZE-alone call of a section-1 filesystem: expedited for --expedite-freeze.
fn alone_ms(data: &Section, tag: &str) -> Option<f64> {
    med(runs_of(data, alone_tag(tag), None)
        .iter()
        .filter(|r| r.ok())
        .map(|r| r.freeze_call_ms))
}

fn disk_window(dk: &Section, tag: &str, k: usize, latency: u64) -> Option<f64> {
    med(dk
        .runs
        .iter()
        .filter(|r| r.tag == tag && r.disks == Some(k) && r.latency == Some(latency) && r.ok())
        .map(|r| r.window_ms))
}

fn disk_alone(dk: &Section, tag: &str, k: usize) -> Option<f64> {
    med(dk
        .runs
        .iter()
        .filter(|r| r.tag == alone_tag(tag) && r.disks == Some(k) && r.ok())
        .map(|r| r.freeze_call_ms))
}

/// Whether this run measured the configuration at all (section 1 or 3).
fn measured(results: &Results, tag: &str) -> bool {
    results
        .latency
        .values()
        .any(|d| !runs_of(d, tag, None).is_empty())
        || results
            .disks
            .as_ref()
            .is_some_and(|d| !runs_of(&d.section, tag, None).is_empty())
}

fn disk_goal_latency(cfg: &Cfg) -> u64 {
    if cfg.disk_latencies.contains(&50) {
        50
    } else {
        cfg.disk_latencies[0]
    }
}

fn dirty_section(results: &Results) -> Option<&Section> {
    match &results.dirty {
        Some(Outcome::Measured(s)) => Some(s),
        _ => None,
    }
}

/// One goal's figures and verdict for one configuration (`met` None: not measured).
pub struct Verdict {
    pub measured: String,
    pub met: Option<bool>,
}

/// One goal, for each configuration in CONFIGS order.
pub struct Goal {
    pub key: &'static str,
    pub goal: String,
    pub by: Vec<Verdict>,
}

impl Goal {
    fn of(&self, tag: &str) -> &Verdict {
        &self.by[usize::from(tag == EXP)]
    }
}

fn not_measured() -> Verdict {
    Verdict {
        measured: "not measured".into(),
        met: None,
    }
}

fn evaluate(cfg: &Cfg, results: &Results) -> Vec<Goal> {
    let lat = &results.latency;
    let dk = results.disks.as_ref().map(|d| &d.section);

    let window = |tag: &str| {
        let rows: Vec<(&String, u64, Option<f64>)> = lat
            .iter()
            .flat_map(|(f, d)| {
                cfg.latencies.iter().map(move |&l| {
                    (
                        f,
                        l,
                        summarise(&runs_of(d, tag, Some(l)), l).window_minus_l.0,
                    )
                })
            })
            .collect();
        let vals: Vec<f64> = rows.iter().filter_map(|r| r.2).collect();
        if vals.is_empty() {
            return not_measured();
        }
        let alone: Vec<String> = lat
            .iter()
            .map(|(f, d)| format!("{f} {} ms", f1(alone_ms(d, tag))))
            .collect();
        let listed: Vec<String> = rows
            .iter()
            .map(|(f, l, v)| format!("{f} L={l}: {} ms", f1(*v)))
            .collect();
        Verdict {
            measured: format!(
                "{} (FIFREEZE alone{}: {})",
                listed.join("; "),
                if tag == EXP { ", expedited" } else { "" },
                alone.join("; ")
            ),
            met: Some(
                vals.len() == rows.len()
                    && vals.iter().copied().fold(f64::MIN, f64::max) <= GOAL_WINDOW_MINUS_L_MS,
            ),
        }
    };

    let ratio = |tag: &str| {
        let mut rows = Vec::new();
        for (f, d) in lat {
            if !cfg.latencies.contains(&50) {
                continue;
            }
            let ls = summarise(&runs_of(d, tag, Some(50)), 50).window.0;
            let nv = summarise(&runs_of(d, "naive", Some(50)), 50).window.0;
            let r = match (ls, nv) {
                (Some(l), Some(n)) if l != 0.0 && n != 0.0 => Some(n / l),
                _ => None,
            };
            rows.push((f, r, ls, nv));
        }
        if !rows.iter().any(|r| r.2.is_some_and(|v| v != 0.0)) {
            return not_measured();
        }
        let listed: Vec<String> = rows
            .iter()
            .map(|(f, r, l, n)| format!("{f}: {} / {} ms = {}×", f1(*n), f1(*l), fmt(*r, 0)))
            .collect();
        Verdict {
            measured: listed.join("; "),
            met: Some(
                rows.iter()
                    .all(|r| r.1.is_some_and(|v| v >= GOAL_RATIO_AT_50)),
            ),
        }
    };

    let stall = |tag: &str| {
        let runs: Vec<&Run> = lat
            .values()
            .flat_map(|d| runs_of(d, tag, None))
            .filter(|r| r.ok() && r.stall_ms.is_some())
            .collect();
        if runs.is_empty() {
            return not_measured();
        }
        let excess: Vec<f64> = runs
            .iter()
            .map(|r| r.stall_ms.unwrap() - r.window_ms.unwrap_or(0.0))
            .collect();
        let bad = excess.iter().filter(|&&e| e > GOAL_STALL_SLACK_MS).count();
        let ex = || excess.iter().copied().map(Some);
        Verdict {
            measured: format!(
                "{}/{} runs; stall − window median {}, p95 {}, worst {} ms",
                runs.len() - bad,
                runs.len(),
                f1(med(ex())),
                f1(pct(ex(), 95.0)),
                f1(max(ex()))
            ),
            met: Some(bad == 0),
        }
    };

    let disks = |tag: &str| {
        let Some(dk) = dk else {
            return not_measured();
        };
        let l = disk_goal_latency(cfg);
        let top = cfg.disk_counts.iter().copied().max().unwrap_or(1);
        match (disk_window(dk, tag, 1, l), disk_window(dk, tag, top, l)) {
            (Some(one), Some(many)) if one != 0.0 && many != 0.0 => Verdict {
                measured: format!(
                    "L={l}: {} / {} ms = {}×",
                    f1(Some(many)),
                    f1(Some(one)),
                    fmt(Some(many / one), 2)
                ),
                met: Some(many / one <= GOAL_DISKS_RATIO),
            },
            _ => not_measured(),
        }
    };

    let rss = |tag: &str| {
        let mut runs: Vec<&Run> = lat.values().flat_map(|d| runs_of(d, tag, None)).collect();
        if let Some(dk) = dk {
            runs.extend(runs_of(dk, tag, None));
        }
        if tag == "lightsnap" {
            // Section 2's runs are the default configuration (and --no-syncfs).
            if let Some(d) = dirty_section(results) {
                runs.extend(d.runs.iter().filter(|r| r.tag.starts_with("lightsnap")));
            }
        }
        let vals: Vec<Option<f64>> = runs
            .iter()
            .filter_map(|r| r.rss_kb)
            .filter(|&k| k > 0)
            .map(|k| Some(k as f64 / 1024.0))
            .collect();
        if vals.is_empty() {
            return not_measured();
        }
        let top = max(vals.iter().copied());
        Verdict {
            measured: format!(
                "median {} MB, max {} MB over {} runs",
                f1(med(vals.iter().copied())),
                f1(top),
                vals.len()
            ),
            met: Some(top.unwrap_or(0.0) <= GOAL_RSS_MB),
        }
    };

    let top = cfg.disk_counts.iter().copied().max().unwrap_or(1);
    type Judge<'a> = &'a dyn Fn(&str) -> Verdict;
    let specs: Vec<(&'static str, String, Judge)> = vec![
        (
            "window",
            format!(
                "window − L ≤ {GOAL_WINDOW_MINUS_L_MS:.0} ms (median), at every L and filesystem"
            ),
            &window,
        ),
        (
            "ratio",
            format!(
                "window ≥ {GOAL_RATIO_AT_50:.0}× shorter than the naive script's at L = 50 ms (medians)"
            ),
            &ratio,
        ),
        (
            "stall",
            format!(
                "writer's longest stall ≤ window + {GOAL_STALL_SLACK_MS:.0} ms, in every run of section 1"
            ),
            &stall,
        ),
        (
            "disks",
            format!("{top} disks' window ≤ {GOAL_DISKS_RATIO}× one disk's (medians, L = 50 ms)"),
            &disks,
        ),
        (
            "rss",
            format!(
                "peak RSS ≤ {GOAL_RSS_MB:.0} MB (largest of all the configuration's runs)"
            ),
            &rss,
        ),
    ];
    specs
        .into_iter()
        .map(|(key, goal, f)| Goal {
            key,
            goal,
            by: CONFIGS.iter().map(|(tag, _)| f(tag)).collect(),
        })
        .collect()
}

fn yes(b: bool) -> &'static str {
    if b {
        "**yes**"
    } else {
        "**no**"
    }
}

fn met_cell(ok: Option<bool>) -> &'static str {
    ok.map_or("–", yes)
}

fn breakdown_note(results: &Results, tag: &str) -> String {
    let Some(Outcome::Measured(bd)) = &results.breakdown else {
        return String::new();
    };
    let ls: Vec<&Run> = bd
        .runs
        .iter()
        .filter(|r| r.tag == format!("{tag}-strace") && r.ok() && r.fifreeze_ms.is_some())
        .collect();
    let al: Vec<Option<f64>> = bd
        .runs
        .iter()
        .filter(|r| r.tag == alone_tag(tag) && r.ok())
        .map(|r| r.freeze_call_ms)
        .collect();
    if ls.is_empty() || al.is_empty() {
        return String::new();
    }
    format!(
        "; section 4 splits that (ext4, L = 0): lightsnap's own share (its window − its watchdog's FIFREEZE syscall, under strace) is \
         {} ms, and the rest is the kernel's call itself, \
         {} ms made by lightsnap's watchdog against {} ms alone{}, interleaved",
        f1(med(ls.iter().map(|r| Some(r.window_ms? - r.fifreeze_ms?)))),
        f1(med(ls.iter().map(|r| r.fifreeze_ms))),
        f1(med(al)),
        if tag == EXP { ", expedited both" } else { "" }
    )
}

/// window − L − FIFREEZE alone (the configuration's own: expedited for --expedite-freeze), the
/// medians of section 1's rows.
fn beyond_alone(cfg: &Cfg, results: &Results, tag: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for d in results.latency.values() {
        let a = alone_ms(d, tag);
        for &l in &cfg.latencies {
            let s = summarise(&runs_of(d, tag, Some(l)), l);
            if let (Some(w), Some(a)) = (s.window_minus_l.0, a) {
                out.push(Some(w - a));
            }
        }
    }
    out
}

fn goal_notes(cfg: &Cfg, results: &Results, goals: &[Goal], facts: &Facts) -> Vec<String> {
    let mut notes = Vec::new();
    let goal = |key: &str| goals.iter().find(|g| g.key == key).unwrap();
    let missed = |key: &str, tag: &str| goal(key).of(tag).met == Some(false);
    let lat = &results.latency;
    let and_join = |parts: Vec<String>| parts.join(" and ");

    if (missed("window", "lightsnap") || missed("window", EXP)) && !lat.is_empty() {
        let mut parts = Vec::new();
        if missed("window", "lightsnap") {
            let alones: Vec<&Run> = lat
                .values()
                .flat_map(|d| runs_of(d, "alone", None))
                .filter(|r| r.ok())
                .collect();
            let rcu = alones.iter().map(|r| r.rcu_share.map(|s| s * 100.0));
            let flush = alones.iter().map(|r| r.flush_share.map(|s| s * 100.0));
            let stall_alone = alones.iter().map(|r| Some(-(r.stall_ms? - r.window_ms?)));
            let own = beyond_alone(cfg, results, "lightsnap");
            let over = lat
                .values()
                .all(|d| alone_ms(d, "lightsnap").unwrap_or(0.0) > GOAL_WINDOW_MINUS_L_MS);
            let exp_alone = and_join(
                lat.iter()
                    .map(|(f, d)| format!("{} ms on {f}", fmt(alone_ms(d, EXP), 2)))
                    .collect(),
            );
            parts.push(format!(
                "lightsnap (default): the window opens when FIFREEZE is called, so it includes the call, \
                 and the call alone — straight from the benchmark, no process started, next to nothing to flush — takes \
                 {} (median){}. Its kernel stacks, sampled, are in `synchronize_rcu` \
                 under `rcu_sync_enter` in `freeze_super` {} % of the time (median; writing out, {} %): \
                 the kernel waits for one RCU grace period for each of the three `sb_writers` levels it takes (write, page fault, \
                 internal), a few timer ticks each at CONFIG_HZ={}. Expedited grace periods all but remove the \
                 wait: with `/sys/kernel/rcu_expedited` turned on for the call (what `{EXP_FLAG}` does), FIFREEZE alone took \
                 {exp_alone} in this run (median). Beyond L and FIFREEZE alone, lightsnap's windows have \
                 {} to {} ms (medians, the rows of section 1){}. Writers are not blocked during the first of the three waits (the write level is \
                 only locked once it is over), so the window somewhat overstates the pause: in the FIFREEZE-alone runs the writer's \
                 longest stall was {} ms shorter than FIFREEZE called → FITHAW returned (median).",
                and_join(lat.iter().map(|(f, d)| format!("{} ms on {f}", f1(alone_ms(d, "lightsnap")))).collect()),
                if over { ", more than the goal by itself" } else { "" },
                fmt(med(rcu), 0),
                fmt(med(flush), 0),
                facts.hz,
                f1(min(own.iter().copied())),
                f1(max(own.iter().copied())),
                breakdown_note(results, "lightsnap"),
                f1(med(stall_alone)),
            ));
        }
        if missed("window", EXP) {
            let own = beyond_alone(cfg, results, EXP);
            let worst = lat
                .iter()
                .flat_map(|(f, d)| {
                    cfg.latencies.iter().map(move |&l| {
                        (
                            f,
                            l,
                            summarise(&runs_of(d, EXP, Some(l)), l).window_minus_l.0,
                        )
                    })
                })
                .fold(
                    None::<(&String, u64, Option<f64>)>,
                    |best, row| match best {
                        Some(b) if b.2.unwrap_or(0.0) >= row.2.unwrap_or(0.0) => Some(b),
                        _ => Some(row),
                    },
                );
            let flushing = |d: &Section| {
                fmt(
                    med(runs_of(d, "alone-exp", None)
                        .iter()
                        .filter(|r| r.ok())
                        .map(|r| r.flush_share.map(|s| s * 100.0))),
                    0,
                )
            };
            let (wf, wl, wv) =
                worst.map_or((String::from("?"), 0, None), |(f, l, v)| (f.clone(), l, v));
            parts.push(format!(
                "lightsnap {EXP_FLAG}: FIFREEZE alone, expedited, takes {} (median; p95 {}), with no RCU wait left: its stack samples are writing out ({}, median; on ext4 that is the journal's flush, on the host's disk under the loop device); beyond L and that, its windows have {} to {} ms \
                 (medians, the rows of section 1), the most at {wf} L = {wl} ms ({} ms over L){}.",
                and_join(lat.iter().map(|(f, d)| format!("{} ms on {f}", fmt(alone_ms(d, EXP), 2))).collect()),
                and_join(
                    lat.values()
                        .map(|d| format!(
                            "{} ms",
                            f1(pct(
                                runs_of(d, "alone-exp", None).iter().filter(|r| r.ok()).map(|r| r.freeze_call_ms),
                                95.0
                            ))
                        ))
                        .collect()
                ),
                and_join(lat.iter().map(|(f, d)| format!("{} % on {f}", flushing(d))).collect()),
                f1(min(own.iter().copied())),
                f1(max(own.iter().copied())),
                f1(wv),
                breakdown_note(results, EXP),
            ));
        } else if goal("window").of(EXP).met == Some(true) {
            parts.push(format!(
                "lightsnap {EXP_FLAG} meets it — an opt-in: the switch is system-wide (while it is on, every RCU grace period on \
                 the machine is expedited, by interrupting all CPUs, not only the freeze's), so lightsnap leaves it alone unless \
                 asked."
            ));
        }
        notes.push(format!(
            "**window − L ≤ {GOAL_WINDOW_MINUS_L_MS:.0} ms**: {}",
            parts.join(" ")
        ));
    }

    if (missed("ratio", "lightsnap") || missed("ratio", EXP)) && cfg.latencies.contains(&50) {
        if let Some(data) = lat.get("ext4") {
            let nv0 = if cfg.latencies.contains(&0) {
                summarise(&runs_of(data, "naive", Some(0)), 0).window.0
            } else {
                None
            };
            let nv = summarise(&runs_of(data, "naive", Some(50)), 50).window.0;
            let mut parts = Vec::new();
            let mut floors = Vec::new();
            for (tag, lbl) in CONFIGS {
                let ls = summarise(&runs_of(data, tag, Some(50)), 50);
                let a = alone_ms(data, tag);
                let (Some(w), Some(a)) =
                    (ls.window.0.filter(|&w| w != 0.0), a.filter(|&a| a != 0.0))
                else {
                    continue;
                };
                parts.push(format!(
                    "{lbl}'s window is L + {} ms ({} ms of it the FIFREEZE call{}), so {GOAL_RATIO_AT_50:.0}× would need the naive script to pause writes for \
                     {} ms or more",
                    f1(ls.window_minus_l.0),
                    f1(Some(a)),
                    if tag == EXP { ", expedited" } else { "" },
                    fmt(Some(GOAL_RATIO_AT_50 * w), 0)
                ));
                floors.push((tag, a, ls.window_minus_l.0.map(|x| x - a)));
            }
            if let (Some(nv), false) = (nv.filter(|&v| v != 0.0), parts.is_empty()) {
                notes.push(format!(
                    "**{GOAL_RATIO_AT_50:.0}× at L = 50 ms** (ext4): {}. The naive script paused them for \
                     {} ms, of which {} ms is there even at L = 0 (FIFREEZE, then the AWS CLI starting inside the \
                     window). Even a tool adding nothing at all to the kernel's call would pause writes for L + FIFREEZE = \
                     {}, and the naive script's pause is only {} that: the ratio is bounded by the CLI's start-up time (and, by default, the kernel's FIFREEZE) on this machine, \
                     not by what lightsnap's windows have beyond L and FIFREEZE alone ({}; see section 4 for how much of the default's is lightsnap's own).",
                    parts.join("; "),
                    fmt(Some(nv), 0),
                    fmt(nv0, 0),
                    floors
                        .iter()
                        .map(|(t, a, _)| format!("{} ms{}", fmt(Some(50.0 + a), 0), if *t == EXP { " (expedited)" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    floors
                        .iter()
                        .map(|(_, a, _)| fmt_ratio(Some(nv), Some(50.0 + a)))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    floors
                        .iter()
                        .map(|(t, _, b)| format!("{} ms{}", f1(*b), if *t == EXP { " expedited" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        }
    }

    for (tag, _) in CONFIGS.iter().filter(|(t, _)| missed("stall", t)) {
        let excess: Vec<Option<f64>> = lat
            .values()
            .flat_map(|d| runs_of(d, tag, None))
            .filter(|r| r.ok() && r.stall_ms.is_some())
            .map(|r| Some(r.stall_ms? - r.window_ms?))
            .collect();
        let typical = med(lat.values().map(|d| d.typical_write_ms));
        notes.push(format!(
            "**Stall ≤ window + {GOAL_STALL_SLACK_MS:.0} ms**, {}: the window opens when FIFREEZE is called, so nothing \
             before the freeze is missing from it; what a stall has beyond it comes after the thaw: the writer blocked in the kernel \
             has to be woken and scheduled and its fsync done (typically {} ms), on {} cores shared with \
             lightsnap, its watchdog and the fake. stall − window: median {}, p95 {}, \
             worst {} ms.",
            label(tag),
            fmt(typical, 2),
            cores(),
            f1(med(excess.iter().copied())),
            f1(pct(excess.iter().copied(), 95.0)),
            f1(max(excess.iter().copied())),
        ));
    }

    if let Some(disks) = &results.disks {
        let dk = &disks.section;
        for (tag, _) in CONFIGS.iter().filter(|(t, _)| missed("disks", t)) {
            let l = disk_goal_latency(cfg);
            let top = cfg.disk_counts.iter().copied().max().unwrap_or(1);
            let (Some(one), Some(many)) =
                (disk_window(dk, tag, 1, l), disk_window(dk, tag, top, l))
            else {
                continue;
            };
            let (a1, ak) = (disk_alone(dk, tag, 1), disk_alone(dk, tag, top));
            let waves = disks.independence.waves.clone().unwrap_or_default();
            let mut distinct = waves.clone();
            distinct.dedup();
            let spread = med(runs_of(dk, tag, None)
                .iter()
                .filter(|r| r.disks == Some(top) && r.ok())
                .map(|r| r.calls_spread_ms));
            let best = match (a1, ak) {
                (Some(a1), Some(ak)) if a1 != 0.0 && ak != 0.0 => {
                    fmt_ratio(Some(l as f64 + ak), Some(l as f64 + a1))
                }
                _ => "–".into(),
            };
            notes.push(format!(
                "**{top} disks**, {}: the {top} filesystems are independent and lightsnap puts them in \
                 {}, frozen at once; still each \
                 filesystem after the first adds {} ms to the window (median, L = {l} ms). \
                 {top} FIFREEZE calls at once{} straight from the benchmark take {} ms against \
                 {} ms for one ({}): the kernel's own floor for freezing {top} filesystems in parallel on \
                 {} cores, which puts {top} disks at {best} of one at best at \
                 L = {l} ms. The snapshot calls themselves are made together ({top} arrived within {} ms of each other, median).",
                label(tag),
                if !waves.is_empty() && distinct.len() == 1 {
                    "one wave".to_string()
                } else {
                    format!("waves {distinct:?}")
                },
                f1(Some((many - one) / (top as f64 - 1.0))),
                if *tag == EXP { " (expedited)" } else { "" },
                f1(ak),
                f1(a1),
                fmt_ratio(ak, a1),
                cores(),
                f1(spread),
            ));
        }
    }

    for (tag, _) in CONFIGS.iter().filter(|(t, _)| missed("rss", t)) {
        notes.push(format!(
            "**Peak RSS**, {}: {}.",
            label(tag),
            goal("rss").of(tag).measured
        ));
    }
    notes
}

/// The headline figures (ext4, L = 50 ms, medians).
pub struct Headline {
    pub lightsnap_ms: f64,
    pub naive_ms: f64,
    pub ratio: f64,
    pub stall_lightsnap_ms: Option<f64>,
    pub stall_naive_ms: Option<f64>,
    pub alone_ms: Option<f64>,
    pub exp_ms: Option<f64>,
    pub stall_exp_ms: Option<f64>,
    pub alone_exp_ms: Option<f64>,
}

pub fn headline(cfg: &Cfg, results: &Results) -> Option<Headline> {
    let data = results.latency.get("ext4")?;
    if !cfg.latencies.contains(&50) {
        return None;
    }
    let ls = summarise(&runs_of(data, "lightsnap", Some(50)), 50);
    let ex = summarise(&runs_of(data, EXP, Some(50)), 50);
    let nv = summarise(&runs_of(data, "naive", Some(50)), 50);
    let (l, n) = (
        ls.window.0.filter(|&v| v != 0.0)?,
        nv.window.0.filter(|&v| v != 0.0)?,
    );
    Some(Headline {
        lightsnap_ms: l,
        naive_ms: n,
        ratio: n / l,
        stall_lightsnap_ms: ls.stall.0,
        stall_naive_ms: nv.stall.0,
        alone_ms: alone_ms(data, "lightsnap"),
        exp_ms: ex.window.0.filter(|&v| v != 0.0),
        stall_exp_ms: ex.stall.0,
        alone_exp_ms: alone_ms(data, EXP),
    })
}

/// The headline as logged at the end of a run.
pub fn headline_log(h: &Headline) -> String {
    let mut s = format!(
        "headline (ext4, L = 50 ms, medians): lightsnap {:.1} ms, naive {:.1} ms, {:.0}× shorter; writer's longest stall {} vs {} ms",
        h.lightsnap_ms,
        h.naive_ms,
        h.ratio,
        f1(h.stall_lightsnap_ms),
        f1(h.stall_naive_ms)
    );
    if let Some(e) = h.exp_ms {
        let _ = write!(
            s,
            "; {EXP_FLAG} {e:.1} ms, {} shorter, stall {} ms",
            fmt_ratio(Some(h.naive_ms), Some(e)),
            f1(h.stall_exp_ms)
        );
    }
    s
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
            .flat_map(|s| s.runs.iter())
            .filter(|r| r.tag == EXP)
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

    w("## Caveats\n".into());
    w("- The API is a local fake: the latency is injected (`--fault CreateDiskSnapshot=latency:Lms`), on top of a loopback round trip. \
       Its disks have no `backing`, so it copies nothing and the copy's time is not counted as API latency.".into());
    w("- Loop devices are buffered by the host's page cache, so flushes are cheaper than on a real EBS volume; the dirty-data rows \
       understate what 1 GiB costs there.".into());
    w("- lightsnap's window opens just before it asks its watchdog (another process) to freeze, so the request's trip and the \
       watchdog starting a thread per filesystem are counted in it; the writers are blocked only part of the FIFREEZE call.".into());
    w("- The machine may be shared (see the load average): other work on its cores shows up as spread in the p95 column.".into());
    w("- Raw per-run figures of the last run: `target/bench/results.json`.".into());
    w(String::new());
    out.join("\n")
}
