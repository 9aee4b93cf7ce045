//! The forge webhooks' check: the secret a hook was given, which signs
//! GitHub's deliveries (X-Hub-Signature-256, the HMAC-SHA256 of the body)
//! and is GitLab's token; and the deliveries taken, each once. The routes
//! that use it are `http::hooks`'.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many delivery ids are remembered to take each once.
const REMEMBERED: usize = 10_000;

/// The hooks' secret, and the deliveries taken.
pub struct ForgeHooks {
    secret: String,
    taken: Mutex<Taken>,
}

#[derive(Default)]
struct Taken {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl ForgeHooks {
    pub fn new(secret: String) -> ForgeHooks {
        ForgeHooks {
            secret,
            taken: Mutex::default(),
        }
    }

    /// Whether delivery `id` is new: taken now, once.
    pub(crate) fn take(&self, id: &str) -> bool {
        let Ok(mut taken) = self.taken.lock() else {
            return false;
        };
        if !taken.ids.insert(id.to_string()) {
            return false;
        }
        taken.order.push_back(id.to_string());
        if taken.order.len() > REMEMBERED
            && let Some(oldest) = taken.order.pop_front()
        {
            taken.ids.remove(&oldest);
        }
        true
    }

    /// Lets delivery `id` be taken again: what it was to do failed, and a
    /// redelivery must not be ignored for it.
    pub(crate) fn give_back(&self, id: &str) {
        if let Ok(mut taken) = self.taken.lock() {
            taken.ids.remove(id);
            taken.order.retain(|t| t != id);
        }
    }

    /// GitLab's token is the secret.
    pub(crate) fn same_token(&self, token: &str) -> bool {
        super::session::same_secret(token, &self.secret)
    }

    /// GitHub's signature of `body` (`sha256=` and hex) is the secret's.
    pub(crate) fn signed(&self, signature: &str, body: &[u8]) -> bool {
        let Some(hex) = signature.strip_prefix("sha256=") else {
            return false;
        };
        let Some(tag) = unhex(hex) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.secret.as_bytes());
        ring::hmac::verify(&key, body, &tag).is_ok()
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_github_signature_is_the_bodys_hmac_with_the_secret() {
        let hooks = ForgeHooks::new("It's a Secret to Everybody".into());
        // GitHub's own example (docs: validating webhook deliveries).
        let body = b"Hello, World!";
        let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(hooks.signed(signature, body));
        assert!(!hooks.signed(signature, b"Hello, World?"));
        assert!(!hooks.signed(&signature.replace("sha256=", "sha1="), body));
        assert!(!hooks.signed("sha256=zz", body));
        assert!(!hooks.signed("", body));
    }

    #[test]
    fn a_delivery_is_taken_once_and_the_oldest_forgotten_past_the_bound() {
        let hooks = ForgeHooks::new("s".into());
        assert!(hooks.take("a"));
        assert!(!hooks.take("a"));
        for i in 0..REMEMBERED {
            assert!(hooks.take(&format!("d{i}")));
        }
        assert!(hooks.take("a"), "forgotten once 10,000 came after it");
    }
}
