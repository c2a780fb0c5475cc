/**
 * Time to read and reset the per-client counters of 1,000 admitted clients with one
 * `nft -j reset counters table inet spareband`, in a network namespace made for the
 * run. Baselines measured in the same run: the same read with 1 admitted client, and
 * the naive way (one `nft reset counter` per counter, timed on 100 clients and scaled
 * to 1,000). Prints one JSON line. Target: ms ≤ 100.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { pino } from 'pino'
import { NftablesGateway } from '../hardware/nftables/gateway.ts'
import { clientCounterNames } from '../hardware/nftables/ruleset.ts'
import { commandRunner, netnsPrefix } from '../hardware/command.ts'

const CLIENTS = 1000
const RUNS = 15
const NAIVE_SAMPLE = 100

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function timeRuns (runs: number, fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now()
    await fn()
    times.push(performance.now() - t0)
  }
  return median(times)
}

if (process.getuid?.() !== 0) {
  process.stderr.write('counter-read needs root (network namespace and nftables)\n')
  process.exit(1)
}
const ns = `sbbench-${randomBytes(3).toString('hex')}`
execFileSync('ip', ['netns', 'add', ns])
try {
  execFileSync('ip', ['-n', ns, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'wan0'])
  const runner = commandRunner({ prefix: netnsPrefix(ns) })
  const gateway = new NftablesGateway({ runner, logger: pino({ level: 'silent' }), lanInterface: 'lan0', wanInterface: 'wan0', enableForwarding: false })
  await gateway.start()
  const clients = Array.from({ length: CLIENTS }, (_, i) => ({ ip: `10.90.${Math.floor(i / 250)}.${(i % 250) + 2}`, mac: `02:5b:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` }))

  await gateway.admit(clients[0])
  const oneClientMs = await timeRuns(RUNS, async () => await gateway.readCounters())

  const admitStart = performance.now()
  for (const c of clients.slice(1)) await gateway.admit(c)
  const admitMsPerClient = (performance.now() - admitStart) / (CLIENTS - 1)

  let reported = 0
  const ms = await timeRuns(RUNS, async () => {
    const r = await gateway.readCounters()
    reported = r.clients.length
  })
  if (reported !== CLIENTS) throw new Error(`expected ${CLIENTS} clients in a reading, got ${reported}`)

  const naiveStart = performance.now()
  for (const c of clients.slice(0, NAIVE_SAMPLE)) {
    const names = clientCounterNames(c.ip)
    for (const name of [names.up, names.down]) await runner(['nft', '-j', 'reset', 'counter', 'inet', 'spareband', name])
  }
  const naiveMs = (performance.now() - naiveStart) * (CLIENTS / NAIVE_SAMPLE)

  await gateway.stop()
  const round = (x: number): number => Math.round(x * 100) / 100
  process.stdout.write(JSON.stringify({
    bench: 'counter-read',
    clients: CLIENTS,
    ms: round(ms),
    baselineOneClientMs: round(oneClientMs),
    naivePerCounterMs: round(naiveMs),
    speedupVsNaive: round(naiveMs / ms),
    admitMsPerClient: round(admitMsPerClient),
    runs: RUNS,
    targetMs: 100,
    pass: ms <= 100
  }) + '\n')
} finally {
  execFileSync('ip', ['netns', 'del', ns])
}
