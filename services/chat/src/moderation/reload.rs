//! Swapping in a new filter when its lists change, without a restart.
//!
//! The lists are small, so each check reads them whole and compares them with what was
//! loaded last: no file-system events to miss, no clock granularity to trip over. A list that
//! fails to load leaves the current filter in place, with a warning.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Filter, FilterError};

/// The filter the send path uses, swapped atomically when the lists change. Cheap to clone.
#[derive(Clone)]
pub struct SharedFilter(Arc<ArcSwap<Filter>>);

impl SharedFilter {
    /// Shares `filter`.
    pub fn new(filter: Filter) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(filter)))
    }

    /// The current filter; a message keeps the one it started with even if a reload lands.
    pub fn load(&self) -> Arc<Filter> {
        self.0.load_full()
    }

    /// Replaces the filter for every later message.
    pub fn store(&self, filter: Filter) {
        self.0.store(Arc::new(filter));
    }
}

impl From<Filter> for SharedFilter {
    fn from(filter: Filter) -> Self {
        Self::new(filter)
    }
}

impl From<Arc<Filter>> for SharedFilter {
    fn from(filter: Arc<Filter>) -> Self {
        Self(Arc::new(ArcSwap::new(filter)))
    }
}

impl std::fmt::Debug for SharedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedFilter")
            .field(&*self.0.load())
            .finish()
    }
}

/// The files a filter is built from.
#[derive(Debug, Clone, Default)]
pub struct ListFiles {
    /// The word list; none blocks nothing.
    pub words: Option<PathBuf>,
    /// The allow list, if any.
    pub allow: Option<PathBuf>,
}

impl ListFiles {
    /// Builds the filter the files describe now.
    pub fn load(&self) -> Result<Filter, FilterError> {
        match &self.words {
            Some(words) => Filter::from_files(words, self.allow.as_deref()),
            None => Ok(Filter::new(std::iter::empty::<&str>())),
        }
    }

    /// What the files hold now, to tell whether they changed.
    fn read(&self) -> Result<Vec<u8>, String> {
        let mut seen = Vec::new();
        for path in self.words.iter().chain(&self.allow) {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            seen.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            seen.extend_from_slice(&bytes);
        }
        Ok(seen)
    }
}

/// What a check that found changed lists did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The new lists are in use; they hold this many stems.
    Loaded {
        /// Stems on the new word list.
        words: usize,
    },
    /// The new lists did not load; the filter in use stays.
    Kept {
        /// Why they did not load.
        error: String,
    },
}

/// Watches the list files and swaps in a new filter when they change.
#[derive(Debug)]
pub struct Reloader {
    files: ListFiles,
    filter: SharedFilter,
    /// What the files held at the last check (or the error reading them).
    seen: Result<Vec<u8>, String>,
    events: watch::Sender<Option<Reload>>,
}

impl Reloader {
    /// Watches `files`, whose current contents `filter` was built from.
    pub fn new(files: ListFiles, filter: SharedFilter) -> Self {
        let seen = files.read();
        Self {
            files,
            filter,
            seen,
            events: watch::channel(None).0,
        }
    }

    /// The outcome of every check that found the lists changed, newest last.
    pub fn subscribe(&self) -> watch::Receiver<Option<Reload>> {
        self.events.subscribe()
    }

    /// Reads the lists and, if they changed, swaps in a filter built from them. Blocking
    /// (file reads, building the automaton): the async loop runs it off the runtime.
    pub fn check(&mut self) -> Option<Reload> {
        let now = self.files.read();
        if now == self.seen {
            return None;
        }
        let outcome = match now
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|_| self.files.load().map_err(|e| e.to_string()))
        {
            Ok(filter) => {
                let words = filter.len();
                self.filter.store(filter);
                tracing::info!(words, "moderation lists reloaded");
                Reload::Loaded { words }
            }
            Err(error) => {
                tracing::warn!(%error, "moderation lists not reloaded; the current filter stays");
                Reload::Kept { error }
            }
        };
        let label = match outcome {
            Reload::Loaded { .. } => "loaded",
            Reload::Kept { .. } => "kept",
        };
        metrics::counter!("chatmesh_moderation_reloads_total", "outcome" => label).increment(1);
        self.seen = now;
        self.events.send_replace(Some(outcome.clone()));
        Some(outcome)
    }

    /// Checks every `every` until `shutdown`.
    pub async fn run(mut self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let checked = tokio::task::spawn_blocking(move || {
                let mut this = self;
                this.check();
                this
            })
            .await;
            self = match checked {
                Ok(this) => this,
                Err(e) => {
                    tracing::warn!(error = %e, "moderation list check failed; reloading stops");
                    return;
                }
            };
        }
    }
}
