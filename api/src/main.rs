//! The `tooltool-api` binary: `serve` (the default), `migrate`, and admin commands.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tooltool_api::{Application, Settings, load_secret, open_db, telemetry, tokens};

#[derive(Parser)]
#[command(name = "tooltool-api", version, about = "The tooltool artifact store server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations under migrations/ to DATABASE_URL.
    Migrate,
    /// Bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token and print it on standard output.
    Issue {
        /// Who the token is for (becomes the author of its uploads).
        #[arg(long)]
        subject: String,
        /// A scope to grant; repeatable. A scope without ':' is taken relative to the scope
        /// prefix (`--scope download/internal`, `--scope '*'`).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. `1h`, `30days`, `1y`.
        #[arg(long, default_value = "1y")]
        ttl: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    // Sentry first, so that start-up failures are reported too.
    let _sentry = settings.sentry_dsn.as_ref().map(telemetry::init_sentry).transpose()?;
    telemetry::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => Application::build(settings).await?.run_until_stopped().await.context("server failed"),
            Command::Migrate => {
                open_db(&settings).await?.migrate().await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Token(TokenCommand::Issue { subject, scopes, ttl }) => {
                let ttl: Duration = tooltool_api::settings::parse_duration("--ttl", &ttl)?;
                let scopes: Vec<String> = scopes
                    .into_iter()
                    .map(|s| if s.contains(':') { s } else { format!("{}/{s}", settings.scope_prefix) })
                    .collect();
                let secret = load_secret(&settings)?;
                println!("{}", tokens(&settings, &secret).issue(&subject, &scopes, ttl));
                Ok(())
            }
        }
    })
}
