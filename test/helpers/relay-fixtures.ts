/**
 * Test helpers of the relay data plane: a session gate with adjustable credit,
 * TCP servers on loopback (byte source, digest sink, echo, canary), a tiny
 * UDP DNS server, and minimal SOCKS5 / HTTP CONNECT clients.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect, createServer, isIPv4, type AddressInfo, type Server, type Socket } from 'node:net'
import type { PeerId } from '@libp2p/interface'
import type { RelayAuthorization, RelayDirection, RelaySession, RelaySessionGate } from '../../daemon/relay/session-gate.ts'

/** A fresh random session id (32 hex digits). */
export function sessionId (): string {
  return randomBytes(16).toString('hex')
}

/** A session with a credit balance the test sets. */
export class TestSession implements RelaySession {
  /** Bytes granted per direction. */
  readonly used: Record<RelayDirection, number> = { up: 0, down: 0 }
  /** Times `take` granted less than asked. */
  starved = 0
  #credit: number
  #waiters = new Set<{ resolve: () => void, reject: (err: unknown) => void }>()
  #revokedListeners = new Set<(reason: Error) => void>()

  constructor (credit: number) {
    this.#credit = credit
  }

  take (bytes: number, direction: RelayDirection): number {
    const granted = Math.min(bytes, this.#credit)
    this.#credit -= granted
    this.used[direction] += granted
    if (granted < bytes) this.starved++
    return granted
  }

  async waitForCredit (signal: AbortSignal): Promise<void> {
    if (this.#credit > 0) return
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => { signal.removeEventListener('abort', onAbort); resolve() },
        reject: (err: unknown) => { signal.removeEventListener('abort', onAbort); reject(err) }
      }
      const onAbort = (): void => { this.#waiters.delete(waiter); reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#waiters.add(waiter)
    })
  }

  onRevoked (listener: (reason: Error) => void): () => void {
    this.#revokedListeners.add(listener)
    return () => { this.#revokedListeners.delete(listener) }
  }

  /** Adds credit and wakes the waiting streams. */
  grant (bytes: number): void {
    this.#credit += bytes
    for (const waiter of this.#waiters) waiter.resolve()
    this.#waiters.clear()
  }

  /** Revokes the session: its streams are cut. */
  revoke (reason: Error): void {
    for (const listener of this.#revokedListeners) listener(reason)
  }

  /** Streams listening for revocation now. */
  get listeners (): number {
    return this.#revokedListeners.size
  }
}

/** A gate over sessions the test opens. */
export class TestGate implements RelaySessionGate {
  readonly #sessions = new Map<string, { peer: PeerId, session: TestSession }>()

  /** Opens a session for `peer` with `credit` bytes (default unlimited). */
  open (peer: PeerId, credit = Number.POSITIVE_INFINITY): { id: string, session: TestSession } {
    const id = sessionId()
    const session = new TestSession(credit)
    this.#sessions.set(id, { peer, session })
    return { id, session }
  }

  async authorize (peer: PeerId, id: string): Promise<RelayAuthorization> {
    const entry = this.#sessions.get(id)
    if (entry == null || !entry.peer.equals(peer)) return { ok: false, code: 'ERR_UNKNOWN_SESSION', message: 'no such session for this peer' }
    return { ok: true, session: entry.session }
  }
}

/** A TCP server on loopback that the test closes. */
export interface TestServer {
  host: string
  port: number
  /** Connections accepted so far. */
  connections: number
  close: () => Promise<void>
}

async function listen (server: Server, host: string, port = 0): Promise<TestServer> {
  const sockets = new Set<Socket>()
  const result: TestServer = {
    host,
    port: 0,
    connections: 0,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
    }
  }
  server.on('connection', (socket) => {
    result.connections++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => { sockets.delete(socket) })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { resolve() })
  })
  result.port = (server.address() as AddressInfo).port
  return result
}

/** Sends `data` to every client, then ends. */
export async function sourceServer (host: string, data: Buffer): Promise<TestServer> {
  return await listen(createServer({ allowHalfOpen: true }, (socket) => {
    socket.resume()
    socket.end(data)
  }), host)
}

/**
 * Reads until the client ends its writable side, then answers with
 * `<byte count> <sha256 hex>\n` and ends: proves half-close both ways.
 */
export async function digestServer (host: string): Promise<TestServer> {
  return await listen(createServer({ allowHalfOpen: true }, (socket) => {
    const hash = createHash('sha256')
    let bytes = 0
    socket.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.byteLength })
    socket.on('end', () => { socket.end(`${bytes} ${hash.digest('hex')}\n`) })
  }), host)
}

/** Echoes everything back and ends after the client ends. */
export async function echoServer (host: string): Promise<TestServer> {
  return await listen(createServer({ allowHalfOpen: true }, (socket) => { socket.pipe(socket) }), host)
}

/** Accepts connections and holds them: count them with `connections`. */
export async function canaryServer (host: string, port = 0): Promise<TestServer> {
  return await listen(createServer(() => {}), host, port)
}

/** A listener that hands over its first accepted socket (paused, half-open capable). */
export async function listenOnce (host: string): Promise<{ port: number, accepted: Promise<Socket>, close: () => Promise<void> }> {
  let accept!: (socket: Socket) => void
  const accepted = new Promise<Socket>((resolve) => { accept = resolve })
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => { accept(socket) })
  const listening = await listen(server, host)
  return { port: listening.port, accepted, close: listening.close }
}

/** Everything `socket` sends until it ends. */
export async function readAll (socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk) })
  const ended = new Promise<void>((resolve, reject) => {
    socket.once('end', resolve)
    socket.once('error', reject)
  })
  socket.resume()
  await ended
  return Buffer.concat(chunks)
}

/** sha256 hex of `data`. */
export function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Connects to a TCP server with half-open enabled. */
export async function tcpConnect (host: string, port: number): Promise<Socket> {
  const socket = connect({ host, port, allowHalfOpen: true })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return socket
}

/** Reads exactly `n` bytes from a paused-or-flowing socket; leftovers are unshifted. */
export async function readExactly (socket: Socket, n: number): Promise<Buffer> {
  let buffered = Buffer.alloc(0)
  return await new Promise<Buffer>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      if (buffered.byteLength < n) return
      done()
      socket.pause()
      if (buffered.byteLength > n) socket.unshift(buffered.subarray(n))
      resolve(buffered.subarray(0, n))
    }
    const onEnd = (): void => { done(); reject(new Error(`socket ended after ${buffered.byteLength} of ${n} bytes`)) }
    const done = (): void => { socket.off('data', onData); socket.off('end', onEnd); socket.off('error', onEnd) }
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onEnd)
    socket.resume()
  })
}

/** The SOCKS5 reply code and, on success, the tunnel socket. */
export interface Socks5Result {
  reply: number
  socket: Socket
}

/** A minimal SOCKS5 client: no-auth greeting and CONNECT to `host:port`. */
export async function socks5Connect (proxyPort: number, host: string, port: number): Promise<Socks5Result> {
  const socket = await tcpConnect('127.0.0.1', proxyPort)
  socket.write(Buffer.from([5, 1, 0]))
  const method = await readExactly(socket, 2)
  if (method[1] !== 0) throw new Error(`proxy chose method ${method[1]}`)
  const address = isIPv4(host)
    ? Buffer.from([1, ...host.split('.').map(Number)])
    : Buffer.concat([Buffer.from([3, host.length]), Buffer.from(host, 'latin1')])
  const portBytes = Buffer.alloc(2)
  portBytes.writeUInt16BE(port)
  socket.write(Buffer.concat([Buffer.from([5, 1, 0]), address, portBytes]))
  const reply = await readExactly(socket, 10)
  return { reply: reply[1], socket }
}

/** Status line, headers and tunnel socket of an HTTP CONNECT answer. */
export interface HttpConnectResult {
  status: number
  headers: Record<string, string>
  socket: Socket
}

/** A minimal HTTP CONNECT client. */
export async function httpConnect (proxyPort: number, host: string, port: number): Promise<HttpConnectResult> {
  const socket = await tcpConnect('127.0.0.1', proxyPort)
  socket.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`)
  let buffered = Buffer.alloc(0)
  const head = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('error', reject)
      socket.pause()
      if (buffered.byteLength > end + 4) socket.unshift(buffered.subarray(end + 4))
      resolve(buffered.subarray(0, end).toString('latin1'))
    }
    socket.on('data', onData)
    socket.on('error', reject)
  })
  const [statusLine, ...lines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine.split(' ')[1]), headers, socket }
}

/** A UDP DNS server on 127.0.0.1 answering A and AAAA queries from a fixed table; NXDOMAIN otherwise. */
export interface TestDnsServer {
  /** `127.0.0.1:port`, for `dnsServerResolver({ servers })`. */
  address: string
  close: () => Promise<void>
}

/** Starts a {@link TestDnsServer} for `records`: name → addresses (IPv4 and IPv6 literals). */
export async function dnsServer (records: Record<string, string[]>): Promise<TestDnsServer> {
  const socket: UdpSocket = createSocket('udp4')
  socket.on('message', (query, peer) => {
    const answer = dnsAnswer(query, records)
    if (answer != null) socket.send(answer, peer.port, peer.address)
  })
  await new Promise<void>((resolve) => { socket.bind(0, '127.0.0.1', resolve) })
  return {
    address: `127.0.0.1:${socket.address().port}`,
    close: async () => { await new Promise<void>((resolve) => { socket.close(() => { resolve() }) }) }
  }
}

function dnsAnswer (query: Buffer, records: Record<string, string[]>): Buffer | undefined {
  if (query.byteLength < 12) return undefined
  let offset = 12
  const labels: string[] = []
  while (offset < query.byteLength && query[offset] !== 0) {
    const length = query[offset]
    labels.push(query.subarray(offset + 1, offset + 1 + length).toString('latin1'))
    offset += 1 + length
  }
  const questionEnd = offset + 5
  if (questionEnd > query.byteLength) return undefined
  const qtype = query.readUInt16BE(offset + 1)
  const name = labels.join('.').toLowerCase()
  const known = records[name]
  const wanted = (known ?? []).filter((ip) => (qtype === 1 ? isIPv4(ip) : qtype === 28 ? ip.includes(':') : false))
  const header = Buffer.alloc(12)
  query.copy(header, 0, 0, 2)
  header.writeUInt16BE(known == null ? 0x8183 : 0x8180, 2)
  header.writeUInt16BE(1, 4)
  header.writeUInt16BE(wanted.length, 6)
  const answers = wanted.map((ip) => {
    const rdata = qtype === 1 ? Buffer.from(ip.split('.').map(Number)) : ipv6Bytes(ip)
    const rr = Buffer.alloc(12)
    rr.writeUInt16BE(0xc00c, 0)
    rr.writeUInt16BE(qtype, 2)
    rr.writeUInt16BE(1, 4)
    rr.writeUInt32BE(60, 6)
    rr.writeUInt16BE(rdata.byteLength, 10)
    return Buffer.concat([rr, rdata])
  })
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers])
}

function ipv6Bytes (ip: string): Buffer {
  const [head, tail] = ip.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail == null || tail === '' ? [] : tail.split(':')
  const groups = [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => { out.writeUInt16BE(parseInt(g, 16), 2 * i) })
  return out
}
