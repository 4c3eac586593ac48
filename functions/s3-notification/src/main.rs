// One event at a time, so one thread: see hub_core::lambda.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    hub_core::lambda::run(s3_notification::build).await
}
