//! [`Lightsail`] on the real SDK: configuration (the region and endpoint checked before any
//! call), the calls, and every SDK error sorted into an [`ApiErrorKind`] (`classify`).

mod classify;
mod convert;
mod operations;
mod storage;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

use convert::{
    auto_snapshot_add_on, disk_info, instance_snapshot_info, operation_result, sdk_tags,
    snapshot_info,
};

use super::{
    ApiError, ApiErrorKind, DiskInfo, DiskState, InstanceInfo, InstanceSnapshotDetails, Lightsail,
    NewDisk, NewInstance, OperationInfo, SnapshotInfo, SnapshotKind, SnapshotRequest, Source,
};

/// No AWS region is configured anywhere.
#[derive(Debug, thiserror::Error)]
#[error("no AWS region found: set --region, `region` in /etc/lightsnap/config.toml, AWS_REGION, or `region` in the AWS profile (on a Lightsail instance the metadata service gives it, if it can be reached)")]
pub struct NoRegion;

pub use operations::{FLEET_OPERATIONS, OPERATIONS};

/// The application name lightsnap's calls carry in their user agent (`app/lightsnap`).
pub const APP_NAME: &str = "lightsnap";

/// The real thing, on `aws-sdk-lightsail`.
#[derive(Debug, Clone)]
pub struct SdkLightsail {
    client: aws_sdk_lightsail::Client,
    config: aws_config::SdkConfig,
    /// The client each snapshot request of the window goes through, by snapshot name: see
    /// [`Lightsail::warm_up`].
    lanes: Arc<Mutex<Vec<(String, aws_sdk_lightsail::Client)>>>,
    /// The endpoint calls go to, for messages.
    endpoint: String,
}

/// The endpoint override from the environment, checked, with the variable that set it.
fn endpoint_override() -> Result<Option<String>, crate::cloud::validate::InvalidInput> {
    for var in ["AWS_ENDPOINT_URL_LIGHTSAIL", "AWS_ENDPOINT_URL"] {
        if let Some(url) = std::env::var_os(var) {
            let url = url.to_string_lossy().into_owned();
            crate::cloud::validate::endpoint(var, &url)?;
            return Ok(Some(url));
        }
    }
    Ok(None)
}

/// Timeouts for calls made outside the frozen window.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(20);

/// The connect timeout of every call, the one inside the window included. The SDK's HTTP
/// client keeps one connector — one connection pool — per (connect timeout, read timeout)
/// pair: a call made with other connector settings than the warm-up never gets the warm
/// connection, and pays DNS, TCP and TLS while writes are paused. Per-call budgets change only
/// the operation and attempt timeouts, which are not the connector's.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl SdkLightsail {
    /// Region, endpoint and credentials the standard way (`AWS_REGION`, `AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL_LIGHTSAIL`, the shared config files); `region` overrides. Credentials
    /// come from the environment or the profile only: never from IMDS, which on Lightsail has
    /// none to give and would only add a slow failure.
    pub async fn from_env(region: Option<String>, profile: Option<String>) -> anyhow::Result<Self> {
        let credentials = CredentialsProviderChain::first_try(
            "Environment",
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else("Profile", {
            let mut p = aws_config::profile::ProfileFileCredentialsProvider::builder();
            if let Some(name) = &profile {
                p = p.profile_name(name);
            }
            p.build()
        });
        // `app/lightsnap` in the user agent: CloudTrail (and the tests' fake) tell
        // lightsnap's calls from other clients' with the same keys.
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .app_name(aws_config::AppName::new(APP_NAME).expect("a valid app name"))
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(PREPARE_TIMEOUT)
                    .build(),
            );
        let endpoint = endpoint_override()?;
        if let Some(region) = region {
            crate::cloud::validate::region(&region)?;
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let Some(region) = config.region() else {
            return Err(NoRegion.into());
        };
        // From AWS_REGION or the profile: checked here, as --region is above.
        crate::cloud::validate::region(region.as_ref())?;
        let endpoint = endpoint
            .or_else(|| config.endpoint_url().map(str::to_string))
            .unwrap_or_else(|| format!("https://lightsail.{region}.amazonaws.com"));
        Ok(Self {
            client: aws_sdk_lightsail::Client::new(&config),
            config,
            lanes: Arc::default(),
            endpoint,
        })
    }
}

impl SdkLightsail {
    /// GetRegions: the names of every region Lightsail is in (for `lightsnap fleet
    /// --all-regions`).
    pub async fn regions(&self) -> Result<Vec<String>, ApiError> {
        let out = self
            .client
            .get_regions()
            .send()
            .await
            .map_err(|e| self.classify("GetRegions", e))?;
        Ok(out
            .regions()
            .iter()
            .filter_map(|r| r.name().map(|n| n.as_str().to_string()))
            .collect())
    }
}

/// Timeouts and retries that fit every attempt of a call inside `budget`, on the same
/// connector as every other call (see [`CONNECT_TIMEOUT`]; an attempt is bounded by its own
/// timeout, connecting included).
fn budget_config(budget: Duration) -> aws_sdk_lightsail::config::Builder {
    let attempt = (budget / 2).max(Duration::from_millis(100));
    aws_sdk_lightsail::config::Builder::default()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(attempt)
                .operation_timeout(budget)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff((budget / 10).max(Duration::from_millis(20))),
        )
}

/// GetDiskSnapshot or GetInstanceSnapshot through `client`; `Ok(None)` when there is none.
async fn get_snapshot(
    client: &aws_sdk_lightsail::Client,
    endpoint: &str,
    kind: SnapshotKind,
    name: &str,
) -> Result<Option<SnapshotInfo>, ApiError> {
    let found = match kind {
        SnapshotKind::Disk => client
            .get_disk_snapshot()
            .disk_snapshot_name(name)
            .send()
            .await
            .map(|out| out.disk_snapshot().map(snapshot_info))
            .map_err(|e| classify::classify("GetDiskSnapshot", endpoint, e)),
        SnapshotKind::Instance => client
            .get_instance_snapshot()
            .instance_snapshot_name(name)
            .send()
            .await
            .map(|out| out.instance_snapshot().map(instance_snapshot_info))
            .map_err(|e| classify::classify("GetInstanceSnapshot", endpoint, e)),
    };
    match found {
        Err(e) if e.kind == ApiErrorKind::NotFound => Ok(None),
        other => other,
    }
}

/// Every page of a list operation: `page` fetches the page after a token (none: the first)
/// and returns its items and the next token. The SDK has no paginators for Lightsail.
async fn every_page<T, F, Fut>(mut page: F) -> Result<Vec<T>, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), ApiError>>,
{
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = page(token.take()).await?;
        all.extend(items);
        match next {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(all),
        }
    }
}

impl SdkLightsail {
    /// The [`ApiError`] of a failed call, in plain words naming this endpoint.
    fn classify<E>(
        &self,
        operation: &'static str,
        err: aws_sdk_lightsail::error::SdkError<E, aws_sdk_lightsail::config::http::HttpResponse>,
    ) -> ApiError
    where
        E: aws_sdk_lightsail::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        classify::classify(operation, &self.endpoint, err)
    }
}

impl Lightsail for SdkLightsail {
    async fn get_disk(&self, name: &str) -> Result<DiskInfo, ApiError> {
        let out = self
            .client
            .get_disk()
            .disk_name(name)
            .send()
            .await
            .map_err(|e| self.classify("GetDisk", e))?;
        out.disk().map(disk_info).ok_or_else(|| ApiError {
            operation: "GetDisk",
            kind: ApiErrorKind::NotFound,
            code: None,
            message: format!("no disk named {name} in the answer"),
        })
    }

    async fn get_instances(&self) -> Result<Vec<InstanceInfo>, ApiError> {
        every_page(|token| async {
            let out = self
                .client
                .get_instances()
                .set_page_token(token)
                .send()
                .await
                .map_err(|e| self.classify("GetInstances", e))?;
            let items = out
                .instances()
                .iter()
                .map(|i| InstanceInfo {
                    name: i.name().unwrap_or_default().to_string(),
                    support_code: i.support_code().map(str::to_string),
                    disks: i
                        .hardware()
                        .map(|h| h.disks().iter().map(disk_info).collect())
                        .unwrap_or_default(),
                    auto_snapshot: auto_snapshot_add_on(i.add_ons()),
                })
                .collect();
            Ok((items, out.next_page_token().map(str::to_string)))
        })
        .await
    }

    async fn create_snapshot(
        &self,
        request: &SnapshotRequest,
        budget: Duration,
    ) -> Result<OperationInfo, ApiError> {
        // The lane warmed up for this request, where there is one.
        let lane = self
            .lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(name, _)| *name == request.name)
            .map(|(_, client)| client.clone());
        let client = lane.as_ref().unwrap_or(&self.client);
        if let Source::Instance(instance) = &request.source {
            let out = client
                .create_instance_snapshot()
                .instance_name(instance)
                .instance_snapshot_name(&request.name)
                .set_tags(Some(sdk_tags(&request.tags)))
                .customize()
                .config_override(budget_config(budget))
                .send()
                .await
                .map_err(|e| self.classify("CreateInstanceSnapshot", e))?;
            return operation_result("CreateInstanceSnapshot", out.operations());
        }
        let mut call = client
            .create_disk_snapshot()
            .disk_snapshot_name(&request.name)
            .set_tags(Some(sdk_tags(&request.tags)));
        call = match &request.source {
            Source::Disk(d) => call.disk_name(d),
            Source::SystemVolume(i) | Source::Instance(i) => call.instance_name(i),
        };
        let out = call
            .customize()
            .config_override(budget_config(budget))
            .send()
            .await
            .map_err(|e| self.classify("CreateDiskSnapshot", e))?;
        operation_result("CreateDiskSnapshot", out.operations())
    }

    async fn auto_snapshot_in_progress(&self, resource: &str) -> Result<bool, ApiError> {
        let out = self
            .client
            .get_auto_snapshots()
            .resource_name(resource)
            .send()
            .await
            .map_err(|e| self.classify("GetAutoSnapshots", e))?;
        Ok(out
            .auto_snapshots()
            .iter()
            .any(|a| a.status() == Some(&aws_sdk_lightsail::types::AutoSnapshotStatus::InProgress)))
    }

    async fn tag_resource(&self, name: &str, tags: &[(String, String)]) -> Result<(), ApiError> {
        self.client
            .tag_resource()
            .resource_name(name)
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await
            .map_err(|e| self.classify("TagResource", e))?;
        Ok(())
    }

    async fn get_snapshot(
        &self,
        kind: SnapshotKind,
        name: &str,
    ) -> Result<Option<SnapshotInfo>, ApiError> {
        get_snapshot(&self.client, &self.endpoint, kind, name).await
    }

    /// A lane per request: the first rides on the client discovery warmed, each other gets a
    /// client of its own — its own connection pool — whose one connection this call opens
    /// and uses. The window's calls, made together, then each find an idle connection (one
    /// pool shared by calls made at once may open a new connection for the second one inside
    /// the window, whatever the warm-up did).
    async fn warm_up(
        &self,
        requests: &[SnapshotRequest],
    ) -> Result<Vec<Option<SnapshotInfo>>, ApiError> {
        let lanes: Vec<(String, aws_sdk_lightsail::Client)> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let client = if i == 0 {
                    self.client.clone()
                } else {
                    aws_sdk_lightsail::Client::new(&self.config)
                };
                (r.name.clone(), client)
            })
            .collect();
        let asked = lanes
            .iter()
            .zip(requests)
            .map(|((_, client), r)| get_snapshot(client, &self.endpoint, r.source.kind(), &r.name));
        let found = futures_util::future::join_all(asked)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        *self.lanes.lock().unwrap_or_else(|p| p.into_inner()) = lanes;
        Ok(found)
    }

    async fn get_snapshots(&self, kind: SnapshotKind) -> Result<Vec<SnapshotInfo>, ApiError> {
        every_page(|token| async move {
            match kind {
                SnapshotKind::Disk => {
                    let out = self
                        .client
                        .get_disk_snapshots()
                        .set_page_token(token)
                        .send()
                        .await
                        .map_err(|e| self.classify("GetDiskSnapshots", e))?;
                    let items = out.disk_snapshots().iter().map(snapshot_info).collect();
                    Ok((items, out.next_page_token().map(str::to_string)))
                }
                SnapshotKind::Instance => {
                    let out = self
                        .client
                        .get_instance_snapshots()
                        .set_page_token(token)
                        .send()
                        .await
                        .map_err(|e| self.classify("GetInstanceSnapshots", e))?;
                    let items = out
                        .instance_snapshots()
                        .iter()
                        .map(instance_snapshot_info)
                        .collect();
                    Ok((items, out.next_page_token().map(str::to_string)))
                }
            }
        })
        .await
    }

    async fn delete_snapshot(&self, kind: SnapshotKind, name: &str) -> Result<(), ApiError> {
        match kind {
            SnapshotKind::Disk => self
                .client
                .delete_disk_snapshot()
                .disk_snapshot_name(name)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.classify("DeleteDiskSnapshot", e)),
            SnapshotKind::Instance => self
                .client
                .delete_instance_snapshot()
                .instance_snapshot_name(name)
                .send()
                .await
                .map(drop)
                .map_err(|e| self.classify("DeleteInstanceSnapshot", e)),
        }
    }
    async fn disk_state(&self, name: &str) -> Result<Option<DiskState>, ApiError> {
        self.sdk_disk_state(name).await
    }

    async fn get_disks(&self) -> Result<Vec<DiskState>, ApiError> {
        self.sdk_get_disks().await
    }

    async fn create_disk_from_snapshot(&self, disk: &NewDisk) -> Result<OperationInfo, ApiError> {
        self.sdk_create_disk_from_snapshot(disk).await
    }

    async fn instance_snapshot_details(
        &self,
        name: &str,
    ) -> Result<Option<InstanceSnapshotDetails>, ApiError> {
        self.sdk_instance_snapshot_details(name).await
    }

    async fn create_instances_from_snapshot(
        &self,
        new: &NewInstance,
    ) -> Result<OperationInfo, ApiError> {
        self.sdk_create_instances_from_snapshot(new).await
    }

    async fn attach_disk(
        &self,
        disk: &str,
        instance: &str,
        path: &str,
    ) -> Result<OperationInfo, ApiError> {
        self.sdk_attach_disk(disk, instance, path).await
    }

    async fn detach_disk(&self, disk: &str) -> Result<OperationInfo, ApiError> {
        self.sdk_detach_disk(disk).await
    }

    async fn delete_disk(&self, disk: &str) -> Result<OperationInfo, ApiError> {
        self.sdk_delete_disk(disk).await
    }

    async fn copy_snapshot(
        &self,
        source_region: &str,
        source: &str,
        target: &str,
    ) -> Result<OperationInfo, ApiError> {
        self.sdk_copy_snapshot(source_region, source, target).await
    }
}
