import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { SimulatedAdapter } from '../../hardware/simulated.ts'
import { AdapterStateError, InvalidGatewayClientError } from '../../hardware/errors.ts'

describe('simulated adapter', () => {
  it('says it is simulated in capabilities, status and the start-up log', async () => {
    const lines: string[] = []
    const logger = pino(new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } }))
    const a = new SimulatedAdapter({ logger, reason: 'nft not found' })
    await a.start()
    assert.equal(a.capabilities().simulated, true)
    assert.equal(a.capabilities().gateway, false)
    assert.equal(a.status().simulated, true)
    assert.match(a.status().notes[0], /simulated.*nft not found/)
    assert.ok(lines.some((l) => l.includes('SIMULATED')), 'the log says so')
  })

  it('counts reported traffic of admitted clients only, and a read zeroes', async () => {
    const a = new SimulatedAdapter({ logger: pino({ level: 'silent' }), reason: 'test' })
    await assert.rejects(a.admit({ ip: '10.0.0.2', mac: '02:00:00:00:00:02' }), AdapterStateError)
    await a.start()
    await a.admit({ ip: '10.0.0.2', mac: '02:00:00:00:00:02' })
    a.recordTraffic('10.0.0.2', 100n, 200n)
    a.recordTraffic('10.0.0.9', 50n, 0n)
    const r = await a.readCounters()
    assert.equal(r.clients[0].uploadBytes, 100n)
    assert.equal(r.total.rxBytes, 200n)
    assert.equal(r.droppedUnpaid.bytes, 50n)
    assert.equal((await a.readCounters()).total.txBytes, 0n)
    a.recordTraffic('10.0.0.2', 7n, 0n)
    assert.equal((await a.evict({ ip: '10.0.0.2', mac: '02:00:00:00:00:02' }))?.uploadBytes, 7n)
    assert.deepEqual(await a.listClients(), [])
    await assert.rejects(a.admit({ ip: '10.0.0.300', mac: '02:00:00:00:00:02' }), InvalidGatewayClientError)
    await assert.rejects(a.admit({ ip: '10.0.0.3', mac: '01:00:5e:00:00:01' }), InvalidGatewayClientError)
  })
})
