/**
 * Invariant 1: no acknowledged voucher is lost, whatever instant the process is killed.
 * A child process persists vouchers and prints `ACK` only after `persistVoucher`
 * resolved; we SIGKILL it at seeded random instants and check every ACK on reopen.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { keccak256, toHex } from 'viem'
import { SellerStore } from '../daemon/state/store.ts'
import { SeededRandom } from './helpers/seeded-random.ts'

const WRITER = join(import.meta.dirname, 'fixtures', 'state', 'voucher-writer.ts')
const CHANNELS = 4
const KILLS = 20
const ids = Array.from({ length: CHANNELS }, (_, i) => keccak256(toHex(`crash-channel-${i}`)))

interface RunResult {
  acked: Map<number, bigint>
  acks: number
  exit: { code: number | null, signal: NodeJS.Signals | null }
}

/**
 * Runs the writer; with `killAfterMs` it is SIGKILLed that long after it printed READY,
 * otherwise it writes `max` vouchers and exits. Bounded by a 20 s watchdog.
 */
async function runWriter (dataDir: string, max: number, killAfterMs?: number): Promise<RunResult> {
  const child = spawn(process.execPath, [WRITER, dataDir, String(CHANNELS), String(max)], { stdio: ['ignore', 'pipe', 'pipe'] })
  const acked = new Map<number, bigint>()
  let acks = 0
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<RunResult['exit']>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 20_000)
  createInterface({ input: child.stdout }).on('line', (line) => {
    const [word, , channel, amount] = line.split(' ')
    if (word === 'READY' && killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs)
    if (word === 'ACK') {
      acks++
      acked.set(Number(channel), BigInt(amount))
    }
  })
  const exit = await exited
  clearTimeout(watchdog)
  if (killAfterMs === undefined) assert.equal(exit.code, 0, `writer failed: ${stderr}`)
  return { acked, acks, exit }
}

describe('crash safety (invariant 1)', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'spareband-crash-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('keeps every acknowledged voucher across SIGKILLs at random instants', async () => {
    const dataDir = join(dir, 'kills')
    const seed = Number(process.env.SPAREBAND_CRASH_SEED ?? 0x5ba4e)
    const random = new SeededRandom(seed)
    const highest = new Map<number, bigint>()
    let totalAcks = 0
    let killedMidRun = 0
    for (let k = 0; k < KILLS; k++) {
      const run = await runWriter(dataDir, 1_000_000, random.int(150))
      assert.equal(run.exit.signal, 'SIGKILL', `run ${k} must be killed (seed ${seed})`)
      totalAcks += run.acks
      if (run.acks > 0) killedMidRun++
      for (const [c, amount] of run.acked) highest.set(c, amount)

      const store = await SellerStore.open({ dataDir })
      try {
        for (const [c, amount] of highest) {
          const stored = await store.getVoucher(ids[c])
          assert.ok(stored !== undefined && stored.cumulativeAmount >= amount,
            `kill ${k} (seed ${seed}): channel ${c} acknowledged ${amount} but the store holds ${stored?.cumulativeAmount}`)
        }
        await store.verifyAudit()
      } finally {
        await store.close()
      }
    }
    assert.ok(totalAcks > KILLS, `the writer acknowledged only ${totalAcks} vouchers; the kills did not exercise persistence`)
    assert.ok(killedMidRun >= KILLS / 2, `only ${killedMidRun} runs were killed while writing`)
  })

  it('preserves every voucher exactly across clean restarts', async () => {
    const dataDir = join(dir, 'restarts')
    const first = await runWriter(dataDir, 10)
    const second = await runWriter(dataDir, 10)
    assert.equal(first.acks + second.acks, 20)
    const store = await SellerStore.open({ dataDir })
    try {
      for (const [c, amount] of second.acked) assert.equal((await store.getVoucher(ids[c]))?.cumulativeAmount, amount)
      assert.equal((await store.verifyAudit()).nextSeq, 20)
    } finally {
      await store.close()
    }
  })

  const hasStrace = spawnSync('strace', ['-V']).status === 0
  it('syncs each voucher to disk before it is acknowledged', { skip: hasStrace ? false : 'strace is not installed (apt-get install strace)' }, async () => {
    const dataDir = join(dir, 'strace')
    const trace = join(dir, 'strace.txt')
    const vouchers = 12
    const res = spawnSync('strace', ['-f', '-qq', '-e', 'trace=fdatasync,fsync,write', '-o', trace, process.execPath, WRITER, dataDir, String(CHANNELS), String(vouchers)], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(res.status, 0, res.stderr)
    // Between READY and each ACK (persistVoucher runs in that gap) a sync call must complete.
    let syncs = 0
    let acks = 0
    let ready = false
    for (const line of (await readFile(trace, 'utf8')).split('\n')) {
      if (line.includes('write(1, "READY')) ready = true
      else if (ready && /(fdatasync|fsync)\(.*= 0$|<\.\.\. (fdatasync|fsync) resumed>.*= 0$/.test(line)) syncs++
      else if (line.includes('write(1, "ACK')) {
        assert.ok(syncs >= 1, `ACK ${acks} was written before any fsync/fdatasync completed since the previous one`)
        syncs = 0
        acks++
      }
    }
    assert.equal(acks, vouchers)
  })
})
