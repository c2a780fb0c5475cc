/**
 * pipeStreamSocket over a real libp2p stream (tcp + noise + yamux on
 * loopback, fixed 256 KiB yamux window) and real TCP sockets: memory stays
 * bounded by the window when the socket side reads slowly.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { pipeStreamSocket } from '../daemon/relay/pipe.ts'
import { listenOnce, sha256, tcpConnect } from './helpers/relay-fixtures.ts'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Socket } from 'node:net'

const WINDOW = 256 * 1024
const PROTOCOL = '/spareband-test/pipe/1.0.0'

async function node (): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ streamOptions: { initialStreamWindowSize: WINDOW, maxStreamWindowSize: WINDOW } })]
  })
}

describe('pipeStreamSocket', () => {
  let a: Libp2p
  let b: Libp2p
  before(async () => { [a, b] = await Promise.all([node(), node()]) })
  after(async () => { await Promise.all([a.stop(), b.stop()]) })

  it('keeps buffering within one window per side while the socket reads slowly', async () => {
    const upload = randomBytes(6 * 1024 * 1024)
    // the slow reader: a TCP server that takes one socket read every 5 ms
    const slow = await listenOnce('127.0.0.1')
    let peak = 0
    const piped = new Promise<{ stream: Stream, socket: Socket }>((resolve) => {
      void b.handle(PROTOCOL, async (stream) => {
        const socket = await tcpConnect('127.0.0.1', slow.port)
        resolve({ stream, socket })
        const sample = setInterval(() => { peak = Math.max(peak, stream.readBufferLength + socket.writableLength) }, 2)
        try {
          await pipeStreamSocket(stream, socket)
        } finally {
          clearInterval(sample)
        }
      })
    })
    const server = await slow.accepted
    const received: Buffer[] = []
    let receivedBytes = 0
    server.pause()
    const reader = setInterval(() => {
      const chunk = server.read() as Buffer | null
      if (chunk != null) { received.push(chunk); receivedBytes += chunk.byteLength }
    }, 5)

    const stream = await a.dialProtocol(b.peerId, PROTOCOL, { signal: AbortSignal.timeout(5000) }).catch(async () => {
      await a.dial(b.getMultiaddrs())
      return await a.dialProtocol(b.peerId, PROTOCOL)
    })
    await piped
    for (let offset = 0; offset < upload.byteLength; offset += 64 * 1024) {
      if (!stream.send(upload.subarray(offset, offset + 64 * 1024))) {
        await new Promise<void>((resolve) => { stream.addEventListener('drain', () => { resolve() }, { once: true }) })
      }
    }
    await stream.close()
    const deadline = Date.now() + 60_000
    while (receivedBytes < upload.byteLength && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    clearInterval(reader)
    server.destroy()
    await slow.close()
    assert.equal(sha256(Buffer.concat(received)), sha256(upload))
    assert.ok(peak <= 3 * WINDOW, `buffered up to ${peak} bytes on the receiving side; the bound is 3 windows (${3 * WINDOW})`)
  })
})
