//! The `onepress` binary: parses the command line and runs the library.

use std::io::IsTerminal;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use onepress::app::Application;
use onepress::config::Settings;
use onepress::sim;
use onepress::telemetry::{LogFormat, get_subscriber, init_subscriber};
use tokio_util::sync::CancellationToken;

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
    /// Play bands and volunteers against a running service over MQTT and
    /// HTTP, then print what happened (exit status 1 when a press was lost
    /// or duplicated or a volunteer offered two alerts at once). With
    /// --sweep: a what-if over fan-out and offer timeout on a virtual clock
    /// through the dispatcher (no service needed).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Simulate(Box<SimulateCmd>),
}

#[derive(Args)]
struct SimulateCmd {
    #[command(subcommand)]
    mode: Option<SimulateMode>,
    #[command(flatten)]
    live: Option<SimulateArgs>,
}

#[derive(Subcommand)]
enum SimulateMode {
    /// Which fan-out and offer timeout meet the response target: simulated
    /// days through the real dispatcher on a virtual clock, one row per pair.
    #[command(long_flag = "sweep")]
    Sweep(sim::sweep::SweepArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ViaArg {
    /// One gateway login speaks for every band.
    Gateway,
    /// Each band logs in with its own secret.
    Bands,
}

#[derive(Clone, Copy, ValueEnum)]
enum Arrivals {
    /// At random, `--rate` a second on average (a Poisson process).
    Poisson,
    /// Evenly spaced.
    Steady,
}

#[derive(Args)]
struct SimulateArgs {
    /// The service's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// The broker, host:port.
    #[arg(long, default_value = "127.0.0.1:1884", value_parser = host_port)]
    mqtt: (String, u16),
    /// The operator token (registers seniors, bands and volunteers).
    #[arg(long, env = "ONEPRESS_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: String,
    /// user:password of the service's admin login (ONEPRESS_MQTT_ADMIN):
    /// one connection then watches every phone instead of one login each.
    #[arg(long, value_parser = user_password)]
    mqtt_admin: Option<(String, String)>,
    /// Seniors, each with a band.
    #[arg(long, default_value_t = 100)]
    bands: usize,
    /// Volunteers, on duty for the whole run.
    #[arg(long, default_value_t = 50)]
    volunteers: usize,
    /// Presses to send, at --rate.
    #[arg(long, default_value_t = 50, conflicts_with = "burst")]
    presses: usize,
    /// Presses a second.
    #[arg(long, default_value_t = 5.0, conflicts_with = "burst")]
    rate: f64,
    /// How presses are spaced at --rate.
    #[arg(long, value_enum, default_value = "poisson", conflicts_with = "burst")]
    arrivals: Arrivals,
    /// Send this many presses within one second instead.
    #[arg(long)]
    burst: Option<usize>,
    /// The share of presses that are falls.
    #[arg(long, default_value_t = 0.2)]
    falls: f64,
    /// Each band's heartbeat period (0s: none).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// How bands reach the broker [default: gateway above 200 bands, else bands].
    #[arg(long, value_enum)]
    via: Option<ViaArg>,
    /// Median time a volunteer takes to answer an offer (log-normal).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    accept_delay: Duration,
    /// Probability that a volunteer declines an offer.
    #[arg(long, default_value_t = 0.1)]
    decline: f64,
    /// Probability that a volunteer lets an offer expire.
    #[arg(long, default_value_t = 0.05)]
    ignore: f64,
    /// Walking speed, metres a second.
    #[arg(long, default_value_t = 1.4)]
    speed: f64,
    /// Time on scene before resolving.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    on_scene: Duration,
    /// The middle of the area, lat,lon.
    #[arg(long, default_value = "30.51,120.68", value_parser = lat_lon, allow_hyphen_values = true)]
    center: (f64, f64),
    /// The area's radius in metres.
    #[arg(long, default_value_t = 2000.0)]
    radius_m: f64,
    /// The random seed (places, timings, answers).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prefix of the ids the run registers [default: a random run id].
    #[arg(long)]
    prefix: Option<String>,
    /// How long to wait after the last press for every alert to close.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Leave the run's alerts and volunteers as they are at the end
    /// (default: cancel what is still active, volunteers off duty).
    #[arg(long)]
    keep: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

impl SimulateArgs {
    fn plan(self) -> sim::Plan {
        let (presses, schedule) = match (self.burst, self.arrivals) {
            (Some(n), _) => (n, sim::Schedule::Burst),
            (None, Arrivals::Poisson) => (self.presses, sim::Schedule::Poisson(self.rate)),
            (None, Arrivals::Steady) => (self.presses, sim::Schedule::Steady(self.rate)),
        };
        let via = match self.via {
            Some(ViaArg::Gateway) => sim::Via::Gateway,
            Some(ViaArg::Bands) => sim::Via::Bands,
            None => sim::Via::for_bands(self.bands),
        };
        let defaults = sim::Plan::default();
        sim::Plan {
            http: self.http,
            mqtt: self.mqtt,
            operator_token: self.operator_token,
            mqtt_admin: self.mqtt_admin,
            bands: self.bands,
            volunteers: self.volunteers,
            presses,
            schedule,
            falls: self.falls,
            heartbeat: (!self.heartbeat.is_zero()).then_some(self.heartbeat),
            via,
            accept_delay: self.accept_delay,
            decline: self.decline,
            ignore: self.ignore,
            speed_mps: self.speed,
            on_scene: self.on_scene,
            center: self.center,
            radius_m: self.radius_m,
            seed: self.seed,
            prefix: self.prefix.unwrap_or(defaults.prefix),
            drain: self.drain,
            keep: self.keep,
            ..defaults
        }
    }
}

fn host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.strip_prefix("mqtt://").unwrap_or(s);
    let (host, port) = s.rsplit_once(':').ok_or("expected host:port")?;
    let port = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    Ok((host.to_string(), port))
}

fn user_password(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .ok_or_else(|| "expected user:password".to_string())
}

fn lat_lon(s: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = s.split_once(',').ok_or("expected lat,lon")?;
    let num = |v: &str| {
        v.trim()
            .parse::<f64>()
            .map_err(|_| format!("bad number {v:?}"))
    };
    Ok((num(lat)?, num(lon)?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve => serve().await,
        Cmd::Simulate(cmd) => match (cmd.mode, cmd.live) {
            (Some(SimulateMode::Sweep(args)), _) => sim::sweep::run_cli(args),
            (None, Some(args)) => simulate(args).await,
            (None, None) => {
                anyhow::bail!("simulate: give --operator-token and the run's options, or --sweep")
            }
        },
    }
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    init_subscriber(get_subscriber(
        "warn,rmqtt=off,rumqttc=off",
        LogFormat::Text,
        false,
        std::io::stderr,
    ));
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let json = args.json;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("stopping: reading back what was pressed so far");
        on_signal.cancel();
    });
    let report = sim::run_until(args.plan(), progress, stop).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    if !report.is_sound() {
        anyhow::bail!("presses lost or duplicated, or double offers: see the summary");
    }
    Ok(())
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
