//! `lightsnap iam-policy`: prints the least-privilege IAM policy for lightsnap's keys (the
//! model is `crate::cloud::policy`), ready for
//! `aws iam put-user-policy --policy-document "$(lightsnap iam-policy)"`.

use anyhow::{Context, Result};
use clap::Args;

use super::Globals;
use crate::cloud::lightsail::SdkLightsail;
use crate::cloud::owner::owner_value;
use crate::cloud::policy::{self, Scope, Variant};
use crate::cloud::validate;
use crate::config;
use crate::exit_code::ExitCode;

/// Print the IAM policy lightsnap's keys need.
#[derive(Debug, Args)]
pub struct IamPolicy {
    /// The instance the keys are for [default: this instance, from the metadata service].
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Its region [default: --region's usual sources: `region` in the configuration,
    /// AWS_REGION, the profile, the metadata service].
    #[arg(long)]
    pub region: Option<String>,
    /// No snapshot is ever deleted: a broken-into instance cannot
    /// destroy its own history. Retention then runs elsewhere, with an `--admin` key.
    #[arg(long, group = "variant")]
    pub append_only: bool,
    /// For an administrator's machine: read, and delete snapshots that carry any instance's
    /// ownership tag (`prune --instance NAME`, `--all-instances`); never one without it.
    #[arg(long, group = "variant")]
    pub admin: bool,
    /// The read calls only (`list`, `status`).
    #[arg(long, group = "variant")]
    pub read_only: bool,
    /// A region snapshots are copied to (repeatable) [default: `copy_to_region` in the
    /// configuration]: there a copy, which arrives untagged, may be given this instance's
    /// ownership tag.
    #[arg(long = "copy-region", value_name = "REGION")]
    pub copy_regions: Vec<String>,
    /// A tag key (`*` and `?` match any characters) snapshots and disks may carry besides
    /// `lightsnap:*` (repeatable); the configuration's `[tags]` keys are always allowed.
    #[arg(long = "tag-key", value_name = "KEY")]
    pub tag_keys: Vec<String>,
}

impl IamPolicy {
    /// Runs it.
    pub fn run(self, globals: &Globals) -> Result<ExitCode> {
        let variant = if self.admin {
            Variant::Admin
        } else if self.read_only {
            Variant::ReadOnly
        } else if self.append_only {
            Variant::AppendOnly
        } else {
            Variant::Instance
        };
        if let Some(name) = &self.instance {
            validate::name("instance name", name)?;
        }
        if let Some(region) = &self.region {
            validate::region(region)?;
        }
        for r in &self.copy_regions {
            validate::region(r)?;
        }
        let settings = config::load(&globals.config_root)?;
        let scope = match variant {
            Variant::Admin | Variant::ReadOnly => Scope {
                owner: String::new(),
                tag_keys: Vec::new(),
                copy_regions: Vec::new(),
            },
            Variant::Instance | Variant::AppendOnly => {
                let region = self.region.clone().or(settings.region.clone());
                let (region, instance) =
                    crate::runtime()?.block_on(self.whose(region, &settings))?;
                let mut tag_keys: Vec<String> =
                    settings.tags.iter().map(|(k, _)| k.clone()).collect();
                tag_keys.extend(self.tag_keys.iter().cloned());
                tag_keys.sort();
                tag_keys.dedup();
                let mut copy_regions = self.copy_regions.clone();
                if copy_regions.is_empty() {
                    copy_regions.extend(settings.copy_to_region.clone());
                }
                Scope {
                    owner: owner_value(&region, &instance),
                    tag_keys,
                    copy_regions,
                }
            }
        };
        let policy = policy::policy(variant, &scope);
        let size = policy.size();
        if size > policy::INLINE_USER_POLICY_LIMIT {
            eprintln!(
                "lightsnap: warning: this policy is {size} characters, over the {} a user's inline policies may total: attach it as a managed policy instead (`aws iam create-policy --policy-name lightsnap-NAME --policy-document file://POLICY`, then `aws iam attach-user-policy`)",
                policy::INLINE_USER_POLICY_LIMIT
            );
        }
        println!("{}", serde_json::to_string_pretty(&policy.to_json())?);
        Ok(ExitCode::Success)
    }

    /// The region and name of the instance the policy is for: `--instance` (its region the
    /// usual way), else this instance, by the metadata service and GetInstances.
    async fn whose(
        &self,
        region: Option<String>,
        settings: &config::Settings,
    ) -> Result<(String, String)> {
        let api = SdkLightsail::from_env(region, settings.profile.clone()).await?;
        if let Some(name) = &self.instance {
            let region = api
                .region()
                .context("finding the region of --instance: give --region")?;
            return Ok((region, name.clone()));
        }
        let me = super::owner::this_owner(&api).await.context(
            "give --instance NAME (and --region) to print the policy for another instance",
        )?;
        Ok((me.region, me.instance))
    }
}
