fn main() -> std::process::ExitCode {
    wcgid::cli::main()
}
