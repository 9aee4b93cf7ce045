//! A backend's errors, kept whole inside its crate and classified once, on
//! the way out, into the neutral [`crate::Error`] that says what a caller
//! can do. Every backend has the same `Fault`: its driver's error, or a
//! store error it decided itself. The macro makes it in the backend's
//! crate, where `?` can turn the driver's error into it.

/// Makes `pub(crate) enum Fault { Driver($driver), Store(Error) }`, the
/// conversions `?` needs (from the driver's error, from
/// `tidewright_store::Error`, and from a stored name this build does not
/// know), `pub(crate) type Result<T>`, and `From<Fault> for
/// tidewright_store::Error`, which classifies a driver error with
/// `$classify: fn($driver) -> tidewright_store::Error`.
#[macro_export]
macro_rules! fault {
    ($driver:ty, $classify:path) => {
        /// What went wrong inside: the driver's own error, kept whole until
        /// it leaves the crate as an error that says what the caller can do.
        #[derive(Debug)]
        pub(crate) enum Fault {
            Driver($driver),
            Store($crate::Error),
        }

        pub(crate) type Result<T> = std::result::Result<T, Fault>;

        impl From<$driver> for Fault {
            fn from(e: $driver) -> Self {
                Fault::Driver(e)
            }
        }

        impl From<$crate::Error> for Fault {
            fn from(e: $crate::Error) -> Self {
                Fault::Store(e)
            }
        }

        /// A stored state or kind name this build does not know.
        impl From<tidewright_core::Error> for Fault {
            fn from(e: tidewright_core::Error) -> Self {
                Fault::Store($crate::Error::Corrupt(e.to_string()))
            }
        }

        impl From<Fault> for $crate::Error {
            fn from(fault: Fault) -> Self {
                match fault {
                    Fault::Store(e) => e,
                    Fault::Driver(e) => $classify(e),
                }
            }
        }
    };
}
