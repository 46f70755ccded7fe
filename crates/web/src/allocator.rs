//! The module's allocator: blocks of power-of-two sizes (16 bytes to 2 GiB),
//! a free list per size, and a bump pointer over the pages the module grows
//! its memory by when no freed block of the size is waiting.
//!
//! It is what a tracker's allocations need and little more: one thread, a
//! few kilobytes of JSON per call, the same sizes again on the next call, so
//! a freed block is reused by the next allocation of its size. Blocks are
//! never split or merged, which keeps the code a few hundred bytes (a general
//! allocator is several kilobytes of wasm). What that costs is memory: up to
//! twice what is asked (sizes round up) and, per size, the most blocks that
//! were ever live at once, which for a tracker is its largest queue a few
//! times over. Wasm memory never shrinks, so a general allocator keeps its
//! peak too.
//!
//! [`Blocks`] holds the rules and is tested natively over a plain buffer;
//! `PageAllocator` (wasm32 only) feeds it the module's memory.

use core::ptr::null_mut;

/// The smallest block, and the alignment of every block: enough for every
/// type the module allocates (wasm32's largest alignment is 8, 16 for `u128`).
pub const MIN_BLOCK: usize = 16;
/// A wasm page.
pub const PAGE: usize = 65536;

/// Free lists and the bump region, over memory that `grow` provides.
pub struct Blocks {
    /// The most recently freed block of each size `1 << i`; each free block
    /// holds the address of the next one of its size in its first bytes.
    free: [*mut u8; usize::BITS as usize],
    /// Where the bump region's next block starts, and where it ends.
    next: usize,
    end: usize,
}

impl Blocks {
    /// No memory yet: the first allocation grows it.
    pub const fn new() -> Blocks {
        Blocks { free: [null_mut(); usize::BITS as usize], next: 0, end: 0 }
    }

    /// A block for `size` bytes at `align`, or null when `align` is over
    /// [`MIN_BLOCK`] or `grow` (which adds `pages` pages and returns the page
    /// count before, or `usize::MAX` when it cannot) fails.
    ///
    /// # Safety
    ///
    /// The memory `grow` returns must be this allocator's alone, and free
    /// blocks must not have been written to since [`Blocks::free`].
    pub unsafe fn alloc(&mut self, size: usize, align: usize, grow: impl FnOnce(usize) -> usize) -> *mut u8 {
        let Some(class) = class(size, align) else { return null_mut() };
        let head = self.free[class];
        if !head.is_null() {
            // SAFETY: a free block of at least MIN_BLOCK bytes holds the next one's address.
            self.free[class] = unsafe { *head.cast::<*mut u8>() };
            return head;
        }
        let size = 1 << class;
        if self.end - self.next < size {
            let pages = size.div_ceil(PAGE);
            let before = grow(pages);
            if before == usize::MAX {
                return null_mut();
            }
            // The new pages follow the region unless something else grew the memory.
            // No overflow: the module's memory stops at 2 GiB (build.rs), far below usize::MAX.
            let start = before * PAGE;
            if start != self.end {
                self.next = start;
            }
            self.end = start + pages * PAGE;
        }
        let block = self.next;
        self.next += size;
        block as *mut u8
    }

    /// Gives back a block [`Blocks::alloc`] returned for the same `size` and `align`.
    ///
    /// # Safety
    ///
    /// `block` came from `alloc(size, align, _)` on this allocator and is no longer used.
    pub unsafe fn free(&mut self, block: *mut u8, size: usize, align: usize) {
        if let Some(class) = class(size, align) {
            // SAFETY: the block is at least MIN_BLOCK bytes, aligned to it, and ours again.
            unsafe { *block.cast::<*mut u8>() = self.free[class] };
            self.free[class] = block;
        }
    }
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks::new()
    }
}

/// The size class (`log2` of the block size) for a request, if it can be met.
fn class(size: usize, align: usize) -> Option<usize> {
    if align > MIN_BLOCK {
        return None;
    }
    Some(size.max(MIN_BLOCK).checked_next_power_of_two()?.trailing_zeros() as usize)
}

/// The module's global allocator: [`Blocks`] over the wasm memory.
#[cfg(target_arch = "wasm32")]
pub struct PageAllocator(pub core::cell::UnsafeCell<Blocks>);

// SAFETY: the module has one thread.
#[cfg(target_arch = "wasm32")]
unsafe impl Sync for PageAllocator {}

#[cfg(target_arch = "wasm32")]
// SAFETY: Blocks hands out disjoint blocks of at least the size asked, aligned
// to MIN_BLOCK, and null for what it cannot meet; memory.grow is ours alone
// (the shell only writes into buffers the module hands it), and stops at the
// 2 GiB maximum build.rs gives the memory, so addresses never wrap.
unsafe impl core::alloc::GlobalAlloc for PageAllocator {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: one thread, and no allocation re-enters the allocator.
        let blocks = unsafe { &mut *self.0.get() };
        // SAFETY: see the impl.
        unsafe { blocks.alloc(layout.size(), layout.align(), core::arch::wasm32::memory_grow::<0>) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: as in alloc; the caller gives back what alloc returned for this layout.
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pages` pages of plain memory, grown as a wasm memory grows.
    struct Memory {
        bytes: Vec<u8>,
        pages: usize,
        limit: usize,
    }

    impl Memory {
        fn new(limit: usize) -> Memory {
            // One extra page so a page-aligned base exists inside the buffer.
            Memory { bytes: vec![0; (limit + 1) * PAGE], pages: 0, limit }
        }
        fn base(&self) -> usize {
            (self.bytes.as_ptr() as usize).div_ceil(PAGE) * PAGE
        }
        /// The allocator's addresses are offsets into this memory from `base`.
        fn grow(&mut self, pages: usize) -> usize {
            if self.pages + pages > self.limit {
                return usize::MAX;
            }
            self.pages += pages;
            self.pages - pages + self.base() / PAGE
        }
    }

    fn alloc(b: &mut Blocks, m: &mut Memory, size: usize) -> usize {
        let p = unsafe { b.alloc(size, 8, |n| m.grow(n)) } as usize;
        assert_ne!(p, 0, "allocation of {size} failed");
        p
    }

    #[test]
    fn live_blocks_never_overlap_and_are_aligned() {
        let mut m = Memory::new(512);
        let mut b = Blocks::new();
        let mut live: Vec<(usize, usize)> = Vec::new();
        // A deterministic mix of sizes, frees and reuse, as a tracker's calls make them.
        let mut seed = 7u32;
        for step in 0..5000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let size = 1 + (seed >> 8) as usize % if step % 97 == 0 { 70_000 } else { 600 };
            if seed % 3 == 0 && !live.is_empty() {
                let (p, s) = live.swap_remove(seed as usize % live.len());
                unsafe { b.free(p as *mut u8, s, 8) };
            } else {
                let p = alloc(&mut b, &mut m, size);
                assert_eq!(p % MIN_BLOCK, 0);
                assert!(p >= m.base() && p + size <= m.base() + m.pages * PAGE, "block outside the grown memory");
                for &(q, t) in &live {
                    assert!(p + size <= q || q + t <= p, "block {p}+{size} overlaps {q}+{t}");
                }
                // Write the whole block: a free-list link inside a live block would be overwritten.
                let off = p - m.bytes.as_ptr() as usize;
                m.bytes[off..off + size].fill(0xAB);
                live.push((p, size));
            }
        }
    }

    #[test]
    fn a_freed_block_is_reused_by_the_next_allocation_of_its_size() {
        let mut m = Memory::new(4);
        let mut b = Blocks::new();
        let a = alloc(&mut b, &mut m, 100);
        let c = alloc(&mut b, &mut m, 100);
        unsafe { b.free(a as *mut u8, 100, 8) };
        // 120 rounds up to the same 128-byte block; 200 does not.
        assert_eq!(alloc(&mut b, &mut m, 120), a);
        assert_ne!(alloc(&mut b, &mut m, 200), c);
        // Repeating the same allocations does not grow the memory.
        let pages = m.pages;
        for _ in 0..1000 {
            let p = alloc(&mut b, &mut m, 3000);
            unsafe { b.free(p as *mut u8, 3000, 8) };
        }
        assert_eq!(m.pages, pages);
    }

    #[test]
    fn what_cannot_be_met_is_null_not_a_wrong_block() {
        let mut m = Memory::new(2);
        let mut b = Blocks::new();
        // More than the memory may grow to, an alignment over 16, a size past usize's last power of two.
        assert!(unsafe { b.alloc(3 * PAGE, 8, |n| m.grow(n)) }.is_null());
        assert!(unsafe { b.alloc(64, 32, |n| m.grow(n)) }.is_null());
        assert!(unsafe { b.alloc(usize::MAX - 5, 8, |n| m.grow(n)) }.is_null());
        // And what fits still does.
        let p = alloc(&mut b, &mut m, 2 * PAGE);
        assert_eq!(p, m.base());
    }
}
