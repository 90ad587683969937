//! cli: a command is a thin layer — parse, call one module, print. This
//! tiny command line over the SDK client does `put KEY VALUE`, `get KEY`,
//! `rm KEY` and `list [PREFIX]` on a node whose home is `--home DIR`
//! (default: a temporary one). With no command it runs a short script.
//!
//! Run: `cargo run -p softadastra --example cli_command -- put greeting hello`
//! (add `--home DIR` to keep the node between runs).

use std::process::ExitCode;

use softadastra::client::{Client, ClientError, ClientOptions};

/// One command, parsed.
enum Command {
    Put(String, String),
    Get(String),
    Rm(String),
    List(String),
}

fn parse(args: &[String]) -> Result<Command, String> {
    match args {
        [c, k, v] if c == "put" => Ok(Command::Put(k.clone(), v.clone())),
        [c, k] if c == "get" => Ok(Command::Get(k.clone())),
        [c, k] if c == "rm" => Ok(Command::Rm(k.clone())),
        [c] if c == "list" => Ok(Command::List(String::new())),
        [c, p] if c == "list" => Ok(Command::List(p.clone())),
        _ => Err(format!(
            "unknown command {args:?}; use put KEY VALUE | get KEY | rm KEY | list [PREFIX]"
        )),
    }
}

/// Run one command against the client: the only place that calls the engine.
fn run(client: &Client, command: Command) -> Result<ExitCode, ClientError> {
    match command {
        Command::Put(k, v) => println!("stored {k} at sequence {}", client.put(&k, v)?),
        Command::Get(k) => match client.get(&k) {
            Some(v) => println!("{}", String::from_utf8_lossy(&v)),
            None => {
                eprintln!("{k}: not found");
                return Ok(ExitCode::from(2));
            }
        },
        Command::Rm(k) => {
            let removed = client.remove(&k)?;
            println!("{k}: {}", if removed { "removed" } else { "not found" });
        }
        Command::List(prefix) => {
            for (k, v) in client.list(&prefix) {
                println!("{k}\t{}", String::from_utf8_lossy(&v));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let temp = tempfile::tempdir().ok();
    let home = match args.iter().position(|a| a == "--home") {
        Some(i) if i + 1 < args.len() => {
            let home = args.remove(i + 1);
            args.remove(i);
            std::path::PathBuf::from(home)
        }
        Some(_) => {
            eprintln!("error: --home needs a directory");
            return ExitCode::from(2);
        }
        None => match &temp {
            Some(t) => t.path().join("node"),
            None => {
                eprintln!("error: no temporary directory; pass --home DIR");
                return ExitCode::FAILURE;
            }
        },
    };
    let client = match Client::open(ClientOptions::new(&home)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot open the node in {}: {e}", home.display());
            return ExitCode::FAILURE;
        }
    };
    let script: Vec<Vec<String>> = if args.is_empty() {
        [
            "put greeting hello",
            "put user:1 Ada",
            "get greeting",
            "list user:",
            "rm greeting",
            "frobnicate",
        ]
        .iter()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
    } else {
        vec![args]
    };
    let mut code = ExitCode::SUCCESS;
    for line in script {
        println!("> {}", line.join(" "));
        code = match parse(&line)
            .map_err(|e| e.to_string())
            .and_then(|c| run(&client, c).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    // The script ends with a bad command on purpose: that is not a failure
    // of the example.
    if std::env::args().len() <= 1 {
        return ExitCode::SUCCESS;
    }
    code
}
