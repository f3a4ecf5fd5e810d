//! `gcp-secret-manager-emulator --listen 127.0.0.1:PORT`: the emulator as a program.

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8085).into();
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--listen" => args.next(),
            a if a.starts_with("--listen=") => a.strip_prefix("--listen=").map(str::to_owned),
            "-h" | "--help" => {
                println!("usage: gcp-secret-manager-emulator [--listen 127.0.0.1:8085]");
                return std::process::ExitCode::SUCCESS;
            }
            _ => {
                eprintln!(
                    "unknown argument {arg:?}; usage: gcp-secret-manager-emulator [--listen ADDR:PORT]"
                );
                return std::process::ExitCode::from(2);
            }
        };
        match value.as_deref().map(str::parse) {
            Some(Ok(addr)) => listen = addr,
            _ => {
                eprintln!("--listen needs an address such as 127.0.0.1:8085");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let handle = match kms_gcp_emulator::Emulator::new().listen(listen).run().await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("Secret Manager emulator listening on {}", handle.endpoint);
    let _ = tokio::signal::ctrl_c().await;
    handle.stop().await;
    std::process::ExitCode::SUCCESS
}
