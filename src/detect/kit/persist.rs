//! Detector state for checkpoints: postcard of the state, written and read one way for every detector.

use serde::{Deserialize, Serialize};

/// [`crate::detect::Detector::save`] of a serde state.
///
/// # Errors
/// When the state cannot be encoded (never for the derived states here; an error rather than empty bytes, which
/// would restore as a fresh detector).
pub fn save_state<T: Serialize>(state: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(state).map_err(|e| e.to_string())
}

/// [`crate::detect::Detector::restore`] of a serde state.
///
/// # Errors
/// When the blob is not this state.
pub fn restore_state<T: for<'de> Deserialize<'de>>(blob: &[u8]) -> Result<T, String> {
    postcard::from_bytes(blob).map_err(|e| e.to_string())
}
