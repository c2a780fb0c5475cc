/**
 * The daemon's one-off heap compaction after start-up: it must really give the
 * garbage's pages back (the heap shrinks), without `--expose-gc` on the command line
 * and without leaving `gc` exposed to contexts created afterwards.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { getHeapStatistics } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { compactHeap } from '../daemon/memory.ts'

describe('compactHeap', () => {
  it('shrinks the heap after start-up garbage and reports the resident set before and after', () => {
    assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the test runs without --expose-gc')
    // ~40 MB of short-lived objects that survive long enough to reach the old generation
    let garbage: unknown[][] | undefined = Array.from({ length: 40 }, (_, i) => Array.from({ length: 50_000 }, (_, j) => ({ i, j })))
    assert.equal(garbage.length, 40)
    garbage = undefined
    const before = getHeapStatistics().total_heap_size
    const { rssBefore, rssAfter } = compactHeap()
    const after = getHeapStatistics().total_heap_size
    assert.ok(after < before - 20 * 2 ** 20, `heap ${(before / 2 ** 20).toFixed(1)} MB → ${(after / 2 ** 20).toFixed(1)} MB`)
    assert.ok(rssBefore > 0 && rssAfter > 0 && rssAfter < rssBefore, `rss ${rssBefore} → ${rssAfter}`)
    assert.equal(runInNewContext('typeof gc'), 'undefined', 'gc stays hidden from new contexts')
  })
})
