//! The ciphertext format, version 1 (a public contract: see `docs/FORMAT.md`).
//!
//! ```text
//! offset      size  field
//! 0           2     magic "KM" (0x4B 0x4D)
//! 2           1     format version (0x01)
//! 3           1     IV length n (12 or 16)
//! 4           1     key id length L (1..=128)
//! 5           L     key id (ASCII: A-Z a-z 0-9 _ -)
//! 5+L         1     key version length V (1..=64)
//! 6+L         V     key version (ASCII: A-Z a-z 0-9 _ - . :)
//! 6+L+V       8     key fingerprint
//! 14+L+V      n     IV
//! 14+L+V+n    m     AES-256-GCM ciphertext (m = plaintext length)
//! end-16      16    GCM tag
//! ```
//!
//! The header is everything before the ciphertext, IV included. The GCM
//! associated data is `header || caller AAD`, so changing any header byte
//! fails authentication. The text form is `kms:v1:` followed by the binary
//! form in unpadded base64url.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::error::{Error, Result};
use crate::key::{
    DataKey, FINGERPRINT_LEN, Fingerprint, KeyId, KeyVersion, MAX_KEY_ID_LEN, MAX_KEY_VERSION_LEN,
    is_valid_key_id, is_valid_key_version,
};

/// The two magic bytes that start every binary ciphertext: `KM`.
pub const MAGIC: [u8; 2] = *b"KM";

/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 1;

/// Length of the GCM authentication tag.
pub const TAG_LEN: usize = 16;

/// Prefix of the text form: `kms:`, then `v<format version>:`.
pub const TEXT_PREFIX: &str = "kms:";

/// Base64url, written without padding, read with or without it.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Length of the IV (GCM nonce) drawn for each encryption.
///
/// The default is 12 bytes (96 bits), as NIST SP 800-38D recommends: a 96-bit
/// IV is used directly as the counter block, while any other length is first
/// hashed through GHASH, which weakens GCM's proven security bounds (Iwata,
/// Ohashi and Minematsu, CRYPTO 2012), costs throughput, and is not offered by
/// the fastest AES-GCM implementations. 16 bytes is supported because the spec
/// names it (`KMS_IV_LENGTH=16`). The header records the length, so
/// ciphertexts of both kinds always decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum IvLength {
    /// 12-byte (96-bit) IV. The default.
    #[default]
    Twelve,
    /// 16-byte (128-bit) IV, as in the spec.
    Sixteen,
}

impl IvLength {
    /// The length in bytes.
    #[must_use]
    pub const fn size(self) -> usize {
        match self {
            IvLength::Twelve => 12,
            IvLength::Sixteen => 16,
        }
    }

    /// The IV length for a byte count, if it is supported.
    #[must_use]
    pub const fn from_len(n: usize) -> Option<Self> {
        match n {
            12 => Some(IvLength::Twelve),
            16 => Some(IvLength::Sixteen),
            _ => None,
        }
    }
}

/// A parsed, borrowed view of a binary ciphertext. Parsing checks the
/// structure only; authenticity is checked by decryption.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    version: u8,
    key_id: &'a str,
    key_version: &'a str,
    fingerprint: Fingerprint,
    iv: &'a [u8],
    header: &'a [u8],
    ciphertext: &'a [u8],
    tag: &'a [u8; TAG_LEN],
}

/// Why a binary ciphertext does not parse: two words wide, so that the
/// parser's intermediate results stay small (it is on every decryption's
/// path); turned into an [`Error`] once, at the end.
#[derive(Debug, Clone, Copy)]
enum Invalid {
    Malformed(&'static str),
    Version(u8),
}

impl From<Invalid> for Error {
    fn from(invalid: Invalid) -> Self {
        match invalid {
            Invalid::Malformed(reason) => Error::malformed(reason),
            Invalid::Version(version) => Error::UnsupportedFormatVersion { version },
        }
    }
}

type Parsed<T> = std::result::Result<T, Invalid>;

/// Takes `n` bytes off the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize, what: &'static str) -> Parsed<&'a [u8]> {
    let (head, rest) = input.split_at_checked(n).ok_or(Invalid::Malformed(what))?;
    *input = rest;
    Ok(head)
}

fn take_u8(input: &mut &[u8], what: &'static str) -> Parsed<u8> {
    let (first, rest) = input.split_first().ok_or(Invalid::Malformed(what))?;
    *input = rest;
    Ok(*first)
}

impl<'a> Envelope<'a> {
    /// Parses a binary ciphertext without allocating.
    ///
    /// # Errors
    /// [`Error::MalformedCiphertext`] or [`Error::UnsupportedFormatVersion`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        Self::parse_raw(bytes).map_err(Error::from)
    }

    fn parse_raw(bytes: &'a [u8]) -> Parsed<Self> {
        let mut rest = bytes;
        if take(&mut rest, MAGIC.len(), "too short for a ciphertext")? != MAGIC {
            return Err(Invalid::Malformed("not a kms ciphertext (bad magic bytes)"));
        }
        let version = take_u8(&mut rest, "too short for a ciphertext")?;
        if version != FORMAT_VERSION {
            return Err(Invalid::Version(version));
        }
        let iv_len = take_u8(&mut rest, "truncated header")?;
        let iv_len = IvLength::from_len(usize::from(iv_len))
            .ok_or(Invalid::Malformed("unsupported IV length"))?
            .size();

        let id_len = usize::from(take_u8(&mut rest, "truncated header")?);
        if id_len == 0 || id_len > MAX_KEY_ID_LEN {
            return Err(Invalid::Malformed("invalid key id length"));
        }
        let key_id = ascii(
            take(&mut rest, id_len, "truncated key id")?,
            "invalid key id",
        )?;
        if !is_valid_key_id(key_id) {
            return Err(Invalid::Malformed("invalid key id"));
        }

        let ver_len = usize::from(take_u8(&mut rest, "truncated header")?);
        if ver_len == 0 || ver_len > MAX_KEY_VERSION_LEN {
            return Err(Invalid::Malformed("invalid key version length"));
        }
        let key_version = ascii(
            take(&mut rest, ver_len, "truncated key version")?,
            "invalid key version",
        )?;
        if !is_valid_key_version(key_version) {
            return Err(Invalid::Malformed("invalid key version"));
        }

        let fp: [u8; FINGERPRINT_LEN] = take(&mut rest, FINGERPRINT_LEN, "truncated header")?
            .try_into()
            .map_err(|_| Invalid::Malformed("truncated header"))?;
        let iv = take(&mut rest, iv_len, "truncated IV")?;
        let header_len = bytes.len() - rest.len();
        let header = bytes
            .get(..header_len)
            .ok_or(Invalid::Malformed("truncated header"))?;

        let ct_len = rest
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Invalid::Malformed("truncated authentication tag"))?;
        let (ciphertext, tag) = rest.split_at(ct_len);
        let tag: &[u8; TAG_LEN] = tag
            .try_into()
            .map_err(|_| Invalid::Malformed("truncated authentication tag"))?;

        Ok(Envelope {
            version,
            key_id,
            key_version,
            fingerprint: Fingerprint::from_bytes(fp),
            iv,
            header,
            ciphertext,
            tag,
        })
    }

    /// Parses `bytes` if they are a ciphertext written under `key` (its key
    /// id, version and fingerprint in the header), comparing the header
    /// with the one `key` writes instead of reading it field by field:
    /// the decryption fast path for the key a cache holds. `None` when the
    /// header is not `key`'s or the ciphertext is malformed; then
    /// [`Envelope::parse`] says what the bytes are. When it answers, it
    /// answers what [`Envelope::parse`] would.
    #[must_use]
    pub fn parse_under(bytes: &'a [u8], key: &'a DataKey) -> Option<Self> {
        let own = key.header();
        let (head, rest) = bytes.split_at_checked(own.len())?;
        let (head_before, head_iv_len, head_after) = split_at_iv_len(head)?;
        let (own_before, _, own_after) = split_at_iv_len(own)?;
        if head_before != own_before || head_after != own_after {
            return None;
        }
        let iv_len = IvLength::from_len(usize::from(head_iv_len))?.size();
        let (iv, rest) = rest.split_at_checked(iv_len)?;
        let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>()?;
        Some(Envelope {
            version: FORMAT_VERSION,
            // The header holds these very strings: borrowed from the key,
            // they need no second validation.
            key_id: key.key_id().as_str(),
            key_version: key.version().as_str(),
            fingerprint: key.fingerprint(),
            iv,
            header: bytes.get(..own.len() + iv_len)?,
            ciphertext,
            tag,
        })
    }

    /// The format version.
    #[must_use]
    pub fn format_version(&self) -> u8 {
        self.version
    }

    /// The key id that encrypted this ciphertext.
    #[must_use]
    pub fn key_id_str(&self) -> &'a str {
        self.key_id
    }

    /// The key id, as a [`KeyId`] (validated by [`Envelope::parse`]).
    ///
    /// # Errors
    /// Never in practice; kept fallible so no panic path exists.
    pub fn key_id(&self) -> Result<KeyId> {
        KeyId::new(self.key_id).map_err(|_| Error::malformed("invalid key id"))
    }

    /// The provider's native key version at encryption time.
    ///
    /// # Errors
    /// Never in practice; kept fallible so no panic path exists.
    pub fn key_version(&self) -> Result<KeyVersion> {
        KeyVersion::new(self.key_version).map_err(|_| Error::malformed("invalid key version"))
    }

    /// The key fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The IV.
    #[must_use]
    pub fn iv(&self) -> &'a [u8] {
        self.iv
    }

    /// The authenticated header (every byte before the ciphertext).
    #[must_use]
    pub fn header(&self) -> &'a [u8] {
        self.header
    }

    /// The ciphertext, without the tag.
    #[must_use]
    pub fn ciphertext(&self) -> &'a [u8] {
        self.ciphertext
    }

    /// The GCM tag.
    #[must_use]
    pub fn tag(&self) -> &'a [u8; TAG_LEN] {
        self.tag
    }
}

fn ascii<'a>(bytes: &'a [u8], what: &'static str) -> Parsed<&'a str> {
    if !bytes.is_ascii() {
        return Err(Invalid::Malformed(what));
    }
    std::str::from_utf8(bytes).map_err(|_| Invalid::Malformed(what))
}

/// Length of the header (IV included) for a key and IV length.
#[must_use]
pub fn header_len(key: &DataKey, iv_len: IvLength) -> usize {
    key.header().len() + iv_len.size()
}

/// Where a header holds the IV's length (after the magic bytes and the
/// format version).
const IV_LEN_AT: usize = MAGIC.len() + 1;

/// A header's bytes before its IV length, that byte, and the bytes after it.
fn split_at_iv_len(header: &[u8]) -> Option<(&[u8], u8, &[u8])> {
    let (before, rest) = header.split_at_checked(IV_LEN_AT)?;
    let (iv_len, after) = rest.split_first()?;
    Some((before, *iv_len, after))
}

/// Appends the header, without the IV, to `out`: the key's own header
/// with the IV's length filled in.
pub(crate) fn write_header(out: &mut Vec<u8>, key: &DataKey, iv_len: IvLength) {
    let start = out.len();
    out.extend_from_slice(key.header());
    if let Some(at) = out.get_mut(start + IV_LEN_AT) {
        *at = u8::try_from(iv_len.size()).unwrap_or(u8::MAX);
    }
}

/// The header a key writes, up to the IV, with 0 for the IV's length
/// (filled in per ciphertext): the magic bytes, the format version, the
/// key id and version with their lengths, and the fingerprint. A
/// [`DataKey`] builds it once (see [`write_header`] and
/// [`Envelope::parse_under`]). Lengths were validated by [`KeyId::new`]
/// and [`KeyVersion::new`], so they fit in a byte.
pub(crate) fn key_header(
    key_id: &KeyId,
    version: &KeyVersion,
    fingerprint: Fingerprint,
) -> Box<[u8]> {
    let id = key_id.as_str().as_bytes();
    let ver = version.as_str().as_bytes();
    let mut header = Vec::with_capacity(IV_LEN_AT + 3 + id.len() + ver.len() + FINGERPRINT_LEN);
    header.extend_from_slice(&MAGIC);
    header.push(FORMAT_VERSION);
    header.push(0);
    header.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    header.extend_from_slice(id);
    header.push(u8::try_from(ver.len()).unwrap_or(u8::MAX));
    header.extend_from_slice(ver);
    header.extend_from_slice(fingerprint.as_bytes());
    header.into_boxed_slice()
}

/// Encodes a binary ciphertext in the text form (`kms:v1:<base64url>`).
///
/// The version in the prefix is the one in the binary header.
#[must_use]
pub fn to_text(binary: &[u8]) -> String {
    let version = binary.get(MAGIC.len()).copied().unwrap_or(FORMAT_VERSION);
    let mut out = String::with_capacity(TEXT_PREFIX.len() + 4 + binary.len().div_ceil(3) * 4);
    out.push_str(TEXT_PREFIX);
    out.push('v');
    out.push_str(&version.to_string());
    out.push(':');
    B64.encode_string(binary, &mut out);
    out
}

/// Decodes the text form back to the binary form. Surrounding white space is
/// ignored.
///
/// # Errors
/// [`Error::MalformedCiphertext`] for a wrong prefix or bad base64,
/// [`Error::UnsupportedFormatVersion`] for an unknown version.
pub fn from_text(text: &str) -> Result<Vec<u8>> {
    let text = text.trim_ascii();
    let rest = text.strip_prefix(TEXT_PREFIX).ok_or(Error::malformed(
        "not a kms ciphertext (expected the prefix \"kms:v1:\")",
    ))?;
    let rest = rest.strip_prefix('v').ok_or(Error::malformed(
        "missing format version in the text prefix",
    ))?;
    let (version, payload) = rest.split_once(':').ok_or(Error::malformed(
        "missing format version in the text prefix",
    ))?;
    // Decimal digits only (`u8::from_str` would also take a leading `+`),
    // at most three (a `u8`; leading zeros are accepted). Empty fails to parse.
    if version.len() > 3 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::malformed(
            "invalid format version in the text prefix",
        ));
    }
    let version: u8 = version
        .parse()
        .map_err(|_| Error::malformed("invalid format version in the text prefix"))?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormatVersion { version });
    }
    let binary = B64
        .decode(payload)
        .map_err(|_| Error::malformed("invalid base64url"))?;
    if binary.get(MAGIC.len()).copied() != Some(version) {
        return Err(Error::malformed(
            "the text prefix and the binary header disagree on the format version",
        ));
    }
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_prefix_errors() {
        for (input, want) in [
            ("", "MALFORMED_CIPHERTEXT"),
            ("hello", "MALFORMED_CIPHERTEXT"),
            ("kms:", "MALFORMED_CIPHERTEXT"),
            ("kms:v", "MALFORMED_CIPHERTEXT"),
            ("kms:v1", "MALFORMED_CIPHERTEXT"),
            ("kms:vx:AAAA", "MALFORMED_CIPHERTEXT"),
            ("kms:v1:***", "MALFORMED_CIPHERTEXT"),
            ("kms:v1:", "MALFORMED_CIPHERTEXT"),
            ("kms:v2:AAAA", "UNSUPPORTED_FORMAT_VERSION"),
            ("kms:v999:AAAA", "MALFORMED_CIPHERTEXT"),
            ("kms:v1:S00C", "MALFORMED_CIPHERTEXT"),
        ] {
            assert_eq!(from_text(input).unwrap_err().code(), want, "{input:?}");
        }
    }

    #[test]
    fn parse_rejects_short_and_bad_headers() {
        assert_eq!(
            Envelope::parse(b"").unwrap_err().code(),
            "MALFORMED_CIPHERTEXT"
        );
        assert_eq!(
            Envelope::parse(b"XX\x01").unwrap_err().code(),
            "MALFORMED_CIPHERTEXT"
        );
        assert_eq!(
            Envelope::parse(b"KM\x02").unwrap_err().code(),
            "UNSUPPORTED_FORMAT_VERSION"
        );
        assert_eq!(
            Envelope::parse(b"KM\x01\x0d").unwrap_err().code(),
            "MALFORMED_CIPHERTEXT"
        );
        assert_eq!(
            Envelope::parse(b"KM\x01\x0c\x00").unwrap_err().code(),
            "MALFORMED_CIPHERTEXT"
        );
    }

    /// A binary header by hand: iv length, key id and key version as given,
    /// then an 8-byte fingerprint, the IV and `body_len` bytes.
    fn header(iv_len: u8, key_id: &[u8], version: &[u8], body_len: usize) -> Vec<u8> {
        let mut b = b"KM\x01".to_vec();
        b.push(iv_len);
        b.push(u8::try_from(key_id.len()).unwrap());
        b.extend_from_slice(key_id);
        b.push(u8::try_from(version.len()).unwrap());
        b.extend_from_slice(version);
        b.extend_from_slice(&[7; FINGERPRINT_LEN]);
        b.extend(std::iter::repeat_n(9, usize::from(iv_len)));
        b.extend(std::iter::repeat_n(5, body_len));
        b
    }

    fn reason(bytes: &[u8]) -> String {
        Envelope::parse(bytes).unwrap_err().to_string()
    }

    #[test]
    fn parse_checks_each_length_at_its_bounds() {
        let id = |n| "k".repeat(n).into_bytes();
        let ver = |n| "1".repeat(n).into_bytes();
        // Longest key id and version: accepted, fields where they belong.
        let longest = header(
            12,
            &id(MAX_KEY_ID_LEN),
            &ver(MAX_KEY_VERSION_LEN),
            TAG_LEN + 3,
        );
        let e = Envelope::parse(&longest).unwrap();
        assert_eq!(e.format_version(), FORMAT_VERSION);
        assert_eq!(e.key_id_str().len(), MAX_KEY_ID_LEN);
        assert_eq!(e.key_version().unwrap().as_str().len(), MAX_KEY_VERSION_LEN);
        assert_eq!(e.ciphertext().len(), 3);
        // One longer, or empty: refused for the length itself, before reading.
        for (bytes, want) in [
            (
                header(12, &id(MAX_KEY_ID_LEN + 1), b"1", TAG_LEN),
                "invalid key id length",
            ),
            (header(12, b"", b"1", TAG_LEN), "invalid key id length"),
            (
                header(12, b"k", &ver(MAX_KEY_VERSION_LEN + 1), TAG_LEN),
                "invalid key version length",
            ),
            (header(12, b"k", b"", TAG_LEN), "invalid key version length"),
            (
                header(12, b"k", b"1", TAG_LEN - 1),
                "truncated authentication tag",
            ),
            (
                header(16, b"k", b"1", TAG_LEN)[..30].to_vec(),
                "truncated IV",
            ),
        ] {
            let got = reason(&bytes);
            assert!(got.ends_with(want), "{got} (want {want})");
        }
        // The shortest ciphertext: an empty body and a tag.
        let shortest = header(16, b"k", b"1", TAG_LEN);
        let e = Envelope::parse(&shortest).unwrap();
        assert_eq!((e.iv().len(), e.ciphertext().len()), (16, 0));
    }

    #[test]
    fn envelope_key_id_is_the_header_s() {
        let bytes = header(12, b"payments", b"42", TAG_LEN);
        let e = Envelope::parse(&bytes).unwrap();
        assert_eq!(e.key_id().unwrap().as_str(), "payments");
        assert_eq!(e.key_version().unwrap().as_str(), "42");
    }

    #[test]
    fn text_version_is_plain_decimal() {
        let body = to_text(&header(12, b"k", b"1", TAG_LEN));
        let payload = body.strip_prefix("kms:v1:").unwrap();
        assert!(from_text(&format!("kms:v001:{payload}")).is_ok());
        for version in ["+1", "0001", "", "1 "] {
            let e = from_text(&format!("kms:v{version}:{payload}")).unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("invalid format version in the text prefix"),
                "{version:?}: {e}"
            );
        }
        // Three digits are read: an unknown version, not a malformed prefix.
        let e = from_text(&format!("kms:v100:{payload}")).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedFormatVersion { version: 100 }),
            "{e}"
        );
    }
}
