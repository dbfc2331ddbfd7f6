//! Whose snapshots a command considers: this instance's by default (found through the
//! metadata service and GetInstances), another instance's with `--instance`, every
//! instance's with `--all-instances`, or every snapshot with `--all`. The tag itself is
//! [`crate::cloud::owner`]'s; the rule that uses it, [`crate::retention::Scope`].

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::cloud::imds::{self, ImdsError};
use crate::cloud::lightsail::{Lightsail, SdkLightsail};
use crate::cloud::owner::Owner;
use crate::cloud::validate;
use crate::exit_code::ExitCode;
use crate::fail;
use crate::retention::Scope;

/// This instance as the owner of what lightsnap makes: the metadata service's region and
/// instance id, then the Lightsail instance of that id, found in *that* region (so it works
/// with a client for another region, as `list --region` or the copy region has).
pub async fn this_owner(api: &SdkLightsail) -> Result<Owner> {
    let identity = match imds::identity(Duration::from_secs(2)).await {
        Ok(i) => i,
        Err(e) => {
            // The metadata service's own advice (--disk-name) is freeze-and-snap's, not ours.
            let why = match &e {
                ImdsError::Disabled => {
                    "the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)"
                        .to_string()
                }
                ImdsError::Unreachable { endpoint, why } => {
                    format!("no answer from the instance metadata service at {endpoint}: {why}")
                }
                ImdsError::Status { .. } | ImdsError::BadEndpoint { .. } => e.to_string(),
            };
            fail!(
                ExitCode::NotFound,
                "cannot tell which Lightsail instance this is, so whose snapshots to consider: {why}; on another machine, give --instance [REGION/]NAME, --all-instances or --all"
            );
        }
    };
    let home;
    let api = if api.region().as_deref() == Some(identity.region.as_str()) {
        api
    } else {
        home = api.for_region(&identity.region)?;
        &home
    };
    let instances = api
        .get_instances()
        .await
        .context("listing Lightsail instances to find this one")?;
    let me = crate::snap::plan::this_instance(&instances, &identity)?;
    Ok(Owner::new(identity.region, me.name.clone()))
}

/// The options that widen a command past this instance's snapshots.
#[derive(Debug, Clone, Args)]
pub struct OwnerArgs {
    /// Consider every snapshot, whoever made it (other instances', untagged ones made by hand
    /// or by a lightsnap older than the lightsnap:owner tag; never automatic ones for
    /// deletion); the output names each one's owner.
    #[arg(long, conflicts_with_all = ["instance", "all_instances"])]
    pub all: bool,
    /// Consider another instance's snapshots instead of this one's: NAME (an instance of the
    /// region worked in) or REGION/NAME (for copies of its snapshots in another region), as
    /// its lightsnap:owner tag says; no metadata service needed (an administrator's machine).
    #[arg(long, value_name = "[REGION/]NAME", value_parser = parse_instance, conflicts_with = "all_instances")]
    pub instance: Option<InstanceArg>,
    /// Consider every instance's snapshots (those with a lightsnap:owner tag), each
    /// instance's apart; never untagged ones. No metadata service needed.
    #[arg(long)]
    pub all_instances: bool,
}

/// An instance named with `--instance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceArg {
    /// Its region, when given.
    pub region: Option<String>,
    /// Its Lightsail name.
    pub name: String,
}

fn parse_instance(text: &str) -> Result<InstanceArg, String> {
    let (region, name) = match text.split_once('/') {
        Some((r, n)) => {
            validate::region(r).map_err(|e| e.to_string())?;
            (Some(r.to_string()), n)
        }
        None => (None, text),
    };
    validate::name("instance name", name).map_err(|e| e.to_string())?;
    Ok(InstanceArg {
        region,
        name: name.to_string(),
    })
}

impl OwnerArgs {
    /// Whose snapshots to consider, for a command working in `api`'s region.
    pub async fn scope(&self, api: &SdkLightsail) -> Result<Scope> {
        if self.all {
            return Ok(Scope::All);
        }
        if self.all_instances {
            return Ok(Scope::AllInstances);
        }
        if let Some(i) = &self.instance {
            let region = match (&i.region, api.region()) {
                (Some(r), _) => r.clone(),
                (None, Some(r)) => r,
                (None, None) => anyhow::bail!("no region to name instance {} in", i.name),
            };
            return Ok(Scope::Owner(Owner::new(region, i.name.clone())));
        }
        Ok(Scope::Owner(this_owner(api).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rehearsal's owner (its scratch disks' tag) is the same value discovery gives: the
    /// region is the zone's without its letter.
    #[test]
    fn a_rehearsals_owner_is_the_zones_region_and_the_instance() {
        let me = crate::restore::Me {
            instance: "web-1".into(),
            availability_zone: "ap-southeast-2c".into(),
            used_paths: Vec::new(),
        };
        assert_eq!(me.owner().value(), "ap-southeast-2/web-1");
    }

    #[test]
    fn an_instance_is_a_name_or_region_slash_name() {
        assert_eq!(
            parse_instance("web-1"),
            Ok(InstanceArg {
                region: None,
                name: "web-1".into()
            })
        );
        assert_eq!(
            parse_instance("eu-west-2/web-1"),
            Ok(InstanceArg {
                region: Some("eu-west-2".into()),
                name: "web-1".into()
            })
        );
        for bad in ["", "-web", "EU/web-1", "eu-west-2/", "a/b/c"] {
            assert!(parse_instance(bad).is_err(), "{bad:?}");
        }
    }
}
