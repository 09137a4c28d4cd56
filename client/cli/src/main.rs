//! The `tooltool` command: everything happens in [`tooltool_cli::run`].

fn main() {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot read the current directory: {e}");
            std::process::exit(tooltool_cli::FAILURE);
        }
    };
    std::process::exit(tooltool_cli::run(std::env::args_os(), &cwd));
}
