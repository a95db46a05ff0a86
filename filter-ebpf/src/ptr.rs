//! The only place that turns frame offsets into pointers.
//!
//! [`at`] checks a whole header against `data_end` right next to the
//! pointer arithmetic and hands it out as a [`Header`]; [`field`] then
//! reads inside that header through the same pointer, so the verifier sees every read covered by the check.
//! (Reading a field through a freshly computed `data + offset` instead lets
//! LLVM drop a check it considers redundant but the verifier does not.)

use core::mem::size_of;

use crate::frame::Frame;

/// Offsets beyond this are refused. A constant ceiling keeps the variable
/// offsets of IPv4 options and IPv6 extension headers within what the
/// verifier can range-check. The parser refuses headers starting after
/// `filter_common::MAX_HEADER_START` first, so this never decides alone.
const MAX_OFFSET: usize = filter_common::MAX_HEADER_START + 64;

/// A `T` in the frame, as only [`at`] makes it: all of it lies between
/// `data` and `data_end`. That is what lets [`field`], a safe function,
/// read through it.
pub struct Header<T>(*const T);

impl<T> Clone for Header<T> {
    #[inline(always)]
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Header<T> {}

/// The `T` starting `offset` bytes into the frame, if all of it lies
/// within the frame.
#[inline(always)]
pub fn at<T>(ctx: &impl Frame, offset: usize) -> Result<Header<T>, ()> {
    if offset > MAX_OFFSET {
        return Err(());
    }
    let start = ctx.data();
    let end = ctx.data_end();
    // Bounds check beside the access: start + offset + size must not pass end.
    if start + offset + size_of::<T>() > end {
        return Err(());
    }
    Ok(Header((start + offset) as *const T))
}

/// Reads the `F` that starts `offset` bytes into `hdr`. `offset` is an
/// `offset_of!` constant; a field that would not lie inside `T` reads as
/// the default value (the branch folds away at compile time).
#[inline(always)]
pub fn field<T, F: Copy + Default>(hdr: Header<T>, offset: usize) -> F {
    if offset + size_of::<F>() > size_of::<T>() {
        return F::default();
    }
    // SAFETY: a `Header` comes from `at`, which checked that the whole `T`
    // lies in the frame, and the field lies inside `T`. Packet data has no
    // alignment guarantee, hence the unaligned read.
    unsafe { hdr.0.cast::<u8>().add(offset).cast::<F>().read_unaligned() }
}

/// A big-endian `u16` field.
#[inline(always)]
pub fn be16<T>(hdr: Header<T>, offset: usize) -> u16 {
    u16::from_be_bytes(field::<T, [u8; 2]>(hdr, offset))
}
