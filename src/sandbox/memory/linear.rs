//! The memory Wasmer is given for a guest: [`PooledMemory`], Wasmer's
//! `LinearMemory` on a [`Reservation`], which publishes its base and length
//! where compiled code reads them.

use std::io;
use std::ptr::NonNull;

use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMMemoryDefinition};
use wasmer::{MemoryType, Pages};

use super::reservation::Reservation;
use super::{CREATED, PENDING, Pending};

/// A guest's linear memory on a [`Reservation`].
#[derive(Debug)]
pub(super) struct PooledMemory {
    reservation: Option<Reservation>,
    /// Where compiled code reads base and length: in the instance's VMContext.
    definition: NonNull<VMMemoryDefinition>,
    ty: MemoryType,
    pages: Pages,
    maximum: Pages,
}

// SAFETY: the raw pointers refer to the reservation this value owns and to
// the instance's VMContext, which Wasmer keeps alive and in place for as
// long as the memory; Wasmer only touches a store from one thread at a time.
unsafe impl Send for PooledMemory {}
// SAFETY: as above; `&self` methods only read.
unsafe impl Sync for PooledMemory {}

impl PooledMemory {
    /// A memory of type `ty` on a reservation of this thread's, showing the
    /// image and capped at the limit that [`super::with_image`] set for the
    /// instantiation in progress; its base and length are written at
    /// `definition` now and whenever it grows.
    ///
    /// # Safety
    /// `definition` is valid for writes, and stays so (in place) for as
    /// long as the memory lives, and nothing else writes it meanwhile: the
    /// `VMMemoryDefinition` Wasmer gives `Tunables::create_vm_memory`, in
    /// the `VMContext` of the instance that will own the memory.
    pub(super) unsafe fn new(ty: MemoryType, definition: NonNull<VMMemoryDefinition>) -> Result<Self, MemoryError> {
        let Pending { image, limit } = PENDING.take();
        let maximum = ty
            .maximum
            .unwrap_or(MemoryStyle::static_bound())
            .min(MemoryStyle::static_bound())
            .min(limit.unwrap_or(MemoryStyle::static_bound()));
        if ty.minimum > maximum {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: maximum,
            });
        }
        let region = |e: io::Error| MemoryError::Region(e.to_string());
        if image.as_ref().is_some_and(|i| i.len > ty.minimum.bytes().0) {
            return Err(MemoryError::Generic(
                "the memory image is larger than the memory".into(),
            ));
        }
        let mut reservation = Reservation::take(image.as_ref()).map_err(region)?;
        if let Err(e) = reservation.set_accessible(ty.minimum.bytes().0) {
            // Its state is unknown: unmap rather than reuse.
            drop(reservation);
            return Err(region(e));
        }
        if CREATED.get().is_none() {
            CREATED.set(Some(definition));
        }
        let memory = PooledMemory {
            definition,
            ty,
            pages: ty.minimum,
            maximum,
            reservation: Some(reservation),
        };
        memory.publish();
        Ok(memory)
    }

    /// Writes base and length where compiled code reads them.
    fn publish(&self) {
        let reservation = self.reservation.as_ref().expect("present until drop");
        // SAFETY: `definition` is valid for writes while this memory lives,
        // and only this memory writes it (the contract of `new`).
        unsafe {
            *self.definition.as_ptr() = VMMemoryDefinition {
                base: reservation.base.as_ptr(),
                current_length: reservation.accessible,
            };
        }
    }
}

impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType {
            minimum: self.pages,
            ..self.ty
        }
    }

    fn size(&self) -> Pages {
        self.pages
    }

    fn style(&self) -> MemoryStyle {
        MemoryStyle::Static
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.pages;
        let could_not = || MemoryError::CouldNotGrow {
            current: previous,
            attempted_delta: delta,
        };
        let pages = previous
            .checked_add(delta)
            .filter(|p| *p <= self.maximum)
            .ok_or_else(could_not)?;
        let reservation = self.reservation.as_mut().expect("present until drop");
        reservation.set_accessible(pages.bytes().0).map_err(|_| could_not())?;
        self.pages = pages;
        self.publish();
        Ok(previous)
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::UnsupportedOperation {
            message: "guest memories are not copied".into(),
        })
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            reservation.release();
        }
    }
}
