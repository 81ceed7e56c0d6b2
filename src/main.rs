//! The `kedai` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    match kedai::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
