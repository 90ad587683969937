//! The tray icon itself (built with the `tray` feature): GTK's loop on
//! this thread, the icon, its tooltip and its menu drawn from
//! [`menu::model`], clicks carried out through [`super::perform`], and
//! notifications shown for the events [`Notifier`] picks.
//!
//! The menu is rebuilt only when its entries change (a folder added, an
//! attention item, a recent file); otherwise labels and enabled states are
//! updated in place, so a menu a person has open is not pulled from under
//! them every second while a folder syncs.

use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use softadastra::runtime::conflicts::Conflict;
use softadastra::runtime::events::{Event, What};
use softadastra::runtime::status::NodeStatus;
use tray_icon::menu::{IsMenuItem, Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use super::menu::{self, Action, Item};
use super::notify::{self, Notifier};
use super::{TrayOptions, TrayState, follow, icon_rgba, perform, summarize};
use crate::home::Home;

/// Events kept for "Recent changes" (file events are picked from them).
const KEPT_EVENTS: usize = 64;

/// A drawn entry, to update in place.
enum Drawn {
    Item(MenuItem),
    Sub(Submenu),
}

/// The menu as drawn: its entries by id, and which id each click means.
struct Drawing {
    shape: Vec<String>,
    entries: HashMap<String, Drawn>,
    clicks: HashMap<MenuId, String>,
}

/// The ids of `items` in order, separators included: when this changes
/// the menu is rebuilt.
fn shape(items: &[Item], out: &mut Vec<String>) {
    for i in items {
        match i {
            Item::Separator => out.push("-".into()),
            Item::Entry(e) => {
                out.push(e.id.clone());
                shape(&e.children, out);
                out.push("<".into());
            }
        }
    }
}

fn draw_into(
    items: &[Item],
    append: &dyn Fn(&dyn IsMenuItem) -> Result<()>,
    d: &mut Drawing,
) -> Result<()> {
    for i in items {
        match i {
            Item::Separator => append(&PredefinedMenuItem::separator())?,
            Item::Entry(e) if !e.children.is_empty() => {
                let sub = Submenu::new(&e.label, e.enabled);
                draw_into(
                    &e.children,
                    &|item| sub.append(item).map_err(|x| anyhow!("{x}")),
                    d,
                )?;
                append(&sub)?;
                d.entries.insert(e.id.clone(), Drawn::Sub(sub));
            }
            Item::Entry(e) => {
                let item = MenuItem::new(&e.label, e.enabled, None);
                append(&item)?;
                d.clicks.insert(item.id().clone(), e.id.clone());
                d.entries.insert(e.id.clone(), Drawn::Item(item));
            }
        }
    }
    Ok(())
}

fn draw(items: &[Item]) -> Result<(Menu, Drawing)> {
    let menu = Menu::new();
    let mut d = Drawing {
        shape: Vec::new(),
        entries: HashMap::new(),
        clicks: HashMap::new(),
    };
    shape(items, &mut d.shape);
    draw_into(
        items,
        &|item| menu.append(item).map_err(|x| anyhow!("{x}")),
        &mut d,
    )
    .context("cannot build the tray menu")?;
    Ok((menu, d))
}

/// Labels and enabled states of an unchanged shape, set in place.
fn update(items: &[Item], d: &Drawing) {
    for i in items {
        let Item::Entry(e) = i else { continue };
        match d.entries.get(&e.id) {
            Some(Drawn::Item(m)) => {
                m.set_text(&e.label);
                m.set_enabled(e.enabled);
            }
            Some(Drawn::Sub(s)) => {
                s.set_text(&e.label);
                s.set_enabled(e.enabled);
            }
            None => {}
        }
        update(&e.children, d);
    }
}

/// What the tray knows of the agent.
#[derive(Default)]
struct Known {
    status: Option<Box<NodeStatus>>,
    conflicts: Vec<Conflict>,
    recent: VecDeque<Event>,
}

fn icon(state: TrayState) -> Result<Icon> {
    Icon::from_rgba(icon_rgba(state), 32, 32).map_err(|e| anyhow!("bad tray icon: {e}"))
}

/// Run the tray until "Quit tray" (or `options.exit_after`).
pub fn run(home: &Home, options: TrayOptions) -> Result<ExitCode> {
    #[cfg(target_os = "linux")]
    gtk::init().map_err(|e| {
        anyhow!("cannot start the tray: no graphical session ({e}); is DISPLAY set?")
    })?;
    let config = crate::config::Config::load(&home.config)?;
    let mut notifier = Notifier::new(config.desktop.notifications);
    let updates = follow::start(home.clone());
    let mut known = Known::default();
    let (mut shown, mut tip) = summarize(None);
    let model = |known: &Known, tip: &str| {
        let recent: Vec<Event> = known.recent.iter().cloned().collect();
        menu::model(&menu::View {
            status: known.status.as_deref(),
            recent: &recent,
            conflicts: &known.conflicts,
            headline: tip.lines().next().unwrap_or(""),
            log_dir: &home.log_dir(),
        })
    };
    let mut items = model(&known, &tip);
    let (menu, mut drawing) = draw(&items)?;
    let tray: TrayIcon = TrayIconBuilder::new()
        .with_menu(Box::new(menu))
        .with_tooltip(&tip)
        .with_title("Softadastra")
        .with_icon(icon(shown)?)
        .build()
        .context("cannot create the tray icon (is a system tray running?)")?;
    eprintln!("tray: {tip}");
    let print_menu = |items: &[Item]| {
        if options.print_menu {
            eprintln!(
                "tray-menu: {}",
                serde_json::to_string(items).unwrap_or_default()
            );
        }
    };
    print_menu(&items);
    let started = Instant::now();
    let mut told_off = false;
    loop {
        #[cfg(target_os = "linux")]
        while gtk::events_pending() {
            gtk::main_iteration_do(false);
        }
        let mut changed = false;
        let mut fresh = Vec::new();
        while let Ok(u) = updates.try_recv() {
            changed = true;
            match u {
                follow::Update::Status { status, conflicts } => {
                    known.status = status;
                    known.conflicts = conflicts;
                }
                follow::Update::Events(events) => fresh.extend(events),
            }
        }
        for notice in notifier.take(&fresh, Instant::now()) {
            match notify::send(&notice) {
                Ok(()) => eprintln!("tray: notified: {}", notice.summary),
                Err(e) => eprintln!("tray: cannot notify ({}): {e:#}", notice.summary),
            }
        }
        for e in &fresh {
            if !notifier.enabled()
                && let Some(n) = notify::notice_of(&e.what)
            {
                if !told_off {
                    eprintln!("tray: notifications are off ([desktop] notifications = false)");
                    told_off = true;
                }
                eprintln!("tray: needs attention: {}", n.summary);
            }
            if matches!(
                e.what,
                What::FileIn { .. } | What::FileOut { .. } | What::Deleted { .. }
            ) {
                known.recent.push_back(e.clone());
                if known.recent.len() > KEPT_EVENTS {
                    known.recent.pop_front();
                }
            }
        }
        if changed {
            let (state, text) = summarize(known.status.as_deref());
            if state != shown || text != tip {
                tray.set_icon(Some(icon(state)?))?;
                tray.set_tooltip(Some(&text))?;
                eprintln!("tray: {text}");
                (shown, tip) = (state, text);
            }
            let next = model(&known, &tip);
            let mut next_shape = Vec::new();
            shape(&next, &mut next_shape);
            if next_shape != drawing.shape {
                let (menu, d) = draw(&next)?;
                tray.set_menu(Some(Box::new(menu)));
                drawing = d;
            } else {
                update(&next, &drawing);
            }
            if serde_json::to_value(&next).ok() != serde_json::to_value(&items).ok() {
                print_menu(&next);
            }
            items = next;
        }
        let mut clicked: Vec<Action> = Vec::new();
        while let Ok(event) = MenuEvent::receiver().try_recv() {
            if let Some(e) = drawing
                .clicks
                .get(&event.id)
                .and_then(|id| menu::find(&items, id))
            {
                clicked.extend(e.action.clone());
            }
        }
        for action in clicked {
            if matches!(action, Action::QuitTray) {
                return Ok(ExitCode::SUCCESS);
            }
            if let Err(e) = perform(home, &action) {
                eprintln!("tray: {e:#}");
                // A click that did nothing must not pass unnoticed.
                if notifier.enabled() {
                    let notice = notify::Notice {
                        summary: "Softadastra could not do that".into(),
                        body: format!("{e:#}"),
                    };
                    if let Err(e) = notify::send(&notice) {
                        eprintln!("tray: cannot notify: {e:#}");
                    }
                }
            }
        }
        if options.exit_after.is_some_and(|d| started.elapsed() >= d) {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
