//! Binary and text ciphertext parsing, then decryption under a fixed key.
fn main() {
    let key = kms_fuzz::fixed_key();
    afl::fuzz!(|data: &[u8]| {
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
