//! `softadastra` — the agent binary: command-line interface over the engine.
//!
//! Errors are reported with their full cause chain on stderr and a non-zero
//! exit status; `--json` output is for scripts and never mixes in prose.

mod config;
mod conflicts_cmd;
mod control;
mod demo_cmd;
mod events_cmd;
mod folder_cmd;
mod guard_cmd;
mod history_cmd;
mod home;
mod install_cmd;
mod members_cmd;
mod node_cmd;
mod repair_cmd;
mod run_cmd;
mod store_cmd;
mod tray;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Local-first file sync: keep a folder identical across your machines.
#[derive(Debug, Parser)]
#[command(name = "softadastra", version, about, propagate_version = true)]
struct Cli {
    /// Node home directory (identity, store, logs). Defaults to the OS data
    /// directory; use different homes to run several nodes on one machine.
    #[arg(long, global = true, env = "SOFTADASTRA_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Every option with the value in force (the file's, or the default).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Where the configuration file is (it need not exist).
    Path,
}

fn config_show(home: &home::Home, json: bool) -> anyhow::Result<ExitCode> {
    let c = config::Config::load(&home.config)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        let exists = if home.config.exists() {
            ""
        } else {
            " (does not exist: all defaults)"
        };
        println!("# {}{exists}", home.config.display());
        print!("{}", c.to_toml());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Per folder: what is still needed (files, bytes), queued, in flight,
    /// and failing (with the paths), from the running agent.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this node's identity (certificate and key) and print its id.
    Init {
        /// Display name (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print this node's id, to give to the peers that should trust it.
    Id,
    /// Run the node in the foreground: listen, find and connect to trusted
    /// peers, sync every shared folder. `run PATH` first shares PATH (and
    /// creates the node's identity if there is none): one command to start.
    Run {
        /// Share this directory before running (if it is not shared yet).
        #[arg(value_name = "PATH")]
        path: Option<std::path::PathBuf>,
        /// Folder id for PATH (default: derived from its name; the same id
        /// on every machine syncs the folder).
        #[arg(long, value_name = "ID", requires = "path")]
        id: Option<String>,
        /// Address to listen on for peers (default 0.0.0.0:7420).
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<String>,
        /// Days replaced and deleted versions stay in each folder's history
        /// (`.softadastra/versions`) when the folder has no retention policy
        /// of its own (default 30; see `folder versions`).
        #[arg(long, value_name = "DAYS", env = "SOFTADASTRA_TRASH_DAYS")]
        trash_days: Option<u32>,
        /// Also log to a daily-rotated file in `<home>/logs/` (what the
        /// installed service does; `softadastra log` shows it).
        #[arg(long)]
        log_file: bool,
        /// Also show the tray icon (built with the `tray` feature).
        #[arg(long)]
        tray: bool,
        #[command(flatten)]
        discovery: run_cmd::DiscoveryArgs,
    },
    /// Manage the nodes this node trusts.
    #[command(subcommand)]
    Peer(node_cmd::PeerCommand),
    /// Print a one-time code that pairs another machine with this one (the agent must be running).
    Invite {
        /// Share this folder with the joiner.
        #[arg(long, value_name = "FOLDER_ID")]
        folder: Option<String>,
        /// Minutes the code stays valid.
        #[arg(long, value_name = "MINUTES", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=10080))]
        valid: u64,
        /// An address the joiner can reach this node at, ahead of the ones found locally (repeatable).
        #[arg(long, value_name = "IP:PORT")]
        addr: Vec<String>,
    },
    /// Pair with the machine that printed CODE (`softadastra invite` there).
    Join {
        /// The invite code.
        code: String,
        /// Where to keep the folder the invite shares.
        path: Option<PathBuf>,
        /// Port this node's agent listens on, for the inviter to dial back
        /// (only used when the agent is not running; default 7420).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Trusted peers and their connection state, and nodes nearby on the LAN.
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// See it work on one machine: two nodes sync two folders while the
    /// demo narrates (loopback only; nothing leaves this machine).
    Demo {
        /// Where the two nodes and their folders go (empty or new; default:
        /// a new directory under the system temp dir).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Stop after the narrated steps instead of running on.
        #[arg(long)]
        once: bool,
    },
    /// Show the sync state in the system tray, following the running agent
    /// (built with the `tray` feature).
    Tray {
        /// Quit after this many seconds (for tests and screenshots).
        #[arg(long, value_name = "SECONDS", hide = true)]
        exit_after: Option<f64>,
        /// Print the menu (JSON) to stderr whenever it changes (for tests).
        #[arg(long, hide = true)]
        print_menu: bool,
    },
    /// Start the agent at every login of this user (systemd user unit,
    /// LaunchAgent or Run entry), and now.
    Install {
        /// Also start the tray icon at login (the default when this build
        /// has the tray and a graphical session is running).
        #[arg(long, conflicts_with = "no_tray")]
        tray: bool,
        /// Do not start the tray icon at login.
        #[arg(long)]
        no_tray: bool,
        /// Print what would be written and run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Register, but do not start it now.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop starting the agent at login (synced data is left alone).
    Uninstall {
        /// Print what would be removed and run; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sync progress.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the agent's log file (written by `run --log-file`, as the
    /// installed service runs).
    Log {
        /// Lines from the end.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print a shell completion script, e.g.
    /// `softadastra completions bash > ~/.local/share/bash-completion/completions/softadastra`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// This node's description: id, name, host, OS, version, capabilities, uptime.
    Node {
        #[arg(long)]
        json: bool,
    },
    /// The node at a glance: agent, peers, folders, store.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Follow what the running agent does: files synced in and out,
    /// deletions, conflicts, folder states, peers, errors, offers, held
    /// deletions. Each event has a number; --since N resumes after it.
    Events {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Start after this event number (0: every event the agent keeps;
        /// default: only new ones).
        #[arg(long, value_name = "N")]
        since: Option<u64>,
        /// Print what is there and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Stop the running agent.
    Shutdown,
    /// Read and write the node's key/value store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Inspect the write-ahead log.
    #[command(subcommand)]
    Wal(store_cmd::WalCommand),
    /// Make a damaged store open again (the agent stopped): keeps a copy of
    /// the damaged files, salvages every readable change, says what was
    /// lost, and indexes each folder again from its disk.
    Repair {
        #[arg(long)]
        json: bool,
    },
    /// Manage shared folders.
    #[command(subcommand)]
    Folder(folder_cmd::FolderCommand),
    /// A file's kept versions (what sync replaced or deleted, a settled
    /// conflict's loser, …), newest first; or, with --deleted FOLDER, the
    /// deleted files that can come back.
    History {
        /// The file (it may be deleted).
        #[arg(required_unless_present = "deleted")]
        path: Option<PathBuf>,
        /// List deleted files of this folder that have a kept version.
        #[arg(long, value_name = "FOLDER", conflicts_with = "path")]
        deleted: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Get a kept version back: in place (what is there is kept first; the
    /// change syncs) or --to another path. With --folder ID --at TIME, put
    /// a whole folder back as it was then (--dry-run: only say how).
    #[command(disable_version_flag = true)]
    Restore {
        /// The file (it may be deleted).
        #[arg(required_unless_present = "folder")]
        path: Option<PathBuf>,
        /// Put this whole folder back as it was --at TIME: files changed or
        /// deleted since get the version they had; files created since are
        /// set aside into the history.
        #[arg(long, value_name = "ID", conflicts_with_all = ["path", "version", "to"], requires = "at")]
        folder: Option<String>,
        /// With --folder: print what it would do and change nothing.
        #[arg(long, requires = "folder")]
        dry_run: bool,
        /// Which version, as `history` numbers them (default 1, the newest).
        #[arg(long, value_name = "N")]
        version: Option<usize>,
        /// The version that was the file at this time (UTC
        /// `YYYY-MM-DD HH:MM[:SS]`, or Unix seconds).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Write it there instead (never over an existing file).
        #[arg(long, value_name = "DEST")]
        to: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Files two devices changed at once: each with both versions'
    /// devices and times and where the conflict copy is.
    Conflicts {
        #[command(subcommand)]
        command: Option<conflicts_cmd::ConflictsCommand>,
        /// Only this folder.
        #[arg(long)]
        folder: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show the index: every path of a folder (or all folders) with size, hash and version.
    Ls {
        /// Folder id (default: all folders).
        folder: Option<String>,
        /// Include deleted paths.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Keep the index of shared folders up to date in the foreground (Ctrl-C stops).
    Watch {
        /// Folder id (default: every active folder).
        folder: Option<String>,
    },
    /// Scan a directory once: index it if it is shared, otherwise just report.
    Scan {
        /// The directory.
        path: PathBuf,
        /// Print the report as JSON (no progress bar).
        #[arg(long)]
        json: bool,
    },
}

/// Logs: to stderr always; for `run`, at the config's level and — with
/// `--log-file` or `log.file = true` — also to a daily-rotated file in the
/// home. One-shot commands print their own warnings, so their logs add
/// only errors.
fn init_logs(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let run = match &cli.command {
        Command::Run { log_file, .. } => Some(*log_file),
        _ => None,
    };
    let home = home::Home::resolve(cli.home.clone()).ok();
    let config = match (&run, &home) {
        (Some(_), Some(h)) => config::Config::load(&h.config).ok(),
        _ => None,
    };
    let level = match (&run, &config) {
        (Some(_), Some(c)) => c.log.level.clone(),
        (Some(_), None) => "info".into(),
        (None, _) => "error".into(),
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("SOFTADASTRA_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&level))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let to_file = run.unwrap_or(false) || config.as_ref().is_some_and(|c| c.log.file);
    let file = match (to_file, &home) {
        (true, Some(h)) => tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("softadastra")
            .filename_suffix("log")
            .max_log_files(config.as_ref().map_or(7, |c| c.log.keep_files).max(1))
            .build(h.log_dir())
            .map_err(|e| eprintln!("warning: no log file in {}: {e}", h.log_dir().display()))
            .ok(),
        _ => None,
    };
    let file_layer = file.map(|w| {
        tracing_subscriber::fmt::layer()
            .with_writer(w)
            .with_ansi(false)
            .with_filter(filter())
    });
    use tracing_subscriber::Layer;
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter()))
        .with(file_layer)
        .init();
}

fn main() -> ExitCode {
    run_cmd::memory::keep_large_blocks_apart();
    let cli = Cli::parse();
    init_logs(&cli);
    repair_cmd::explain_damaged_database_panics(matches!(cli.command, Command::Run { .. }));
    let result = home::Home::resolve(cli.home).and_then(|home| match cli.command {
        Command::Init { name } => node_cmd::run_init(&home, name),
        Command::Id => node_cmd::run_id(&home),
        Command::Config(ConfigCommand::Show { json }) => config_show(&home, json),
        Command::Config(ConfigCommand::Path) => {
            println!("{}", home.config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Log { lines, follow } => run_cmd::run_log(&home, lines, follow),
        Command::Run {
            path,
            id,
            listen,
            trash_days,
            discovery,
            log_file: _,
            tray,
        } => run_cmd::run(
            &home,
            run_cmd::RunOptions {
                share: path,
                id,
                listen,
                trash_days,
                lan: discovery,
                tray,
            },
        ),
        Command::Peer(cmd) => node_cmd::run_peer(&home, cmd),
        Command::Invite {
            folder,
            valid,
            addr,
        } => run_cmd::run_invite(&home, folder, Some(valid), addr),
        Command::Join { code, path, port } => run_cmd::run_join(&home, code, path, port),
        Command::Peers { json } => run_cmd::run_peers(&home, json),
        Command::Node { json } => run_cmd::run_node(&home, json),
        Command::Sync(SyncCommand::Status { json }) => run_cmd::run_sync_status(&home, json),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "softadastra",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Install {
            tray,
            no_tray,
            dry_run,
            no_start,
        } => {
            let tray = install_cmd::with_tray(tray, no_tray);
            install_cmd::run_install(&home, tray, dry_run, no_start)
        }
        Command::Uninstall { dry_run } => install_cmd::run_uninstall(&home, dry_run),
        Command::Demo { dir, once } => demo_cmd::run_demo(dir, once),
        Command::Tray {
            exit_after,
            print_menu,
        } => tray::run_tray(
            &home,
            tray::TrayOptions {
                exit_after: exit_after.map(std::time::Duration::from_secs_f64),
                print_menu,
            },
        ),
        Command::Status { json } => run_cmd::run_status(&home, json),
        Command::Events {
            json,
            since,
            no_follow,
        } => events_cmd::run_events(&home, json, since, !no_follow),
        Command::Shutdown => run_cmd::run_shutdown(&home),
        Command::Store(cmd) => store_cmd::run_store(&home, cmd),
        Command::Wal(cmd) => store_cmd::run_wal(&home, cmd),
        Command::Repair { json } => repair_cmd::run_repair(&home, json),
        Command::Folder(cmd) => folder_cmd::run_folder(&home, cmd),
        Command::History {
            path,
            deleted,
            json,
        } => match (path, deleted) {
            (_, Some(id)) => history_cmd::run_deleted(&home, &id, json),
            (Some(path), None) => history_cmd::run_history(&home, &path, json),
            (None, None) => Err(anyhow::anyhow!("give a PATH, or --deleted FOLDER")),
        },
        Command::Restore {
            path,
            folder,
            dry_run,
            version,
            at,
            to,
            json,
        } => match (path, folder) {
            (_, Some(id)) => {
                history_cmd::run_restore_folder(&home, &id, at.as_deref(), dry_run, json)
            }
            (Some(path), None) => {
                history_cmd::run_restore(&home, &path, version, at.as_deref(), to.as_deref(), json)
            }
            (None, None) => Err(anyhow::anyhow!("give a PATH, or --folder ID --at TIME")),
        },
        Command::Conflicts {
            command,
            folder,
            json,
        } => match command {
            None => conflicts_cmd::run_list(&home, folder.as_deref(), json),
            Some(conflicts_cmd::ConflictsCommand::Resolve { path, keep, json }) => {
                conflicts_cmd::run_resolve(&home, &path, &keep, json)
            }
        },
        Command::Ls { folder, all, json } => folder_cmd::run_ls(&home, folder, json, all),
        Command::Scan { path, json } => folder_cmd::run_scan(&home, &path, json),
        Command::Watch { folder } => folder_cmd::run_watch(&home, folder),
    });
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Output piped into `head` and closed early is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
