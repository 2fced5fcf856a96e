//! A device agent on stdin/stdout backed by the simulator, as a device would
//! run it behind `ssh`: `stdio_agent STATE_DIR [--no-keygen]`. A station
//! reaches it with `exec:stdio_agent STATE_DIR`.

use idmint_agent::{serve_stdio, DeviceSimulator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let state = args
        .next()
        .ok_or("usage: stdio_agent STATE_DIR [--no-keygen]")?;
    let no_keygen = args.any(|a| a == "--no-keygen");
    let device = DeviceSimulator::open(state, None, no_keygen)?;
    serve_stdio(device)?;
    Ok(())
}
