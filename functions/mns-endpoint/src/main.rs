#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hub_core::lambda::run(mns_endpoint::build).await
}
