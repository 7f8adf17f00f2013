//! The `picoformer` command-line tool.
fn main() {
    eprintln!("picoformer: no command yet");
    std::process::exit(2);
}
