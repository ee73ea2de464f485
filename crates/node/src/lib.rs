//! napi-rs glue only: every function here converts arguments, calls `pgforever_core`, and converts
//! the result. Heavy calls are `AsyncTask`s so they run on the libuv pool, not the JS thread.

mod checksum;
mod error;
mod extent;
mod frame;
mod memory;
mod page;
mod wal;
mod wal_file;
