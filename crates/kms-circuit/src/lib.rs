#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod breaker;
mod config;
mod provider;

pub use breaker::CircuitState;
pub use config::ResilienceConfig;
pub use provider::ResilientProvider;

#[cfg(test)]
mod tests;
