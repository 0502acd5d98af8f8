//! The agent-comms binary: settings, telemetry, app, run until SIGTERM.

use agent_comms::startup::App;
use agent_runtime::{config::Settings, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let telemetry = telemetry::init(settings.log_format, agent_comms::SERVICE)?;
    let app = App::build(settings).await?;
    let stopped = app.run_until_stopped(shutdown::signal()).await;
    telemetry.shutdown();
    Ok(stopped?)
}
