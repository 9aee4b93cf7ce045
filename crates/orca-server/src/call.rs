//! A call of an application service, as either transport hands it over:
//! who asks (checked already by the transport's authentication) and what
//! they ask. gRPC makes one from its request; REST from its headers and
//! path; neither builds the other's request.

use crate::auth::{Action, Identity, permit};
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

    /// Who asks, when anyone was identified.
    pub fn caller(&self) -> Option<&Identity> {
        self.caller.as_ref()
    }

    /// The caller, when its role may do `action`.
    pub fn require(&self, action: Action) -> Result<Identity, Error> {
        permit(self.caller.as_ref(), action)
    }

    pub fn into_message(self) -> T {
        self.message
    }
}

/// The identity the gRPC interceptor put on the request, and its message.
impl<T> From<tonic::Request<T>> for Call<T> {
    fn from(request: tonic::Request<T>) -> Self {
        let caller = request.extensions().get::<Identity>().cloned();
        Call {
            caller,
            message: request.into_inner(),
        }
    }
}
