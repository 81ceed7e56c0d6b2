//! The marketplace simulator (`kedai simulate`).

use std::path::Path;

use crate::cli::Output;
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 300)]
    pub deliveries: usize,
}

pub fn run(
    _args: SimulateArgs,
    _settings: &Settings,
    _config: Option<&Path>,
    _output: Output,
) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
