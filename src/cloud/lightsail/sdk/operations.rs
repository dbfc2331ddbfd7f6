//! Every Lightsail operation the SDK client makes, as a table: what the least-privilege policy
//! (`crate::cloud::policy`) must allow. A test reads this directory's source for the SDK's
//! operation builders (`.client.get_disk()`, `client\n.copy_snapshot()`), so a call added
//! without its line here fails.

/// The operations, by their API names (the IAM action is `lightsail:<name>`).
pub const OPERATIONS: &[&str] = &[
    "AttachDisk",
    "CopySnapshot",
    "CreateDiskFromSnapshot",
    "CreateDiskSnapshot",
    "CreateInstanceSnapshot",
    "CreateInstancesFromSnapshot",
    "DeleteDisk",
    "DeleteDiskSnapshot",
    "DeleteInstanceSnapshot",
    "DetachDisk",
    "GetAutoSnapshots",
    "GetDisk",
    "GetDiskSnapshot",
    "GetDiskSnapshots",
    "GetDisks",
    "GetInstanceSnapshot",
    "GetInstanceSnapshots",
    "GetInstances",
    "TagResource",
];

/// Operations only `lightsnap fleet` makes — from an administrator's or a monitor's machine,
/// under `lightsnap iam-policy --read-only`; never an instance's own lightsnap, so never in
/// the instance's policy.
pub const FLEET_OPERATIONS: &[&str] = &["GetRegions"];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The SDK client's source files, read now: `sdk.rs` and every file of `sdk/` but this
    /// one (a file added there is read too).
    fn sources() -> Vec<(std::path::PathBuf, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud/lightsail");
        let mut paths = vec![dir.join("sdk.rs")];
        for entry in std::fs::read_dir(dir.join("sdk")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("operations.rs") {
                paths.push(path);
            }
        }
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect()
    }

    /// `get_disk_snapshot` → `GetDiskSnapshot`.
    fn camel(snake: &str) -> String {
        snake
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The operation builders called on a client: `client` then (past whitespace) `.name()`.
    fn called(source: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut rest = source;
        while let Some(at) = rest.find("client") {
            rest = &rest[at + "client".len()..];
            let after = rest.trim_start();
            let Some(call) = after.strip_prefix('.') else {
                continue;
            };
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && call[name.len()..].starts_with("()") {
                found.insert(camel(&name));
            }
        }
        found
    }

    #[test]
    fn the_table_is_every_operation_the_client_calls() {
        let mut calls = BTreeSet::new();
        let sources = sources();
        assert!(
            sources.len() >= 2,
            "the SDK client's sources were not found"
        );
        for (_, text) in &sources {
            calls.extend(called(text));
        }
        // Not operations: the client's own methods.
        calls.remove("Clone");
        calls.remove("Config");
        let table: BTreeSet<String> = super::OPERATIONS
            .iter()
            .chain(super::FLEET_OPERATIONS)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(calls, table, "the SDK client's calls vs OPERATIONS");
    }

    #[test]
    fn the_scan_finds_split_chains() {
        let found = called(
            "let out = self\n  .client\n  .copy_snapshot()\n  .send();\nclient.get_disk().x",
        );
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["CopySnapshot", "GetDisk"]
        );
    }
}
