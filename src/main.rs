//! The `onepress` binary: parses the command line and runs the library.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use onepress::app::Application;
use onepress::config::Settings;
use onepress::telemetry::{get_subscriber, init_subscriber};

#[derive(Parser)]
#[command(
    version,
    about = "One press, a 3-minute response, a 10-minute arrival."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service (settings: ONEPRESS_CONFIG file and ONEPRESS_* variables).
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve => serve().await,
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let ansi = std::io::stderr().is_terminal();
    init_subscriber(get_subscriber(
        "info,rmqtt=warn",
        settings.log_format,
        ansi,
        std::io::stderr,
    ));
    let app = Application::build(settings).await?;
    if let Some(token) = app.generated_operator_token() {
        println!("No ONEPRESS_OPERATOR_TOKEN was set; the operator token is: {token}");
    }
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: draining and stopping");
        stop.cancel();
    });
    app.run_until_stopped().await
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
