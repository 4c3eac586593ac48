//! SDK errors as store errors.

use crate::store::StoreError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

/// The error codes that mean "try again later": throttles and the service's own failures.
pub(crate) const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionInProgressException",
];

/// Tells "try again later" (throttling, timeouts, refused connections, 5xx) from other failures.
pub fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable(detail)
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if RETRYABLE_CODES.contains(&code) {
                StoreError::Unavailable(detail)
            } else {
                StoreError::Failed(detail)
            }
        }
        _ => StoreError::Failed(detail),
    }
}
