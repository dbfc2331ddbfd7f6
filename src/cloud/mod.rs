//! The cloud side: the Lightsail API ([`lightsail`]), the instance metadata service
//! ([`imds`]), the API's own input rules checked before anything is frozen ([`validate`]),
//! what the kernel's raw facts about a disk mean on Lightsail's EBS volumes ([`ebs`]), and whose
//! a resource is ([`owner`], the `lightsnap:owner` tag), and the IAM policy lightsnap's keys need
//! ([`policy`]).
//! Nothing here touches the kernel: `ebs` interprets what `crate::kernel::blockdev` reads.

pub mod ebs;
pub mod imds;
pub mod lightsail;
pub mod owner;
pub mod policy;
pub mod validate;
