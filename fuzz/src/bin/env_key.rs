//! The env provider's key parser: `ENCRYPTION_KEY` and the comma-separated
//! `ENCRYPTION_KEY_PREVIOUS` (hex keys, development passphrases, typos).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let (current, previous) = match text.split_once('\n') {
            Some((c, p)) => (c.to_owned(), Some(p.to_owned())),
            None => (text.into_owned(), None),
        };
        if let Ok(builder) = kms_env::EnvProviderBuilder::from_lookup(|name| match name {
            "ENCRYPTION_KEY" => Some(current.clone()),
            "ENCRYPTION_KEY_PREVIOUS" => previous.clone(),
            _ => None,
        }) {
            let _ = builder.build();
        }
    });
}
