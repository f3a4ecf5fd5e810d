//! The conformance suite against the in-memory provider, which rotates like
//! the cloud providers (so the suite's rotation checks run here too).

use std::sync::Arc;

use kms::KeyId;
use kms_testing::MemoryProvider;
use kms_tests::conformance::{self, Expect};

#[tokio::test]
async fn memory_provider_conformance() {
    let id = KeyId::new("conformance").unwrap();
    conformance::run(
        Arc::new(MemoryProvider::with_key(id.clone())),
        &id,
        Expect { rotates: true },
    )
    .await;
}
