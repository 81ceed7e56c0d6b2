//! Model work runs at a lower scheduling priority than the server.
//!
//! On a two-core box the models' threads (the embedding and chat workers
//! and the rayon pools their kernels run on) can keep both cores busy for
//! seconds at a time, while a marketplace webhook must be acknowledged
//! within 500 ms (Lazada) to 3 s. Those threads take a nice value
//! [`MODEL_NICE`] above the process's own, so the kernel's scheduler runs
//! the HTTP and store threads first whenever they are ready, and the
//! models get every cycle nothing else wants. Relative, so a server started
//! under `nice` keeps its model threads below it rather than raised to a
//! fixed value. Linux only; elsewhere this does nothing.

/// How many nice levels model threads run below the process: 10 weighs
/// them about a tenth of the server's threads when both want the CPU.
pub const MODEL_NICE: i32 = 10;

/// The largest nice value Linux allows.
#[cfg(target_os = "linux")]
const MAX_NICE: i32 = 19;

/// Lowers the calling thread's priority to [`MODEL_NICE`] levels below the
/// process's (its main thread's), at most to the lowest Linux has; the
/// same value however often it is called, and from whichever thread. A
/// failure (a sandbox that forbids it) is logged once per thread and
/// changes nothing else.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid and gettid have no preconditions; getpriority only
        // reads, and with the process id it reads the main thread's nice
        // value. A nice value can be -1, so errno (thread-local) is cleared
        // first and tells a failure apart.
        let process_nice = unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t)
        };
        if process_nice == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not read the process's priority"
            );
            return;
        }
        let nice = (process_nice + MODEL_NICE).min(MAX_NICE);
        // SAFETY: setpriority with PRIO_PROCESS and a thread id changes only
        // that thread's nice value (Linux treats the "process" argument as a
        // thread id).
        let tid = unsafe { libc::gettid() };
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a model thread's priority"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in lower_this_thread; getpriority only reads.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    /// The test process may itself run under `nice`: what is expected is
    /// relative to the nice value it started with.
    #[test]
    fn a_model_thread_runs_at_the_model_nice_value_and_others_do_not() {
        let before = nice_of_this_thread();
        let expected = (before + MODEL_NICE).min(MAX_NICE);
        let (lowered, again, child) = std::thread::spawn(move || {
            lower_this_thread();
            let lowered = nice_of_this_thread();
            lower_this_thread();
            let again = nice_of_this_thread();
            // A thread a model thread starts (a kernel pool's) inherits its
            // value, and lowering it does not lower it further.
            let child = std::thread::spawn(|| {
                lower_this_thread();
                nice_of_this_thread()
            })
            .join()
            .unwrap();
            (lowered, again, child)
        })
        .join()
        .unwrap();
        assert_eq!(lowered, expected, "started at nice {before}");
        assert_eq!(again, expected, "lowering twice lowers once");
        assert_eq!(child, expected, "a model thread's own threads");
        assert_eq!(nice_of_this_thread(), before, "only the calling thread");
    }
}
