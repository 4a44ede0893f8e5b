fn main() {
    std::process::exit(tend::run(std::env::args_os()));
}
