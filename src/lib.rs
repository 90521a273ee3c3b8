//! postroom
