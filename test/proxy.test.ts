/**
 * The buyer's local SOCKS5 and HTTP CONNECT proxies, end to end: client →
 * proxy → libp2p → seller exit → real TCP server, all on loopback.
 * Legit targets listen on 127.0.0.2 (the only address the exit allows);
 * a canary on 127.0.0.1 proves refused requests connect nothing.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { ERROR_CODE_HEADER, httpConnectProxy, httpStatusFor, parseConnectRequest, HttpConnectRequestError } from '../daemon/buyer/http-connect.ts'
import { ProxyHandshakeTimeoutError } from '../daemon/buyer/local-proxy.ts'
import { libp2pRelayDialer, RelayRefusedError } from '../daemon/buyer/relay-dialer.ts'
import { parseSocks5Request, socks5Proxy, socks5ReplyFor, Socks5RequestError, SOCKS5_REPLY } from '../daemon/buyer/socks5.ts'
import { relayExit } from '../daemon/relay/exit-service.ts'
import { dnsServerResolver } from '../daemon/relay/resolver.ts'
import { exitPolicy } from '../protocol/exit-policy.ts'
import { NodeSet, waitFor } from './helpers/libp2p-nodes.ts'
import {
  canaryServer, digestServer, dnsServer, httpConnect, readAll, readExactly, sha256, socks5Connect, sourceServer, tcpConnect, TestGate,
  type TestDnsServer, type TestServer
} from './helpers/relay-fixtures.ts'
import type { LocalProxy, ProxyDirection } from '../daemon/buyer/local-proxy.ts'
import type { Libp2p } from '@libp2p/interface'
import type { Socket } from 'node:net'

const logger = pino({ level: 'silent' })
const LEGIT = '127.0.0.2'
const MiB = 1024 * 1024

/** Writes `data`, ends the writable side and reads the answer until the end. */
async function uploadAndRead (socket: Socket, data: Buffer): Promise<string> {
  const answer = readAll(socket)
  socket.end(data)
  return (await answer).toString()
}

describe('buyer proxies', () => {
  const nodes = new NodeSet()
  const gate = new TestGate()
  const servers: TestServer[] = []
  const metered: Record<ProxyDirection, number> = { up: 0, down: 0 }
  const payload = randomBytes(8 * MiB)
  let dns: TestDnsServer
  let seller: Libp2p
  let socks: LocalProxy
  let http: LocalProxy
  let source: TestServer
  let digest: TestServer
  let canary: TestServer

  before(async () => {
    source = await sourceServer(LEGIT, payload)
    digest = await digestServer(LEGIT)
    canary = await canaryServer('127.0.0.1')
    servers.push(source, digest, canary)
    dns = await dnsServer({ 'legit.test': [LEGIT], 'loop.test': ['127.0.0.1'] })
    seller = await nodes.start({
      services: {
        relayExit: relayExit({
          gate,
          policy: exitPolicy({ allowCidrs: [`${LEGIT}/32`] }),
          resolver: dnsServerResolver({ servers: [dns.address], timeoutMs: 2000 }),
          logger
        })
      }
    })
    const buyer = await nodes.start()
    await buyer.dial(seller.getMultiaddrs())
    const { id } = gate.open(buyer.peerId)
    const dialer = libp2pRelayDialer({ node: buyer, route: () => ({ seller: seller.peerId, sessionId: id }) })
    const onForward = (bytes: number, direction: ProxyDirection): void => { metered[direction] += bytes }
    socks = socks5Proxy({ dialer, logger, onForward, handshakeTimeoutMs: 1000 })
    http = httpConnectProxy({ dialer, logger, onForward, handshakeTimeoutMs: 1000 })
    await socks.start()
    await http.start()
  })

  after(async () => {
    await socks.stop()
    await http.stop()
    await nodes.stopAll()
    await Promise.all(servers.map(async (s) => { await s.close() }))
    await dns.close()
  })

  it('listen on loopback only', () => {
    assert.equal(socks.address().host, '127.0.0.1')
    assert.equal(http.address().host, '127.0.0.1')
  })

  it('SOCKS5: downloads several MiB intact, by IP literal and by a name only the seller can resolve', async () => {
    for (const host of [LEGIT, 'legit.test']) {
      const down = metered.down
      const { reply, socket } = await socks5Connect(socks.address().port, host, source.port)
      assert.equal(reply, SOCKS5_REPLY.succeeded)
      const received = await readAll(socket)
      assert.equal(sha256(received), sha256(payload))
      assert.equal(metered.down - down, payload.byteLength, 'the buyer meters every byte it receives')
      socket.destroy()
    }
  })

  it('SOCKS5: uploads several MiB intact and receives the answer after half-closing', async () => {
    const upload = randomBytes(4 * MiB)
    const up = metered.up
    const { reply, socket } = await socks5Connect(socks.address().port, LEGIT, digest.port)
    assert.equal(reply, SOCKS5_REPLY.succeeded)
    assert.equal(await uploadAndRead(socket, upload), `${upload.byteLength} ${sha256(upload)}\n`)
    assert.equal(metered.up - up, upload.byteLength)
  })

  it('HTTP CONNECT: downloads and uploads several MiB intact, with half-close', async () => {
    const download = await httpConnect(http.address().port, 'legit.test', source.port)
    assert.equal(download.status, 200)
    assert.equal(sha256(await readAll(download.socket)), sha256(payload))
    download.socket.destroy()

    const upload = randomBytes(4 * MiB)
    const tunnel = await httpConnect(http.address().port, LEGIT, digest.port)
    assert.equal(tunnel.status, 200)
    assert.equal(await uploadAndRead(tunnel.socket, upload), `${upload.byteLength} ${sha256(upload)}\n`)
  })

  it('HTTP CONNECT: forwards bytes the client sent right behind its request', async () => {
    const socket = await tcpConnect('127.0.0.1', http.address().port)
    const answer = readAll(socket)
    socket.end(`CONNECT ${LEGIT}:${digest.port} HTTP/1.1\r\nHost: x\r\n\r\nearly bytes`)
    const text = (await answer).toString()
    assert.match(text, /^HTTP\/1\.1 200 Connection Established\r\n\r\n/)
    assert.ok(text.endsWith(`11 ${sha256(Buffer.from('early bytes'))}\n`), text)
  })

  it('a policy refusal reaches the client typed, and nothing is connected', async () => {
    const viaSocks = await socks5Connect(socks.address().port, '127.0.0.1', canary.port)
    assert.equal(viaSocks.reply, SOCKS5_REPLY.notAllowedByRuleset)
    viaSocks.socket.destroy()
    const byName = await socks5Connect(socks.address().port, 'loop.test', canary.port)
    assert.equal(byName.reply, SOCKS5_REPLY.notAllowedByRuleset)
    byName.socket.destroy()

    const viaHttp = await httpConnect(http.address().port, '127.0.0.1', canary.port)
    assert.equal(viaHttp.status, 403)
    assert.equal(viaHttp.headers[ERROR_CODE_HEADER.toLowerCase()], 'ERR_EXIT_POLICY')
    assert.match((await readAll(viaHttp.socket)).toString(), /ERR_EXIT_LOOPBACK/)
    viaHttp.socket.destroy()

    assert.equal(canary.connections, 0)
  })

  it('maps DNS and connect failures to SOCKS5 reply codes and HTTP statuses', async () => {
    const closed = await canaryServer(LEGIT)
    await closed.close()
    const cases = [
      { host: 'nx.test', port: 80, socks: SOCKS5_REPLY.hostUnreachable, http: 502, code: 'ERR_DNS' },
      { host: LEGIT, port: closed.port, socks: SOCKS5_REPLY.connectionRefused, http: 502, code: 'ERR_CONNECT_REFUSED' }
    ]
    for (const c of cases) {
      const viaSocks = await socks5Connect(socks.address().port, c.host, c.port)
      assert.equal(viaSocks.reply, c.socks, c.code)
      viaSocks.socket.destroy()
      const viaHttp = await httpConnect(http.address().port, c.host, c.port)
      assert.equal(viaHttp.status, c.http, c.code)
      assert.equal(viaHttp.headers[ERROR_CODE_HEADER.toLowerCase()], c.code)
      viaHttp.socket.destroy()
    }
  })

  it('refuses what the protocols do not support', async () => {
    // SOCKS5 BIND
    const socket = await tcpConnect('127.0.0.1', socks.address().port)
    socket.write(Buffer.from([5, 1, 0]))
    await readExactly(socket, 2)
    socket.write(Buffer.from([5, 2, 0, 1, 127, 0, 0, 2, 0, 80]))
    assert.equal((await readExactly(socket, 10))[1], SOCKS5_REPLY.commandNotSupported)
    socket.destroy()

    // SOCKS5 client without "no authentication"
    const auth = await tcpConnect('127.0.0.1', socks.address().port)
    auth.write(Buffer.from([5, 1, 2]))
    assert.deepEqual([...await readAll(auth)], [5, 0xff])
    auth.destroy()

    // HTTP GET
    const get = await tcpConnect('127.0.0.1', http.address().port)
    get.write('GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n')
    const text = (await readAll(get)).toString()
    assert.match(text, /^HTTP\/1\.1 405 /)
    assert.match(text, /\r\nAllow: CONNECT\r\n/)
    get.destroy()
  })

  it('bounds the request size and time', async () => {
    const big = await tcpConnect('127.0.0.1', http.address().port)
    const bigAnswer = readAll(big)
    big.write(`CONNECT ${LEGIT}:80 HTTP/1.1\r\nX-Fill: ${'a'.repeat(9000)}`)
    assert.match((await bigAnswer).toString(), /^HTTP\/1\.1 431 /)
    big.destroy()

    const slow = await tcpConnect('127.0.0.1', http.address().port)
    slow.write('CONNECT ')
    assert.match((await readAll(slow)).toString(), /^HTTP\/1\.1 408 /)
    slow.destroy()

    const silent = await tcpConnect('127.0.0.1', socks.address().port)
    await readAll(silent) // closed by the proxy after its handshake timeout
    silent.destroy()
    await waitFor(() => socks.connections === 0 && http.connections === 0, 2000, `the proxies to drop the connections (${socks.connections} socks, ${http.connections} http open)`)
  })
})

describe('buyer proxies without a reachable seller', () => {
  const nodes = new NodeSet()
  let socks: LocalProxy
  let http: LocalProxy

  after(async () => {
    await socks?.stop()
    await http?.stop()
    await nodes.stopAll()
  })

  it('answer SOCKS5 network unreachable and HTTP 502 ERR_SELLER_UNREACHABLE', async () => {
    const gone = await nodes.start()
    const goneAddrs = gone.getMultiaddrs()
    await nodes.stop(gone)
    const buyer = await nodes.start()
    const dialer = libp2pRelayDialer({ node: buyer, route: () => ({ seller: goneAddrs, sessionId: 'ab'.repeat(16) }) })
    socks = socks5Proxy({ dialer, logger })
    http = httpConnectProxy({ dialer, logger })
    await socks.start()
    await http.start()
    const viaSocks = await socks5Connect(socks.address().port, LEGIT, 80)
    assert.equal(viaSocks.reply, SOCKS5_REPLY.networkUnreachable)
    viaSocks.socket.destroy()
    const viaHttp = await httpConnect(http.address().port, LEGIT, 80)
    assert.equal(viaHttp.status, 502)
    assert.equal(viaHttp.headers[ERROR_CODE_HEADER.toLowerCase()], 'ERR_SELLER_UNREACHABLE')
    viaHttp.socket.destroy()
  })
})

describe('proxy request parsers', () => {
  it('parse SOCKS5 CONNECT to IPv4, IPv6 and domain targets, leaving the rest unconsumed', () => {
    const v4 = parseSocks5Request(Buffer.from([5, 1, 0, 1, 10, 0, 0, 1, 0x01, 0xbb, 0xaa]))
    assert.deepEqual(v4, { value: { host: '10.0.0.1', port: 443 }, consumed: 10 })
    const v6 = parseSocks5Request(Buffer.from([5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1, 0, 80]))
    assert.deepEqual(v6?.value, { host: '2001:db8:0:0:0:0:0:1', port: 80 })
    const name = parseSocks5Request(Buffer.concat([Buffer.from([5, 1, 0, 3, 11]), Buffer.from('example.com'), Buffer.from([0, 80])]))
    assert.deepEqual(name, { value: { host: 'example.com', port: 80 }, consumed: 18 })
    assert.equal(parseSocks5Request(Buffer.from([5, 1, 0, 3, 11, 0x65])), undefined, 'waits for more bytes')
    assert.throws(() => parseSocks5Request(Buffer.from([5, 1, 0, 9, 0, 0])), (err: unknown) => err instanceof Socks5RequestError && err.reply === SOCKS5_REPLY.addressTypeNotSupported)
    assert.throws(() => parseSocks5Request(Buffer.concat([Buffer.from([5, 1, 0, 3, 3]), Buffer.from('a b'), Buffer.from([0, 80])])), Socks5RequestError)
  })

  it('map every seller refusal code and timeout to a SOCKS5 reply and an HTTP status', () => {
    const rows: Array<[unknown, number, number]> = [
      [new RelayRefusedError('ERR_EXIT_POLICY', 'x'), SOCKS5_REPLY.notAllowedByRuleset, 403],
      [new RelayRefusedError('ERR_DNS', 'x'), SOCKS5_REPLY.hostUnreachable, 502],
      [new RelayRefusedError('ERR_CONNECT_REFUSED', 'x'), SOCKS5_REPLY.connectionRefused, 502],
      [new RelayRefusedError('ERR_CONNECT_TIMEOUT', 'x'), SOCKS5_REPLY.ttlExpired, 504],
      [new RelayRefusedError('ERR_CONNECT_UNREACHABLE', 'x'), SOCKS5_REPLY.hostUnreachable, 502],
      [new RelayRefusedError('ERR_NO_CREDIT', 'x'), SOCKS5_REPLY.notAllowedByRuleset, 403],
      [new RelayRefusedError('ERR_UNKNOWN_SESSION', 'x'), SOCKS5_REPLY.notAllowedByRuleset, 403],
      [new RelayRefusedError('ERR_TOO_MANY_STREAMS', 'x'), SOCKS5_REPLY.generalFailure, 503],
      [new RelayRefusedError('ERR_SOMETHING_NEW', 'x'), SOCKS5_REPLY.generalFailure, 502],
      [new ProxyHandshakeTimeoutError(1, 'request'), SOCKS5_REPLY.ttlExpired, 408],
      [new ProxyHandshakeTimeoutError(1, 'relay'), SOCKS5_REPLY.ttlExpired, 504]
    ]
    for (const [err, reply, status] of rows) {
      assert.equal(socks5ReplyFor(err), reply, String(err))
      assert.equal(httpStatusFor(err), status, String(err))
    }
  })

  it('parse HTTP CONNECT authorities, including bracketed IPv6', () => {
    assert.deepEqual(parseConnectRequest(Buffer.from('CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\nrest')), { value: { host: '2001:db8::1', port: 443 }, consumed: 38 })
    assert.equal(parseConnectRequest(Buffer.from('CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n')), undefined)
    for (const bad of ['CONNECT example.com HTTP/1.1\r\n\r\n', 'CONNECT example.com:0 HTTP/1.1\r\n\r\n', 'CONNECT [zz]:443 HTTP/1.1\r\n\r\n', 'CONNECT a:1 HTTP/2\r\n\r\n']) {
      assert.throws(() => parseConnectRequest(Buffer.from(bad)), HttpConnectRequestError, bad)
    }
  })
})
