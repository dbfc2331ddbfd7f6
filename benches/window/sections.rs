//! The five experiments: the window against API latency, with dirty data, for several disks,
//! where lightsnap's window goes (strace), and the endpoint over TLS against plain HTTP. Each makes its filesystems, fake and writer,
//! interleaves the contenders, and unmakes all of it on the way out, early returns included.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::common::FsKind;
use crate::rig::{first_line, freeze_alone, BenchFs, Rig, Run, EXP, EXP_FLAG};
use crate::{check_stop, log};

const MIB: u64 = 1 << 20;

/// One section's runs and the writer's typical write + fsync outside any freeze.
#[derive(Debug, Default, Serialize)]
pub struct Section {
    pub runs: Vec<Run>,
    pub typical_write_ms: Option<f64>,
}

/// A section either measured, or skipped and why.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Measured(Section),
    Skipped { skipped: String },
}

/// Whether the group's filesystems are independent of each other: as set up (each loop
/// device's backing file, and which mount it lives on) and as lightsnap sees it (`plan`'s
/// freezing waves: one wave is frozen all at once).
#[derive(Debug, Default, Serialize)]
pub struct Independence {
    pub filesystems: usize,
    pub backing_missing: usize,
    pub backing_homes: Vec<String>,
    pub host_of_scratch: String,
    pub nested: Vec<String>,
    pub waves: Option<Vec<u64>>,
}

/// Section 3's runs and independence check.
#[derive(Debug, Serialize)]
pub struct Disks {
    #[serde(flatten)]
    pub section: Section,
    pub independence: Independence,
}

/// Everything measured, by section.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// By filesystem type, in the order measured.
    pub latency: BTreeMap<String, Section>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disks: Option<Disks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Section>,
}

/// Section 5's two endpoints: the suffix of their runs' tags and how the report names them.
pub const TLS_ENDPOINTS: [(&str, &str); 2] = [
    ("http", "plain HTTP (`http://127.0.0.1:PORT`)"),
    ("tls", "TLS (`https://localhost:PORT`)"),
];

/// The tag of a section-5 run: the configuration's (`lightsnap`, `lightsnap-exp`), then the
/// endpoint's.
pub fn tls_tag(config: &str, endpoint: &str) -> String {
    format!("{config}-{endpoint}")
}

pub fn fs_name(kind: FsKind) -> &'static str {
    match kind {
        FsKind::Ext4 => "ext4",
        FsKind::Xfs => "xfs",
        FsKind::Btrfs => "btrfs",
        FsKind::Ntfs => "ntfs",
    }
}

/// The sections asked for, in order.
pub fn run_all(rig: &mut Rig, results: &mut Results) -> Result<()> {
    let only = rig.cfg.only.clone();
    let wants = |s: &str| only.iter().any(|o| o == s);
    if wants("latency") {
        rig.others.section = "1".into();
        latency_matrix(rig, results)?;
    }
    if wants("dirty") {
        rig.others.section = "2".into();
        results.dirty = Some(dirty_data(rig)?);
    }
    if wants("disks") {
        rig.others.section = "3".into();
        results.disks = Some(several_disks(rig)?);
    }
    if wants("breakdown") {
        rig.others.section = "4".into();
        results.breakdown = Some(breakdown(rig)?);
    }
    if wants("tls") {
        rig.others.section = "5".into();
        results.tls = Some(over_tls(rig)?);
    }
    Ok(())
}

/// lightsnap, lightsnap --expedite-freeze and the naive script, interleaved, at each injected
/// latency, per filesystem; and once a round, FIFREEZE + FITHAW alone from here (the kernel's
/// own cost), plain and expedited.
fn latency_matrix(rig: &mut Rig, results: &mut Results) -> Result<()> {
    let cfg = rig.cfg.clone();
    for &kind in &cfg.fstypes {
        let name = fs_name(kind);
        log(&format!(
            "latency: {name}, L = {:?} ms, {} lightsnap + {} {EXP_FLAG} + {} naive runs each",
            cfg.latencies, cfg.runs, cfg.exp_runs, cfg.naive_runs
        ));
        let fs = rig.make_fs(&format!("lat-{name}"), kind, 1 << 30);
        let mut fake = rig.fake(&[&fs])?;
        let mut writer = rig.writer(&fs, &format!("lat-{name}"))?;
        let mut runs = Vec::new();
        // One discarded warm-up of each (first start-up of the AWS CLI compiles and caches).
        fake.set_latency(0);
        rig.lightsnap(&fake, &[&fs], 0)?;
        if cfg.exp_runs > 0 {
            rig.lightsnap_exp(&fake, &[&fs], 0)?;
        }
        rig.run_naive(&fake, &fs, 0)?;
        for i in 0..cfg.runs {
            let mut order = cfg.latencies.clone();
            rig.rng.shuffle(&mut order);
            for lat in order {
                fake.set_latency(lat);
                // The two lightsnap configurations in shuffled order, then the naive script.
                let mut tools = vec!["lightsnap"];
                if i < cfg.exp_runs {
                    tools.push(EXP);
                }
                rig.rng.shuffle(&mut tools);
                for tool in tools {
                    rig.settle()?;
                    runs.push(if tool == EXP {
                        rig.lightsnap_exp(&fake, &[&fs], lat)?
                    } else {
                        rig.lightsnap(&fake, &[&fs], lat)?
                    });
                }
                if i < cfg.naive_runs {
                    rig.settle()?;
                    runs.push(rig.run_naive(&fake, &fs, lat)?);
                }
            }
            let mut alones = vec!["alone"];
            if i < cfg.exp_runs {
                alones.push("alone-exp");
            }
            rig.rng.shuffle(&mut alones);
            for tag in alones {
                rig.settle()?;
                runs.push(freeze_alone(&[&fs], tag, tag == "alone-exp"));
            }
            if (i + 1) % 10 == 0 {
                log(&format!("  {name}: {}/{} rounds", i + 1, cfg.runs));
            }
        }
        writer.stop();
        writer.stalls(&mut runs);
        results.latency.insert(
            name.to_string(),
            Section {
                runs,
                typical_write_ms: writer.typical(),
            },
        );
    }
    Ok(())
}

/// The section 2 contenders, in the order run.
const DIRTY_TOOLS: [&str; 4] = ["lightsnap", "lightsnap-nosyncfs", "naive", "sync"];

/// Writes `mib` MiB to a file on `fs` without flushing it (page cache only). Between runs:
/// nothing has the filesystem frozen then.
fn make_dirty(fs: &BenchFs, mib: u64, chunk: &[u8]) -> Result<PathBuf> {
    let path = fs.mount_point().join("dirty.bin");
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..mib {
        file.write_all(chunk)?;
    }
    Ok(path)
}

fn free_bytes(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0)
}

fn random_mib() -> Result<Vec<u8>> {
    use std::io::Read;
    let mut chunk = vec![0u8; MIB as usize];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut chunk)?;
    Ok(chunk)
}

/// The window with dirty data: lightsnap as it runs (syncfs before the freeze) and with
/// --no-syncfs (FIFREEZE flushes it all, writes already blocked); the naive script (which has
/// no syncfs either, and reports its FIFREEZE call's length); syncfs alone as the control.
fn dirty_data(rig: &mut Rig) -> Result<Outcome> {
    let cfg = rig.cfg.clone();
    let biggest = cfg.dirty_sizes.iter().copied().max().unwrap_or(0);
    let need = biggest * MIB * 2 + 512 * MIB;
    let free = free_bytes(rig.root());
    if free < need + 2 * 1024 * MIB {
        log(&format!(
            "dirty: skipped, {} MiB free under {}, {} MiB needed",
            free / MIB,
            rig.root().display(),
            need / MIB
        ));
        return Ok(Outcome::Skipped {
            skipped: format!("only {} MiB free on the scratch filesystem", free / MIB),
        });
    }
    let size_gib = 1.max((biggest * 2 + 512).div_ceil(1024));
    let lat = cfg.dirty_latency;
    log(&format!(
        "dirty: ext4, L = {lat} ms, dirty {:?} MiB, {} runs each",
        cfg.dirty_sizes, cfg.dirty_runs
    ));
    let fs = rig.make_fs("dirty", FsKind::Ext4, size_gib << 30);
    let mut fake = rig.fake(&[&fs])?;
    fake.set_latency(lat);
    let mut writer = rig.writer(&fs, "dirty")?;
    let chunk = random_mib()?;
    let mut runs = Vec::new();
    // Warm-ups.
    rig.lightsnap(&fake, &[&fs], lat)?;
    rig.run_lightsnap(
        &fake,
        &[&fs],
        lat,
        &["--no-syncfs"],
        "lightsnap-nosyncfs",
        &[],
    )?;
    rig.run_naive(&fake, &fs, lat)?;
    for i in 0..cfg.dirty_runs {
        for &mib in &cfg.dirty_sizes {
            for tool in DIRTY_TOOLS {
                rig.settle()?;
                let path = if mib > 0 {
                    Some(make_dirty(&fs, mib, &chunk)?)
                } else {
                    None
                };
                let mut r = match tool {
                    "lightsnap" => rig.lightsnap(&fake, &[&fs], lat)?,
                    "lightsnap-nosyncfs" => {
                        rig.run_lightsnap(&fake, &[&fs], lat, &["--no-syncfs"], tool, &[])?
                    }
                    "naive" => rig.run_naive(&fake, &fs, lat)?,
                    _ => {
                        // The control: the flush alone, no freeze, no call.
                        let argv = ["sync", "-f"]
                            .map(String::from)
                            .into_iter()
                            .chain([fs.mount_point().display().to_string()])
                            .collect::<Vec<_>>();
                        let mut r = rig.timed(&argv, &rig.env(&fake), "sync")?;
                        r.latency = Some(lat);
                        r
                    }
                };
                r.dirty_mib = Some(mib);
                runs.push(r);
                if let Some(path) = path {
                    std::fs::remove_file(path)?;
                }
                let _ = std::process::Command::new("sync")
                    .arg("-f")
                    .arg(fs.mount_point())
                    .status();
            }
        }
        log(&format!(
            "  dirty: {}/{} rounds; {} MiB free",
            i + 1,
            cfg.dirty_runs,
            free_bytes(rig.root()) / MIB
        ));
    }
    writer.stop();
    writer.stalls(&mut runs);
    Ok(Outcome::Measured(Section {
        runs,
        typical_write_ms: writer.typical(),
    }))
}

fn independence(rig: &mut Rig, fake: &crate::rig::BenchFake, fss: &[BenchFs]) -> Independence {
    let mounts: Vec<String> = fss
        .iter()
        .map(|f| f.mount_point().display().to_string())
        .collect();
    let mut backing: Vec<Option<PathBuf>> = Vec::new();
    let mut homes = std::collections::BTreeSet::new();
    for fs in fss {
        let name = fs
            .device()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let b = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
            .ok()
            .map(|s| PathBuf::from(s.trim()));
        if let Some(b) = &b {
            homes.insert(first_line(&[
                "findmnt",
                "-no",
                "TARGET",
                "-T",
                &b.display().to_string(),
            ]));
        }
        backing.push(b);
    }
    let mut nested = Vec::new();
    for (i, a) in fss.iter().enumerate() {
        for (j, b) in fss.iter().enumerate() {
            let back = backing[i].clone().unwrap_or_else(|| PathBuf::from("/"));
            if i != j
                && (a.mount_point().starts_with(b.mount_point())
                    || back.starts_with(b.mount_point()))
            {
                let n = |f: &BenchFs| {
                    f.mount_point()
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                };
                nested.push(format!("{} on {}", n(a), n(b)));
            }
        }
    }
    nested.sort();
    let mut waves = None;
    // plan refuses names that are taken.
    if rig.fresh_names().is_ok() {
        let out = std::process::Command::new(rig.cfg.bin.join("lightsnap"))
            .args(["--output", "json", "plan"])
            .args(&mounts)
            .envs(rig.env(fake))
            .stdin(std::process::Stdio::null())
            .output();
        if let Ok(out) = out {
            let parsed: Option<Vec<u64>> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    v.get("filesystems")?
                        .as_array()?
                        .iter()
                        .filter(|f| {
                            f.get("mount_point")
                                .and_then(|m| m.as_str())
                                .is_some_and(|m| mounts.iter().any(|x| x == m))
                        })
                        .map(|f| f.get("wave")?.as_u64())
                        .collect()
                });
            if parsed.is_none() {
                let err = String::from_utf8_lossy(&out.stderr);
                let err = err.trim();
                log(&format!(
                    "disks: lightsnap plan failed (exit {}): {}",
                    out.status.code().unwrap_or(-1),
                    &err[err.len().saturating_sub(300)..]
                ));
            }
            waves = parsed.map(|mut w| {
                w.sort();
                w
            });
        }
    }
    Independence {
        filesystems: fss.len(),
        backing_missing: backing.iter().filter(|b| b.is_none()).count(),
        backing_homes: homes.into_iter().collect(),
        host_of_scratch: first_line(&[
            "findmnt",
            "-no",
            "TARGET",
            "-T",
            &rig.root().display().to_string(),
        ]),
        nested,
        waves,
    }
}

/// One lightsnap run freezing 1, 2, 4, 8 filesystems as one group, one fake disk each; and,
/// for each count, FIFREEZE on all of them at once from here (the kernel's floor).
fn several_disks(rig: &mut Rig) -> Result<Disks> {
    let cfg = rig.cfg.clone();
    let most = cfg.disk_counts.iter().copied().max().unwrap_or(1);
    log(&format!(
        "disks: {:?} ext4 filesystems, L = {:?} ms, {} lightsnap + {} {EXP_FLAG} runs each",
        cfg.disk_counts, cfg.disk_latencies, cfg.disk_runs, cfg.disk_exp_runs
    ));
    let mut fss = Vec::new();
    for k in 0..most {
        check_stop()?;
        fss.push(rig.make_fs(&format!("disk{}", k + 1), FsKind::Ext4, 256 * MIB));
    }
    let all: Vec<&BenchFs> = fss.iter().collect();
    let mut fake = rig.fake(&all)?;
    // On the first: frozen first, thawed last.
    let mut writer = rig.writer(&fss[0], "disks")?;
    fake.set_latency(0);
    rig.lightsnap(&fake, &all, 0)?; // warm-up
    if cfg.disk_exp_runs > 0 {
        rig.lightsnap_exp(&fake, &all, 0)?;
    }
    let indep = independence(rig, &fake, &fss);
    log(&format!("disks: independence {indep:?}"));
    let mut runs = Vec::new();
    for i in 0..cfg.disk_runs {
        let mut tools = vec!["lightsnap"];
        if i < cfg.disk_exp_runs {
            tools.push(EXP);
        }
        let mut order = Vec::new();
        for &lat in &cfg.disk_latencies {
            for &k in &cfg.disk_counts {
                for &tool in &tools {
                    order.push((lat, k, tool));
                }
            }
        }
        rig.rng.shuffle(&mut order);
        for (lat, k, tool) in order {
            fake.set_latency(lat);
            let since = fake.call_count();
            rig.settle()?;
            let mut r = if tool == EXP {
                rig.lightsnap_exp(&fake, &all[..k], lat)?
            } else {
                rig.lightsnap(&fake, &all[..k], lat)?
            };
            r.disks = Some(k);
            let arrivals = fake.create_arrivals_since(since);
            if arrivals.len() == k {
                let hi = arrivals.iter().copied().fold(f64::MIN, f64::max);
                let lo = arrivals.iter().copied().fold(f64::MAX, f64::min);
                r.calls_spread_ms = Some(hi - lo);
            }
            runs.push(r);
        }
        let mut alones = Vec::new();
        for &k in &cfg.disk_counts {
            alones.push((k, "alone"));
            if i < cfg.disk_exp_runs {
                alones.push((k, "alone-exp"));
            }
        }
        rig.rng.shuffle(&mut alones);
        for (k, tag) in alones {
            rig.settle()?;
            runs.push(freeze_alone(&all[..k], tag, tag == "alone-exp"));
        }
    }
    writer.stop();
    writer.stalls(&mut runs);
    Ok(Disks {
        section: Section {
            runs,
            typical_write_ms: writer.typical(),
        },
        independence: indep,
    })
}

/// How long each `name` ioctl took (strace -T), in the order they were made; a call strace
/// printed in two halves (`<unfinished ...>` / `<... ioctl resumed>`) matched by pid.
pub fn strace_ioctl_ms(text: &str, name: &str) -> Vec<f64> {
    let mut open_calls = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let pid = if line.starts_with(|c: char| c.is_ascii_digit()) {
            line.split_whitespace().next().unwrap_or("")
        } else {
            ""
        };
        let is_call = line.contains("ioctl(") && line.contains(name);
        if is_call && line.contains("<unfinished") {
            open_calls.insert(pid.to_string());
            continue;
        }
        let Some(secs) = trailing_duration(line) else {
            continue;
        };
        if is_call || (line.contains("<... ioctl resumed>") && open_calls.remove(pid)) {
            out.push(secs * 1000.0);
        }
    }
    out
}

/// The `<0.012345>` strace -T puts at the end of a line, in seconds.
fn trailing_duration(line: &str) -> Option<f64> {
    let inner = line.trim_end().strip_suffix('>')?;
    let (_, secs) = inner.rsplit_once('<')?;
    secs.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.')
        .then(|| secs.parse().ok())
        .flatten()
}

fn which(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Where lightsnap's window goes (ext4, L = 0): lightsnap under strace, which stops it only at
/// its ioctls (--seccomp-bpf), for how long its watchdog's FIFREEZE syscall took against the
/// window it reports; interleaved with `fsfreeze -f` under strace and FIFREEZE alone.
fn breakdown(rig: &mut Rig) -> Result<Outcome> {
    if !which("strace") {
        log("breakdown: skipped, strace is not installed");
        return Ok(Outcome::Skipped {
            skipped: "strace is not installed".into(),
        });
    }
    let cfg = rig.cfg.clone();
    log(&format!(
        "breakdown: ext4, L = 0, {} runs each, lightsnap (and {EXP_FLAG}) and fsfreeze under strace",
        cfg.breakdown_runs
    ));
    let fs = rig.make_fs("breakdown", FsKind::Ext4, 1 << 30);
    let mut fake = rig.fake(&[&fs])?;
    fake.set_latency(0);
    let mut writer = rig.writer(&fs, "breakdown")?;
    let trace = rig.root().join("logs/strace.txt");
    let strace: Vec<String> = [
        "strace",
        "--seccomp-bpf",
        "-f",
        "-T",
        "-e",
        "trace=ioctl",
        "-o",
    ]
    .map(String::from)
    .into_iter()
    .chain([trace.display().to_string()])
    .collect();
    let one_fifreeze = |trace: &Path| {
        let calls = strace_ioctl_ms(
            &std::fs::read_to_string(trace).unwrap_or_default(),
            "FIFREEZE",
        );
        (calls.len() == 1).then(|| calls[0])
    };
    rig.run_lightsnap(&fake, &[&fs], 0, &[], "lightsnap", &strace)?; // warm-up
    let mut runs = Vec::new();
    for _ in 0..cfg.breakdown_runs {
        let mut tools = vec!["lightsnap-strace".to_string()];
        if cfg.exp_runs > 0 {
            tools.push(format!("{EXP}-strace"));
        }
        rig.rng.shuffle(&mut tools);
        for tool in tools {
            rig.settle()?;
            let extra: &[&str] = if tool.starts_with(EXP) {
                &[EXP_FLAG]
            } else {
                &[]
            };
            let mut r = rig.run_lightsnap(&fake, &[&fs], 0, extra, &tool, &strace)?;
            r.fifreeze_ms = one_fifreeze(&trace);
            runs.push(r);
        }
        rig.settle()?;
        let mut argv = strace.clone();
        argv.extend(["fsfreeze".to_string(), "-f".to_string()]);
        argv.push(fs.mount_point().display().to_string());
        let mut r = rig.timed(&argv, &rig.env(&fake), "fsfreeze-strace")?;
        // Ours; thawed at once.
        let _ = std::process::Command::new("fsfreeze")
            .arg("-u")
            .arg(fs.mount_point())
            .status();
        r.fifreeze_ms = one_fifreeze(&trace);
        runs.push(r);
        let mut alones = vec!["alone"];
        if cfg.exp_runs > 0 {
            alones.push("alone-exp");
        }
        rig.rng.shuffle(&mut alones);
        for tag in alones {
            rig.settle()?;
            runs.push(freeze_alone(&[&fs], tag, tag == "alone-exp"));
        }
    }
    writer.stop();
    writer.stalls(&mut runs);
    Ok(Outcome::Measured(Section {
        runs,
        typical_write_ms: None,
    }))
}

/// lightsnap with the endpoint over plain HTTP and over TLS, interleaved (ext4, L =
/// `tls_latency`), as it runs and with --expedite-freeze (whose FIFREEZE, a millisecond or two
/// instead of some tens, leaves less noise around the difference): two fakes with the same
/// disk, one each way; per run its window and whether its CreateDiskSnapshot came on a
/// connection opened and used before (lightsnap warms one up after the hooks and syncfs: over
/// TLS a fresh one would put a TCP and TLS handshake in the window).
fn over_tls(rig: &mut Rig) -> Result<Section> {
    let cfg = rig.cfg.clone();
    let lat = cfg.tls_latency;
    log(&format!(
        "tls: ext4, L = {lat} ms, {} lightsnap + {} {EXP_FLAG} runs over plain HTTP and over TLS each",
        cfg.tls_runs, cfg.tls_exp_runs
    ));
    let fs = rig.make_fs("tls", FsKind::Ext4, 1 << 30);
    let mut plain = rig.fake(&[&fs])?;
    let mut tls = rig.fake_tls(&[&fs])?;
    plain.set_latency(lat);
    tls.set_latency(lat);
    let mut writer = rig.writer(&fs, "tls")?;
    let mut configs = vec!["lightsnap"];
    if cfg.tls_exp_runs > 0 {
        configs.push(EXP);
    }
    // One discarded warm-up of each.
    for &config in &configs {
        for (k, fake) in [&plain, &tls].into_iter().enumerate() {
            let extra: &[&str] = if config == EXP { &[EXP_FLAG] } else { &[] };
            let tag = tls_tag(config, TLS_ENDPOINTS[k].0);
            rig.run_lightsnap(fake, &[&fs], lat, extra, &tag, &[])?;
        }
    }
    let mut runs = Vec::new();
    for i in 0..cfg.tls_runs {
        let mut order: Vec<(&str, usize)> = Vec::new();
        for &config in &configs {
            if config == "lightsnap" || i < cfg.tls_exp_runs {
                order.extend([(config, 0), (config, 1)]);
            }
        }
        rig.rng.shuffle(&mut order);
        for (config, k) in order {
            let fake = if k == 0 { &plain } else { &tls };
            let extra: &[&str] = if config == EXP { &[EXP_FLAG] } else { &[] };
            let tag = tls_tag(config, TLS_ENDPOINTS[k].0);
            rig.settle()?;
            let since = fake.call_count();
            let mut r = rig.run_lightsnap(fake, &[&fs], lat, extra, &tag, &[])?;
            if let [Some(conn)] = fake.create_connections_since(since).as_slice() {
                r.preopened = Some(conn.requests_before > 0);
                r.create_tls = Some(conn.tls);
            }
            runs.push(r);
        }
        if (i + 1) % 10 == 0 {
            log(&format!("  tls: {}/{} rounds", i + 1, cfg.tls_runs));
        }
    }
    writer.stop();
    writer.stalls(&mut runs);
    Ok(Section {
        runs,
        typical_write_ms: writer.typical(),
    })
}
