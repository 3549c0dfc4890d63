//! What triggers a reload besides SIGHUP and the admin listener's
//! `POST /reload`: a change of the config file or of any file it reads.
//!
//! Files are watched through their *parent directories* (`notify`), never
//! by themselves: a Kubernetes ConfigMap update swaps the `..data` symlink
//! to a new directory, so the file's own inode never changes and a watch
//! on it hears nothing (the bug Oathkeeper and Pomerium shipped). Any
//! event in a watched directory starts a short debounce; then, if the
//! files' hash is neither the config in force's nor the one last refused
//! (the runtime's own state, whatever triggered the last reload: a
//! rollback to an earlier config is a change like any other), the runtime
//! reloads. A slow poll is the backstop for file systems that send no
//! events.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;

use crate::runtime::{Reloaded, Runtime};

/// How long events are collected before one reload: a quiet spell this
/// long ends the collecting…
const DEBOUNCE: Duration = Duration::from_millis(200);
/// …and a steady stream of events is cut off after this.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// How often the files are checked when no event came.
const POLL: Duration = Duration::from_secs(30);

/// The directories holding `files` (each file's parent; the file itself
/// when it is a directory).
fn directories(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    files
        .iter()
        .filter_map(|f| {
            let abs = if f.is_absolute() { f.clone() } else { std::env::current_dir().ok()?.join(f) };
            abs.parent().map(|p| p.to_path_buf())
        })
        .collect()
}

/// Watch `wanted` and nothing else.
fn follow(w: &mut impl Watcher, watching: &mut BTreeSet<PathBuf>, wanted: BTreeSet<PathBuf>) {
    for dir in wanted.difference(watching) {
        if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a config directory");
        }
    }
    for dir in watching.difference(&wanted) {
        let _ = w.unwatch(dir);
    }
    *watching = wanted;
}

/// Whether an event may change what the config reads: one of its files
/// (written in place, or renamed over), or a `..`-named entry (a ConfigMap
/// swapping `..data`). Reads — the gateway's own included — never are.
fn relevant(event: &notify::Event, files: &BTreeSet<PathBuf>) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event
        .paths
        .iter()
        .any(|p| files.contains(p) || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("..")))
}

/// The config's files as absolute paths (as the watcher reports them).
fn absolute(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_default();
    files.iter().map(|f| if f.is_absolute() { f.clone() } else { cwd.join(f) }).collect()
}

/// Reload `runtime` whenever a file it reads changes, until aborted.
pub async fn watch(runtime: Arc<Runtime>) {
    // Coalesced: any number of events between two looks is one wake-up.
    let changed = Arc::new(tokio::sync::Notify::new());
    let files = Arc::new(std::sync::RwLock::new(absolute(&runtime.sources())));
    let (c, f) = (changed.clone(), files.clone());
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && f.read().is_ok_and(|files| relevant(&event, &files))
        {
            c.notify_one();
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config's files; only SIGHUP, POST /reload and a slow poll reload it");
            None
        }
    };
    let mut watching: BTreeSet<PathBuf> = BTreeSet::new();
    loop {
        // Follow the files the config in force reads (a reload may name
        // new ones).
        let sources = runtime.sources();
        if let Ok(mut f) = files.write() {
            *f = absolute(&sources);
        }
        if let Some(w) = watcher.as_mut() {
            follow(w, &mut watching, directories(&sources));
        }
        let heard = tokio::select! {
            _ = changed.notified(), if watcher.is_some() => true,
            _ = tokio::time::sleep(POLL) => false,
        };
        if heard {
            // Debounce: a ConfigMap update is several events; wait for a
            // quiet spell, but never longer than DEBOUNCE_MAX in all.
            let start = tokio::time::Instant::now();
            while start.elapsed() < DEBOUNCE_MAX && tokio::time::timeout(DEBOUNCE, changed.notified()).await.is_ok() {}
            // A directory may have been replaced under its name (a symlink
            // swapped): watch every one afresh, before the files are read.
            if let Some(w) = watcher.as_mut() {
                for dir in std::mem::take(&mut watching) {
                    let _ = w.unwatch(&dir);
                }
                follow(w, &mut watching, directories(&sources));
            }
        }
        // Compared with the config in force and the last refused files,
        // never with a memory of our own: an unchanged config costs no
        // parse, a broken one is reported once, and going back to an
        // earlier config is applied.
        let rt = runtime.clone();
        if !tokio::task::spawn_blocking(move || rt.worth_reloading()).await.unwrap_or(false) {
            continue;
        }
        match runtime.reload_by("file").await {
            Ok(Reloaded::Applied { hash, .. }) => {
                tracing::info!(hash = %hash, trigger = if heard { "file change" } else { "poll" }, "config reloaded");
            }
            Ok(Reloaded::Unchanged) => {}
            // Logged and counted by the runtime; the snapshot in force stays.
            Err(_) => {}
        }
    }
}
