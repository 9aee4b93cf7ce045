//! Credentials for steps. Each attempt the control plane hands out carries a
//! token of its own, signed with a key only the control plane holds: it names
//! the task, step, attempt and tenant, and expires with the step's timeout.
//! A step may use shared state in its own task's scope with it, and only
//! while its attempt runs (the state service checks that on every call), so
//! a token leaked from a finished step opens nothing. The worker's own token
//! never reaches a step.
//!
//! The signing key lives in the data directory (`step-tokens.key`), created
//! on first start, so tokens stay valid across a restart of the control
//! plane while their steps run on.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tidewright_core::AttemptKey;

use crate::auth::secret::{generate_token, write_private};
use crate::error::Error;
use crate::error::read_file;
use tidewright_engine::Error as Refusal;
use tidewright_engine::access::{Identity, Role, Tenants};

/// Step tokens start with this, so they are never mistaken for a user's JWT.
pub const STEP_TOKEN_PREFIX: &str = "tidewright_step_";
const KEY_FILE: &str = "step-tokens.key";
/// How long a step token outlives its step's timeout: a step stopped at its
/// timeout is already refused by the running check.
const SLACK: Duration = Duration::from_secs(300);
/// The lifetime of a step without a timeout.
const UNTIMED_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Serialize, Deserialize)]
struct Claims {
    task: String,
    step: String,
    attempt: u32,
    tenant: String,
    exp: u64,
}

/// Mints and checks step tokens.
pub struct StepTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl StepTokens {
    pub fn from_secret(secret: &[u8]) -> StepTokens {
        StepTokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Reads the data directory's signing key, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<StepTokens, Error> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
                context: data_dir.display().to_string(),
                source,
            })?;
            write_private(&path, &format!("{}\n", generate_token()?)).map_err(|source| {
                Error::Io {
                    context: path.display().to_string(),
                    source,
                }
            })?;
        }
        let secret = read_file(&path)?;
        let secret = secret.trim_ascii();
        if secret.len() < 32 {
            return Err(Error::Auth(format!(
                "{}: the step-token key must be at least 32 bytes",
                path.display()
            )));
        }
        Ok(StepTokens::from_secret(secret))
    }

    /// A token for `grant`, in `tenant`, for a step allowed to run
    /// `timeout` (none: a day).
    pub fn mint(
        &self,
        grant: &AttemptKey,
        tenant: &str,
        timeout: Option<Duration>,
    ) -> Result<String, Error> {
        let lifetime = timeout.unwrap_or(UNTIMED_LIFETIME) + SLACK;
        let claims = Claims {
            task: grant.task_id.clone(),
            step: grant.step_id.clone(),
            attempt: grant.attempt,
            tenant: tenant.to_string(),
            exp: jsonwebtoken::get_current_timestamp() + lifetime.as_secs(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Auth(format!("signing a step token: {e}")))?;
        Ok(format!("{STEP_TOKEN_PREFIX}{token}"))
    }

    /// The step a token (without its prefix) was minted for.
    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| {
                Error::Service(Refusal::Unauthenticated(match e.kind() {
                    ErrorKind::ExpiredSignature => "the step token has expired".into(),
                    _ => "the step token is not valid".into(),
                }))
            })?
            .claims;
        let grant = AttemptKey {
            task_id: claims.task,
            step_id: claims.step,
            attempt: claims.attempt,
        };
        Ok(Identity {
            name: format!(
                "step {}/{} attempt {}",
                grant.task_id, grant.step_id, grant.attempt
            ),
            role: Role::Step,
            tenants: Tenants::Only(vec![claims.tenant]),
            step: Some(grant),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> AttemptKey {
        AttemptKey {
            task_id: "t1".into(),
            step_id: "build".into(),
            attempt: 2,
        }
    }

    #[test]
    fn a_minted_token_names_its_step_and_tenant() {
        let tokens = StepTokens::from_secret(&[7; 32]);
        let token = tokens
            .mint(&grant(), "team-a", Some(Duration::from_secs(60)))
            .expect("minted");
        let bare = token.strip_prefix(STEP_TOKEN_PREFIX).expect("prefixed");
        let identity = tokens.verify(bare).expect("valid");
        assert_eq!(identity.role, Role::Step);
        assert_eq!(identity.step, Some(grant()));
        assert_eq!(identity.tenants, Tenants::Only(vec!["team-a".into()]));
    }

    #[test]
    fn another_key_or_a_changed_token_is_refused() {
        let token = StepTokens::from_secret(&[7; 32])
            .mint(&grant(), "default", None)
            .expect("minted");
        let bare = token.strip_prefix(STEP_TOKEN_PREFIX).expect("prefixed");
        let other = StepTokens::from_secret(&[8; 32]);
        assert!(other.verify(bare).is_err());
        let mine = StepTokens::from_secret(&[7; 32]);
        let mut forged = bare.to_string();
        forged.insert(bare.find('.').expect("a dot") + 2, 'x');
        assert!(mine.verify(&forged).is_err());
    }

    #[test]
    fn the_key_is_created_private_once_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = StepTokens::load_or_create(dir.path()).expect("created");
        let token = first.mint(&grant(), "default", None).expect("minted");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A restarted control plane still accepts the tokens of running steps.
        let again = StepTokens::load_or_create(dir.path()).expect("loaded");
        assert!(
            again
                .verify(token.strip_prefix(STEP_TOKEN_PREFIX).expect("prefixed"))
                .is_ok()
        );
    }
}
