//! cordon's entry point: arguments → subcommand → exit code.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cordon",
    version,
    about = "Keeps an AI agent on zero-trust rails: allowlisted egress, audited decisions."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (and admin listener) until SIGTERM or SIGINT.
    #[command(after_help = "Example:\n  cordon serve --config examples/cordon.yaml")]
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Log line format on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: cordon::cli::LogFormat,
    },
    /// Run the filtering DNS resolver (listen.dns) until SIGTERM or SIGINT.
    #[command(
        after_help = "Example:\n  cordon dns --config examples/cordon.yaml\n  dig @127.0.0.1 -p 15053 api.example.com"
    )]
    Dns {
        #[arg(long, short)]
        config: PathBuf,
        /// Log line format on stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: cordon::cli::LogFormat,
    },
    /// Validate a config, test its listeners and credential sources, and print the
    /// effective policy (exit 0, or 2 with the problem).
    #[command(after_help = "Example:\n  cordon check --config examples/cordon.yaml")]
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Do not ask the credential sources for a value (by default each is fetched once,
        /// as `serve` does at start: an unset variable or a failing plug-in is an error).
        #[arg(long)]
        no_fetch: bool,
    },
    /// Find secrets in files, directories or stdin (exit 0 clean, 1 findings, 2 error).
    #[command(
        after_help = "Examples:\n  cordon scan .\n  cordon scan --format sarif src/ > cordon.sarif\n  some-agent 2>&1 | cordon scan --redact > agent.log"
    )]
    Scan(cordon::cli::scan::ScanArgs),
    /// Manage the local CA that signs certificates for intercepted hosts.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Work with audit trails.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run a command behind cordon: its traffic through the proxy, its keys replaced by
    /// placeholders, its output filtered for secrets; exits with the command's exit code.
    #[command(
        after_help = "Examples:\n  cordon run -- python3 agent.py                 # observe: allow, record, print an inventory\n  cordon run --config cordon.yaml -- some-agent  # enforce the policy\n  cordon run --isolate --config cordon.yaml -- some-agent  # and give it no other way out"
    )]
    Run(cordon::cli::run::RunArgs),
    /// Work with policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Runs inside the namespace `cordon run --isolate` creates (not for direct use).
    #[command(hide = true)]
    Isolated {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        proxy_port: u16,
        #[arg(long)]
        session: bool,
        #[arg(required = true, last = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Starts a command as a session leader on its terminal (not for direct use).
    #[command(hide = true)]
    Session {
        #[arg(required = true, last = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Write the smallest cordon.yaml under which what an audit trail shows passes in
    /// enforce mode (exact hosts, ports, methods and paths; nothing broader).
    #[command(
        after_help = "Example:\n  cordon run -- ./agent.sh\n  cordon policy suggest --from ~/.local/state/cordon/runs/<run>.jsonl --out cordon.yaml\n  cordon check --config cordon.yaml"
    )]
    Suggest {
        /// The audit trail to learn from (its chain must verify).
        #[arg(long)]
        from: PathBuf,
        /// Write the config here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA if absent (key mode 0600) and print its fingerprint.
    #[command(after_help = "Example:\n  cordon ca init --dir /var/lib/cordon/ca")]
    Init(#[command(flatten)] cordon::cli::ca::CaLocation),
    /// Print the CA certificate (PEM) for the agent's trust store; never creates one.
    #[command(after_help = "Example:\n  cordon ca export --config cordon.yaml > cordon-ca.pem")]
    Export(#[command(flatten)] cordon::cli::ca::CaLocation),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain (exit 0 intact, 1 broken with the first bad seq, 2 unreadable).
    #[command(after_help = "Example:\n  cordon audit verify /var/log/cordon/audit.jsonl")]
    Verify { file: PathBuf },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Serve { config, log_format } => cordon::cli::serve::run(&config, log_format),
        Command::Dns { config, log_format } => {
            cordon::cli::serve::run_role(&config, log_format, cordon::cli::serve::Role::Dns)
        }
        Command::Check { config, no_fetch } => cordon::cli::check::run(&config, no_fetch),
        Command::Scan(args) => cordon::cli::scan::run(&args),
        Command::Ca {
            command: CaCommand::Init(location),
        } => cordon::cli::ca::init(&location),
        Command::Ca {
            command: CaCommand::Export(location),
        } => cordon::cli::ca::export(&location),
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => cordon::cli::audit::verify(&file),
        Command::Run(args) => cordon::cli::run::run(&args),
        Command::Policy {
            command: PolicyCommand::Suggest { from, out },
        } => cordon::cli::policy::suggest(&from, out.as_deref()),
        Command::Isolated {
            dir,
            proxy_port,
            session,
            command,
        } => cordon::run::isolate::inside(&dir, proxy_port, session, &command),
        Command::Session { command } => cordon::run::terminal::become_session_leader(&command),
    };
    std::process::exit(code);
}
