/**
 * Relay-exit reconciliation on real kernel counters: the linux adapter in a gateway
 * namespace counts the traffic of sockets owned by uid 65534 (the "exit"), a counter
 * loop feeds each reading to the reconciler, and the userspace side is the payload
 * the traffic tool itself moved as that uid.
 */
import { after, before, describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { createTopology, netnsUnavailable, type Topology } from './hardware/netns.ts'
import { sendTraffic, startServer, stopChild } from './hardware/helpers.ts'
import { createHardwareAdapter, commandRunner, netnsPrefix, type HardwareAdapter } from '../hardware/index.ts'
import { gatherPlatformFacts } from '../hardware/detect.ts'
import { CounterLoop } from '../daemon/gateway/counter-loop.ts'
import { ExitReconciler } from '../daemon/reconcile.ts'
import type { ChildProcess } from 'node:child_process'

const unavailable = netnsUnavailable()
if (unavailable !== null) process.stdout.write(`# SKIP reconciliation tests: ${unavailable}\n`)

const PORT = 5321
const EXIT_UID = 65534

describe('relay-exit reconciliation against the kernel\'s exit counters', { skip: unavailable ?? false }, () => {
  let t: Topology
  let server: ChildProcess | undefined
  let adapter: HardwareAdapter
  let loop: CounterLoop
  let reconciler: ExitReconciler
  const userspace = { up: 0n, down: 0n }
  const warnings: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'warn' }, new Writable({
    write (chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') warnings.push(JSON.parse(line))
      done()
    }
  }))

  /** Moves traffic as the exit's uid; `billed` says whether the userspace count sees it. */
  async function exitTraffic (up: number, down: number, billed: boolean): Promise<void> {
    const res = await sendTraffic(t.gateway, t.upstreamIp, PORT, up, down, 10_000, EXIT_UID)
    assert.equal(res.ok, true, JSON.stringify(res))
    if (billed) {
      userspace.up += BigInt(up + 8) // the traffic tool's 8-byte header is payload too
      userspace.down += BigInt(down)
    }
    // two reads: one takes the transfer, the next one is quiet and closes the span
    await loop.tick()
    await loop.tick()
  }

  before(async () => {
    t = createTopology()
    server = await startServer(t.upstream, t.upstreamIp, PORT, 60)
    adapter = createHardwareAdapter(
      { adapter: 'linux', lanInterface: t.lanIf, wanInterface: t.wanIf, exitMatch: { uid: EXIT_UID } },
      { logger, runner: commandRunner({ prefix: netnsPrefix(t.gateway) }), facts: gatherPlatformFacts() }
    ).adapter
    await adapter.start()
    loop = new CounterLoop({ adapter, intervalMs: 1000, logger })
    reconciler = new ExitReconciler({ userspaceBytes: () => userspace, minSpanBytes: 1n << 20n, logger })
    loop.add(reconciler)
    await loop.tick()
  })

  after(async () => {
    await loop?.stop()
    await stopChild(server)
    try { await adapter?.stop() } catch {}
    t?.destroy()
  })

  it('finds the kernel and the userspace counts in agreement when every byte is billed', async (tc) => {
    await exitTraffic(3_000_000, 6_000_000, true)
    const r = reconciler.current()
    tc.diagnostic(`kernel ${r.kernelBytes} B (payload estimate ${r.kernelPayloadBytes} B), userspace ${r.userspaceBytes} B, divergence ${((r.divergence ?? NaN) * 100).toFixed(3)} %`)
    assert.equal(r.spans, 1, 'one span was judged')
    assert.ok(r.divergence !== null && Math.abs(r.divergence) < 0.02, `divergence ${r.divergence}`)
    assert.ok(r.kernelBytes > r.userspaceBytes, 'the kernel counts headers on top of the payload')
    assert.equal(r.warnings, 0)
    assert.equal(warnings.length, 0, JSON.stringify(warnings))
  })

  it('reports the divergence and warns when the exit moves bytes no session billed', async (tc) => {
    await exitTraffic(1_000_000, 1_000_000, true)
    await exitTraffic(1_000_000, 1_000_000, false)
    const r = reconciler.current()
    tc.diagnostic(`divergence ${((r.divergence ?? NaN) * 100).toFixed(1)} % over ${r.spanBytes} B`)
    // the second span: 2 MB through the kernel, none billed
    assert.ok(r.divergence !== null && r.divergence > 0.9, `divergence ${r.divergence}`)
    assert.equal(r.warnings, 1)
    const warning = warnings.find((w) => w.component === 'reconcile')
    assert.ok(warning !== undefined, 'a warning was logged')
    assert.ok(typeof warning.divergence === 'number' && warning.divergence > 0.9)
  })
})
