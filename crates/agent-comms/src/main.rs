//! The agent-comms binary: settings, telemetry, app, run until SIGTERM.

use agent_comms::startup::App;
use agent_runtime::{config::Settings, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init(settings.log_format);
    let app = App::build(settings).await?;
    app.run_until_stopped(shutdown::signal()).await?;
    Ok(())
}
