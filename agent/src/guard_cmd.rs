//! `softadastra folder accept-deletions|restore-deletions|guard`: a
//! person's answers to the deletion guard, through the running agent or,
//! with none running, on the store (sync carries them out at the next
//! start).

use std::process::ExitCode;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use softadastra::runtime::guard::{self, Decided};

use crate::control::{Reached, Request, call_or_open};
use crate::home::Home;
use crate::members_cmd::{offline_engine, say};

/// What to do with the deletions a folder holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let them go ahead.
    Accept,
    /// Bring back what they would remove.
    Restore,
}

/// `folder accept-deletions ID` / `folder restore-deletions ID`.
pub fn run_decide(home: &Home, id: &str, decision: Decision, json: bool) -> Result<ExitCode> {
    let request = Request::FolderDeletions {
        id: id.to_string(),
        decision,
    };
    let decided: Decided = match call_or_open(home, &request)? {
        Reached::Agent(answer) => serde_json::from_value(answer["decided"].clone())?,
        Reached::Store(mut store) => {
            let mut engine = offline_engine(home)?;
            match decision {
                Decision::Accept => guard::accept(&mut engine, &mut store, id)?.0,
                Decision::Restore => guard::restore(&mut engine, &mut store, id)?.0,
            }
        }
    };
    let prose = match decision {
        Decision::Accept => format!(
            "{id:?}: {} deletion(s) found here will be sent to other devices; {} from other devices are applied here",
            decided.local, decided.remote
        ),
        Decision::Restore => format!(
            "{id:?}: {} path(s) gone here are fetched again from other devices; {} path(s) other devices deleted keep this node's version, which goes back to them",
            decided.local, decided.remote
        ),
    };
    say(
        json,
        serde_json::json!({"id": id, "decision": decision, "decided": decided}),
        &prose,
    )
}

/// `folder guard ID on|off`.
pub fn run_switch(home: &Home, id: &str, state: &str, json: bool) -> Result<ExitCode> {
    let on = crate::members_cmd::on_off("folder guard", state)?;
    let request = Request::FolderGuard {
        id: id.to_string(),
        on,
    };
    if let Reached::Store(mut store) = call_or_open(home, &request)? {
        guard::switch(&mut offline_engine(home)?, &mut store, id, on)?;
    }
    let prose = if on {
        format!(
            "{id:?}: deletion guard on — a deletion of more than half of its files (at least {}) waits for you",
            softadastra::index::guard::MIN_HELD
        )
    } else {
        format!("{id:?}: deletion guard off — deletions of any size go ahead")
    };
    say(json, serde_json::json!({"id": id, "guard": on}), &prose)
}
