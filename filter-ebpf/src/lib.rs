//! Empty library target: lets filter-user list this crate as a build
//! dependency so cargo rebuilds the program when it changes.
#![no_std]
