// One event at a time, so one thread: see hub_core::lambda.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    hub_core::lambda::run_events(webhook_deliver::build).await
}
