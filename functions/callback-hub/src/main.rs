use callback_hub::commands::{find_events, json_lines, table, EventQuery};
use callback_hub::server::{serve, termination};
use callback_hub::{AnyStore, Routes, SqliteStore};
use hub_core::config::Vars;
use hub_core::event::{parse_time, Source};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
callback-hub: every callback-hub route as one HTTP server, on SQLite or DynamoDB

usage:
  callback-hub serve  [--listen 127.0.0.1:3000] [--db PATH] [--env-file PATH]
  callback-hub events [--db PATH] [--source S] [--subject X] [--since T] [--limit N] [--json]
  callback-hub stacks [--db PATH] STACK
  callback-hub demo   [--db PATH] [--events DIR]

Configuration comes from the environment variables of the Lambda functions (README), completed
by ./.env or --env-file. The store is SQLite at --db; without --db, the DynamoDB table
EVENTS_TABLE when that is set, else SQLite at ./callback-hub.db.
";

/// Command-line options: `--name value` pairs, `--json`, and positional arguments.
struct Args {
    options: HashMap<String, String>,
    flags: Vec<String>,
    positional: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    const FLAGS: &[&str] = &["--json", "--help"];
    let mut parsed = Args {
        options: HashMap::new(),
        flags: Vec::new(),
        positional: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if FLAGS.contains(&arg.as_str()) || arg == "-h" {
            parsed.flags.push(arg.trim_start_matches('-').to_owned());
        } else if let Some(name) = arg.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (
                    name.to_owned(),
                    iter.next()
                        .cloned()
                        .ok_or(format!("--{name} needs a value"))?,
                ),
            };
            parsed.options.insert(name, value);
        } else {
            parsed.positional.push(arg.clone());
        }
    }
    Ok(parsed)
}

impl Args {
    fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self.options.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(format!("unknown option --{unknown}")),
            None => Ok(()),
        }
    }
}

/// The environment plus `.env` (or `--env-file`), the environment winning.
fn load_vars(args: &Args) -> Result<HashMap<String, String>, String> {
    let path = args
        .options
        .get("env-file")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(".env")).filter(|p| p.exists()));
    let text = match &path {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let file = path.as_ref().zip(text.as_ref());
    let file = file.map(|(p, t)| (p.to_str().unwrap_or(".env"), t.as_str()));
    callback_hub::dotenv::environment_with(file).map_err(|e| e.to_string())
}

async fn open_store(args: &Args, vars: &HashMap<String, String>) -> Result<AnyStore, String> {
    if let Some(db) = args.options.get("db") {
        return open_sqlite(Path::new(db));
    }
    if let Some(table) = Vars::get(vars, "EVENTS_TABLE") {
        let sdk = hub_core::aws::sdk_config().await;
        return Ok(AnyStore::Dynamo(hub_core::aws::dynamo_store(&sdk, table)));
    }
    open_sqlite(Path::new("callback-hub.db"))
}

fn open_sqlite(path: &Path) -> Result<AnyStore, String> {
    SqliteStore::open(path)
        .map(AnyStore::Sqlite)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

async fn serve_command(args: Args) -> Result<(), String> {
    args.reject_unknown(&["listen", "db", "env-file"])?;
    hub_core::telemetry::init();
    let vars = load_vars(&args)?;
    let store = open_store(&args, &vars).await?;
    if let AnyStore::Sqlite(sqlite) = &store {
        let purged = sqlite
            .purge_expired(chrono::Utc::now())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(purged, "expired events removed");
    }
    let routes = Routes::local(vars, store.clone())
        .await
        .map_err(|e| e.to_string())?;
    let listen = args
        .options
        .get("listen")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(address = %address, store = store.describe(), "callback-hub serving");
    serve(listener, Arc::new(routes), termination())
        .await
        .map_err(|e| e.to_string())
}

async fn events_command(args: Args) -> Result<(), String> {
    args.reject_unknown(&["db", "source", "subject", "since", "limit", "env-file"])?;
    let vars = load_vars(&args)?;
    let store = open_store(&args, &vars).await?;
    let source = match args.options.get("source") {
        Some(s) => Some(s.parse::<Source>().map_err(|e| e.to_string())?),
        None => None,
    };
    let since = match args.options.get("since") {
        Some(text) => Some(
            parse_time(text)
                .or_else(|| parse_time(&format!("{text}T00:00:00Z")))
                .ok_or(format!("--since {text}: expected RFC 3339 or YYYY-MM-DD"))?,
        ),
        None => None,
    };
    let limit = match args.options.get("limit") {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("--limit {n}: expected a positive number"))?,
        None => 50,
    };
    let query = EventQuery {
        source,
        subject: args.options.get("subject").cloned(),
        since,
        limit,
    };
    let events = find_events(&store, &query)
        .await
        .map_err(|e| e.to_string())?;
    if args.flags.iter().any(|f| f == "json") {
        print!("{}", json_lines(&events));
    } else {
        print!("{}", table(&events));
    }
    Ok(())
}

async fn stacks_command(args: Args) -> Result<bool, String> {
    args.reject_unknown(&["db", "env-file"])?;
    let [stack] = args.positional.as_slice() else {
        return Err("stacks takes one STACK (a name or a stack id)".into());
    };
    let vars = load_vars(&args)?;
    let store = open_store(&args, &vars).await?;
    match stack_hook::latest_status(&store, stack)
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
            eprintln!("unknown stack: {stack}");
            Ok(false)
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

async fn demo_command(args: Args) -> Result<bool, String> {
    args.reject_unknown(&["db", "events"])?;
    let events = args
        .options
        .get("events")
        .map(PathBuf::from)
        .unwrap_or_else(default_events_dir);
    let (db, temporary) = match args.options.get("db") {
        Some(db) => (PathBuf::from(db), false),
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

#[tokio::main]
async fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let args = match parse_args(rest) {
        Ok(args) if args.flags.iter().any(|f| f == "help" || f == "h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(args) => args,
        Err(err) => {
            eprintln!("callback-hub: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "serve" => serve_command(args).await.map(|()| true),
        "events" => events_command(args).await.map(|()| true),
        "stacks" => stacks_command(args).await,
        "demo" => demo_command(args).await,
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("callback-hub: {err}");
            ExitCode::FAILURE
        }
    }
}
