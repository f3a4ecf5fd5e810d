//! Building the provider stack and the [`Kms`]: the one place that knows
//! the order of the layers (documented on [`KmsBuilder`]). The layers and the
//! client never import the builder.

use std::sync::Arc;

use kms_cache::CachingProvider;
use kms_circuit::ResilientProvider;
use kms_core::Result;
use kms_telemetry::MeteredProvider;

use super::KmsBuilder;
use crate::client::{Kms, Stack};

impl KmsBuilder {
    /// Builds the provider and the [`Kms`].
    ///
    /// # Errors
    /// [`Error::Config`](kms_core::Error::Config) when the provider's settings are invalid or the
    /// provider was not compiled in (the message names the cargo feature).
    pub async fn build(self) -> Result<Kms> {
        let config = self.config();
        let layered = self.provider.layered();
        let provider = self.provider.build(&self.key_id).await?;
        let stack = if layered {
            // Innermost first: resilience, then metrics, then the cache.
            let guarded = Arc::new(ResilientProvider::from_arc(provider, self.resilience));
            let metered = Arc::new(MeteredProvider::from_arc(guarded.clone(), self.telemetry));
            let cached = Arc::new(CachingProvider::from_arc(metered, self.cache));
            Stack {
                top: cached.clone(),
                cache: Some(cached),
                circuit: Some(guarded),
            }
        } else {
            Stack {
                top: provider,
                cache: None,
                circuit: None,
            }
        };
        let lifecycle = self
            .lifecycle
            .start(&stack.top, stack.uncached(), &self.key_id)
            .await?;
        Ok(Kms::from_parts(
            stack,
            self.key_id,
            self.iv_length,
            config,
            lifecycle,
        ))
    }
}

impl Kms {
    /// A builder with the documented defaults.
    #[must_use]
    pub fn builder() -> KmsBuilder {
        KmsBuilder::new()
    }

    /// Builds from the spec's environment variables (see [`KmsBuilder`]).
    ///
    /// # Errors
    /// [`Error::Config`](kms_core::Error::Config) naming the variable at fault.
    pub async fn from_env() -> Result<Self> {
        KmsBuilder::from_env()?.build().await
    }
}
