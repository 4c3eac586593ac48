#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    hub_core::lambda::run(web_console::build).await
}
