//! The one way the domain takes a lock.
//!
//! Every mutex here guards a cache or a counter map whose every update is
//! a single insert, remove or retain; a thread that panicked while holding
//! one cannot have left it half-written in a way that grants anything. So
//! a poisoned lock is taken as it is, rather than turning one bug into a
//! refusal of every later request.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
