//! `lightsnap fleet`: every instance of the account in the given regions, each disk's newest
//! lightsnap snapshot (by the ownership tag) with its age, consistency, verification and
//! copies; instances without lightsnap; the automatic-snapshot add-on where it overlaps.
//! Read-only (GetRegions, GetInstances, GetDiskSnapshots, GetInstanceSnapshots, every page),
//! from any machine with read permissions (`lightsnap iam-policy --read-only`); regions are
//! listed in parallel. With `--max-age` it is a Nagios-style check: exit 2 naming the stale
//! disks.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use super::{Globals, Output};
use crate::cloud::lightsail::{all_snapshots, Lightsail, SdkLightsail};
use crate::cloud::validate;
use crate::config;
use crate::exit_code::ExitCode;
use crate::fleet::{self, RegionListing};

/// The fleet's snapshots, from the Lightsail API.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  lightsnap fleet --region us-east-1 --region eu-west-2
  lightsnap fleet --all-regions --output json > fleet.json
  lightsnap fleet --all-regions --max-age 26h     # exit 2 naming the stale disks")]
pub struct Fleet {
    /// A region to list; repeatable (default: the configured region).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// List every region Lightsail is in (GetRegions).
    #[arg(long, conflicts_with = "regions")]
    pub all_regions: bool,
    /// Fail (exit 2, CRITICAL) when a disk lightsnap snapshots has no snapshot younger than
    /// this (such as 26h), naming each.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub max_age: Option<Duration>,
}

impl Fleet {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        for r in &self.regions {
            validate::region(r)?;
        }
        let settings = config::load(&globals.config_root)?;
        let profile = settings.profile.clone();
        crate::runtime()?.block_on(async {
            let regions = if self.all_regions {
                let api = SdkLightsail::from_env(settings.region.clone(), profile.clone()).await?;
                api.regions()
                    .await
                    .context("listing Lightsail's regions (GetRegions)")?
            } else if self.regions.is_empty() {
                // The configured region ("" lets the SDK's own chain find it).
                vec![settings.region.clone().unwrap_or_default()]
            } else {
                self.regions.clone()
            };
            let listings = futures_util::future::join_all(
                regions
                    .iter()
                    .map(|r| list_region((!r.is_empty()).then(|| r.clone()), profile.clone())),
            )
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let report = fleet::report(&listings, now, self.max_age);
            let critical = self.max_age.is_some() && !report.stale.is_empty();
            if globals.output == Output::Json {
                super::print_json(&report)?;
            } else {
                if let Some(limit) = self.max_age {
                    let limit = humantime::format_duration(limit);
                    if critical {
                        println!(
                            "CRITICAL: {} disk(s) with no lightsnap snapshot younger than {limit}: {}",
                            report.stale.len(),
                            report.stale.join(", ")
                        );
                    } else {
                        println!("OK: every disk lightsnap snapshots has one younger than {limit}");
                    }
                }
                print!("{}", fleet::table(&report));
            }
            Ok(if critical {
                super::check::CRITICAL
            } else {
                ExitCode::Success
            })
        })
    }
}

/// One region's instances and snapshots (`region` None: the configured one).
async fn list_region(region: Option<String>, profile: Option<String>) -> Result<RegionListing> {
    let api = SdkLightsail::from_env(region, profile).await?;
    let region = api.region().unwrap_or_default();
    let (instances, snapshots) =
        futures_util::future::join(api.get_instances(), all_snapshots(&api)).await;
    Ok(RegionListing {
        instances: instances.with_context(|| format!("listing the instances of {region}"))?,
        snapshots: snapshots.with_context(|| format!("listing the snapshots of {region}"))?,
        region,
    })
}
