/**
 * Memory housekeeping of the long-running daemon process.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** V8's `gc()` extension with the options it accepts. */
type GcFunction = (options: { type: 'major', execution: 'sync', flavor: 'last-resort' }) => void

/**
 * Runs V8's most thorough garbage collection once: a full, compacting collection that
 * also shrinks the heap and gives its free pages back to the system (the "last resort"
 * collection V8 runs under memory pressure). Start-up (module evaluation, key
 * derivation, the first DHT and chain round trips) leaves about 15 MB of garbage that
 * V8 otherwise keeps until its memory reducer runs after some later full collection,
 * which an idle daemon may not trigger for hours. Blocks the event loop for a few tens
 * of milliseconds: call it once, when start-up is over. Returns the resident set size
 * before and after, in bytes.
 */
export function compactHeap (): { rssBefore: number, rssAfter: number } {
  const rssBefore = process.memoryUsage.rss()
  gcFunction()({ type: 'major', execution: 'sync', flavor: 'last-resort' })
  return { rssBefore, rssAfter: process.memoryUsage.rss() }
}

/** `globalThis.gc` when Node runs with `--expose-gc`, else the extension taken from a fresh context. */
function gcFunction (): GcFunction {
  const exposed = (globalThis as { gc?: unknown }).gc
  if (typeof exposed === 'function') return exposed as GcFunction
  setFlagsFromString('--expose-gc')
  try {
    return runInNewContext('gc') as GcFunction
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}
