//! `cordon run [--config F] [--isolate] [--audit F] -- CMD ARGS…`: cordon's listeners on
//! free loopback ports in this process, then the child with the proxy, a CA bundle that
//! trusts cordon's per-run CA and placeholders for its keys; its output filtered; its exit
//! code returned. Without `--config`, cordon observes and prints an inventory at the end.

use crate::cli::serve::{start, Extras, Role, Running};
use crate::cli::LogFormat;
use crate::config::{self, Config};
use crate::run::output::{self, Reporter, Stream};
use crate::run::{env, isolate, terminal, RunDir};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests may finish after the child has exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the isolation helper's report is still waited for once it has exited (it
/// reports before it starts the command, so the report is then already queued).
const REPORT_AFTER_EXIT: Duration = Duration::from_millis(500);
/// How long cordon waits for the end of the child's pipes once it has exited (a background
/// grandchild may hold them open), unless it is still delivering output to a slow reader
/// of its own.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Arguments of `cordon run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The policy to enforce. Without it cordon observes: everything is allowed and
    /// recorded, HTTPS included, and an inventory is printed when the command exits.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Run the command in its own network namespace whose only way out is cordon (Linux;
    /// needs util-linux `unshare` and iproute2 `ip`). Exit 2 if that cannot be done.
    #[arg(long)]
    pub isolate: bool,
    /// Write the audit trail here (instead of `audit.path`; without --config the default
    /// is $XDG_STATE_HOME/cordon/runs/<time>-<pid>.jsonl).
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// Format of cordon's own log lines on stderr (warnings only unless CORDON_LOG is set).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The command to run, after `--`.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Runs the command under cordon; returns the child's exit code, or 2 when cordon could
/// not start it as asked (config, audit trail, isolation).
pub fn run(args: &RunArgs) -> i32 {
    crate::cli::init_logging_at(args.log_format, tracing::Level::WARN);
    let fail = |message: String| {
        eprintln!("cordon run: {message}");
        2
    };
    // The command runs as the same user as cordon. Not dumpable, cordon's memory and
    // /proc/<pid>/environ (where the real secrets are) are closed to it, and it cannot
    // attach a debugger; the command itself starts dumpable as usual.
    if let Err(err) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        return fail(format!(
            "cannot protect cordon's memory from the command: {err}"
        ));
    }
    let dir = match RunDir::create() {
        Ok(dir) => dir,
        Err(err) => return fail(err),
    };
    let observing = args.config.is_none();
    let mut config = match &args.config {
        Some(path) => match config::load(path) {
            Ok(config) => config,
            Err(err) => return fail(err.to_string()),
        },
        None => match observe_config(args) {
            Ok(config) => config,
            Err(err) => return fail(err),
        },
    };
    if let Some(audit) = &args.audit {
        config.audit.path = audit.clone();
    }
    // Free loopback ports; no admin listener (the agent shares this host's loopback).
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    config.listen.proxy = loopback;
    config.listen.admin = None;
    config.listen.dns = args.isolate.then_some(loopback);
    let tools = if args.isolate {
        match isolate::tools() {
            Ok(tools) => Some(tools),
            Err(err) => {
                return fail(format!(
                    "--isolate: cannot isolate: {err}; the command was not run"
                ))
            }
        }
    } else {
        None
    };
    let system = env::system_bundle();
    // Other local users can reach a loopback port too: the proxy (and the credentials it
    // injects) answers only requests carrying this run's token, which only the command's
    // environment holds.
    let token = match env::proxy_token() {
        Ok(token) => token,
        Err(err) => return fail(err),
    };
    let extras = Extras {
        proxy_authorization: Some(env::proxy_authorization(&token)),
        // A CA made for this run only: the child trusts it for as long as the run lasts.
        ca_dir: Some(dir.path().join("ca")),
        observe_intercept: observing,
        // Observing, origins are trusted as the user's own tools would trust them.
        extra_roots: if observing {
            system.iter().cloned().collect()
        } else {
            Vec::new()
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format!("cannot start the runtime: {err}")),
    };
    let session = Session {
        args,
        config,
        dir: &dir,
        tools,
        system,
        observing,
        token,
    };
    let code = runtime.block_on(session.run(extras));
    // Pumps still blocked on a pipe a grandchild holds must not keep cordon alive.
    runtime.shutdown_background();
    code
}

/// One run, from listeners up to the inventory.
struct Session<'a> {
    args: &'a RunArgs,
    config: Config,
    dir: &'a RunDir,
    tools: Option<isolate::Tools>,
    system: Option<PathBuf>,
    observing: bool,
    /// The proxy URL's password (a secret: never logged).
    token: String,
}

/// Why the command did not run (or not as asked): the exit code, and the message to print
/// once the terminal is back to normal (`None` when it was printed already).
struct NotRun(i32, Option<String>);

impl From<String> for NotRun {
    fn from(message: String) -> NotRun {
        NotRun(2, Some(message))
    }
}

/// A filter thread's result, and how to tell it is still delivering output.
type Filter = (
    tokio::sync::oneshot::Receiver<output::Filtered>,
    Arc<output::Activity>,
);

impl Session<'_> {
    /// Listeners up, the command run and waited for, listeners down, the inventory.
    async fn run(self, extras: Extras) -> i32 {
        let trail = self.config.audit.path.clone();
        let running = match start(self.config.clone(), Role::Run, extras).await {
            Ok(running) => running,
            Err(err) => {
                eprintln!("cordon run: {err}");
                return 2;
            }
        };
        let outcome = self.supervise(&running).await;
        running.stop(DRAIN_AFTER_EXIT).await;
        match outcome {
            Ok(code) => {
                if self.observing {
                    match crate::audit::summary::summarize(
                        &trail,
                        crate::audit::summary::Scope::LastRun,
                    ) {
                        Ok(summary) => eprint!("{}", summary.inventory(&trail)),
                        Err(err) => eprintln!("cordon run: no inventory: {err}"),
                    }
                }
                code
            }
            Err(NotRun(code, message)) => {
                if let Some(message) = message {
                    eprintln!("cordon run: {message}");
                }
                code
            }
        }
    }

    /// Starts the command behind the running proxy and waits for it; its exit code.
    async fn supervise(&self, running: &Running) -> Result<i32, NotRun> {
        let state = &running.state;
        let ca_pem = state
            .ca
            .as_ref()
            .map(|ca| ca.cert_pem())
            .unwrap_or_default();
        let bundle = env::write_bundle(self.dir.path(), self.system.as_deref(), &ca_pem)?;
        let proxy = running
            .proxy_addr
            .ok_or_else(|| "the proxy listener did not start".to_owned())?;
        // On a terminal, the child gets one too (a pseudo-terminal cordon reads from).
        let pty = terminal::wanted()
            .then(|| {
                terminal::Pty::open()
                    .map_err(|err| {
                        tracing::warn!(error = %err, "no pseudo-terminal; the command's output goes through pipes")
                    })
                    .ok()
            })
            .flatten();
        let (mut cmd, bridge) = self.command(running, proxy, pty.is_some())?;
        cmd.env_clear().envs(env::child_env(
            std::env::vars_os(),
            &self.config,
            proxy,
            &self.token,
            &bundle,
        ));
        let readers = wire_stdio(&mut cmd, pty.as_ref())?;

        let raw = pty.as_ref().and_then(|_| terminal::RawMode::enter().ok());
        let signals = crate::run::Signals::catch();
        let spawned = crate::run::spawn(&mut cmd, &self.args.command[0]);
        // Our copies of the child's ends must close, or the filters never see the end.
        drop(cmd);
        let mut child = spawned.map_err(|code| NotRun(code, None))?;
        if let Some(writer) = pty.as_ref().and_then(|pty| pty.writer().ok()) {
            terminal::forward_input(writer);
        }
        let filters = self.filter_output(state, readers);

        if let Some(bridge) = &bridge {
            if let Some(why) = isolation_refused(bridge, &mut child).await {
                let _ = child.start_kill();
                let _ = child.wait().await;
                for (done, activity) in filters {
                    drain_output(done, &activity).await;
                }
                drop(raw);
                return Err(
                    format!("--isolate: cannot isolate: {why}; the command was not run").into(),
                );
            }
        }
        let code = crate::run::wait_forwarding(&mut child, pty.as_ref(), signals).await;
        for (done, activity) in filters {
            drain_output(done, &activity).await;
        }
        drop(raw);
        Ok(code)
    }

    /// The command to spawn: the child itself, or `cordon session` (on a terminal), or
    /// `unshare … cordon isolated` with the bridge it reports to (`--isolate`).
    fn command(
        &self,
        running: &Running,
        proxy: SocketAddr,
        session: bool,
    ) -> Result<(tokio::process::Command, Option<isolate::Bridge>), String> {
        let cannot =
            |err: String| format!("--isolate: cannot isolate: {err}; the command was not run");
        match (&self.tools, running.dns_addr) {
            (Some(tools), Some(dns)) => {
                let bridge = isolate::Bridge::open(self.dir.path(), proxy, dns).map_err(cannot)?;
                let cmd = isolate::command(
                    tools,
                    self.dir.path(),
                    proxy.port(),
                    session,
                    &self.args.command,
                )
                .map_err(cannot)?;
                Ok((cmd, Some(bridge)))
            }
            // Never fall through to running the command unisolated.
            (Some(_), None) => Err(cannot("cordon's DNS listener did not start".into())),
            (None, _) if session => Ok((crate::run::session_command(&self.args.command)?, None)),
            (None, _) => {
                let mut cmd = tokio::process::Command::new(&self.args.command[0]);
                cmd.args(&self.args.command[1..]);
                Ok((cmd, None))
            }
        }
    }

    /// One thread per output stream of the child, through the scanner to cordon's own.
    fn filter_output(
        &self,
        state: &Arc<crate::proxy::State>,
        readers: Vec<(std::fs::File, Stream)>,
    ) -> Vec<Filter> {
        let action = self.config.scanning.output;
        let reporter = Reporter {
            audit: state.audit.clone(),
            stamp: state.stamp.clone(),
            metrics: state.metrics.clone(),
        };
        readers
            .into_iter()
            .map(|(reader, stream)| {
                let reporter = reporter.clone();
                // The current scanner: it knows a credential's value after a rotation too.
                let state = state.clone();
                let scanner = move || state.scanning.scanner();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let activity = Arc::new(output::Activity::default());
                let watched = activity.clone();
                std::thread::spawn(move || {
                    let to: Box<dyn std::io::Write> = match stream {
                        Stream::Stderr => Box::new(std::io::stderr()),
                        Stream::Stdout | Stream::Terminal => Box::new(std::io::stdout()),
                    };
                    let filtered =
                        output::pump(reader, to, stream, &scanner, action, &reporter, &activity);
                    let _ = done_tx.send(filtered);
                });
                (done_rx, watched)
            })
            .collect()
    }
}

/// Waits for the isolation helper's report; `Some(why)` when the namespace could not be
/// set up (the command has not run).
async fn isolation_refused(
    bridge: &isolate::Bridge,
    child: &mut tokio::process::Child,
) -> Option<String> {
    let ready = bridge.ready();
    tokio::pin!(ready);
    let first = tokio::select! {
        ready = &mut ready => Ok(ready),
        status = child.wait() => Err(status),
    };
    match first {
        Ok(ready) => ready.err(),
        // A quick command can be over before its helper's report is read: the report
        // (readiness or the problem) is then already queued on the socket.
        Err(status) => match tokio::time::timeout(REPORT_AFTER_EXIT, &mut ready).await {
            Ok(ready) => ready.err(),
            Err(_) => Some(match status {
                Ok(status) => {
                    format!("the namespace could not be created ({status}; see the message above)")
                }
                Err(err) => format!("the namespace helper failed: {err}"),
            }),
        },
    }
}

/// Waits, once the child has exited, for a filter to reach the end of the child's pipe:
/// for as long as it is delivering output (however slowly cordon's own output is read),
/// else for [`OUTPUT_AFTER_EXIT`] at a time.
async fn drain_output<T>(done: tokio::sync::oneshot::Receiver<T>, activity: &output::Activity) {
    tokio::pin!(done);
    while tokio::time::timeout(OUTPUT_AFTER_EXIT, &mut done)
        .await
        .is_err()
    {
        if !activity.writing() {
            return;
        }
    }
}

/// The policy of a run without `--config`: observe mode, nothing listed.
fn observe_config(args: &RunArgs) -> Result<Config, String> {
    let audit = match &args.audit {
        Some(path) => path.clone(),
        None => default_trail()?,
    };
    let name = Path::new(&args.command[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let name = if name.is_empty() {
        "agent".to_owned()
    } else {
        name
    };
    // Observing, the agent still holds its own keys: blocking them (or redacting a token
    // endpoint's answer) would stop the very session being observed. Traffic findings are
    // recorded and listed in the inventory ("credentials seen in traffic"); what the
    // child prints is still redacted.
    let yaml = format!(
        "version: 1\nagent: {{ name: {} }}\nmode: observe\naudit: {{ path: {} }}\n\
         scanning: {{ outbound: log, inbound: log, output: redact }}\n",
        config::yaml_string(&name),
        config::yaml_string(&audit.to_string_lossy())
    );
    config::parse(
        Path::new("(cordon run without --config)"),
        yaml.as_bytes(),
        &|name| std::env::var(name),
    )
    .map_err(|e| e.to_string())
}

/// `$XDG_STATE_HOME/cordon/runs/<time>-<pid>.jsonl` (`~/.local/state` when unset); the
/// directory is created private.
fn default_trail() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state"),
            None => {
                return Err(
                    "neither XDG_STATE_HOME nor HOME is set; give the trail with --audit".into(),
                )
            }
        },
    };
    let dir = base.join("cordon").join("runs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    Ok(dir.join(format!("{now}-{}.jsonl", std::process::id())))
}

/// Connects the child's stdin, stdout and stderr: to the pseudo-terminal when there is one,
/// else stdin inherited and the other two to pipes. Returns what the filters read.
fn wire_stdio(
    cmd: &mut tokio::process::Command,
    pty: Option<&terminal::Pty>,
) -> Result<Vec<(std::fs::File, Stream)>, String> {
    use std::io::IsTerminal;
    let pipe = || std::io::pipe().map_err(|e| format!("cannot create the output pipes: {e}"));
    if let Some(pty) = pty {
        let slave = pty
            .open_slave()
            .map_err(|e| format!("cannot open the pseudo-terminal: {e}"))?;
        let clone = |f: &std::fs::File| {
            f.try_clone()
                .map_err(|e| format!("cannot open the pseudo-terminal: {e}"))
        };
        cmd.stdin(clone(&slave)?).stdout(clone(&slave)?);
        let reader = pty
            .reader()
            .map_err(|e| format!("cannot read the pseudo-terminal: {e}"))?;
        let mut readers = vec![(reader, Stream::Terminal)];
        if std::io::stderr().is_terminal() {
            cmd.stderr(slave);
        } else {
            // cordon's stderr goes elsewhere (`2> log`): so does the command's.
            let (err_r, err_w) = pipe()?;
            cmd.stderr(err_w);
            readers.push((
                std::fs::File::from(std::os::fd::OwnedFd::from(err_r)),
                Stream::Stderr,
            ));
        }
        return Ok(readers);
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    cmd.stdin(std::process::Stdio::inherit())
        .stdout(out_w)
        .stderr(err_w);
    Ok(vec![
        (
            std::fs::File::from(std::os::fd::OwnedFd::from(out_r)),
            Stream::Stdout,
        ),
        (
            std::fs::File::from(std::os::fd::OwnedFd::from(err_r)),
            Stream::Stderr,
        ),
    ])
}
