//! The appservice connector: the API the homeserver calls (`http`, with the
//! hs_token checked first by `auth`) and what is set up once the homeserver
//! is reachable (`startup`), and the read forward after every start and
//! after each of the homeserver's resends (`catch_up`, `resends`). Effects go out through `crate::matrix`; the
//! mode is wired in `app::appservice`.

mod auth;
pub mod catch_up;
pub mod gaps;
pub mod http;
pub mod resends;
pub mod startup;
