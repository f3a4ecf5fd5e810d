//! IVs and new keys stay unique across `fork()`: a host process that forks
//! after its first encryption must not draw the same IVs (GCM nonce reuse)
//! or the same keys in parent and child. Its own test binary with a single
//! test: the fork happens with no other test thread running.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::collections::HashSet;

use kms_core::crypto;
use kms_core::{DataKey, Envelope, IvLength, KeyId, KeyMaterial, KeyVersion};

const DRAWS: usize = 200;

fn ivs(key: &DataKey, len: IvLength) -> Vec<Vec<u8>> {
    (0..DRAWS)
        .map(|_| {
            let ct = crypto::seal(key, len, b"fork", b"").unwrap();
            Envelope::parse(&ct).unwrap().iv().to_vec()
        })
        .collect()
}

/// What one process draws after the fork: IVs of both lengths and a key.
fn draws(key: &DataKey) -> Vec<Vec<u8>> {
    let mut out = ivs(key, IvLength::Twelve);
    out.extend(ivs(key, IvLength::Sixteen));
    out.push(KeyMaterial::generate().expose_secret().to_vec());
    out
}

#[test]
fn ivs_and_keys_differ_in_parent_and_child_after_fork() {
    let key = DataKey::new(
        KeyId::default(),
        KeyVersion::from(1),
        KeyMaterial::from_bytes([7; 32]),
    );
    // The generator is in use before the fork, as in a host process.
    let before = draws(&key);
    let path = std::env::temp_dir().join(format!("kms-fork-{}", std::process::id()));
    match fork::fork().unwrap() {
        fork::Fork::Child => {
            // Never unwind into the test harness's copy in the child.
            let code = match std::panic::catch_unwind(|| draws(&key).concat()) {
                Ok(bytes) => i32::from(std::fs::write(&path, bytes).is_err()),
                Err(_) => 2,
            };
            std::process::exit(code);
        }
        fork::Fork::Parent(child) => {
            let parent = draws(&key);
            let status = fork::waitpid(child).unwrap();
            assert_eq!(status, 0, "the child failed");
            let child_bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            // Split the child's draws as they were written.
            let mut child_draws = Vec::new();
            let mut rest = child_bytes.as_slice();
            for d in &parent {
                let (head, tail) = rest.split_at(d.len());
                child_draws.push(head.to_vec());
                rest = tail;
            }
            assert!(rest.is_empty());
            let parent_set: HashSet<&Vec<u8>> = parent.iter().chain(&before).collect();
            let repeated = child_draws
                .iter()
                .filter(|d| parent_set.contains(d))
                .count();
            assert_eq!(
                repeated,
                0,
                "{repeated} of {} draws of the child repeat the parent's",
                child_draws.len()
            );
        }
    }
}
