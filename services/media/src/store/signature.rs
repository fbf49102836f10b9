//! HMAC-SHA256 signatures for the local store's URLs. A URL carries only its
//! expiry and signature; the method, object key and, for uploads, the
//! content type and length are taken from the request itself when checking,
//! so a client that sends anything else than what was signed is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Tags the signed text so a signature made for another purpose with the
/// same secret can never verify here.
const DOMAIN: &str = "chatmesh-media-url-v1";

/// What a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signed<'a> {
    /// `GET` or `PUT`.
    pub(crate) method: &'a str,
    /// The object key, as in the URL path.
    pub(crate) key: &'a str,
    /// Unix seconds after which the URL is refused.
    pub(crate) expires: u64,
    /// The `Content-Type` an upload must carry; empty for downloads.
    pub(crate) content_type: &'a str,
    /// The `Content-Length` an upload must carry; none for downloads.
    pub(crate) content_length: Option<u64>,
}

impl Signed<'_> {
    /// One field per line. No field can hold a newline: keys are
    /// server-generated, header values cannot carry one, and the rest are
    /// numbers or fixed words.
    fn text(&self) -> String {
        let length = self
            .content_length
            .map(|n| n.to_string())
            .unwrap_or_default();
        format!(
            "{DOMAIN}\n{}\n{}\n{}\n{}\n{length}",
            self.method, self.key, self.expires, self.content_type
        )
    }
}

/// Signs and checks URLs with one secret.
#[derive(Clone)]
pub(crate) struct UrlSigner {
    mac: HmacSha256,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSigner").finish_non_exhaustive()
    }
}

impl UrlSigner {
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"),
        }
    }

    /// The URL-safe base64 signature of `what`.
    pub(crate) fn sign(&self, what: &Signed<'_>) -> String {
        let mut mac = self.mac.clone();
        mac.update(what.text().as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// True if `signature` was made for exactly `what`. The comparison runs
    /// in constant time.
    pub(crate) fn verify(&self, what: &Signed<'_>, signature: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let mut mac = self.mac.clone();
        mac.update(what.text().as_bytes());
        mac.verify_slice(&raw).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUT: Signed<'static> = Signed {
        method: "PUT",
        key: "media/2a/0123456789abcdef0123456789abcdef",
        expires: 1_900_000_000,
        content_type: "image/png",
        content_length: Some(1234),
    };

    #[test]
    fn a_signature_verifies_only_what_it_signed() {
        let signer = UrlSigner::new(b"0123456789abcdef-secret");
        let sig = signer.sign(&PUT);
        assert!(signer.verify(&PUT, &sig));

        let changed = [
            Signed {
                method: "GET",
                ..PUT
            },
            Signed {
                key: "media/2a/0123456789abcdef0123456789abcdee",
                ..PUT
            },
            Signed {
                expires: PUT.expires + 1,
                ..PUT
            },
            Signed {
                content_type: "text/html",
                ..PUT
            },
            Signed {
                content_type: "image/png ",
                ..PUT
            },
            Signed {
                content_length: Some(1235),
                ..PUT
            },
            Signed {
                content_length: None,
                ..PUT
            },
        ];
        for other in changed {
            assert!(!signer.verify(&other, &sig), "{other:?}");
        }
    }

    #[test]
    fn tampered_or_foreign_signatures_fail() {
        let signer = UrlSigner::new(b"0123456789abcdef-secret");
        let sig = signer.sign(&PUT);
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        assert!(!signer.verify(&PUT, std::str::from_utf8(&flipped).unwrap()));
        assert!(!signer.verify(&PUT, &sig[..sig.len() - 1]));
        assert!(!signer.verify(&PUT, ""));
        assert!(!signer.verify(&PUT, "not base64 !"));
        let other = UrlSigner::new(b"another-secret-of-16+");
        assert!(!other.verify(&PUT, &sig));
    }

    #[test]
    fn signatures_are_stable() {
        // Pinned (computed independently with Python's hmac module) so a
        // change to the signed text, which would invalidate every URL in
        // flight during a rolling upgrade, is deliberate.
        let signer = UrlSigner::new(b"0123456789abcdef-secret");
        assert_eq!(
            signer.sign(&PUT),
            "9Rq4ih4-gttuGdx8JUD-ahQc6xB0mtZz0LXiwUTY3V8"
        );
    }
}
