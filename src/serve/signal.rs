//! Stopping a server cleanly on SIGINT and SIGTERM.
//!
//! [`block`] blocks the signals in the calling thread, and so in every thread it starts
//! afterwards; [`Signals::stop`] then waits for them with `sigwait` on a thread of its own,
//! which stops the server: no code runs inside a signal handler, and a signal that arrives in
//! between stays pending until it is waited for. A second signal exits at once (status 130).
//! On systems other than Linux both do nothing: the signals keep their default action.

use super::Shutdown;

/// SIGINT and SIGTERM, blocked and not yet waited for.
#[derive(Debug)]
pub struct Signals(imp::Set);

/// Blocks SIGINT and SIGTERM in this thread and the threads it starts from now on. Call it
/// before any other thread starts (one started earlier could take a signal and end the
/// process with its default action).
pub fn block() -> std::io::Result<Signals> {
    imp::block().map(Signals)
}

impl Signals {
    /// Stops `shutdown`'s server on the first signal, exits on the second.
    pub fn stop(self, shutdown: Shutdown) -> std::io::Result<()> {
        imp::wait(self.0, shutdown)
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::Shutdown;

    #[derive(Clone, Copy)]
    pub struct Set(libc::sigset_t);

    impl std::fmt::Debug for Set {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("{SIGINT, SIGTERM}")
        }
    }

    pub fn block() -> std::io::Result<Set> {
        // SAFETY: `sigemptyset`/`sigaddset` initialise a zeroed `sigset_t` we own;
        // `pthread_sigmask` only changes this thread's signal mask. Each gets a valid pointer
        // to that set (or null for the old mask, which is allowed).
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            Ok(Set(set))
        }
    }

    pub fn wait(set: Set, shutdown: Shutdown) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("pq-signals".into())
            .spawn(move || {
                let set = set;
                let mut stopped = false;
                loop {
                    let mut signal: libc::c_int = 0;
                    // SAFETY: `set.0` is an initialised signal set, blocked in this thread
                    // (inherited mask); `signal` is a valid place for the result.
                    if unsafe { libc::sigwait(&set.0, &mut signal) } != 0 {
                        continue;
                    }
                    if stopped {
                        std::process::exit(130);
                    }
                    stopped = true;
                    shutdown.stop();
                }
            })?;
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Shutdown;

    #[derive(Debug, Clone, Copy)]
    pub struct Set;

    pub fn block() -> std::io::Result<Set> {
        Ok(Set)
    }

    pub fn wait(_set: Set, _shutdown: Shutdown) -> std::io::Result<()> {
        Ok(())
    }
}
