//! Bounded windows of recent history.

use std::collections::VecDeque;

/// Appends to a window of the last `capacity` values, dropping the oldest.
pub fn push_bounded<T>(window: &mut VecDeque<T>, value: T, capacity: usize) {
    window.push_back(value);
    while window.len() > capacity {
        window.pop_front();
    }
}
