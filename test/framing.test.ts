import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { FrameTimeoutError, FrameTooLargeError, StreamEndedError, framedStream } from '../daemon/framing.ts'
import { NodeSet } from './helpers/libp2p-nodes.ts'
import type { Stream } from '@libp2p/interface'

const PROTOCOL = '/spareband-test/framing/1.0.0'

describe('framedStream over real libp2p streams', () => {
  const nodes = new NodeSet()
  let dial: () => Promise<{ local: Stream, remote: Stream }>

  before(async () => {
    const a = await nodes.start()
    const b = await nodes.start()
    const incoming: Stream[] = []
    const waiting: Array<(s: Stream) => void> = []
    await b.handle(PROTOCOL, (stream) => {
      const waiter = waiting.shift()
      if (waiter != null) waiter(stream)
      else incoming.push(stream)
    })
    await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
    dial = async () => {
      const local = await a.dialProtocol(b.peerId, PROTOCOL)
      // the remote side sees the stream once the first bytes arrive
      local.send(new Uint8Array(0))
      const remote = incoming.shift() ?? await new Promise<Stream>((resolve) => waiting.push(resolve))
      return { local, remote }
    }
  })

  after(async () => { await nodes.stopAll() })

  it('carries whole messages both ways, including several sent back to back', async () => {
    const { local, remote } = await dial()
    const client = framedStream(local, { maxMessageBytes: 1024 })
    const server = framedStream(remote, { maxMessageBytes: 1024 })
    await client.write(Uint8Array.from([1, 2, 3]))
    await client.write(new Uint8Array(1024).fill(7))
    assert.deepEqual(Uint8Array.from(await server.read()), Uint8Array.from([1, 2, 3]))
    assert.deepEqual(Uint8Array.from(await server.read()), new Uint8Array(1024).fill(7))
    await server.write(new TextEncoder().encode('ok'))
    assert.equal(new TextDecoder().decode(await client.read()), 'ok')
    await local.close()
    await remote.close()
  })

  it('refuses an announced frame above the limit before reading its body', async () => {
    const { local, remote } = await dial()
    const server = framedStream(remote, { maxMessageBytes: 100 })
    local.send(Uint8Array.from([101]))
    await assert.rejects(server.read(), FrameTooLargeError)
    local.abort(new Error('test done'))
  })

  it('aborts a peer that floods more than its buffer allowance', async () => {
    const { local, remote } = await dial()
    const server = framedStream(remote, { maxMessageBytes: 100, maxBufferBytes: 300 })
    for (let i = 0; i < 5; i++) local.send(new Uint8Array(101).fill(100))
    await new Promise((resolve) => setTimeout(resolve, 100))
    await assert.rejects(server.read(), FrameTooLargeError)
  })

  it('gives up on a read that does not complete in time', async () => {
    const { local, remote } = await dial()
    const server = framedStream(remote, { maxMessageBytes: 100, timeoutMs: 150 })
    local.send(Uint8Array.from([10, 1, 2]))
    const started = Date.now()
    await assert.rejects(server.read(), FrameTimeoutError)
    assert.ok(Date.now() - started >= 140)
    local.abort(new Error('test done'))
  })

  it('reports a stream that ends in the middle of a message', async () => {
    const { local, remote } = await dial()
    const server = framedStream(remote, { maxMessageBytes: 100 })
    local.send(Uint8Array.from([10, 1, 2]))
    await local.close()
    await assert.rejects(server.read(), StreamEndedError)
  })

  it('refuses to send a message above the limit', async () => {
    const { local } = await dial()
    const client = framedStream(local, { maxMessageBytes: 10 })
    await assert.rejects(client.write(new Uint8Array(11)), FrameTooLargeError)
    local.abort(new Error('test done'))
  })
})
