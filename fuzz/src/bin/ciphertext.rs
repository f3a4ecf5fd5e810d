//! Binary and text ciphertext parsing (the full parser, and the fast path
//! for a known key against it), then decryption under a fixed key.
fn main() {
    let key = kms_fuzz::fixed_key();
    afl::fuzz!(|data: &[u8]| {
        if let Some(fast) = kms_core::Envelope::parse_under(data, &key) {
            // The decryption fast path answers what the full parser does.
            let full = kms_core::Envelope::parse(data).map(|e| format!("{e:?}"));
            assert_eq!(full.map_err(|e| e.to_string()), Ok(format!("{fast:?}")));
        }
        if let Ok(envelope) = kms_core::Envelope::parse(data) {
            let _ = envelope.key_id();
            let _ = envelope.key_version();
            let _ = kms_core::crypto::open(&key, &envelope, b"aad");
        }
        if let Ok(text) = std::str::from_utf8(data)
            && let Ok(binary) = kms_core::format::from_text(text)
            && let Ok(envelope) = kms_core::Envelope::parse(&binary)
        {
            let _ = kms_core::crypto::open(&key, &envelope, b"");
        }
    });
}
