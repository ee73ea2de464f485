use napi::{Error, Status};
use pgforever_core::{CoreError, ErrorCode};

/// Core errors cross into JS as `CODE: message`; src/native parses the prefix.
pub fn to_napi(err: CoreError) -> Error {
    Error::new(Status::InvalidArg, err.to_string())
}

/// An argument JavaScript got wrong, reported like a core error so it arrives as INVALID_ARGUMENT.
pub fn invalid_argument(message: impl Into<String>) -> Error {
    to_napi(CoreError::new(ErrorCode::InvalidArgument, message))
}
