//! Reloading the lists without a restart.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;

/// A word list in a directory of its own, removed on drop.
struct Lists {
    dir: PathBuf,
    words: PathBuf,
}

impl Lists {
    fn new(name: &str, words: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("moderation-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let lists = Self {
            words: dir.join("words.txt"),
            dir,
        };
        lists.write(words);
        lists
    }

    fn write(&self, words: &str) {
        std::fs::write(&self.words, words).expect("write word list");
    }

    fn files(&self) -> ListFiles {
        ListFiles {
            words: Some(self.words.clone()),
            allow: None,
        }
    }
}

impl Drop for Lists {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(lists: &Lists) -> (SharedFilter, Reloader) {
    let filter = SharedFilter::new(lists.files().load().expect("list loads"));
    let reloader = Reloader::new(lists.files(), filter.clone());
    (filter, reloader)
}

#[test]
fn a_changed_list_is_swapped_in() {
    let lists = Lists::new("swap", "fuck\n");
    let (filter, mut reloader) = start(&lists);
    assert!(reloader.check().is_none(), "nothing changed yet");
    assert!(filter.load().is_clean("bollocks"));
    lists.write("fuck\nbollocks =bollock -ing\n");
    assert_eq!(reloader.check(), Some(Reload::Loaded { words: 2 }));
    assert!(!filter.load().is_clean("bollocking"));
    assert!(reloader.check().is_none());
}

#[test]
fn a_list_that_does_not_load_keeps_the_filter_in_use() {
    let lists = Lists::new("keep", "fuck\n");
    let (filter, mut reloader) = start(&lists);
    lists.write("fuck\nbollocks %x\n");
    match reloader.check() {
        Some(Reload::Kept { error }) => assert!(error.contains("line 2"), "{error}"),
        other => panic!("expected the old filter kept, got {other:?}"),
    }
    assert!(!filter.load().is_clean("fuck") && filter.load().is_clean("bollocks"));
    // The same bad list is not reported again.
    assert!(reloader.check().is_none());
    std::fs::remove_file(&lists.words).expect("remove list");
    assert!(matches!(reloader.check(), Some(Reload::Kept { .. })));
    assert!(!filter.load().is_clean("fuck"));
    lists.write("bollocks\n");
    assert_eq!(reloader.check(), Some(Reload::Loaded { words: 1 }));
    assert!(filter.load().is_clean("fuck") && !filter.load().is_clean("bollocks"));
}

#[tokio::test]
async fn the_running_loop_picks_up_a_rewritten_list() {
    let lists = Lists::new("loop", "fuck\n");
    let (filter, reloader) = start(&lists);
    let mut events = reloader.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(reloader.run(Duration::from_millis(10), shutdown.clone()));
    lists.write("fuck\nwanker\n");
    // Waits for the loop to report the change, not for a guessed time.
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        events.wait_for(|e| matches!(e, Some(Reload::Loaded { .. }))),
    )
    .await;
    assert!(matches!(seen, Ok(Ok(_))), "the reload was never observed");
    assert!(!filter.load().is_clean("you wanker"));
    shutdown.cancel();
    task.await.expect("reload loop ends on shutdown");
}
