/**
 * The relay exit over real libp2p nodes on loopback, against real TCP servers:
 * data integrity both ways, half-close, exit policy after DNS resolution,
 * hostile headers, stream limits, credit pauses and revocation.
 *
 * Legit targets listen on 127.0.0.2, the only address the exit policy allows;
 * canaries listen on 127.0.0.1 (loopback, denied) and count connections.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { libp2pRelayDialer, RelayRefusedError, type RelayDialer } from '../daemon/buyer/relay-dialer.ts'
import { relayExit, type RelayExit } from '../daemon/relay/exit-service.ts'
import { dnsServerResolver } from '../daemon/relay/resolver.ts'
import { exitPolicy } from '../protocol/exit-policy.ts'
import { relayCodecs } from '../protocol/messages/relay.ts'
import { RELAY_PROTOCOL } from '../protocol/protocol-ids.ts'
import { NodeSet, waitFor } from './helpers/libp2p-nodes.ts'
import { canaryServer, digestServer, dnsServer, sha256, sourceServer, tcpConnect, TestGate, type TestDnsServer, type TestServer } from './helpers/relay-fixtures.ts'
import type { Libp2p, Stream } from '@libp2p/interface'

const logger = pino({ level: 'silent' })
const LEGIT = '127.0.0.2'
const MiB = 1024 * 1024

/** Sends `upload` with backpressure, closes our writable end and collects everything received until the end. */
async function exchange (stream: Stream, upload: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  const chunks: Buffer[] = []
  stream.addEventListener('message', (evt) => { chunks.push(Buffer.from(evt.data.subarray())) })
  const ended = new Promise<void>((resolve, reject) => {
    stream.addEventListener('end', () => { resolve() })
    stream.addEventListener('close', (evt) => { if (evt.error != null) reject(evt.error); else resolve() })
  })
  for (let offset = 0; offset < upload.byteLength; offset += 64 * 1024) {
    if (!stream.send(upload.subarray(offset, offset + 64 * 1024))) {
      await new Promise<void>((resolve) => { stream.addEventListener('drain', () => { resolve() }, { once: true }) })
    }
  }
  await stream.close()
  await ended
  return Buffer.concat(chunks)
}

/** Resolves with the error that closed `stream` (a reset or abort). */
async function closedWithError (stream: Stream): Promise<Error | undefined> {
  if (stream.status === 'reset' || stream.status === 'aborted') return new Error(stream.status)
  return await new Promise((resolve) => { stream.addEventListener('close', (evt) => { resolve(evt.error) }, { once: true }) })
}

/** Encodes one length-prefixed frame (single-byte varint lengths only). */
function frame (payload: Uint8Array): Uint8Array {
  assert.ok(payload.byteLength < 128)
  return Uint8Array.from([payload.byteLength, ...payload])
}

/** The payload of one length-prefixed frame (unsigned varint length). */
function unframe (bytes: Buffer): Buffer {
  let length = 0
  let offset = 0
  for (let shift = 0; ; shift += 7) {
    const byte = bytes[offset++]
    length += (byte & 0x7f) * 2 ** shift
    if (byte < 0x80) break
  }
  assert.equal(bytes.byteLength, offset + length)
  return bytes.subarray(offset)
}

describe('relay exit', () => {
  const nodes = new NodeSet()
  const gate = new TestGate()
  const servers: TestServer[] = []
  let dns: TestDnsServer
  let seller: Libp2p<{ relayExit: RelayExit }>
  let buyer: Libp2p
  let dialer: RelayDialer
  let session: ReturnType<TestGate['open']>
  let source: TestServer
  let digest: TestServer
  let canary: TestServer
  let canaryOnLegit: TestServer
  const payload = randomBytes(6 * MiB)

  before(async () => {
    source = await sourceServer(LEGIT, payload)
    digest = await digestServer(LEGIT)
    canary = await canaryServer('127.0.0.1')
    canaryOnLegit = await canaryServer(LEGIT, canary.port)
    servers.push(source, digest, canary, canaryOnLegit)
    dns = await dnsServer({
      'legit.test': [LEGIT],
      'loop.test': ['127.0.0.1'],
      'mixed.test': [LEGIT, '127.0.0.1'],
      'mapped.test': ['::ffff:127.0.0.1']
    })
    seller = await nodes.start({
      services: {
        relayExit: relayExit({
          gate,
          policy: exitPolicy({ allowCidrs: [`${LEGIT}/32`] }),
          resolver: dnsServerResolver({ servers: [dns.address], timeoutMs: 2000 }),
          handshakeTimeoutMs: 500,
          connectTimeoutMs: 2000,
          logger
        })
      }
    })
    buyer = await nodes.start()
    await buyer.dial(seller.getMultiaddrs())
    session = gate.open(buyer.peerId)
    dialer = libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: session.id }) })
  })

  after(async () => {
    await nodes.stopAll()
    await Promise.all(servers.map(async (s) => { await s.close() }))
    await dns.close()
  })

  it('downloads several MiB intact and meters every byte', async () => {
    const before = session.session.used.down
    const stream = await dialer.dial({ host: LEGIT, port: source.port })
    const received = await exchange(stream)
    assert.equal(received.byteLength, payload.byteLength)
    assert.equal(sha256(received), sha256(payload))
    assert.equal(session.session.used.down - before, payload.byteLength)
  })

  it('uploads several MiB intact and still receives the answer after closing its writable end (half-close)', async () => {
    const before = session.session.used.up
    const upload = randomBytes(5 * MiB)
    const stream = await dialer.dial({ host: 'legit.test', port: digest.port })
    const answer = (await exchange(stream, upload)).toString()
    assert.equal(answer, `${upload.byteLength} ${sha256(upload)}\n`)
    assert.equal(session.session.used.up - before, upload.byteLength)
  })

  it('refuses a denied address with ERR_EXIT_POLICY and connects nothing', async () => {
    await assert.rejects(dialer.dial({ host: '127.0.0.1', port: canary.port }), (err: unknown) => {
      assert.ok(err instanceof RelayRefusedError)
      assert.equal(err.refusal, 'ERR_EXIT_POLICY')
      assert.match(err.message, /ERR_EXIT_LOOPBACK/)
      return true
    })
    await assert.rejects(dialer.dial({ host: LEGIT, port: 25 }), (err: unknown) => err instanceof RelayRefusedError && err.refusal === 'ERR_EXIT_POLICY' && /ERR_EXIT_PORT_DENIED/.test(err.message))
    assert.equal(canary.connections, 0)
  })

  it('refuses a name that resolves to a denied address, also in IPv4-mapped form, and connects nothing', async () => {
    for (const host of ['loop.test', 'mapped.test']) {
      await assert.rejects(dialer.dial({ host, port: canary.port }), (err: unknown) => {
        assert.ok(err instanceof RelayRefusedError, String(err))
        assert.equal(err.refusal, 'ERR_EXIT_POLICY')
        assert.match(err.message, new RegExp(`${host} resolves to`))
        return true
      })
    }
    assert.equal(canary.connections, 0)
  })

  it('refuses a name that mixes allowed and denied addresses, connecting to neither (DNS rebinding)', async () => {
    await assert.rejects(dialer.dial({ host: 'mixed.test', port: canary.port }), (err: unknown) => err instanceof RelayRefusedError && err.refusal === 'ERR_EXIT_POLICY')
    assert.equal(canary.connections, 0)
    assert.equal(canaryOnLegit.connections, 0)
  })

  it('answers ERR_DNS for a name that does not resolve and ERR_CONNECT_REFUSED for a closed port', async () => {
    await assert.rejects(dialer.dial({ host: 'nx.test', port: 80 }), (err: unknown) => err instanceof RelayRefusedError && err.refusal === 'ERR_DNS')
    const closed = await canaryServer(LEGIT)
    await closed.close()
    await assert.rejects(dialer.dial({ host: LEGIT, port: closed.port }), (err: unknown) => err instanceof RelayRefusedError && err.refusal === 'ERR_CONNECT_REFUSED')
  })

  it('refuses an unknown session before resolving or connecting', async () => {
    const stranger = libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: 'ab'.repeat(16) }) })
    await assert.rejects(stranger.dial({ host: LEGIT, port: canaryOnLegit.port }), (err: unknown) => err instanceof RelayRefusedError && err.refusal === 'ERR_UNKNOWN_SESSION')
    assert.equal(canaryOnLegit.connections, 0)
  })

  it('the canaries do count connections (control)', async () => {
    const other = await canaryServer('127.0.0.1')
    servers.push(other)
    const socket = await tcpConnect('127.0.0.1', other.port)
    await waitFor(() => other.connections === 1, 2000, 'the control connection')
    socket.destroy()
  })

  it('a malformed, oversize or slow header only kills its own stream', async () => {
    // a legit download runs on the same connection the whole time
    const legit = dialer.dial({ host: LEGIT, port: source.port }).then(exchange)

    const malformed = await buyer.dialProtocol(seller.peerId, RELAY_PROTOCOL)
    const answers: Buffer[] = []
    malformed.addEventListener('message', (evt) => { answers.push(Buffer.from(evt.data.subarray())) })
    malformed.send(frame(new TextEncoder().encode('{not json')))
    await waitFor(() => malformed.remoteWriteStatus === 'closed', 2000, 'the exit to close the malformed stream')
    const refused = relayCodecs.fromSeller.decode(unframe(Buffer.concat(answers)))
    assert.equal(refused.type, 'refused')
    assert.equal(refused.type === 'refused' && refused.code, 'ERR_MESSAGE_MALFORMED')

    const oversize = await buyer.dialProtocol(seller.peerId, RELAY_PROTOCOL)
    oversize.send(Uint8Array.from([0x80, 0x80, 0x40])) // announces a 1 MiB header
    assert.ok(await closedWithError(oversize))

    const slow = await buyer.dialProtocol(seller.peerId, RELAY_PROTOCOL)
    slow.send(Uint8Array.from([40, 0x7b])) // 40 bytes announced, 1 sent
    assert.ok(await closedWithError(slow), 'the exit resets a header that does not complete within the handshake timeout')

    const received = await legit
    assert.equal(sha256(received), sha256(payload))
    assert.equal(buyer.getConnections(seller.peerId).filter((c) => c.status === 'open').length, 1)
    await waitFor(() => seller.services.relayExit.stats().streams === 0, 2000, 'the exit to release every stream')
  })

  it('stops forwarding while the session has no credit and resumes when credit is granted', async () => {
    const window = 64 * 1024
    const starving = gate.open(buyer.peerId, window)
    const starvingDialer = libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: starving.id }) })
    const stream = await starvingDialer.dial({ host: LEGIT, port: source.port })
    let received = 0
    const chunks: Buffer[] = []
    stream.addEventListener('message', (evt) => { received += evt.data.byteLength; chunks.push(Buffer.from(evt.data.subarray())) })
    const ended = new Promise<void>((resolve) => { stream.addEventListener('end', () => { resolve() }) })
    await waitFor(() => received === window, 5000, 'the first credit window to arrive')
    await waitFor(() => starving.session.starved > 0, 5000, 'the exit to ask for more credit')
    // the exit waits for credit: nothing more moves however long we wait
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(received, window)
    assert.equal(starving.session.used.down, window)

    starving.session.grant(payload.byteLength)
    await stream.close()
    await ended
    assert.equal(sha256(Buffer.concat(chunks)), sha256(payload))
    assert.equal(starving.session.used.down, payload.byteLength)
  })

  it('cuts the streams of a revoked session and closes their target sockets', async () => {
    const hold = await canaryServer(LEGIT)
    servers.push(hold)
    const revoking = gate.open(buyer.peerId)
    const revokingDialer = libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: revoking.id }) })
    const streams = await Promise.all([1, 2].map(async () => await revokingDialer.dial({ host: LEGIT, port: hold.port })))
    await waitFor(() => revoking.session.listeners === 2, 2000, 'both streams to be piping')
    revoking.session.revoke(new Error('buyer stopped paying'))
    for (const stream of streams) assert.ok(await closedWithError(stream))
    await waitFor(() => revoking.session.listeners === 0 && seller.services.relayExit.stats().streams === 0, 2000, 'the exit to drop the streams')
  })
})

describe('relay exit limits', () => {
  const nodes = new NodeSet()
  const gate = new TestGate()
  let hold: TestServer

  after(async () => {
    await nodes.stopAll()
    await hold.close()
  })

  it('enforces the per-peer and total stream limits, and frees slots when streams end', async () => {
    hold = await canaryServer(LEGIT)
    const seller = await nodes.start({
      services: { relayExit: relayExit({ gate, policy: exitPolicy({ allowCidrs: [`${LEGIT}/32`] }), maxStreamsPerPeer: 3, maxStreams: 4, logger }) }
    })
    const dialerOf = async (): Promise<RelayDialer> => {
      const buyer = await nodes.start()
      await buyer.dial(seller.getMultiaddrs())
      const { id } = gate.open(buyer.peerId)
      return libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: id }) })
    }
    const [a, b] = await Promise.all([dialerOf(), dialerOf()])
    const target = { host: LEGIT, port: hold.port }
    const tooMany = (err: unknown): boolean => err instanceof RelayRefusedError && err.refusal === 'ERR_TOO_MANY_STREAMS'

    const fromA = await Promise.all([1, 2, 3].map(async () => await a.dial(target)))
    await assert.rejects(a.dial(target), tooMany, 'per-peer limit')
    const fromB = await b.dial(target)
    await assert.rejects(b.dial(target), tooMany, 'total limit')
    assert.equal(hold.connections, 4)
    assert.deepEqual(seller.services.relayExit.stats(), { streams: 4, peers: 2 })

    fromA[0].abort(new Error('done'))
    await waitFor(() => seller.services.relayExit.stats().streams === 3, 2000, 'the slot to be freed')
    const again = await b.dial(target)
    for (const stream of [...fromA.slice(1), fromB, again]) stream.abort(new Error('done'))
    await waitFor(() => seller.services.relayExit.stats().streams === 0, 2000, 'every slot to be freed')
  })
})

describe('relay exit idle timeout', () => {
  const nodes = new NodeSet()
  const gate = new TestGate()
  const servers: TestServer[] = []

  after(async () => {
    await nodes.stopAll()
    await Promise.all(servers.map(async (s) => { await s.close() }))
  })

  it('closes a connection that moves no byte, but not one that waits for credit', async () => {
    const idleTimeoutMs = 300
    const hold = await canaryServer(LEGIT)
    const source = await sourceServer(LEGIT, randomBytes(256 * 1024))
    servers.push(hold, source)
    const seller = await nodes.start({
      services: { relayExit: relayExit({ gate, policy: exitPolicy({ allowCidrs: [`${LEGIT}/32`] }), idleTimeoutMs, logger }) }
    })
    const buyer = await nodes.start()
    await buyer.dial(seller.getMultiaddrs())
    const paying = gate.open(buyer.peerId)
    const starving = gate.open(buyer.peerId, 0)
    const dialerFor = (id: string): RelayDialer => libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: id }) })

    const quiet = await dialerFor(paying.id).dial({ host: LEGIT, port: hold.port })
    const waiting = await dialerFor(starving.id).dial({ host: LEGIT, port: source.port })
    let received = 0
    waiting.addEventListener('message', (evt) => { received += evt.data.byteLength })
    const ended = new Promise<void>((resolve) => { waiting.addEventListener('end', () => { resolve() }) })

    await waitFor(() => quiet.status !== 'open', 5000, 'the idle connection to be closed')
    assert.ok(await closedWithError(quiet))
    await new Promise((resolve) => setTimeout(resolve, 2 * idleTimeoutMs))
    assert.equal(waiting.status, 'open', 'a connection waiting for credit is not idle')
    assert.equal(received, 0)

    starving.session.grant(256 * 1024)
    await waiting.close()
    await ended
    assert.equal(received, 256 * 1024)
  })
})
