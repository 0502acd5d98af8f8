//! The task-generator binary: settings, telemetry, app, run until SIGTERM.

use agent_runtime::{config::Settings, shutdown, telemetry};
use task_generator::startup::App;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let telemetry = telemetry::init(settings.log_format, task_generator::SERVICE)?;
    let app = App::build(settings).await?;
    let stopped = app.run_until_stopped(shutdown::signal()).await;
    telemetry.shutdown();
    Ok(stopped?)
}
