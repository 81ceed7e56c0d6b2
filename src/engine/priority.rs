//! Model work runs at a lower scheduling priority than the server.
//!
//! On a two-core box the models' threads (the embedding and chat workers
//! and the rayon pools their kernels run on) can keep both cores busy for
//! seconds at a time, while a marketplace webhook must be acknowledged
//! within 500 ms (Lazada) to 3 s. Those threads take a nice value of
//! [`MODEL_NICE`], so the kernel's scheduler runs the HTTP and store
//! threads first whenever they are ready, and the models get every cycle
//! nothing else wants. Linux only; elsewhere this does nothing.

/// The nice value of model threads: 10 weighs them about a tenth of a
/// default thread when both want the CPU.
pub const MODEL_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`MODEL_NICE`]. A failure (a
/// sandbox that forbids it) is logged once per thread and changes nothing
/// else.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions, and setpriority with
        // PRIO_PROCESS and a thread id changes only that thread's nice
        // value (Linux treats the "process" argument as a thread id).
        let tid = unsafe { libc::gettid() };
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, MODEL_NICE) };
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

    #[test]
    fn a_model_thread_runs_at_the_model_nice_value_and_others_do_not() {
        let nice_of_this_thread = || {
            // SAFETY: as in lower_this_thread; getpriority only reads.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        };
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(move || {
            lower_this_thread();
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, MODEL_NICE.max(before));
        assert_eq!(nice_of_this_thread(), before, "only the calling thread");
    }
}
