//! One relay per store: an exclusive lock (`flock`) on `<store>-lock`, held for the life of
//! the process.
//!
//! Two relays on one file would each take the other's leases for a dead process's and send
//! them again, and both would write. So `run` refuses to start while another process holds the
//! lock. The one exception is the zero-downtime upgrade: the new process (`run --upgrade`)
//! shares the file with the old one until the old one exits, and takes the lock then. The
//! kernel drops the lock when its holder exits, however it exits (`kill -9` included), so a
//! crashed relay never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The held lock; dropping it (or exiting) releases the store.
#[derive(Debug)]
pub struct Owner {
    _file: File,
}

/// The result of [`claim`].
#[derive(Debug)]
pub enum Claim {
    Owned(Owner),
    /// Another process holds the store; its pid, if it wrote one.
    Held {
        pid: Option<u32>,
    },
}

/// The lock file of the store at `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-lock");
    PathBuf::from(name)
}

/// Takes the store's lock if no other process holds it.
pub fn claim(db: &Path) -> std::io::Result<Claim> {
    let mut file = open(db)?;
    match file.try_lock() {
        Ok(()) => {
            note_pid(&mut file)?;
            Ok(Claim::Owned(Owner { _file: file }))
        }
        Err(TryLockError::WouldBlock) => Ok(Claim::Held {
            pid: read_pid(&mut file),
        }),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Waits until the store's lock is free and takes it.
pub fn wait(db: &Path) -> std::io::Result<Owner> {
    let mut file = open(db)?;
    file.lock()?;
    note_pid(&mut file)?;
    Ok(Owner { _file: file })
}

fn open(db: &Path) -> std::io::Result<File> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Not truncated on open: the holder's pid is read from it.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(db))
}

/// Writes this process's pid into the lock file, for the message a second relay prints.
fn note_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    // Not synced: the pid is only for the message, and the lock itself lives in the kernel.
    writeln!(file, "{}", std::process::id())
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_sees_the_first_holder_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("relay.db");
        let Claim::Owned(first) = claim(&db).expect("claim") else {
            panic!("a fresh store is free");
        };
        match claim(&db).expect("second claim") {
            Claim::Held { pid } => assert_eq!(pid, Some(std::process::id())),
            Claim::Owned(_) => panic!("two owners of one store"),
        }
        drop(first);
        assert!(matches!(claim(&db).expect("claim"), Claim::Owned(_)));
    }

    #[test]
    fn waiting_takes_the_lock_once_the_holder_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("relay.db");
        let Claim::Owned(first) = claim(&db).expect("claim") else {
            panic!("a fresh store is free");
        };
        let path = db.clone();
        let waiter = std::thread::spawn(move || wait(&path).expect("wait"));
        // The waiter cannot have the lock while `first` is held: a claim still sees a holder.
        assert!(matches!(claim(&db).expect("claim"), Claim::Held { .. }));
        drop(first);
        let owner = waiter.join().expect("waiter");
        assert!(matches!(claim(&db).expect("claim"), Claim::Held { .. }));
        drop(owner);
    }
}
