//! The goals BENCHMARKS.md judges each lightsnap configuration by, the figures behind them
//! (summaries of runs, the headline) and, for a missed goal, what the figures say about why.

use std::fmt::Write as _;

use crate::rig::{cores, Facts, Run, CONFIGS, EXP, EXP_FLAG};
use crate::sections::{tls_tag, Outcome, Results, Section, TLS_ENDPOINTS};
use crate::stats::{f1, fmt, fmt_ratio, max, med, med_p95, min, pct};
use crate::Cfg;

// The goals the issue sets; BENCHMARKS.md says for each whether this run met it.
const GOAL_WINDOW_MINUS_L_MS: f64 = 15.0;
const GOAL_RATIO_AT_50: f64 = 20.0;
const GOAL_STALL_SLACK_MS: f64 = 20.0;
const GOAL_DISKS_RATIO: f64 = 1.5;
const GOAL_RSS_MB: f64 = 30.0;
const GOAL_TLS_MS: f64 = 2.0;

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

pub fn alone_tag(tag: &str) -> &'static str {
    if tag == EXP {
        "alone-exp"
    } else {
        "alone"
    }
}

pub fn label(tag: &str) -> &'static str {
    CONFIGS
        .iter()
        .find(|(t, _)| *t == tag)
        .map_or("?", |(_, l)| l)
}

/// The median FIFREEZE-alone call of a section-1 filesystem: expedited for --expedite-freeze.
pub fn alone_ms(data: &Section, tag: &str) -> Option<f64> {
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

/// Whether this run measured the configuration at all (section 1, 3 or 5).
pub fn measured(results: &Results, tag: &str) -> bool {
    results
        .latency
        .values()
        .any(|d| !runs_of(d, tag, None).is_empty())
        || results
            .disks
            .as_ref()
            .is_some_and(|d| !runs_of(&d.section, tag, None).is_empty())
        || tls_rows(results, tag).is_some()
}

pub fn disk_goal_latency(cfg: &Cfg) -> u64 {
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

/// Section 5's figures for one endpoint (window and stall: median, p90 of the runs that
/// succeeded).
pub struct TlsRow {
    pub name: &'static str,
    pub n: usize,
    pub failed: usize,
    pub window: (Option<f64>, Option<f64>),
    pub stall: (Option<f64>, Option<f64>),
    pub wall: (Option<f64>, Option<f64>),
    /// Runs whose CreateDiskSnapshot came on a connection that had served requests before.
    pub preopened: usize,
    /// Runs whose CreateDiskSnapshot came on a connection with a TLS handshake.
    pub over_tls: usize,
}

/// Section 5's rows of one configuration (`lightsnap`, `lightsnap-exp`), plain HTTP first;
/// `None` when the section did not run it.
pub fn tls_rows(results: &Results, config: &str) -> Option<Vec<TlsRow>> {
    let data = results.tls.as_ref()?;
    let rows: Vec<TlsRow> = TLS_ENDPOINTS
        .iter()
        .map(|&(endpoint, name)| {
            let runs = runs_of(data, &tls_tag(config, endpoint), None);
            let ok: Vec<&&Run> = runs.iter().filter(|r| r.ok()).collect();
            let m90 = |v: Vec<Option<f64>>| (med(v.iter().copied()), pct(v, 90.0));
            TlsRow {
                name,
                n: runs.len(),
                failed: runs.len() - ok.len(),
                window: m90(ok.iter().map(|r| r.window_ms).collect()),
                stall: m90(ok.iter().map(|r| r.stall_ms).collect()),
                wall: m90(ok.iter().map(|r| r.wall_ms).collect()),
                preopened: runs.iter().filter(|r| r.preopened == Some(true)).count(),
                over_tls: runs.iter().filter(|r| r.create_tls == Some(true)).count(),
            }
        })
        .collect();
    rows.iter().any(|r| r.n > 0).then_some(rows)
}

/// TLS's median window − plain HTTP's, when both were measured.
pub fn tls_difference(rows: &[TlsRow]) -> Option<f64> {
    Some(rows.get(1)?.window.0? - rows.first()?.window.0?)
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
    pub fn of(&self, tag: &str) -> &Verdict {
        &self.by[usize::from(tag == EXP)]
    }
}

fn not_measured() -> Verdict {
    Verdict {
        measured: "not measured".into(),
        met: None,
    }
}

pub fn evaluate(cfg: &Cfg, results: &Results) -> Vec<Goal> {
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

    let tls = |tag: &str| {
        let Some(rows) = tls_rows(results, tag) else {
            return not_measured();
        };
        let Some(diff) = tls_difference(&rows) else {
            return not_measured();
        };
        Verdict {
            measured: format!(
                "TLS {} ms, plain HTTP {} ms: {diff:+.1} ms (ext4, L = {} ms); CreateDiskSnapshot on a pre-opened \
                 connection in {} of {} runs over TLS",
                f1(rows[1].window.0),
                f1(rows[0].window.0),
                cfg.tls_latency,
                rows[1].preopened,
                rows[1].n
            ),
            met: Some(diff <= GOAL_TLS_MS),
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
        (
            "tls",
            format!(
                "endpoint over TLS: window ≤ plain HTTP's + {GOAL_TLS_MS:.0} ms (medians, L = {} ms)",
                cfg.tls_latency
            ),
            &tls,
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

pub fn met_cell(ok: Option<bool>) -> &'static str {
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

pub fn goal_notes(cfg: &Cfg, results: &Results, goals: &[Goal], facts: &Facts) -> Vec<String> {
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

    for (tag, _) in CONFIGS.iter().filter(|(t, _)| missed("tls", t)) {
        if let Some(rows) = tls_rows(results, tag) {
            let spread = |r: &TlsRow| match r.window {
                (Some(m), Some(p)) => Some(p - m),
                _ => None,
            };
            notes.push(format!(
                "**Over TLS**, {}: the median window was {} ms longer than over plain HTTP. CreateDiskSnapshot came on a \
                 pre-opened connection in {} of {} TLS runs (a fresh one would put a TCP connect and a TLS handshake in the \
                 window) and in {} of {} plain ones; p90 − median of the windows: {} ms over TLS, {} ms over plain HTTP (the \
                 runs' own spread, against which a {GOAL_TLS_MS:.0} ms difference is to be judged); writer's longest stall \
                 (median) {} ms against {} ms.",
                label(tag),
                f1(tls_difference(&rows)),
                rows[1].preopened,
                rows[1].n,
                rows[0].preopened,
                rows[0].n,
                f1(spread(&rows[1])),
                f1(spread(&rows[0])),
                f1(rows[1].stall.0),
                f1(rows[0].stall.0),
            ));
            // The other configuration's difference, where measured: with --expedite-freeze the
            // FIFREEZE call (and its spread) is a millisecond or two, so what is left of a
            // difference there is the endpoint's.
            let other = if *tag == EXP { "lightsnap" } else { EXP };
            if let Some(d) = tls_rows(results, other).and_then(|r| tls_difference(&r)) {
                if let Some(last) = notes.last_mut() {
                    let _ = write!(last, " {}, in the same rounds: {d:+.1} ms.", label(other));
                }
            }
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
    /// Section 5: (TLS median window, plain HTTP's, TLS runs on a pre-opened connection, TLS runs).
    pub tls: Option<(f64, f64, usize, usize)>,
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
        tls: tls_rows(results, "lightsnap").and_then(|rows| {
            Some((
                rows[1].window.0?,
                rows[0].window.0?,
                rows[1].preopened,
                rows[1].n,
            ))
        }),
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
    if let Some((t, p, k, n)) = h.tls {
        let _ = write!(
            s,
            "; over TLS {t:.1} ms vs {p:.1} ms plain, pre-opened connection {k}/{n}"
        );
    }
    s
}
