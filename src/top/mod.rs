//! `nagare top`: a live view of a running nagare process, read from its admin API.
//!
//! - `client`: the HTTP GETs of `/api/v1/components` (and the start time from
//!   `/metrics`), and the model the screen shows: rates from two polls, sorting.
//! - `ui`: the screen, a pure function from the model to a ratatui buffer.
//!
//! A thread of its own polls the process every interval and hands each outcome to
//! the terminal loop over a bounded channel; the loop draws, and reads keys. A
//! process that cannot be reached is a message on the screen, polled again at the
//! next interval, never an exit.

mod client;
#[cfg(test)]
mod tests;
mod ui;

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

pub use client::{
    BufferStats, Client, ComponentStats, Model, Poll, Row, Sample, Snapshot, SortKey,
};
pub use ui::{render, to_buffer};

/// Options of `nagare top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The admin API of the process to watch (its `api.bind`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:24220")]
    pub url: String,
    /// How often to read it (`500ms`, `1s`, `5s`).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 1s or 500ms: {e}"))?;
    if d < Duration::from_millis(100) {
        return Err(format!("{text:?} is too short; at least 100ms"));
    }
    Ok(d)
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep going.
    Continue,
    /// Leave, restoring the terminal.
    Quit,
}

/// Applies `key` to `model`.
pub fn handle_key(model: &mut Model, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Continue;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            return Action::Quit;
        }
        KeyCode::Char('s') | KeyCode::Right | KeyCode::Tab => model.sort = model.sort.cycle(true),
        KeyCode::Char('S') | KeyCode::Left | KeyCode::BackTab => {
            model.sort = model.sort.cycle(false)
        }
        KeyCode::Char('r') => model.reverse = !model.reverse,
        _ => {}
    }
    Action::Continue
}

/// Runs the view until a quit key; the terminal is restored on the way out, and on a
/// panic (ratatui's hook).
pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.url).map_err(anyhow::Error::msg)?;
    // Two polls in waiting at most: the screen shows the newest anyway.
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let interval = args.interval;
    std::thread::Builder::new()
        .name("top-poller".into())
        .spawn(move || poll_forever(client, interval, tx))
        .context("cannot start the polling thread")?;
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, Model::new(&args.url, interval), rx);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut model: Model,
    polls: Receiver<Poll>,
) -> anyhow::Result<()> {
    loop {
        loop {
            match polls.try_recv() {
                Ok(poll) => model.update(poll),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => anyhow::bail!("the polling thread stopped"),
            }
        }
        terminal
            .draw(|frame| {
                let area = frame.area();
                render(&model, area, frame.buffer_mut())
            })
            .context("cannot draw")?;
        if event::poll(Duration::from_millis(100)).context("cannot read the terminal")?
            && let Event::Key(key) = event::read().context("cannot read the terminal")?
            && handle_key(&mut model, key) == Action::Quit
        {
            return Ok(());
        }
    }
}

/// Polls every `interval` until the terminal loop is gone.
fn poll_forever(client: Client, interval: Duration, polls: SyncSender<Poll>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = polls.send(Poll {
                wall: SystemTime::now(),
                result: Err(format!("cannot start the HTTP client's runtime: {e}")),
            });
            return;
        }
    };
    // A poll gets the interval, and at least two seconds, to answer.
    let timeout = interval.max(Duration::from_secs(2));
    runtime.block_on(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = match tokio::time::timeout(timeout, client.sample()).await {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "{} did not answer within {}",
                    client.url(),
                    ui::duration(timeout)
                )),
            };
            let poll = Poll {
                wall: SystemTime::now(),
                result,
            };
            match polls.try_send(poll) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    });
}
