/**
 * Footprint benchmark: the seller daemon as it is installed and run. Builds the
 * production bundle (`dist/spareband.mjs` and its chunks), starts a devnet (anvil, not counted) and a
 * small DHT of {@link DHT_NODES} nodes in this process, then runs
 * `node dist/spareband.mjs start --config …` with the runtime settings of the systemd
 * unit (its `Environment=` lines other than `SPAREBAND_*`, today `MALLOC_ARENA_MAX=1`;
 * the Docker image sets the same).
 *
 * - cold start: spawn → the daemon's `first advert in the DHT` log line (a DHT peer
 *   accepted its provider record; the benchmark then finds the record through
 *   another DHT node to be sure);
 * - idle memory: VmRSS (and RssAnon, RssFile, VmHWM) from `/proc/PID/status` after
 *   {@link IDLE_MS} of idling.
 *
 * Baseline in the same run, with the same settings: a bare `node -e` process, its start
 * (spawn → first line) and its RSS. For comparison the daemon also runs once more per
 * round without the unit's settings (`untuned…`; what is done in code, such as the heap
 * compaction after start-up, still happens).
 *
 * Prints `{"bench":"footprint","idleRssMB":…,"coldStartMs":…,"idleAnonMB":…,"baselineNodeRssMB":…,"baselineStartMs":…,"ratioRss":…,…}`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { privateKeyToAccount } from 'viem/accounts'
import { startDevnet, type Devnet } from '../daemon/chain/devnet.ts'
import { createKeyFile } from '../daemon/config/keys.ts'
import type { ConfigLayer } from '../daemon/config/load.ts'
import { createNode, type SparebandNode } from '../daemon/node/create-node.ts'
import { relayKey } from '../daemon/node/provider-keys.ts'
import { buildBundle } from '../scripts/build.ts'

const DHT_NODES = 3
const RUNS = 3
/** Idle time after the first advert before the resident set is read. */
const IDLE_MS = 12_000
const BARE_SETTLE_MS = 1_000
const STEP_TIMEOUT_MS = 30_000
const BARE_SCRIPT = 'process.stdout.write("ready\\n"); setInterval(() => {}, 1000)'
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const UNIT_FILE = join(ROOT, 'systemd/spareband.service')

const children = new Set<ChildProcess>()
const dht: SparebandNode[] = []
let devnet: Devnet | undefined
const deadline = setTimeout(() => {
  process.stderr.write('footprint bench: over its 240 s budget, giving up\n')
  for (const child of children) child.kill('SIGKILL')
  void devnet?.stop().finally(() => process.exit(1))
}, 240_000)

/** Memory of a process as the kernel reports it, in MiB. */
interface Memory { rss: number, anon: number, file: number, hwm: number }

/** The unit file's `Environment=` settings except spareband's own (`SPAREBAND_*`): the runtime tuning. */
async function unitRuntimeEnv (): Promise<Record<string, string>> {
  const unit = await readFile(UNIT_FILE, 'utf8')
  const env: Record<string, string> = {}
  for (const line of unit.split('\n')) {
    const m = /^Environment=(?:"([^"]*)"|(\S+))\s*$/.exec(line.trim())
    if (m === null) continue
    const assignment = m[1] ?? m[2]
    const eq = assignment.indexOf('=')
    const name = assignment.slice(0, eq)
    if (eq > 0 && !name.startsWith('SPAREBAND_')) env[name] = assignment.slice(eq + 1)
  }
  return env
}

/** This process's environment without anything that tunes Node or malloc or configures spareband. */
function cleanEnv (): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env)
    .filter((e): e is [string, string] => e[1] !== undefined && !e[0].startsWith('SPAREBAND_') && !e[0].startsWith('MALLOC_') && e[0] !== 'NODE_OPTIONS' && e[0] !== 'GLIBC_TUNABLES'))
}

async function memory (pid: number): Promise<Memory> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) / 1024
  return { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile'), hwm: field('VmHWM') }
}

function track (child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** A bare Node process: ms from spawn to its first line, and its RSS once settled. */
async function bareNode (env: Record<string, string>): Promise<{ startMs: number, memory: Memory }> {
  const started = performance.now()
  const child = track(spawn(process.execPath, ['-e', BARE_SCRIPT], { env, stdio: ['ignore', 'pipe', 'inherit'] }))
  try {
    const startMs = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('bare node: no "ready" line in time')) }, STEP_TIMEOUT_MS)
      child.stdout?.once('data', () => { clearTimeout(timer); resolve(performance.now() - started) })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`bare node exited with ${code}`)) })
    })
    await sleep(BARE_SETTLE_MS)
    return { startMs, memory: await memory(child.pid as number) }
  } finally {
    await stopChild(child)
  }
}

/** Writes a fresh data directory (keys) and a configuration joining the benchmark's DHT and devnet. */
async function sellerConfig (chain: Devnet, dir: string): Promise<string> {
  await createKeyFile(join(dir, 'data', 'keys.json'))
  const config: ConfigLayer = {
    dataDir: join(dir, 'data'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: dht.map((node) => node.getMultiaddrs()[0].toString()),
    mdns: false,
    hardware: 'simulated',
    // loopback is shared with whatever else runs on this machine: a capacity far above its load keeps the seller sharing
    uplink: { interface: 'lo', capacityMbps: 100_000 },
    chain: { rpcUrl: chain.rpcUrl, chainId: chain.chainId, contract: chain.contract },
    seller: { payoutAddress: privateKeyToAccount(chain.accounts[1]).address },
    apiListen: '127.0.0.1:0',
    logLevel: 'info'
  }
  const path = join(dir, 'config.json')
  await writeFile(path, JSON.stringify(config))
  return path
}

/** Runs the daemon from the bundle until its first advert, checks the record, idles, reads its memory, stops it. */
async function seller (entry: string, chain: Devnet, env: Record<string, string>): Promise<{ coldStartMs: number, startedMs: number, memory: Memory }> {
  const dir = await mkdtemp(join(tmpdir(), 'spareband-footprint-'))
  try {
    const config = await sellerConfig(chain, dir)
    const started = performance.now()
    const child = track(spawn(process.execPath, [entry, 'start', '--config', config], { env, stdio: ['ignore', 'ignore', 'pipe'] }))
    try {
      const tail: string[] = []
      let startedMs = NaN
      let peerId = ''
      const coldStartMs = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error(`seller: no first advert within ${STEP_TIMEOUT_MS} ms; last log lines:\n${tail.join('\n')}`)) }, STEP_TIMEOUT_MS)
        let buffered = ''
        child.stderr?.on('data', (chunk: Buffer) => {
          buffered += chunk.toString()
          const lines = buffered.split('\n')
          buffered = lines.pop() ?? ''
          for (const line of lines) {
            tail.push(line)
            if (tail.length > 8) tail.shift()
            let record: { msg?: unknown, first?: unknown, peerId?: unknown }
            try { record = JSON.parse(line) } catch { continue }
            if (record.msg === 'seller started') {
              startedMs = performance.now() - started
              peerId = String(record.peerId)
            }
            if (typeof record.msg === 'string' && record.msg.startsWith('first advert') && record.first === true) {
              clearTimeout(timer)
              resolve(performance.now() - started)
            }
          }
        })
        child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`seller exited with ${code} before its first advert:\n${tail.join('\n')}`)) })
      })
      await expectProvider(peerId)
      await sleep(IDLE_MS)
      return { coldStartMs, startedMs, memory: await memory(child.pid as number) }
    } finally {
      await stopChild(child)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Throws unless a DHT node finds `peerId` as a provider of the relay key. */
async function expectProvider (peerId: string): Promise<void> {
  const wanted = peerIdFromString(peerId)
  for await (const event of dht[dht.length - 1].services.dht.findProviders(relayKey(), { signal: AbortSignal.timeout(STEP_TIMEOUT_MS) })) {
    if (event.name === 'PROVIDER' && event.providers.some((p) => p.id.equals(wanted))) return
  }
  throw new Error(`the seller ${peerId} logged its first advert but no DHT node knows it as a provider`)
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

const round1 = (value: number): number => Math.round(value * 10) / 10
const round2 = (value: number): number => Math.round(value * 100) / 100

try {
  const entry = await buildBundle()
  const tuning = await unitRuntimeEnv()
  const tuned = { ...cleanEnv(), ...tuning }
  const untuned = cleanEnv()
  devnet = await startDevnet()
  for (let i = 0; i < DHT_NODES; i++) {
    const bootstrap = i === 0 ? undefined : [dht[i - 1].getMultiaddrs()[0].toString()]
    dht.push(await createNode({ privateKey: await generateKeyPair('Ed25519'), bootstrap }))
  }
  await Promise.all(dht.map(async (node) => node.services.dht.refreshRoutingTable()))

  const runs: Array<Awaited<ReturnType<typeof seller>>> = []
  const untunedRuns: Array<Awaited<ReturnType<typeof seller>>> = []
  const bare: Array<Awaited<ReturnType<typeof bareNode>>> = []
  for (let run = 0; run < RUNS; run++) {
    runs.push(await seller(entry, devnet, tuned))
    untunedRuns.push(await seller(entry, devnet, untuned))
    bare.push(await bareNode(tuned))
  }
  const idleRss = median(runs.map((r) => r.memory.rss))
  const coldStart = median(runs.map((r) => r.coldStartMs))
  const baselineRss = median(bare.map((b) => b.memory.rss))
  const baselineStart = median(bare.map((b) => b.startMs))
  process.stdout.write(JSON.stringify({
    bench: 'footprint',
    idleRssMB: round1(idleRss),
    coldStartMs: Math.round(coldStart),
    idleAnonMB: round1(median(runs.map((r) => r.memory.anon))),
    idleFileMB: round1(median(runs.map((r) => r.memory.file))),
    peakRssMB: round1(median(runs.map((r) => r.memory.hwm))),
    startedMs: Math.round(median(runs.map((r) => r.startedMs))),
    baselineNodeRssMB: round1(baselineRss),
    baselineStartMs: Math.round(baselineStart),
    ratioRss: round2(idleRss / baselineRss),
    ratioStart: round2(coldStart / baselineStart),
    untunedIdleRssMB: round1(median(untunedRuns.map((r) => r.memory.rss))),
    untunedColdStartMs: Math.round(median(untunedRuns.map((r) => r.coldStartMs))),
    runtime: Object.entries(tuning).map(([k, v]) => `${k}=${v}`).join(' '),
    dhtPeers: DHT_NODES,
    runs: RUNS
  }) + '\n')
} finally {
  for (const child of children) child.kill('SIGKILL')
  await Promise.all(dht.map(async (node) => node.stop()))
  await devnet?.stop()
  clearTimeout(deadline)
}
