#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hub_core::lambda::run(webhooks_api::build).await
}
