#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    hub_core::lambda::run_events(webhook_deliver::build).await
}
