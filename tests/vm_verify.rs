//! `lightsnap verify` end to end on a booted guest (issue 17's last test, on issue 15's VM lab):
//! the scratch disk restored from a snapshot is hot-plugged into the running guest as a real
//! NVMe device whose serial is its EBS volume id, and lightsnap finds it by that serial alone,
//! as on a Nitro instance (no `LIGHTSNAP_DEV_DIR`).
//!
//! One bookworm boot (`scripts/vm --hotplug`, guest script `tests/vm/verify.sh`): the fake
//! Lightsail runs in the guest with `--attach-command`, whose command tells the host through
//! the event port to plug the restored disk's copy in (QMP `blockdev-add` + `device_add nvme`)
//! and out (`device_del`, `blockdev-del`). The guest writes what it saw under `/out`; the
//! assertions are all here.
//!
//! Needs root, QEMU and mmdebstrap (`scripts/deps`); outside CI a missing requirement is a skip
//! that says why, in CI a failure. The helpers below mirror `tests/vm.rs`'s.

mod common;

use std::process::Command;

use common::vm::{boot_ok, lab_dir, lab_or_skip, repo, scratch_dir, Out, ROOT_SERIAL};
use serde_json::Value;

/// The data disk's serial.
const DATA_SERIAL: &str = "vol00000000000000d17";
/// The LVM disk's serial (one PV of group `datavg`, LV `lv`, ext4).
const LVM_SERIAL: &str = "vol00000000000000e1a";
/// The XFS disk's serial.
const XFS_SERIAL: &str = "vol00000000000000f5f";
/// The two disks of group `spanvg` (one LV across both).
const SPAN_SERIALS: [&str; 2] = ["vol000000000000005a1", "vol000000000000005b2"];

/// The fake's calls of `operation`.
fn calls_of<'a>(calls: &'a Value, operation: &str) -> Vec<&'a Value> {
    calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == operation)
        .collect()
}

#[test]
fn verify_finds_the_hot_plugged_nvme_disk_by_its_serial() {
    if !lab_or_skip("verify_finds_the_hot_plugged_nvme_disk_by_its_serial") {
        return;
    }
    let (scratch, _cleanup) = scratch_dir("lightsnap-vm-");
    let lab = lab_dir(
        &scratch,
        &[
            ("DATA", DATA_SERIAL.to_string()),
            ("LVM", LVM_SERIAL.to_string()),
            ("XFS", XFS_SERIAL.to_string()),
            ("SPANA", SPAN_SERIALS[0].to_string()),
            ("SPANB", SPAN_SERIALS[1].to_string()),
        ],
        true,
    );
    let out = scratch.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let stderr = boot_ok(
        Command::new(repo().join("scripts/vm"))
            .args(["--distro", "bookworm", "--hotplug", "--nvme"])
            // Small: the fake copies the disk inside CreateDiskSnapshot and again inside
            // AttachDisk, over 9p, under TCG.
            .arg(format!("{DATA_SERIAL}:32M"))
            .arg("--nvme")
            .arg(format!("{LVM_SERIAL}:32M"))
            .arg("--nvme")
            .arg(format!("{XFS_SERIAL}:320M"))
            .arg("--nvme")
            .arg(format!("{}:16M", SPAN_SERIALS[0]))
            .arg("--nvme")
            .arg(format!("{}:16M", SPAN_SERIALS[1]))
            .arg("--copy")
            .arg(format!("{}:/opt/lab", lab.display()))
            .arg("--out")
            .arg(&out)
            .args(["--", "bash", "/opt/lab/verify.sh"]),
    );
    let b = Out(out.join("verify"));

    // The snapshot to verify, of the data disk (found by its serial too).
    let snap = b.report_of("snap", "freeze-and-snap");
    assert_eq!(snap["snapshots"][0]["name"], "v-data", "{snap}");
    assert_eq!(snap["snapshots"][0]["source"]["name"], "data-1", "{snap}");

    // The rehearsal: clean, tagged, nothing left, on an NVMe device.
    let report = b.report_of("run", "verify");
    let scratch_disk = report["scratch_disk"].as_str().unwrap().to_string();
    assert_eq!(report["snapshot"], "v-data", "{report}");
    assert_eq!(report["disk"], "data-1", "{report}");
    assert_eq!(report["result"], "clean", "{report}");
    assert_eq!(report["tagged"], "clean", "{report}");
    assert_eq!(report["hooks_ran"], true, "{report}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    assert_eq!(report["left_behind"], serde_json::json!([]), "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{report}");
    assert_eq!(checks[0]["fstype"], "ext4", "{report}");
    assert_eq!(checks[0]["clean"], true, "{report}");
    let device = report["device"].as_str().unwrap().to_string();
    let path = report["attached_at"].as_str().unwrap().to_string();
    assert!(device.starts_with("/dev/nvme"), "{report}");
    assert_eq!(checks[0]["device"], device.as_str(), "{report}");

    // The fake ran the attach command with the copy, the serial and the path, then its
    // detach; the second rehearsal the same, with a scratch disk of its own (each rehearsal
    // names its disk anew: another volume id, another serial).
    let attach_calls = b.lines("attach-calls");
    assert_eq!(
        attach_calls.len(),
        16,
        "two rehearsals, a restore, a killed LVM rehearsal and the next, an LVM restore, an XFS restore, a spanning group: {attach_calls:?}"
    );
    let fields: Vec<&str> = attach_calls[0].split(' ').collect();
    assert_eq!(fields.len(), 4, "{attach_calls:?}");
    let (copy, serial) = (fields[1], fields[2]);
    assert_eq!(fields[0], "attach");
    assert_eq!(copy, format!("/lab/snaps/disks/{scratch_disk}.img"));
    assert_eq!(fields[3], path, "attached at the path lightsnap chose");
    assert_eq!(attach_calls[1], format!("detach {serial}"));
    let second: Vec<&str> = attach_calls[2].split(' ').collect();
    assert_eq!((second.len(), second[0]), (4, "attach"), "{attach_calls:?}");
    assert_eq!(second[3], path, "{attach_calls:?}");
    assert_ne!(
        second[2], serial,
        "a scratch disk of its own: {attach_calls:?}"
    );
    assert_eq!(attach_calls[3], format!("detach {}", second[2]));
    assert!(
        serial.len() == 20
            && serial.starts_with("vol0")
            && serial[3..].chars().all(|c| c.is_ascii_hexdigit()),
        "an EBS NVMe serial: {serial}"
    );
    // The host plugged it in and out (scripts/vm's event reader; the unplug said once QEMU
    // reported DEVICE_DELETED and the file was let go), each copy once, in the order made.
    let events = std::fs::read_to_string(out.join("events")).unwrap();
    // (Each at the path lightsnap chose: the first free one, which is not the same for the
    // rehearsal that runs while a killed one's disk is still attached. Checked against the
    // AttachDisk calls below.)
    let plugged_at: Vec<(&str, &str, &str)> = attach_calls
        .iter()
        .step_by(2)
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!((f.len(), f[0]), (4, "attach"), "{attach_calls:?}");
            (f[1], f[2], f[3])
        })
        .collect();
    let plugged: Vec<(&str, &str)> = plugged_at.iter().map(|&(c, s, _)| (c, s)).collect();
    let want_events: Vec<String> = plugged
        .iter()
        .flat_map(|(c, s)| [format!("attach {c} {s}"), format!("detach {s}")])
        .collect();
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        want_events,
        "the event port"
    );
    let said = |what: &str| stderr.lines().filter(|l| l.ends_with(what)).count();
    for &(c, s) in &plugged {
        assert_eq!(
            said(&format!("hot-plugged {c} as NVMe {s} on hp0")),
            1,
            "{stderr}"
        );
        assert_eq!(said(&format!("unplugged NVMe {s}")), 1, "{stderr}");
    }

    // While attached (the verify hook): an NVMe disk with that serial, the device lightsnap
    // checked, whose serial is the scratch disk's volume id in its supportCode; the restored
    // file read back through the read-only mount.
    let before = b.lines("serials-before");
    assert!(
        before.contains(&ROOT_SERIAL.to_string()) && before.contains(&DATA_SERIAL.to_string()),
        "{before:?}"
    );
    assert!(!before.contains(&serial.to_string()), "{before:?}");
    let during: Vec<(String, String)> = b
        .lines("hook/disks")
        .iter()
        .map(|l| {
            let (d, s) = l.split_once(' ').unwrap();
            (d.to_string(), s.to_string())
        })
        .collect();
    assert!(
        during.contains(&(device.clone(), serial.to_string())),
        "{device} with serial {serial} among {during:?}"
    );
    assert_eq!(during.len(), before.len() + 1, "{during:?}");
    let fake_disks = b.json("hook/fake-disks.json");
    let disk = fake_disks
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == scratch_disk.as_str())
        .unwrap_or_else(|| panic!("{scratch_disk} in {fake_disks}"));
    let volume = disk["supportCode"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap()
        .1;
    assert_eq!(volume.replacen('-', "", 1), serial, "{disk}");
    assert_eq!(disk["plugged"], serial, "{disk}");
    assert_eq!(disk["attachedTo"], "web-1", "{disk}");
    assert_eq!(b.text("hook/hello.txt"), "restored from snapshot v-data\n");
    assert_eq!(b.text("hook/args").trim(), "verify");
    let findmnt = b.text("hook/findmnt");
    let mnt: Vec<&str> = findmnt.split_whitespace().collect();
    assert!(
        mnt.len() == 3
            && mnt[0] == device
            && mnt[1] == "ext4"
            && mnt[2].split(',').any(|o| o == "ro"),
        "mounted read-only from the NVMe device: {findmnt}"
    );
    assert_eq!(
        b.lines("serials-after"),
        before,
        "the hot-plugged disk is gone"
    );

    // The second rehearsal, of a corrupted restore on the same kind of device: failed (18),
    // tagged so, undone all the same.
    let code: i32 = b.text("corrupt/code").trim().parse().unwrap();
    let failed = b.json("corrupt/report.json");
    common::assert_matches_schema("verify", &failed);
    assert_eq!(code, 18, "{failed}\n{}", b.text("corrupt/stderr"));
    assert_eq!(failed["result"], "failed", "{failed}");
    assert_eq!(failed["tagged"], "failed", "{failed}");
    let failed_disk = failed["scratch_disk"].as_str().unwrap().to_string();
    assert!(
        failed_disk.starts_with("v-data-verify-") && failed_disk != scratch_disk,
        "a scratch disk of its own: {failed}"
    );
    assert_eq!(failed["left_behind"], serde_json::json!([]), "{failed}");
    assert_eq!(failed["hooks_ran"], false, "{failed}");
    let bad = failed["device"].as_str().unwrap();
    assert!(bad.starts_with("/dev/nvme"), "{failed}");
    assert_eq!(failed["checks"][0]["device"], bad, "{failed}");
    assert_eq!(failed["checks"][0]["clean"], false, "{failed}");
    assert_eq!(b.lines("serials-after-corrupt"), before, "unplugged again");

    // The calls about the scratch disk and the verdicts, in order: restore, attach, detach,
    // delete, tag — twice.
    let calls = b.json("calls.json");
    let steps: Vec<String> = calls
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let op = c["operation"].as_str().unwrap();
            let body = &c["body"];
            match op {
                "CreateDiskFromSnapshot" | "AttachDisk" | "DetachDisk" | "DeleteDisk"
                    if body["diskName"] == scratch_disk.as_str()
                        || body["diskName"] == failed_disk.as_str() =>
                {
                    Some(op.to_string())
                }
                "TagResource" if body["resourceName"] == "v-data" => {
                    let verdict = body["tags"]
                        .as_array()?
                        .iter()
                        .find(|t| t["key"] == "lightsnap:verified")?;
                    Some(format!("{op} {}", verdict["value"].as_str()?))
                }
                _ => None,
            }
        })
        .collect();
    let rehearsal = |verdict: &str| {
        [
            "CreateDiskFromSnapshot".to_string(),
            "AttachDisk".into(),
            "DetachDisk".into(),
            "DeleteDisk".into(),
            format!("TagResource {verdict}"),
        ]
    };
    assert_eq!(steps.len(), 10, "{steps:?}");
    assert_eq!(steps[..5], rehearsal("clean"), "{steps:?}");
    assert_eq!(steps[5..], rehearsal("failed"), "{steps:?}");
    let attaches = calls_of(&calls, "AttachDisk");
    assert_eq!(attaches.len(), 8, "{attaches:?}");
    for (c, (_, _, at)) in attaches.iter().zip(&plugged_at) {
        assert_eq!(c["body"]["diskPath"], *at, "{c}");
        assert_eq!(c["body"]["instanceName"], "web-1", "{c}");
    }
    let sources: Vec<&str> = calls_of(&calls, "CreateDiskFromSnapshot")
        .iter()
        .map(|c| c["body"]["diskSnapshotName"].as_str().unwrap())
        .collect();
    let span = b.report_of("snap-span", "freeze-and-snap");
    let span_a = span["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"]["name"] == "span-a")
        .unwrap_or_else(|| panic!("a snapshot of span-a: {span}"))["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(span["snapshots"].as_array().unwrap().len(), 2, "{span}");
    assert_eq!(
        sources,
        [
            "v-data",
            "v-data",
            "v-data",
            "v-lvm",
            "v-lvm",
            "v-lvm",
            "v-xfs",
            span_a.as_str()
        ]
    );
    // Only disks lightsnap made were detached or deleted, each right after a GetDisk of it
    // (the tags read again before the call).
    let made: Vec<&str> = calls_of(&calls, "CreateDiskFromSnapshot")
        .iter()
        .map(|c| c["body"]["diskName"].as_str().unwrap())
        .collect();
    let all = calls.as_array().unwrap();
    for (i, c) in all.iter().enumerate() {
        let op = c["operation"].as_str().unwrap();
        if op != "DetachDisk" && op != "DeleteDisk" {
            continue;
        }
        let name = c["body"]["diskName"].as_str().unwrap();
        assert!(
            made.contains(&name),
            "{op} of {name}, not made by lightsnap"
        );
        let before = &all[i - 1];
        assert!(
            before["operation"] == "GetDisk" && before["body"]["diskName"] == name,
            "{op} {name} after {before}"
        );
    }

    // Nothing left: no scratch disk, nothing plugged in, no copy (the device is gone from
    // the guest: above).
    let disks = b.json("disks.json");
    let names: Vec<&str> = disks
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&scratch_disk.as_str()), "{names:?}");
    assert!(!names.contains(&failed_disk.as_str()), "{names:?}");
    assert!(
        disks
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["plugged"].is_null()),
        "{disks}"
    );
    assert_eq!(
        b.lines("files-after"),
        {
            let mut images: Vec<String> = ["v-data", "v-lvm", "v-xfs"]
                .iter()
                .map(|n| format!("/lab/snaps/{n}.img"))
                .chain(
                    span["snapshots"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| format!("/lab/snaps/{}.img", s["name"].as_str().unwrap())),
                )
                .collect();
            images.sort();
            images
        },
        "no copy left"
    );

    // The file restore (`restore --mount`): a disk of its own, hot-plugged, found by its
    // serial alone, mounted read-only where asked, the files as they were at the snapshot.
    let restored = b.report_of("restore", "restore");
    let restored_disk = restored["restored_disk"].as_str().unwrap().to_string();
    assert!(restored_disk.starts_with("v-data-restore-"), "{restored}");
    assert!(made.contains(&restored_disk.as_str()), "{made:?}");
    assert_eq!(restored["mounted_at"], serde_json::json!(["/restore/data"]));
    assert_eq!(restored["checks"][0]["clean"], true, "{restored}");
    assert_eq!(restored["warnings"], serde_json::json!([]), "{restored}");
    let (rcopy, rserial) = plugged[2];
    assert_eq!(rcopy, format!("/lab/snaps/disks/{restored_disk}.img"));
    let rdevice = restored["device"].as_str().unwrap();
    assert!(rdevice.starts_with("/dev/nvme"), "{restored}");
    assert!(
        b.lines("restore/seen/disks")
            .contains(&format!("{rdevice} {rserial}")),
        "{rdevice} with serial {rserial}: {:?}",
        b.lines("restore/seen/disks")
    );
    assert_eq!(
        b.text("restore/seen/hello.txt"),
        "restored from snapshot v-data\n"
    );
    assert_eq!(
        b.text("restore/seen/after-snapshot").trim(),
        "absent",
        "a file written after the snapshot is not in the restore"
    );
    let findmnt = b.text("restore/seen/findmnt");
    let mnt: Vec<&str> = findmnt.split_whitespace().collect();
    assert!(
        mnt.len() == 3
            && mnt[0] == rdevice
            && mnt[1] == "ext4"
            && mnt[2].split(',').any(|o| o == "ro"),
        "mounted read-only from the NVMe device: {findmnt}"
    );
    assert_eq!(b.text("restore/seen/write").trim(), "refused");
    let status = b.report_of("status", "status");
    let listed = status["restored_disks"].as_array().unwrap();
    assert!(
        listed.len() == 1
            && listed[0]["name"] == restored_disk.as_str()
            && listed[0]["snapshot"] == "v-data",
        "{status}"
    );
    let released = b.report_of("release", "restore");
    assert_eq!(
        released["restored_disk"],
        restored_disk.as_str(),
        "{released}"
    );
    assert_eq!(released["unmounted"], serde_json::json!(["/restore/data"]));
    assert_eq!(b.text("restore-mounted-after").trim(), "", "unmounted");
    assert_eq!(b.lines("serials-after-restore"), before, "unplugged");
    assert_eq!(attach_calls[5], format!("detach {rserial}"));
    assert!(
        !names.contains(&restored_disk.as_str()),
        "deleted: {names:?}"
    );
    let restore_ops: Vec<&str> = all
        .iter()
        .filter(|c| c["body"]["diskName"] == restored_disk.as_str())
        .map(|c| c["operation"].as_str().unwrap())
        .filter(|op| *op != "GetDisk")
        .collect();
    assert_eq!(
        restore_ops,
        [
            "CreateDiskFromSnapshot",
            "AttachDisk",
            "DetachDisk",
            "DeleteDisk"
        ]
    );

    // LVM on the restored disk: the copy's group imported as a renamed clone beside the live
    // one, its logical volume checked and named; the live group untouched; nothing left.
    let snap = b.report_of("snap-lvm", "freeze-and-snap");
    assert_eq!(snap["snapshots"][0]["name"], "v-lvm", "{snap}");
    assert_eq!(snap["snapshots"][0]["source"]["name"], "data-2", "{snap}");
    let lvm = b.report_of("lvm", "verify");
    // The rehearsal killed in its hook left its disk and its clone, active and mounted; this
    // one put the clone away and removed the disk first.
    let killed: i32 = b.text("lvm-killed/code").trim().parse().unwrap();
    assert_eq!(killed, 137, "SIGKILL: {}", b.text("lvm-killed/stderr"));
    let killed_clone = b
        .lines("lvm-killed/dm")
        .into_iter()
        .find(|d| d.starts_with("lightsnap_verify_"))
        .unwrap_or_else(|| panic!("the killed run's clone: {:?}", b.lines("lvm-killed/dm")));
    let removed = lvm["leftovers_removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{lvm}");
    let leftover = removed[0].as_str().unwrap();
    assert!(leftover.starts_with("v-lvm-verify-"), "{lvm}");
    assert_eq!(
        killed_clone,
        format!(
            "lightsnap_verify_{}-lv",
            leftover.rsplit('-').next().unwrap()
        )
    );
    assert!(!names.contains(&leftover), "deleted: {names:?}");
    assert_eq!(lvm["leftovers_kept"], serde_json::json!([]), "{lvm}");
    assert_eq!(lvm["result"], "clean", "{lvm}");
    assert_eq!(lvm["tagged"], "clean", "{lvm}");
    assert_eq!(lvm["left_behind"], serde_json::json!([]), "{lvm}");
    let checks = lvm["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{lvm}");
    assert_eq!(checks[0]["volume"], "datavg/lv", "{lvm}");
    assert_eq!(checks[0]["fstype"], "ext4", "{lvm}");
    assert_eq!(checks[0]["clean"], true, "{lvm}");
    let lv_device = checks[0]["device"].as_str().unwrap();
    let clone = lv_device
        .strip_prefix("/dev/mapper/")
        .and_then(|d| d.strip_suffix("-lv"))
        .unwrap_or_else(|| panic!("a device-mapper node of the clone: {lvm}"));
    let lvm_disk = lvm["scratch_disk"].as_str().unwrap();
    assert_eq!(
        clone,
        format!("lightsnap_verify_{}", lvm_disk.rsplit('-').next().unwrap()),
        "{lvm}"
    );
    assert_eq!(
        b.text("hook-lvm/hello.txt"),
        "restored from snapshot v-lvm\n"
    );
    let findmnt = b.text("hook-lvm/findmnt");
    let mnt: Vec<&str> = findmnt.split_whitespace().collect();
    assert!(
        mnt.len() == 3
            && mnt[0] == lv_device
            && mnt[1] == "ext4"
            && mnt[2].split(',').any(|o| o == "ro"),
        "the clone's volume mounted read-only: {findmnt}"
    );
    // (The spanning group of the last scenario is there too: live groups, all of them.)
    let live_before = b.lines("lvm-before/vgs");
    let live = live_before
        .iter()
        .find(|l| l.starts_with("datavg "))
        .unwrap_or_else(|| panic!("{live_before:?}"));
    let live_uuid = live.split_once(' ').unwrap().1;
    let during = b.lines("hook-lvm/vgs");
    for l in &live_before {
        assert!(during.contains(l), "the live group {l}: {during:?}");
    }
    let clone_row = during
        .iter()
        .find(|l| l.starts_with(&format!("{clone} ")))
        .unwrap_or_else(|| panic!("the clone among {during:?}"));
    assert_ne!(
        clone_row.split_once(' ').unwrap().1,
        live_uuid,
        "the clone has a UUID of its own"
    );
    assert!(
        b.lines("hook-lvm/dm").contains(&format!("{clone}-lv")),
        "{:?}",
        b.lines("hook-lvm/dm")
    );
    for what in [
        "vgs",
        "lvs",
        "dm",
        "findmnt",
        "devicesfile",
        "use_devicesfile",
    ] {
        assert_eq!(
            b.text(&format!("lvm-after/{what}")),
            b.text(&format!("lvm-before/{what}")),
            "the live group's {what} after the rehearsal"
        );
    }
    let lvs = b.lines("lvm-before/lvs");
    assert!(
        lvs.iter()
            .any(|l| l.starts_with("datavg lv ") && l.ends_with(" active")),
        "{lvs:?}"
    );
    assert_eq!(b.lines("lvm-before/dm"), ["datavg-lv", "spanvg-lv"]);
    assert_eq!(
        b.text("lvm-after/findmnt").trim(),
        "/dev/mapper/datavg-lv /lvdata"
    );
    assert_eq!(
        b.text("lvm-after/hello.txt"),
        "restored from snapshot v-lvm\n"
    );
    eprintln!(
        "LVM devices file: {}; system.devices: {}",
        b.text("lvm-before/use_devicesfile").trim(),
        b.text("lvm-before/devicesfile").trim()
    );
    assert_eq!(b.lines("serials-after-lvm"), before, "unplugged");

    // A file restore of the LVM disk: the logical volume mounted read-only from the clone,
    // released with the clone put away; the live group as it was.
    let restored = b.report_of("restore-lvm", "restore");
    let lvm_restored = restored["restored_disk"].as_str().unwrap().to_string();
    assert!(lvm_restored.starts_with("v-lvm-restore-"), "{restored}");
    assert_eq!(restored["mounted_at"], serde_json::json!(["/restore/lvm"]));
    assert_eq!(restored["checks"][0]["volume"], "datavg/lv", "{restored}");
    assert_eq!(restored["checks"][0]["clean"], true, "{restored}");
    assert_eq!(
        b.text("restore-lvm/seen/hello.txt"),
        "restored from snapshot v-lvm\n"
    );
    let findmnt = b.text("restore-lvm/seen/findmnt");
    let mnt: Vec<&str> = findmnt.split_whitespace().collect();
    let clone = format!(
        "/dev/mapper/lightsnap_restore_{}-lv",
        lvm_restored.rsplit('-').next().unwrap()
    );
    assert!(
        mnt.len() == 3 && mnt[0] == clone && mnt[2].split(',').any(|o| o == "ro"),
        "the clone's volume mounted read-only: {findmnt}"
    );
    let released = b.report_of("release-lvm", "restore");
    assert_eq!(
        released["restored_disk"],
        lvm_restored.as_str(),
        "{released}"
    );
    assert_eq!(b.lines("serials-after-restore-lvm"), before, "unplugged");
    for what in ["vgs", "lvs", "dm", "findmnt", "devicesfile"] {
        assert_eq!(
            b.text(&format!("lvm-after-restore/{what}")),
            b.text(&format!("lvm-before/{what}")),
            "the live group's {what} after the restore and its release"
        );
    }
    assert!(
        !names.contains(&lvm_restored.as_str()),
        "deleted: {names:?}"
    );

    // XFS restored beside its original: the same UUID, mounted all the same (nouuid),
    // read-only, the original still mounted; released.
    let restored = b.report_of("restore-xfs", "restore");
    let xfs_restored = restored["restored_disk"].as_str().unwrap().to_string();
    assert!(xfs_restored.starts_with("v-xfs-restore-"), "{restored}");
    assert_eq!(restored["checks"][0]["fstype"], "xfs", "{restored}");
    assert_eq!(restored["checks"][0]["clean"], true, "{restored}");
    assert_eq!(restored["mounted_at"], serde_json::json!(["/restore/xfs"]));
    assert_eq!(
        b.text("restore-xfs/seen/hello.txt"),
        "restored from snapshot v-xfs\n"
    );
    let findmnt = b.text("restore-xfs/seen/findmnt");
    let mnt: Vec<&str> = findmnt.split_whitespace().collect();
    assert!(
        mnt.len() == 3
            && mnt[0] == restored["device"].as_str().unwrap()
            && mnt[1] == "xfs"
            && mnt[2].split(',').any(|o| o == "ro")
            && mnt[2].split(',').any(|o| o == "nouuid"),
        "mounted read-only with nouuid: {findmnt}"
    );
    let original = b.text("restore-xfs/seen/original");
    assert!(original.trim().ends_with(" xfs"), "{original}");
    let uuid = b.text("restore-xfs/seen/uuid-original");
    assert!(!uuid.trim().is_empty());
    assert_eq!(
        b.text("restore-xfs/seen/uuid-copy"),
        uuid,
        "the copy has the original's UUID"
    );
    assert_eq!(
        b.report_of("release-xfs", "restore")["restored_disk"],
        xfs_restored.as_str()
    );
    assert_eq!(b.lines("serials-after-restore-xfs"), before, "unplugged");
    assert!(
        !names.contains(&xfs_restored.as_str()),
        "deleted: {names:?}"
    );

    // A copy of one disk of a group that spans two: not imported, "could not check" (21)
    // naming the group; the live group untouched; nothing left.
    let code: i32 = b.text("span/code").trim().parse().unwrap();
    let unchecked = b.json("span/report.json");
    common::assert_matches_schema("verify", &unchecked);
    assert_eq!(code, 21, "{unchecked}\n{}", b.text("span/stderr"));
    assert_eq!(unchecked["result"], "unchecked", "{unchecked}");
    assert_eq!(unchecked["tagged"], "unchecked", "{unchecked}");
    assert_eq!(unchecked["failures"], serde_json::json!([]), "{unchecked}");
    assert_eq!(
        unchecked["left_behind"],
        serde_json::json!([]),
        "{unchecked}"
    );
    let said = unchecked["unchecked"].as_array().unwrap();
    assert!(
        said.len() == 1
            && said[0].as_str().unwrap().contains(
                "volume group spanvg spans 2 physical volumes and 1 of them are not on this disk"
            ),
        "{unchecked}"
    );
    for what in ["vgs", "dm", "findmnt"] {
        assert_eq!(
            b.text(&format!("span-after/{what}")),
            b.text(&format!("span-before/{what}")),
            "the spanning group's {what}"
        );
    }
    assert_eq!(b.lines("serials-after-span"), before, "unplugged");
}
