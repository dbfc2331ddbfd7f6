//! LVM on a restored disk: its volume group imported as a renamed clone, so that its logical
//! volumes can be checked like any filesystem, then put away again before the disk goes.
//!
//! The copy carries the same VG name, VG UUID and PV UUIDs as the live group it was taken
//! of, which is most likely active on this very machine. Every LVM command lightsnap runs is
//! therefore confined to the copy's own devices ([`Scope`]: `--devices` from lvm2 2.03.12,
//! before that a `--config` filter that accepts those devices alone), so it never sees — and
//! never writes, activates or deactivates — the live group, and never edits LVM's devices
//! file (`vgimportclone --importdevices` is not used). Within that scope `vgimportclone
//! --basevgname lightsnap_<role>_<hex>` gives the copy a name of its own and new UUIDs (on
//! the copy only), `vgchange -ay` activates its logical volumes (their device-mapper UUIDs
//! carry the new VG UUID, so they never clash with the live ones), and `vgchange -an` plus
//! `dmsetup remove` of whatever device-mapper nodes of that name are left undo it.
//!
//! The clone's name comes from the disk's name ([`vg_name`]), so that a killed run's import
//! is found and put away by the next run from the disk alone. Only a VG whose name is that
//! name is ever deactivated, and only device-mapper nodes of that name are removed: a group
//! still called as the live one (a run killed before its rename) is never deactivated, since
//! its LVs' device-mapper UUIDs would be the live LVs'.
//!
//! A VG that spans disks the copy does not have (a PV missing) is not imported: its LVs
//! cannot be checked from this disk alone, and that is said, naming the group.

use std::path::{Path, PathBuf};

use super::host::ToolError;

/// The commands LVM is driven with: the real tools, bounded ([`super::host::Machine`]), or a
/// stand-in in tests.
#[allow(async_fn_in_trait)]
pub trait Commands {
    /// Runs `program` with `args`; its standard output when it succeeded.
    async fn run(&self, program: &str, args: &[String]) -> Result<String, ToolError>;
}

/// Every clone's VG name starts with this.
pub const VG_PREFIX: &str = "lightsnap_";

/// The name a disk's VG gets as a clone: `lightsnap_<role>_<hex>` from a disk named
/// `<snapshot>-<role>-<hex>` (a scratch or restored disk's name), letters and digits only.
pub fn vg_name(disk: &str) -> String {
    let mut parts = disk.rsplit('-');
    let last = parts.next().unwrap_or_default();
    let role = parts.next().unwrap_or_default();
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(32)
            .collect()
    };
    format!("{VG_PREFIX}{}_{}", clean(role), clean(last))
}

/// How LVM commands are confined to the copy's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// lvm2 ≥ 2.03.12: `--devices DEV,...` (the devices file is not read, nor written).
    Devices(Vec<PathBuf>),
    /// Older lvm2 (no devices file): a filter that accepts these devices alone.
    Filter(Vec<PathBuf>),
}

impl Scope {
    /// The arguments that confine a command.
    pub fn args(&self) -> Vec<String> {
        match self {
            Scope::Devices(devs) => vec![
                "--devices".into(),
                devs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ],
            Scope::Filter(devs) => {
                let mut accept: Vec<String> = devs
                    .iter()
                    .map(|d| format!("\"a|^{}$|\"", d.display()))
                    .collect();
                accept.push("\"r|.*|\"".into());
                let list = accept.join(", ");
                vec![
                    "--config".into(),
                    format!("devices {{ filter = [ {list} ] global_filter = [ {list} ] }}"),
                ]
            }
        }
    }
}

/// The lvm2 version `lvm version` names (`LVM version:     2.03.16(2) (2022-05-18)`).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("LVM version"))?;
    let v = line.split(':').nth(1)?.trim();
    let mut nums = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some((nums.next()??, nums.next()??, nums.next()??))
}

/// The scope for `devices` on this machine's lvm2.
pub async fn scope(cmds: &impl Commands, devices: &[PathBuf]) -> Result<Scope, String> {
    let said = cmds
        .run("lvm", &["version".to_string()])
        .await
        .map_err(|e| format!("lvm2 is needed to check LVM: {e}"))?;
    let version = parse_version(&said)
        .ok_or_else(|| format!("lvm version said no version lightsnap reads: {said}"))?;
    Ok(if version >= (2, 3, 12) {
        Scope::Devices(devices.to_vec())
    } else {
        Scope::Filter(devices.to_vec())
    })
}

/// A logical volume of the clone, active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// As the live group calls it: `VG/LV`.
    pub name: String,
    /// Its device-mapper node (`/dev/mapper/<clone>-<lv>`).
    pub device: PathBuf,
}

/// One row of `vgs`: name, PVs, missing PVs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    pvs: u32,
    missing: u32,
}

/// The report arguments every listing uses: no headings, `|` between fields.
fn report(fields: &str) -> Vec<String> {
    ["--noheadings", "--separator", "|", "-o", fields]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(|f| f.trim().to_string()).collect())
        .collect()
}

async fn groups(cmds: &impl Commands, scope: &Scope) -> Result<Vec<Group>, ToolError> {
    let mut args = vec!["vgs".to_string()];
    args.extend(scope.args());
    args.extend(report("vg_name,pv_count,vg_missing_pv_count"));
    let said = cmds.run("lvm", &args).await?;
    Ok(rows(&said)
        .into_iter()
        .filter(|r| r.len() == 3 && !r[0].is_empty())
        .map(|r| Group {
            name: r[0].clone(),
            pvs: r[1].parse().unwrap_or(0),
            missing: r[2].parse().unwrap_or(0),
        })
        .collect())
}

/// Imports the VG on `pvs` (the physical volumes found on the copy) as `clone`, activates
/// its LVs and lists them. The caller has recorded the undo ([`put_away`]) before calling.
/// Why it could not, in plain words (nothing of the live group touched either way).
pub async fn import(
    cmds: &impl Commands,
    pvs: &[PathBuf],
    clone: &str,
) -> Result<Vec<Volume>, String> {
    let names = pvs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let scope = scope(cmds, pvs).await?;
    let found = groups(cmds, &scope)
        .await
        .map_err(|e| format!("listing the volume group on {names}: {e}"))?;
    let group = match found.as_slice() {
        [] => {
            return Err(format!(
                "{names}: an LVM physical volume in no volume group (no logical volume to check)"
            ))
        }
        [one] => one.clone(),
        many => {
            return Err(format!(
                "{names}: {} volume groups ({}) on one disk: lightsnap imports one",
                many.len(),
                many.iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    };
    if group.missing > 0 {
        return Err(format!(
            "volume group {} spans {} physical volumes and {} of them are not on this disk: a snapshot of one of its disks is not the whole group, so its logical volumes are not checked",
            group.name, group.pvs, group.missing
        ));
    }
    let mut args = vec!["vgimportclone".to_string()];
    args.extend(scope.args());
    args.extend(["--basevgname".to_string(), clone.to_string()]);
    args.extend(pvs.iter().map(|p| p.display().to_string()));
    cmds.run("lvm", &args)
        .await
        .map_err(|e| format!("importing volume group {} as {clone}: {e}", group.name))?;
    // The rename is a write: udev rescans the device, and where LVM's event autoactivation
    // is on, it may activate the clone itself. Let that be over before the clone is
    // activated, so that nothing activates it after it is put away.
    settle(cmds).await;
    let mut args = vec!["vgchange".to_string()];
    args.extend(scope.args());
    // -K: also the LVs flagged to be skipped at activation; every one is checked.
    args.extend(["-ay", "-K", clone].map(String::from));
    cmds.run("lvm", &args).await.map_err(|e| {
        format!(
            "activating the logical volumes of {clone} (volume group {}): {e}",
            group.name
        )
    })?;
    let mut args = vec!["lvs".to_string()];
    args.extend(scope.args());
    args.extend(report("lv_name,lv_attr,lv_dm_path"));
    args.push(clone.to_string());
    let said = cmds
        .run("lvm", &args)
        .await
        .map_err(|e| format!("listing the logical volumes of {clone}: {e}"))?;
    let mut volumes = Vec::new();
    for r in rows(&said) {
        // A row that is not one volume (an answer cut short, a format not understood) is no
        // volume passed over: nothing of the group is called checked.
        let [lv, attr, path] = r.as_slice() else {
            return Err(format!(
                "listing the logical volumes of {clone}: a line lightsnap does not read: {}",
                r.join("|")
            ));
        };
        // A thin pool (or a VDO pool) holds the volumes made in it, listed themselves: no
        // filesystem of its own.
        if attr.starts_with('t') || attr.starts_with('d') {
            continue;
        }
        volumes.push(Volume {
            name: format!("{}/{lv}", group.name),
            device: PathBuf::from(path),
        });
    }
    if volumes.is_empty() {
        return Err(format!(
            "volume group {} (imported as {clone}) has no logical volume to check",
            group.name
        ));
    }
    Ok(volumes)
}

/// Waits (bounded) for udev to finish the events already queued; best effort: a machine
/// without udev has nothing to wait for.
async fn settle(cmds: &impl Commands) {
    let args = ["settle", "--timeout=30"].map(String::from);
    if let Err(e) = cmds.run("udevadm", &args).await {
        tracing::debug!("udevadm settle: {e}");
    }
}

/// A device-mapper node: its name and UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `/dev/mapper/<name>`.
    pub name: String,
    /// `LVM-...` for a logical volume.
    pub uuid: String,
}

/// The device-mapper nodes of this machine (sysfs `/sys/block/dm-*/dm/{name,uuid}`).
pub fn mappings(sys_block: &Path) -> Vec<Mapping> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Vec::new();
    };
    let mut found: Vec<Mapping> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dm-"))
        .filter_map(|e| {
            let read = |f: &str| {
                std::fs::read_to_string(e.path().join("dm").join(f))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            Some(Mapping {
                name: read("name")?,
                uuid: read("uuid").unwrap_or_default(),
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The device-mapper nodes that are the clone's LVs: named `<clone>-...` (a VG name without
/// `-` keeps its own form in device-mapper names), with an LVM UUID.
pub fn of_clone<'a>(all: &'a [Mapping], clone: &str) -> Vec<&'a Mapping> {
    let prefix = format!("{clone}-");
    all.iter()
        .filter(|m| m.name.starts_with(&prefix) && m.uuid.starts_with("LVM-"))
        .collect()
}

/// Puts the clone away: `vgchange -an` of the group called `clone` on `pvs` (only that one,
/// and only when it is there), then `dmsetup remove` of the clone's device-mapper nodes still
/// there (`present`, read after the deactivation: a disk gone from under active LVs leaves
/// them). Nothing there is fine (never imported, or put away already).
pub async fn put_away(
    cmds: &impl Commands,
    pvs: &[PathBuf],
    clone: &str,
    present: impl Fn() -> Vec<Mapping>,
) -> anyhow::Result<()> {
    if !pvs.is_empty() {
        settle(cmds).await;
        let scope = scope(cmds, pvs).await.map_err(anyhow::Error::msg)?;
        let found = groups(cmds, &scope).await.unwrap_or_default();
        if found.iter().any(|g| g.name == clone) {
            let mut args = vec!["vgchange".to_string()];
            args.extend(scope.args());
            args.extend(["-an", clone].map(String::from));
            cmds.run("lvm", &args)
                .await
                .map_err(|e| anyhow::anyhow!("deactivating {clone}: {e}"))?;
        }
    }
    let all = present();
    for m in of_clone(&all, clone) {
        cmds.run("dmsetup", &["remove".to_string(), m.name.clone()])
            .await
            .map_err(|e| anyhow::anyhow!("removing device-mapper node {}: {e}", m.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The commands, scripted: each call logged; answers by the command's first words.
    struct Stand {
        version: &'static str,
        vgs: Vec<&'static str>,
        lvs: &'static str,
        calls: Mutex<Vec<String>>,
    }

    impl Stand {
        fn new(version: &'static str, vgs: Vec<&'static str>, lvs: &'static str) -> Self {
            Self {
                version,
                vgs,
                lvs,
                calls: Mutex::default(),
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Commands for Stand {
        async fn run(&self, program: &str, args: &[String]) -> Result<String, ToolError> {
            let line = format!("{program} {}", args.join(" "));
            let n = self
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.starts_with("lvm vgs"))
                .count();
            self.calls.lock().unwrap().push(line.clone());
            Ok(match args.first().map(String::as_str) {
                Some("version") if self.version.is_empty() => {
                    return Err(ToolError::NotRun(
                        "\"lvm\" \"version\" could not be started: No such file or directory"
                            .into(),
                    ))
                }
                Some("version") => self.version.to_string(),
                Some("vgs") if line.starts_with("lvm vgs") => {
                    self.vgs.get(n).copied().unwrap_or_default().to_string()
                }
                Some("lvs") => self.lvs.to_string(),
                _ => String::new(),
            })
        }
    }

    const NEW: &str = "  LVM version:     2.03.16(2) (2022-05-18)\n  Library version: 1.02.185\n";
    const OLD: &str = "  LVM version:     2.03.11(2) (2021-01-08)\n";

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn clone_names_come_from_the_disk_and_are_valid_vg_names() {
        assert_eq!(
            vg_name("data-1-20261207-verify-0a1b2c3d"),
            "lightsnap_verify_0a1b2c3d"
        );
        assert_eq!(
            vg_name("v-lvm-restore-99aa00ff"),
            "lightsnap_restore_99aa00ff"
        );
        let n = vg_name("x_y.z-ab+c");
        assert!(
            n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{n}"
        );
        assert_eq!(parse_version(NEW), Some((2, 3, 16)));
        assert_eq!(parse_version(OLD), Some((2, 3, 11)));
        assert_eq!(parse_version("nonsense"), None);
    }

    /// lvm2 2.03.12 and later: every command confined with `--devices` to the copy's PVs;
    /// renamed, activated, its volumes listed under the live group's name; a thin pool is
    /// no volume of its own.
    #[test]
    fn a_whole_group_is_imported_renamed_within_the_copys_devices() {
        let cmds = Stand::new(
            NEW,
            vec!["  datavg|1|0\n"],
            "  lv|-wi-a-----|/dev/mapper/lightsnap_verify_0a1b2c3d-lv\n  pool|twi-a-tz--|/dev/mapper/lightsnap_verify_0a1b2c3d-pool\n  thin|Vwi-a-tz--|/dev/mapper/lightsnap_verify_0a1b2c3d-thin\n",
        );
        let pv = PathBuf::from("/dev/nvme3n1");
        let got = block_on(import(&cmds, &[pv], "lightsnap_verify_0a1b2c3d")).unwrap();
        assert_eq!(
            got,
            [
                Volume {
                    name: "datavg/lv".into(),
                    device: "/dev/mapper/lightsnap_verify_0a1b2c3d-lv".into()
                },
                Volume {
                    name: "datavg/thin".into(),
                    device: "/dev/mapper/lightsnap_verify_0a1b2c3d-thin".into()
                },
            ]
        );
        let calls = cmds.calls();
        assert_eq!(
            calls,
            [
                "lvm version",
                "lvm vgs --devices /dev/nvme3n1 --noheadings --separator | -o vg_name,pv_count,vg_missing_pv_count",
                "lvm vgimportclone --devices /dev/nvme3n1 --basevgname lightsnap_verify_0a1b2c3d /dev/nvme3n1",
                "udevadm settle --timeout=30",
                "lvm vgchange --devices /dev/nvme3n1 -ay -K lightsnap_verify_0a1b2c3d",
                "lvm lvs --devices /dev/nvme3n1 --noheadings --separator | -o lv_name,lv_attr,lv_dm_path lightsnap_verify_0a1b2c3d",
            ]
        );
    }

    /// Before 2.03.12 (no `--devices`): a filter that accepts the copy's devices alone.
    #[test]
    fn older_lvm2_is_confined_by_a_filter() {
        let cmds = Stand::new(OLD, vec!["datavg|2|0"], "lv|-wi-a-----|/dev/mapper/c-lv");
        let pvs = [
            PathBuf::from("/dev/nvme3n1p1"),
            PathBuf::from("/dev/nvme3n1p2"),
        ];
        block_on(import(&cmds, &pvs, "c")).unwrap();
        let filter = r#"--config devices { filter = [ "a|^/dev/nvme3n1p1$|", "a|^/dev/nvme3n1p2$|", "r|.*|" ] global_filter = [ "a|^/dev/nvme3n1p1$|", "a|^/dev/nvme3n1p2$|", "r|.*|" ] }"#;
        for c in cmds.calls()[1..].iter().filter(|c| c.starts_with("lvm")) {
            assert!(c.contains(filter), "{c}");
            assert!(!c.contains("--devices"), "{c}");
        }
    }

    /// A group with a PV on another disk is not imported: named, nothing changed.
    #[test]
    fn a_group_missing_a_pv_is_not_imported_and_is_named() {
        let cmds = Stand::new(NEW, vec!["datavg|2|1"], "");
        let err = block_on(import(&cmds, &[PathBuf::from("/dev/nvme3n1")], "c")).unwrap_err();
        assert!(
            err.contains(
                "volume group datavg spans 2 physical volumes and 1 of them are not on this disk"
            ),
            "{err}"
        );
        assert!(
            cmds.calls()
                .iter()
                .all(|c| !c.contains("vgimportclone") && !c.contains("vgchange")),
            "{:?}",
            cmds.calls()
        );
        let odd = Stand::new(
            NEW,
            vec!["datavg|1|0"],
            "lv|-wi-a-----|/dev/mapper/c-lv\n[... 9000 bytes left out ...]\n",
        );
        let err = block_on(import(&odd, &[PathBuf::from("/dev/x")], "c")).unwrap_err();
        assert!(err.contains("a line lightsnap does not read"), "{err}");
        let orphan = Stand::new(NEW, vec![""], "");
        let err = block_on(import(&orphan, &[PathBuf::from("/dev/x")], "c")).unwrap_err();
        assert!(err.contains("in no volume group"), "{err}");
        let two = Stand::new(NEW, vec!["a|1|0\nb|1|0"], "");
        let err = block_on(import(&two, &[PathBuf::from("/dev/x")], "c")).unwrap_err();
        assert!(err.contains("2 volume groups (a, b)"), "{err}");
        // No lvm2 on this machine: said, nothing else tried.
        let none = Stand::new("", vec![], "");
        let err = block_on(import(&none, &[PathBuf::from("/dev/x")], "c")).unwrap_err();
        assert!(err.starts_with("lvm2 is needed to check LVM"), "{err}");
        assert_eq!(none.calls(), ["lvm version"]);
    }

    /// Putting away deactivates the clone only — never a group still called as the live one
    /// (a run killed before its rename: its LVs' device-mapper UUIDs are the live LVs') — and
    /// removes only the clone's device-mapper nodes.
    #[test]
    fn putting_away_touches_the_clone_alone() {
        let present = || {
            vec![
                Mapping {
                    name: "datavg-lv".into(),
                    uuid: "LVM-live".into(),
                },
                Mapping {
                    name: "lightsnap_verify_0a1b2c3d-lv".into(),
                    uuid: "LVM-clone".into(),
                },
                Mapping {
                    name: "lightsnap_verify_0a1b2c3d-crypt".into(),
                    uuid: "CRYPT-LUKS2-x".into(),
                },
            ]
        };
        let pv = [PathBuf::from("/dev/nvme3n1")];
        let cmds = Stand::new(NEW, vec!["lightsnap_verify_0a1b2c3d|1|0"], "");
        block_on(put_away(&cmds, &pv, "lightsnap_verify_0a1b2c3d", present)).unwrap();
        assert_eq!(
            cmds.calls()[3..],
            [
                "lvm vgchange --devices /dev/nvme3n1 -an lightsnap_verify_0a1b2c3d",
                "dmsetup remove lightsnap_verify_0a1b2c3d-lv",
            ]
        );
        // Killed before the rename: the copy's group still has the live name.
        let cmds = Stand::new(NEW, vec!["datavg|1|0"], "");
        block_on(put_away(&cmds, &pv, "lightsnap_verify_0a1b2c3d", Vec::new)).unwrap();
        assert!(
            cmds.calls().iter().all(|c| !c.contains("vgchange")),
            "{:?}",
            cmds.calls()
        );
        // The disk gone already: the nodes alone.
        let cmds = Stand::new(NEW, vec![], "");
        block_on(put_away(&cmds, &[], "lightsnap_verify_0a1b2c3d", present)).unwrap();
        assert_eq!(
            cmds.calls(),
            ["dmsetup remove lightsnap_verify_0a1b2c3d-lv"]
        );
    }

    #[test]
    fn mappings_are_read_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        for (dm, name, uuid) in [("dm-0", "datavg-lv", "LVM-a"), ("dm-3", "c-lv", "LVM-b")] {
            let d = dir.path().join(dm).join("dm");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("name"), format!("{name}\n")).unwrap();
            std::fs::write(d.join("uuid"), format!("{uuid}\n")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("nvme0n1")).unwrap();
        let all = mappings(dir.path());
        assert_eq!(all.len(), 2);
        assert_eq!(of_clone(&all, "c"), [&all[0]]);
    }
}
