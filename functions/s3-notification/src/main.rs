#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hub_core::lambda::run(s3_notification::build).await
}
