//! The what-if sweep on its own, until `onepress simulate --sweep` is wired:
//! `cargo run --release --example sweep -- --days 30 --fanouts 1,3,8`.

use clap::Parser;
use onepress::sim::sweep::{SweepArgs, run_cli};

#[derive(Parser)]
#[command(about = "Which fan-out and offer timeout meet the response target")]
struct Cli {
    #[command(flatten)]
    sweep: SweepArgs,
}

fn main() -> anyhow::Result<()> {
    run_cli(Cli::parse().sweep)
}
