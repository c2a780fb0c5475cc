/**
 * relay-throughput: one 512 MiB download through the relay data plane
 *
 *   client → buyer SOCKS5 proxy → libp2p (tcp+noise+yamux) → seller exit → TCP source
 *
 * against a plain Node TCP proxy chain with the same hops on the same machine
 *
 *   client → TCP proxy → TCP proxy → TCP source
 *
 * measured in the same run: 512 MiB as well, half before and half after the
 * relay transfer, so that load drift on a shared machine hits both alike.
 * The seller (and the baseline's second proxy) runs
 * in a child process, so `exitCpuSecPerGB` is the exit's own CPU time
 * (`process.cpuUsage()`) per 10^9 bytes relayed. Everything listens on
 * loopback; the source on 127.0.0.2, the one address the exit policy allows.
 *
 * Prints `{"bench":"relay-throughput","MBps":…,"baselineTcpProxyMBps":…,"ratio":…,"exitCpuSecPerGB":…}`
 * (MB = 10^6 bytes). Target: ratio ≥ 0.35.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { libp2pRelayDialer } from '../daemon/buyer/relay-dialer.ts'
import { socks5Proxy } from '../daemon/buyer/socks5.ts'
import { createNode } from '../daemon/node/create-node.ts'
import { relayExit } from '../daemon/relay/exit-service.ts'
import { exitPolicy } from '../protocol/exit-policy.ts'
import type { RelayAuthorization, RelayDirection, RelaySession, RelaySessionGate } from '../daemon/relay/session-gate.ts'
import type { PeerId } from '@libp2p/interface'

const TOTAL_BYTES = 512 * 1024 * 1024
const SOURCE_HOST = '127.0.0.2'
const SESSION_ID = 'be'.repeat(16)
/** Whole run limit: the benchmark fails rather than hang. */
const RUN_TIMEOUT_MS = 300_000
const logger = pino({ level: 'silent' })

/** Messages between the parent and a child role. */
type ChildMessage =
  | { type: 'ready', address: string }
  | { type: 'cpu', userMicros: number, systemMicros: number, metered?: number }

// ---- child roles ---------------------------------------------------------

/** A session with unlimited credit that still counts every byte, like a real one. */
class CountingSession implements RelaySession {
  metered = 0
  take (bytes: number, _direction: RelayDirection): number {
    this.metered += bytes
    return bytes
  }

  async waitForCredit (): Promise<void> {}
  onRevoked (): () => void { return () => {} }
}

async function runSeller (): Promise<void> {
  const session = new CountingSession()
  const gate: RelaySessionGate = {
    authorize: async (_peer: PeerId, id: string): Promise<RelayAuthorization> =>
      id === SESSION_ID ? { ok: true, session } : { ok: false, code: 'ERR_UNKNOWN_SESSION', message: 'unknown session' }
  }
  const node = await createNode({
    privateKey: await generateKeyPair('Ed25519'),
    services: { relayExit: relayExit({ gate, policy: exitPolicy({ allowCidrs: [`${SOURCE_HOST}/32`] }), logger }) }
  })
  serveCpuRequests(() => session.metered, async () => { await node.stop() })
  send({ type: 'ready', address: node.getMultiaddrs()[0].toString() })
}

async function runTcpProxy (targetPort: number): Promise<void> {
  const server = await tcpForwarder(SOURCE_HOST, targetPort)
  serveCpuRequests(() => undefined, async () => { server.close() })
  send({ type: 'ready', address: String((server.address() as AddressInfo).port) })
}

/** Answers 'cpu' with this process's CPU usage, and exits on 'stop'. */
function serveCpuRequests (metered: () => number | undefined, stop: () => Promise<void>): void {
  process.on('disconnect', () => { process.exit(0) })
  process.on('message', (msg: string) => {
    if (msg === 'cpu') {
      const usage = process.cpuUsage()
      send({ type: 'cpu', userMicros: usage.user, systemMicros: usage.system, metered: metered() })
    } else if (msg === 'stop') {
      void stop().finally(() => { process.exit(0) })
    }
  })
}

function send (msg: ChildMessage): void {
  process.send?.(msg)
}

// ---- shared pieces -------------------------------------------------------

/** A plain TCP proxy to `host:port` on 127.0.0.1: the baseline's hop. */
async function tcpForwarder (host: string, port: number): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ host, port, allowHalfOpen: true })
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('error', () => { upstream.destroy() })
    upstream.on('error', () => { client.destroy() })
  })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return server
}

/**
 * Sends every client the number of bytes it asks for (a decimal number, then
 * end of its writable side; TOTAL_BYTES when it sends nothing), then ends.
 */
async function sourceServer (): Promise<Server> {
  const block = randomBytes(1024 * 1024)
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    let request = ''
    socket.setEncoding('latin1')
    socket.on('data', (text: string) => { request += text.slice(0, 32) })
    socket.once('end', () => {
      const size = request === '' ? TOTAL_BYTES : Number(request)
      pump(Number.isSafeInteger(size) && size > 0 && size <= TOTAL_BYTES ? size : TOTAL_BYTES)
    })
    let sent = 0
    const pump = (size: number): void => {
      while (sent < size) {
        sent += block.byteLength
        if (!socket.write(block)) {
          socket.once('drain', () => { pump(size) })
          return
        }
      }
      socket.end()
    }
  })
  await new Promise<void>((resolve) => { server.listen(0, SOURCE_HOST, resolve) })
  return server
}

/** Reads from `socket` until it ends; returns bytes and seconds. */
async function drain (socket: Socket, started: number): Promise<{ bytes: number, seconds: number }> {
  let bytes = 0
  socket.on('data', (chunk: Buffer) => { bytes += chunk.byteLength })
  const ended = new Promise<void>((resolve, reject) => {
    socket.once('end', resolve)
    socket.once('error', reject)
  })
  socket.resume()
  await ended
  socket.destroy()
  return { bytes, seconds: (performance.now() - started) / 1000 }
}

async function spawnRole (role: string, ...args: string[]): Promise<{ child: ChildProcess, address: string }> {
  const child = fork(fileURLToPath(import.meta.url), [role, ...args], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const address = await new Promise<string>((resolve, reject) => {
    child.once('message', (msg: ChildMessage) => { if (msg.type === 'ready') resolve(msg.address) })
    child.once('exit', (code) => { reject(new Error(`${role} exited with ${code}`)) })
  })
  return { child, address }
}

async function cpuOf (child: ChildProcess): Promise<{ seconds: number, metered?: number }> {
  return await new Promise((resolve) => {
    child.once('message', (msg: ChildMessage) => {
      if (msg.type === 'cpu') resolve({ seconds: (msg.userMicros + msg.systemMicros) / 1e6, metered: msg.metered })
    })
    child.send('cpu')
  })
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise<void>((resolve) => { child.once('exit', () => { resolve() }) })
  child.send('stop')
  await exited
}

/** SOCKS5 CONNECT handshake to an IPv4 target through the proxy at 127.0.0.1:`proxyPort`. */
async function socks5Tunnel (proxyPort: number, host: string, port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port: proxyPort, allowHalfOpen: true })
  socket.setNoDelay(true)
  const request = Buffer.from([5, 1, 0, 5, 1, 0, 1, ...host.split('.').map(Number), port >> 8, port & 0xff])
  socket.write(request)
  // method selection (2 bytes) then reply (10 bytes)
  let buffered = Buffer.alloc(0)
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.byteLength < 12) return
      socket.off('data', onData)
      socket.pause()
      if (buffered[1] !== 0 || buffered[3] !== 0) { reject(new Error(`SOCKS5 refused: reply ${buffered[3]}`)); return }
      if (buffered.byteLength > 12) socket.unshift(buffered.subarray(12))
      resolve()
    }
    socket.on('data', onData)
    socket.once('error', reject)
  })
  return socket
}

// ---- the run -------------------------------------------------------------

async function main (): Promise<void> {
  const source = await sourceServer()
  const sourcePort = (source.address() as AddressInfo).port
  const children: ChildProcess[] = []
  try {
    // baseline: client → proxy (here) → proxy (child) → source, half before
    // and half after the relay run so that load drift affects both alike
    const far = await spawnRole('tcp-proxy', String(sourcePort))
    children.push(far.child)
    const near = await tcpForwarder('127.0.0.1', Number(far.address))
    const baselineRun = async (bytes: number): Promise<{ bytes: number, seconds: number }> => {
      const socket = connect({ host: '127.0.0.1', port: (near.address() as AddressInfo).port, allowHalfOpen: true })
      socket.end(String(bytes))
      return await drain(socket, performance.now())
    }
    const baselineBefore = await baselineRun(TOTAL_BYTES / 2)

    // relay: client → SOCKS5 (here) → libp2p → exit (child) → source
    const seller = await spawnRole('seller')
    children.push(seller.child)
    const buyer = await createNode({ privateKey: await generateKeyPair('Ed25519') })
    const sellerAddr = multiaddr(seller.address)
    const dialer = libp2pRelayDialer({ node: buyer, route: () => ({ seller: sellerAddr, sessionId: SESSION_ID }) })
    const proxy = socks5Proxy({ dialer, logger })
    await proxy.start()
    try {
      const tunnel = await socks5Tunnel(proxy.address().port, SOURCE_HOST, sourcePort)
      const cpuBefore = await cpuOf(seller.child)
      const started = performance.now()
      tunnel.end() // the request: no size, so the source sends TOTAL_BYTES
      const relay = await drain(tunnel, started)
      const cpuAfter = await cpuOf(seller.child)
      if (relay.bytes !== TOTAL_BYTES) throw new Error(`relay moved ${relay.bytes} of ${TOTAL_BYTES} bytes`)

      const baselineAfter = await baselineRun(TOTAL_BYTES / 2)
      const baselineBytes = baselineBefore.bytes + baselineAfter.bytes
      if (baselineBytes !== TOTAL_BYTES) throw new Error(`baseline moved ${baselineBytes} of ${TOTAL_BYTES} bytes`)
      const MBps = relay.bytes / 1e6 / relay.seconds
      const baselineTcpProxyMBps = baselineBytes / 1e6 / (baselineBefore.seconds + baselineAfter.seconds)
      process.stdout.write(JSON.stringify({
        bench: 'relay-throughput',
        MBps: round(MBps),
        baselineTcpProxyMBps: round(baselineTcpProxyMBps),
        ratio: round(MBps / baselineTcpProxyMBps, 3),
        exitCpuSecPerGB: round((cpuAfter.seconds - cpuBefore.seconds) / (relay.bytes / 1e9), 3),
        bytes: relay.bytes,
        exitMeteredBytes: cpuAfter.metered
      }) + '\n')
    } finally {
      await proxy.stop()
      await buyer.stop()
      await stopChild(seller.child)
      near.close()
      await stopChild(far.child)
    }
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill()
    source.close()
  }
}

function round (n: number, digits = 1): number {
  return Number(n.toFixed(digits))
}

const role = process.argv[2]
const deadline = setTimeout(() => {
  process.stderr.write(`relay-throughput: ${role ?? 'main'} exceeded ${RUN_TIMEOUT_MS} ms\n`)
  process.exit(1)
}, RUN_TIMEOUT_MS)
deadline.unref()
if (role === 'seller') await runSeller()
else if (role === 'tcp-proxy') await runTcpProxy(Number(process.argv[3]))
else await main()
