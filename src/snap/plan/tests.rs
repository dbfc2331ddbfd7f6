//! Discovery on canned answers: which disk is behind a device, and which instance this is.

use super::*;
use crate::cloud::lightsail::fake::FakeLightsail;

fn instance(name: &str, code: &str, disks: &[(&str, &str, bool)]) -> InstanceInfo {
    InstanceInfo {
        name: name.into(),
        support_code: Some(code.into()),
        disks: disks
            .iter()
            .map(|(n, p, sys)| DiskInfo {
                name: n.to_string(),
                path: Some(p.to_string()),
                attached_to: Some(name.into()),
                is_attached: true,
                is_system_disk: *sys,
                support_code: None,
                auto_snapshot: None,
            })
            .collect(),
        auto_snapshot: None,
    }
}

#[test]
fn the_instance_is_found_by_support_code_suffix() {
    let list = vec![
        instance("a", "1234/i-0aaa", &[]),
        instance("b", "1234/i-0bbb", &[]),
    ];
    let id = Identity {
        instance_id: "i-0bbb".into(),
        region: "us-east-1".into(),
        availability_zone: "us-east-1a".into(),
    };
    assert_eq!(this_instance(&list, &id).unwrap().name, "b");
    let other = Identity {
        instance_id: "i-0ccc".into(),
        ..id
    };
    let err = this_instance(&list, &other).unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::NotFound);
}

fn identity() -> Identity {
    Identity {
        instance_id: "i-0bbb".into(),
        region: "us-east-1".into(),
        availability_zone: "us-east-1a".into(),
    }
}

fn canned() -> FakeLightsail {
    FakeLightsail {
        instances: vec![
            instance("a", "1234/i-0aaa", &[("a-data", "/dev/xvdf", false)]),
            instance(
                "b",
                "1234/i-0bbb",
                &[
                    ("b-system", "/dev/xvda", true),
                    ("b-data", "/dev/xvdf", false),
                ],
            ),
        ],
        ..FakeLightsail::default()
    }
}

fn discover(disk: Option<&str>, dev: &str) -> Result<(Source, DiskInfo)> {
    let api = canned();
    crate::runtime().unwrap().block_on(async {
        let mut discovery = Discovery::new(&api, async { Ok(identity()) });
        let ids = DiskIds {
            name: dev.trim_start_matches("/dev/").into(),
            dev_path: dev.into(),
            volume_id: None,
            ebs_device_name: None,
        };
        discovery.source(disk, &ids).await
    })
}

#[test]
fn discovery_matches_this_instances_disk_by_path() {
    let (source, disk) = discover(None, "/dev/xvdf").unwrap();
    assert_eq!(
        source,
        Source::Disk("b-data".into()),
        "b is this instance, not a"
    );
    assert_eq!(disk.name, "b-data");
    let (source, _) = discover(None, "/dev/xvda").unwrap();
    assert_eq!(source, Source::SystemVolume("b".into()));
    let err = discover(None, "/dev/xvdz").unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::NotFound);
    assert!(err.to_string().contains("b-data at /dev/xvdf"), "{err}");
}

/// Nitro: the kernel calls the disk `nvme1n1`, Lightsail calls it `/dev/xvdf`; the
/// volume id (NVMe serial ↔ `supportCode`) or the attachment name (Identify data ↔
/// `path`) tie them together.
#[test]
fn nvme_disks_match_by_volume_id_or_attachment_name() {
    let disk = DiskInfo {
        name: "data-1".into(),
        path: Some("/dev/xvdf".into()),
        attached_to: Some("b".into()),
        is_attached: true,
        is_system_disk: false,
        support_code: Some("123456789012/vol-0123456789abcdef0".into()),
        auto_snapshot: None,
    };
    let nvme = |volume_id: Option<&str>, name: Option<&str>| DiskIds {
        name: "nvme1n1".into(),
        dev_path: "/dev/nvme1n1".into(),
        volume_id: volume_id.map(str::to_string),
        ebs_device_name: name.map(str::to_string),
    };
    assert!(is_disk(&disk, &nvme(Some("vol-0123456789abcdef0"), None)));
    assert!(is_disk(&disk, &nvme(None, Some("/dev/xvdf"))));
    assert!(!is_disk(&disk, &nvme(Some("vol-0fffffffffffffff0"), None)));
    assert!(!is_disk(&disk, &nvme(None, Some("/dev/xvdg"))));
    assert!(!is_disk(&disk, &nvme(None, None)));
    let sdf = DiskInfo {
        path: Some("/dev/sdf".into()),
        support_code: None,
        ..disk.clone()
    };
    assert!(is_disk(&sdf, &nvme(None, Some("sdf"))));
}

#[test]
fn a_named_disk_must_be_this_instances_disk_behind_the_path() {
    // The disk behind the path, named: taken.
    let (source, _) = discover(Some("b-data"), "/dev/xvdf").unwrap();
    assert_eq!(source, Source::Disk("b-data".into()));
    // A device discovery cannot map: taken as given (with a warning).
    let (source, _) = discover(Some("b-data"), "/dev/whatever").unwrap();
    assert_eq!(source, Source::Disk("b-data".into()));
    // Another instance's disk: refused, naming where it is.
    let err = discover(Some("a-data"), "/dev/whatever").unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::WrongDisk);
    assert!(err.to_string().contains("attached to instance a"), "{err}");
    // This instance's system disk named for its data disk: refused, naming both.
    let err = discover(Some("b-system"), "/dev/xvdf").unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::WrongDisk);
    assert!(
        err.to_string().contains("is Lightsail disk b-data")
            && err.to_string().contains("not b-system"),
        "{err}"
    );
    let err = discover(Some("nope"), "/dev/xvdf").unwrap_err();
    assert_eq!(ExitCode::of(&err), ExitCode::NotFound);
}
