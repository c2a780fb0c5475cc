/**
 * pipeStreamSocket over a real libp2p stream (tcp + noise + yamux on
 * loopback, fixed 256 KiB yamux window) and real TCP sockets: backpressure
 * reaches the sender both ways, so memory stays bounded by a few windows when
 * either side reads slowly.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { pipeStreamSocket } from '../daemon/relay/pipe.ts'
import { listenOnce, sha256, sourceServer, tcpConnect } from './helpers/relay-fixtures.ts'
import type { Libp2p } from '@libp2p/interface'

const WINDOW = 256 * 1024
const PROTOCOL = '/spareband-test/pipe-up/1.0.0'
const PROTOCOL_DOWN = '/spareband-test/pipe-down/1.0.0'

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

  it('stops reading the stream while the socket is slow, buffering at most a few windows', async () => {
    const upload = randomBytes(8 * 1024 * 1024)
    // the slow reader: a TCP server that takes one socket read every 5 ms
    const slow = await listenOnce('127.0.0.1')
    let peak = 0
    let piped: Promise<unknown> = Promise.resolve()
    await b.handle(PROTOCOL, async (stream) => {
      const socket = await tcpConnect('127.0.0.1', slow.port)
      const sample = setInterval(() => { peak = Math.max(peak, stream.readBufferLength + socket.writableLength) }, 2)
      piped = pipeStreamSocket(stream, socket).finally(() => { clearInterval(sample) })
    })
    const stream = await a.dialProtocol(b.getMultiaddrs(), PROTOCOL)
    const server = await slow.accepted
    const sending = (async () => {
      for (let offset = 0; offset < upload.byteLength; offset += 64 * 1024) {
        if (!stream.send(upload.subarray(offset, offset + 64 * 1024))) {
          await new Promise<void>((resolve) => { stream.addEventListener('drain', () => { resolve() }, { once: true }) })
        }
      }
    })()
    const received: Buffer[] = []
    let receivedBytes = 0
    // the reader starts late, so the kernel's socket buffers fill up first
    await new Promise((resolve) => setTimeout(resolve, 300))
    const reader = setInterval(() => {
      const chunk = (server.read(16 * 1024) ?? server.read()) as Buffer | null
      if (chunk != null) { received.push(chunk); receivedBytes += chunk.byteLength }
    }, 2)
    try {
      await sending
      await stream.close()
      const deadline = Date.now() + 60_000
      while (receivedBytes < upload.byteLength && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    } finally {
      clearInterval(reader)
      server.destroy()
      await slow.close()
    }
    await piped.catch(() => {})
    assert.equal(sha256(Buffer.concat(received)), sha256(upload))
    assert.ok(peak <= 3 * WINDOW, `buffered up to ${peak} bytes on the receiving side; the bound is 3 windows (${3 * WINDOW})`)
  })

  it('stops reading the socket while the stream is slow, buffering at most a few windows', async () => {
    const download = randomBytes(8 * 1024 * 1024)
    const source = await sourceServer('127.0.0.1', download)
    let peak = 0
    let piped: Promise<unknown> = Promise.resolve()
    await b.handle(PROTOCOL_DOWN, async (stream) => {
      const socket = await tcpConnect('127.0.0.1', source.port)
      const sample = setInterval(() => { peak = Math.max(peak, stream.writeBufferLength + socket.readableLength) }, 2)
      piped = pipeStreamSocket(stream, socket).finally(() => { clearInterval(sample) })
    })
    const stream = await a.dialProtocol(b.getMultiaddrs(), PROTOCOL_DOWN)
    const received: Buffer[] = []
    stream.addEventListener('message', (evt) => { received.push(Buffer.from(evt.data.subarray())) })
    const ended = new Promise<void>((resolve) => { stream.addEventListener('end', () => { resolve() }) })
    // a slow reader: paused at first, then reading in short bursts
    stream.pause()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const reader = setInterval(() => {
      if (stream.readStatus === 'paused') stream.resume()
      else if (stream.readStatus === 'readable') stream.pause()
    }, 2)
    try {
      await stream.close()
      await ended
    } finally {
      clearInterval(reader)
      await source.close()
    }
    await piped.catch(() => {})
    assert.equal(sha256(Buffer.concat(received)), sha256(download))
    assert.ok(peak <= 3 * WINDOW, `buffered up to ${peak} bytes on the sending side; the bound is 3 windows (${3 * WINDOW})`)
  })
})
