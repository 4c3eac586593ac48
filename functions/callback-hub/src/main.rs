use callback_hub::commands::{find_events, json_lines, table, EventQuery};
use callback_hub::server::{
    purge_expired_every, serve_with, termination, ServeLimits, PURGE_PERIOD,
};
use callback_hub::{AnyStore, Routes, SqliteStore};
use clap::{Args, Parser, Subcommand};
use hub_core::config::Vars;
use hub_core::event::{parse_time, Source};
use std::collections::HashMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// callback-hub: every callback-hub route as one HTTP server, on SQLite or DynamoDB
#[derive(Debug, Parser)]
#[command(
    name = "callback-hub",
    arg_required_else_help = true,
    after_help = "\
Configuration comes from the environment variables of the Lambda functions (README), completed
by ./.env or --env-file. The store is SQLite at --db; without --db, the DynamoDB table
EVENTS_TABLE when that is set, else SQLite at ./callback-hub.db."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per command; a command group (e.g. `webhooks list|add|remove`) is a variant
/// holding its own `#[command(subcommand)]` enum.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every route over HTTP until SIGINT or SIGTERM
    Serve(ServeArgs),
    /// List stored events, newest first
    Events(EventsArgs),
    /// The latest status of a stack, as GET /stacks/{stack} answers it
    Stacks(StacksArgs),
    /// Replay every sample of events/ over HTTP through the server on a temporary database
    Demo(DemoArgs),
    /// Manage outbound event webhooks through the hub's API (Tsuru's `event webhook` commands)
    Webhooks(Box<callback_hub::webhooks_cli::WebhooksArgs>),
}

/// Where the commands that read the store find it and their variables.
#[derive(Debug, Args)]
struct StoreArgs {
    /// SQLite database file [default: the DynamoDB table EVENTS_TABLE when set, else
    /// ./callback-hub.db]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Variables file completing the environment (the environment wins) [default: ./.env when
    /// present]
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:3000")]
    listen: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Connections served at once; more wait in the listen backlog [default:
    /// SERVE_MAX_CONNECTIONS, else 1024]
    #[arg(long, value_name = "N")]
    max_connections: Option<NonZeroUsize>,
    /// Seconds a client may take to send a request's headers; also the keep-alive idle time
    /// [default: SERVE_HEADER_TIMEOUT_SECS, else 10]
    #[arg(long, value_name = "SECS")]
    header_timeout: Option<NonZeroU64>,
    /// Seconds for a request's body and handling [default: SERVE_REQUEST_TIMEOUT_SECS, else 30]
    #[arg(long, value_name = "SECS")]
    request_timeout: Option<NonZeroU64>,
}

#[derive(Debug, Args)]
struct EventsArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only events of this source (stack, dingtalk, s3, mns, ...)
    #[arg(long, value_name = "S", value_parser = parse_source)]
    source: Option<Source>,
    /// Only events about this subject
    #[arg(long, value_name = "X")]
    subject: Option<String>,
    /// Only events at or after this time (RFC 3339 or YYYY-MM-DD)
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many events
    #[arg(long, value_name = "N", default_value = "50")]
    limit: NonZeroUsize,
    /// One JSON object per line instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StacksArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// A stack name or a stack id
    #[arg(value_name = "STACK")]
    stack: String,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the demo's database in this file [default: a temporary file, removed after]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// The samples and their env.json [default: ./events, else the repository's]
    #[arg(long, value_name = "DIR")]
    events: Option<PathBuf>,
}

fn parse_source(text: &str) -> Result<Source, String> {
    text.parse::<Source>().map_err(|e| e.to_string())
}

fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    parse_time(text)
        .or_else(|| parse_time(&format!("{text}T00:00:00Z")))
        .ok_or_else(|| "expected RFC 3339 or YYYY-MM-DD".into())
}

impl StoreArgs {
    /// The environment plus `.env` (or `--env-file`), the environment winning.
    fn load_vars(&self) -> Result<HashMap<String, String>, String> {
        let path = self
            .env_file
            .clone()
            .or_else(|| Some(PathBuf::from(".env")).filter(|p| p.exists()));
        let text = match &path {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            None => None,
        };
        let file = path.as_ref().zip(text.as_ref());
        let file = file.map(|(p, t)| (p.to_str().unwrap_or(".env"), t.as_str()));
        callback_hub::dotenv::environment_with(file).map_err(|e| e.to_string())
    }

    async fn open_store(&self, vars: &HashMap<String, String>) -> Result<AnyStore, String> {
        if let Some(db) = &self.db {
            return open_sqlite(db);
        }
        if let Some(table) = Vars::get(vars, "EVENTS_TABLE") {
            let sdk = hub_core::aws::sdk_config()
                .await
                .map_err(|e| e.to_string())?;
            return Ok(AnyStore::Dynamo(hub_core::aws::dynamo_store(&sdk, table)));
        }
        open_sqlite(Path::new("callback-hub.db"))
    }
}

fn open_sqlite(path: &Path) -> Result<AnyStore, String> {
    SqliteStore::open(path)
        .map(AnyStore::Sqlite)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

impl ServeArgs {
    /// `SERVE_*` variables, overridden by the command-line options.
    fn limits(&self, vars: &HashMap<String, String>) -> Result<ServeLimits, String> {
        let mut limits = ServeLimits::from_vars(vars).map_err(|e| e.to_string())?;
        if let Some(n) = self.max_connections {
            limits.max_connections = n.get();
        }
        if let Some(secs) = self.header_timeout {
            limits.header_timeout = Duration::from_secs(secs.get());
        }
        if let Some(secs) = self.request_timeout {
            limits.request_timeout = Duration::from_secs(secs.get());
        }
        Ok(limits)
    }

    async fn run(self) -> Result<(), String> {
        hub_core::telemetry::init();
        let vars = self.store.load_vars()?;
        let limits = self.limits(&vars)?;
        let store = self.store.open_store(&vars).await?;
        if let AnyStore::Sqlite(sqlite) = &store {
            let purged = sqlite
                .purge_expired(chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(purged, "expired events removed");
            // Dropped with the runtime when `serve` returns.
            tokio::spawn(purge_expired_every(sqlite.clone(), PURGE_PERIOD));
        }
        // Webhook deliveries, beside the routes that store the events (the outbox).
        let worker = callback_hub::worker::start(&store, &vars);
        let routes = Routes::local(vars, store.clone())
            .await
            .map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", self.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        tracing::info!(
            address = %address,
            store = store.describe(),
            max_connections = limits.max_connections,
            header_timeout_secs = limits.header_timeout.as_secs(),
            request_timeout_secs = limits.request_timeout.as_secs(),
            "callback-hub serving"
        );
        let served = serve_with(listener, Arc::new(routes), limits, termination()).await;
        worker.stop().await;
        served.map_err(|e| e.to_string())
    }
}

impl EventsArgs {
    async fn run(self) -> Result<(), String> {
        let vars = self.store.load_vars()?;
        let store = self.store.open_store(&vars).await?;
        let query = EventQuery {
            source: self.source,
            subject: self.subject,
            since: self.since,
            limit: self.limit.get(),
        };
        let events = find_events(&store, &query)
            .await
            .map_err(|e| e.to_string())?;
        if self.json {
            print!("{}", json_lines(&events));
        } else {
            print!("{}", table(&events));
        }
        Ok(())
    }
}

impl StacksArgs {
    async fn run(self) -> Result<bool, String> {
        let vars = self.store.load_vars()?;
        let store = self.store.open_store(&vars).await?;
        match stack_hook::latest_status(&store, &self.stack)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(status) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
                Ok(true)
            }
            None => {
                eprintln!("unknown stack: {}", self.stack);
                Ok(false)
            }
        }
    }
}

fn default_events_dir() -> PathBuf {
    let local = PathBuf::from("events");
    if local.join("env.json").exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events")
}

impl DemoArgs {
    async fn run(self) -> Result<bool, String> {
        let events = self.events.unwrap_or_else(default_events_dir);
        let (db, temporary) = match self.db {
            Some(db) => (db, false),
            None => (
                std::env::temp_dir().join(format!("callback-hub-demo-{}.db", std::process::id())),
                true,
            ),
        };
        let report = callback_hub::demo::run(&events, &db).await;
        if temporary {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
        let report = report.map_err(|e| e.to_string())?;
        print!("{}", report.text);
        Ok(report.success)
    }
}

impl Command {
    /// `Ok(false)`: the command ran and its answer is "no" (an unknown stack, a failed demo).
    async fn run(self) -> Result<bool, String> {
        match self {
            Command::Serve(args) => args.run().await.map(|()| true),
            Command::Events(args) => args.run().await.map(|()| true),
            Command::Stacks(args) => args.run().await,
            Command::Demo(args) => args.run().await,
            Command::Webhooks(args) => callback_hub::webhooks_cli::run(*args).await,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 with the usage text; --help and `help` print it and exit 0.
    let cli = Cli::parse();
    match cli.command.run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("callback-hub: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Command, clap::Error> {
        Cli::try_parse_from(line.split_whitespace()).map(|cli| cli.command)
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_the_readme_options() {
        let Command::Serve(args) = parse(
            "callback-hub serve --listen 0.0.0.0:3000 --db /var/lib/callback-hub/events.db \
             --env-file events/local.env",
        )
        .unwrap() else {
            panic!("serve expected")
        };
        assert_eq!(args.listen, "0.0.0.0:3000");
        assert_eq!(
            args.store.db.as_deref(),
            Some(Path::new("/var/lib/callback-hub/events.db"))
        );
        assert_eq!(
            args.store.env_file.as_deref(),
            Some(Path::new("events/local.env"))
        );
        let Command::Serve(args) = parse("callback-hub serve --db=x.db").unwrap() else {
            panic!("serve expected")
        };
        assert_eq!(args.listen, "127.0.0.1:3000");
        assert_eq!(args.store.db.as_deref(), Some(Path::new("x.db")));
        assert_eq!(
            args.limits(&HashMap::new()).unwrap(),
            ServeLimits::default()
        );
    }

    #[test]
    fn serve_limits_come_from_variables_and_options_win() {
        let vars: HashMap<String, String> = [
            ("SERVE_MAX_CONNECTIONS", "8"),
            ("SERVE_HEADER_TIMEOUT_SECS", "3"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .into();
        let Command::Serve(args) = parse("callback-hub serve --request-timeout 7").unwrap() else {
            panic!("serve expected")
        };
        let limits = args.limits(&vars).unwrap();
        assert_eq!(limits.max_connections, 8);
        assert_eq!(limits.header_timeout, Duration::from_secs(3));
        assert_eq!(limits.request_timeout, Duration::from_secs(7));
        let Command::Serve(args) = parse("callback-hub serve --max-connections 2").unwrap() else {
            panic!("serve expected")
        };
        assert_eq!(args.limits(&vars).unwrap().max_connections, 2);
        let zero: HashMap<String, String> =
            [("SERVE_MAX_CONNECTIONS".to_owned(), "0".to_owned())].into();
        let err = args.limits(&zero).unwrap_err();
        assert!(err.contains("SERVE_MAX_CONNECTIONS"), "{err}");
        assert!(parse("callback-hub serve --max-connections 0").is_err());
    }

    #[test]
    fn events_takes_the_readme_options() {
        let Command::Events(args) =
            parse("callback-hub events --db events.db --source s3 --since 2024-03-01 --limit 20")
                .unwrap()
        else {
            panic!("events expected")
        };
        assert_eq!(args.source, Some(Source::S3));
        assert_eq!(args.since, parse_time("2024-03-01T00:00:00Z"));
        assert_eq!(args.limit.get(), 20);
        assert!(!args.json);
        let Command::Events(args) =
            parse("callback-hub events --db events.db --subject orders-api --json").unwrap()
        else {
            panic!("events expected")
        };
        assert_eq!(args.subject.as_deref(), Some("orders-api"));
        assert_eq!(args.limit.get(), 50);
        assert!(args.json);
        let Command::Events(args) =
            parse("callback-hub events --since 2024-03-01T10:00:00Z --env-file x.env").unwrap()
        else {
            panic!("events expected")
        };
        assert_eq!(args.since, parse_time("2024-03-01T10:00:00Z"));
        for bad in [
            "callback-hub events --limit 0",
            "callback-hub events --limit many",
            "callback-hub events --since yesterday",
            "callback-hub events --source nowhere",
            "callback-hub events --unknown 1",
            "callback-hub events --db",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stacks_takes_one_stack() {
        let Command::Stacks(args) = parse("callback-hub stacks --db events.db orders-api").unwrap()
        else {
            panic!("stacks expected")
        };
        assert_eq!(args.stack, "orders-api");
        assert_eq!(args.store.db.as_deref(), Some(Path::new("events.db")));
        assert!(parse("callback-hub stacks --db events.db").is_err());
        assert!(parse("callback-hub stacks a b").is_err());
    }

    #[test]
    fn demo_takes_db_and_events_only() {
        let Command::Demo(args) = parse("callback-hub demo").unwrap() else {
            panic!("demo expected")
        };
        assert!(args.db.is_none() && args.events.is_none());
        let Command::Demo(args) = parse("callback-hub demo --db d.db --events ev").unwrap() else {
            panic!("demo expected")
        };
        assert_eq!(args.db.as_deref(), Some(Path::new("d.db")));
        assert_eq!(args.events.as_deref(), Some(Path::new("ev")));
        assert!(parse("callback-hub demo --env-file x").is_err());
    }

    #[test]
    fn usage_errors_and_help() {
        let err = parse("callback-hub").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse("callback-hub launch").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        for help in [
            "callback-hub --help",
            "callback-hub help",
            "callback-hub serve -h",
        ] {
            let err = parse(help).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{help}");
            assert_eq!(err.exit_code(), 0, "{help}");
        }
        let usage = Cli::command().render_help().to_string();
        for command in ["serve", "events", "stacks", "demo"] {
            assert!(usage.contains(command), "{usage}");
        }
    }
}
