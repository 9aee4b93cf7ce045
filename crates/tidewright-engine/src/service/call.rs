//! A call of an application service, as either transport hands it over:
//! who asks (checked already by the transport's authentication) and what
//! they ask, in tidewright-core's terms. gRPC makes one from its request, REST
//! from its headers and path; neither builds the other's request.

use crate::access::{Action, Identity, permit};
use crate::error::Error;

pub struct Call<T> {
    /// `None` when the transport found no credentials: every service
    /// answers UNAUTHENTICATED then.
    caller: Option<Identity>,
    message: T,
}

impl<T> Call<T> {
    pub fn new(caller: Identity, message: T) -> Self {
        Call {
            caller: Some(caller),
            message,
        }
    }

    /// A call whose transport may have found no caller.
    pub fn from_parts(caller: Option<Identity>, message: T) -> Self {
        Call { caller, message }
    }

    /// Who asks, when anyone was identified.
    pub fn caller(&self) -> Option<&Identity> {
        self.caller.as_ref()
    }

    /// The caller, when its role may do `action`.
    pub fn require(&self, action: Action) -> Result<Identity, Error> {
        permit(self.caller.as_ref(), action)
    }

    /// The caller, when its role may do `action` on tasks, or, for a
    /// running step, on its own task's children (which the call narrows to).
    pub fn require_tasks(&self, action: Action) -> Result<Identity, Error> {
        let action = self.caller().map_or(action, |c| action.for_tasks(c.role));
        permit(self.caller.as_ref(), action)
    }

    pub fn into_message(self) -> T {
        self.message
    }

    /// The same caller asking `convert(message)`: how an adapter turns its
    /// wire's message into the service's, refusing what does not convert.
    pub fn try_map<U, E>(self, convert: impl FnOnce(T) -> Result<U, E>) -> Result<Call<U>, E> {
        Ok(Call {
            caller: self.caller,
            message: convert(self.message)?,
        })
    }
}
