//! The cloud side: the Lightsail API ([`lightsail`]), the instance metadata service
//! ([`imds`]), and the API's own input rules checked before anything is frozen
//! ([`validate`]). Nothing here touches the kernel.

pub mod imds;
pub mod lightsail;
pub mod validate;
