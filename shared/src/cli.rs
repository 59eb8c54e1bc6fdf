//! Command-line options common to both programs.

use std::path::PathBuf;

/// `--config PATH`: the configuration file (default `config.toml` in the working directory).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file; `OFFSET_TRACKING__<SECTION>__<KEY>` environment variables override it.
    #[arg(long, value_name = "PATH", env = "OFFSET_TRACKING_CONFIG")]
    pub config: Option<PathBuf>,
}
