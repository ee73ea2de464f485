use napi::{Error, Status};
use pgforever_core::CoreError;

/// Core errors cross into JS as `CODE: message`; src/native parses the prefix.
pub fn to_napi(err: CoreError) -> Error {
    Error::new(Status::InvalidArg, err.to_string())
}
