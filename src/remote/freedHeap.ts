/**
 * The size of the one block `keepFreedHeap` allocates: just under the 32 MiB
 * up to which glibc (64-bit) adjusts its thresholds to a freed block.
 */
export const KEEP_FREED_HEAP_BYTES = 30 * 1024 * 1024;

let kept = false;

/**
 * Lets glibc keep up to 2 × KEEP_FREED_HEAP_BYTES of freed heap for reuse,
 * instead of giving the top of its heap back to the kernel whenever more
 * than 128 KiB (M_TRIM_THRESHOLD's default) lies free there.
 *
 * A transfer streams its bytes through short-lived buffers: a 64 KiB
 * ArrayBuffer per socket read, a 32 KiB one per SSH packet that straddles
 * two reads, pipe reads on the way up. V8 frees them in bursts of tens of
 * MiB at each garbage collection (about one per 64 MiB copied, on external
 * memory), glibc trimmed each burst, and the next reads faulted the same
 * pages back in, each zeroed by the kernel: about one page fault per 4 KiB
 * copied. The allocator has no knob a running Node can turn, but glibc
 * raises its own when a block it mmapped is freed (mallopt(3), the dynamic
 * mmap threshold): M_MMAP_THRESHOLD to that block's size, M_TRIM_THRESHOLD
 * to twice it. So one such block, never touched (no page of it is ever
 * resident), is dropped here; the first garbage collection frees it.
 *
 * Once per process, and only glibc's dynamic rule reacts: a user's own
 * MALLOC_TRIM_THRESHOLD_ / GLIBC_TUNABLES turn that rule off and stay in
 * force; another libc (musl) ignores the block. What stays free in the heap
 * is bounded (2 × 30 MiB), not proportional to what is copied.
 */
export function keepFreedHeap(): void {
  if (kept) return;
  kept = true;
  Buffer.allocUnsafeSlow(KEEP_FREED_HEAP_BYTES);
}
