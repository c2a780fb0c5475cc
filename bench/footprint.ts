/**
 * Footprint benchmark: starts a seller node in a child process (this Node)
 * and measures its cold start (spawn → first advertisement in the DHT) and its
 * resident memory once idle. The DHT it joins (20 nodes on loopback) runs in
 * this process. Baseline in the same run: a bare `node -e` process, its start
 * (spawn → first line) and its idle RSS.
 *
 * Prints `{"bench":"footprint","idleRssMB":…,"coldStartMs":…,"baselineNodeRssMB":…,…}`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { createNode, type SparebandNode } from '../daemon/node/create-node.ts'

const DHT_NODES = 20
const SETTLE_MS = 5_000
const RUNS = 3
const here = dirname(fileURLToPath(import.meta.url))

const children = new Set<ChildProcess>()
const dht: SparebandNode[] = []
const deadline = setTimeout(() => {
  process.stderr.write('footprint bench: over its 110 s budget, giving up\n')
  for (const child of children) child.kill('SIGKILL')
  process.exit(1)
}, 110_000)

/** Spawns `args` with this Node; resolves with the child and the ms until its stdout's first line matching `ready`. */
async function spawnUntil (args: string[], ready: RegExp): Promise<{ child: ChildProcess, ms: number }> {
  const started = performance.now()
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  const ms = await new Promise<number>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`${args.join(' ')}: no "${ready.source}" line within 30 s`)) }, 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (ready.test(out)) {
        clearTimeout(timer)
        resolve(performance.now() - started)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${args.join(' ')} exited with ${code} before "${ready.source}"`))
    })
  })
  return { child, ms }
}

/** Resident set size of a process in MiB, as the kernel reports it. */
async function rssMB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1])
  return kb / 1024
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode != null || child.signalCode != null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function round (value: number): number {
  return Math.round(value * 10) / 10
}

try {
  for (let i = 0; i < DHT_NODES; i++) {
    const bootstrap = i === 0 ? undefined : [dht[Math.floor(Math.random() * dht.length)].getMultiaddrs()[0].toString()]
    dht.push(await createNode({ privateKey: await generateKeyPair('Ed25519'), bootstrap }))
  }
  await Promise.all(dht.map(async (node) => node.services.dht.refreshRoutingTable()))

  const cold: number[] = []
  const idle: number[] = []
  const baseStart: number[] = []
  const baseRss: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const entry = dht[run % dht.length].getMultiaddrs()[0].toString()
    const seller = await spawnUntil(['--no-warnings', join(here, '_seller-node.ts'), entry], /^advertised \d+\n/m)
    cold.push(seller.ms)
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    idle.push(await rssMB(seller.child.pid ?? 0))
    await stopChild(seller.child)

    const bare = await spawnUntil(['-e', 'process.stdout.write("ready\\n"); setInterval(() => {}, 1000)'], /^ready\n/m)
    baseStart.push(bare.ms)
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    baseRss.push(await rssMB(bare.child.pid ?? 0))
    await stopChild(bare.child)
  }

  process.stdout.write(JSON.stringify({
    bench: 'footprint',
    idleRssMB: round(median(idle)),
    coldStartMs: Math.round(median(cold)),
    baselineNodeRssMB: round(median(baseRss)),
    baselineNodeStartMs: Math.round(median(baseStart)),
    rssRatio: round(median(idle) / median(baseRss)),
    dhtPeers: DHT_NODES,
    runs: RUNS
  }) + '\n')
} finally {
  for (const child of children) child.kill('SIGKILL')
  await Promise.all(dht.map(async (node) => node.stop()))
  clearTimeout(deadline)
}
